#!/usr/bin/env bash
# Bad inputs and faults against the `cssl` program, as a markdown table:
# each case's command, exit code and the first line of its message.
# No case may exit with 101 (a panic); nothing may be overwritten without
# --overwrite (checked at the end).
#
#   cargo build --release && scripts/fault-table.sh [path/to/cssl] > faults.md
#
# Needs python3 (to edit JSON configs) and about a minute on two cores.
set -u
BIN=$(realpath "${1:-target/release/cssl}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# tiny [flag value]...: a one-epoch run on 128 images, with these flags replaced.
tiny() {
  local -A f=([--epochs]=1 [--batch-size]=32 [--train-subset]=128 [--probe-subset]=200 [--test-subset]=200)
  while [ $# -ge 2 ] && [ -n "${f[$1]+x}" ]; do f[$1]=$2; shift 2; done
  TINY=(--no-raw-baseline)
  for k in "${!f[@]}"; do TINY+=("$k" "${f[$k]}"); done
}
tiny
panics=0

edit() { # edit FILE PYTHON-EXPR-ON-c  -> writes FILE.new
  python3 - "$1" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(c, open(sys.argv[1] + ".new", "w"), indent=1)
EOF
}

row() { # row "case" command...
  local name=$1; shift
  local out code
  out=$("$@" 2>&1 </dev/null)
  code=$?
  [ "$code" = 101 ] && panics=$((panics + 1))
  local msg
  msg=$(printf '%s\n' "$out" | grep -m1 -E '^(error|Error)|panicked' || printf '%s\n' "$out" | tail -n1)
  local shown="${*/#$BIN/cssl}"
  shown=${shown//$WORK\//}
  msg=${msg//$WORK\//}
  printf '| %s | `%s` | %s | %s |\n' "$name" "$shown" "$code" "${msg//|/\\|}"
}

# A finished run to break things around.
"$BIN" pretrain "${TINY[@]}" --seed 1 --out good >/dev/null 2>&1 || { echo "the reference run failed"; exit 1; }
cp -r good good.pristine
cfg=good/config.json

echo "| case | command | exit | first line of the message |"
echo "|---|---|---|---|"
tiny --epochs 0; row "zero epochs" "$BIN" pretrain "${TINY[@]}" --out r1
tiny --batch-size 1; row "batch of 1" "$BIN" pretrain "${TINY[@]}" --out r2
tiny --batch-size 256; row "batch larger than the train subset" "$BIN" pretrain "${TINY[@]}" --out r3
tiny --train-subset 100000; row "train subset larger than the split" "$BIN" pretrain "${TINY[@]}" --out r4
tiny --probe-subset 70000; row "probe subset larger than the split" "$BIN" pretrain "${TINY[@]}" --out r5
tiny --test-subset 20000; row "test subset larger than the split" "$BIN" pretrain "${TINY[@]}" --out r6
tiny
row "unknown method" "$BIN" pretrain --method simclr2
row "unknown dataset" "$BIN" pretrain --dataset imagenet
row "CIFAR-10 without --data" "$BIN" pretrain --dataset cifar10
tiny; row "missing data directory" "$BIN" pretrain "${TINY[@]}" --data /nonexistent/fmnist --out r7
mkdir -p empty && python3 - <<'EOF'
import struct
for p in ["train", "t10k"]:
    open(f"empty/{p}-images-idx3-ubyte", "wb").write(struct.pack(">BBBBIII", 0, 0, 8, 3, 0, 28, 28))
    open(f"empty/{p}-labels-idx1-ubyte", "wb").write(struct.pack(">BBBBI", 0, 0, 8, 1, 0))
EOF
row "valid idx files holding no images" "$BIN" pretrain "${TINY[@]}" --data empty --out r8
mkdir -p swapped && python3 - <<'EOF'
import struct
for p in ["train", "t10k"]:
    open(f"swapped/{p}-labels-idx1-ubyte", "wb").write(struct.pack(">BBBBIII", 0, 0, 8, 3, 1, 28, 28) + bytes(784))
    open(f"swapped/{p}-images-idx3-ubyte", "wb").write(struct.pack(">BBBBI", 0, 0, 8, 1, 1) + bytes(1))
EOF
row "label file where images belong" "$BIN" pretrain "${TINY[@]}" --data swapped --out r9
FMNIST="$(dirname "$BIN")"/../../data/fashion-mnist
mkdir -p trunc && cp "$FMNIST"/t10k-* "$FMNIST"/train-labels-idx1-ubyte.gz trunc/ 2>/dev/null
head -c 30000 "$FMNIST"/train-images-idx3-ubyte.gz.00 > trunc/train-images-idx3-ubyte.gz 2>/dev/null
tiny; row "truncated gzip idx file" "$BIN" pretrain "${TINY[@]}" --data trunc --out r10
row "config file missing" "$BIN" pretrain --config nope.json
printf '{"dataset": "fashion-mnist",\n "options": {\n' > bad.json
row "config not valid JSON" "$BIN" pretrain --config bad.json
edit $cfg 'c["method"]["simclr"]["encoder"]["ResNet"]["widht"] = 2'
row "config with a typo'd key" "$BIN" pretrain --config $cfg.new --out r11
edit $cfg 'c["method"]["simclr"]["optimizer"]["lr"] = -0.001'
row "negative learning rate" "$BIN" pretrain --config $cfg.new --out r12
edit $cfg 'c["method"]["simclr"]["optimizer"]["lr"] = 0'
row "zero learning rate" "$BIN" pretrain --config $cfg.new --out r13
edit $cfg 'c["method"]["simclr"]["optimizer"]["warmup"] = {"epochs": -1}'
row "negative warm-up" "$BIN" pretrain --config $cfg.new --out r14
edit $cfg 'c["method"]["simclr"]["optimizer"]["warmup"] = {"fraction": 1.5}'
row "warm-up fraction above 1" "$BIN" pretrain --config $cfg.new --out r14b
edit $cfg 'c["method"]["simclr"]["optimizer"]["weight_decay"] = -1'
row "negative weight decay" "$BIN" pretrain --config $cfg.new --out r15
edit $cfg 'c["method"]["simclr"]["extraction"]["Projection"]["output_dim"] = 0'
row "zero-width head" "$BIN" pretrain --config $cfg.new --out r16
edit $cfg 'c["method"]["simclr"]["augmentation"]["views"][1]["ops"][0]["size"] = 24'
row "views of different sizes (SimCLR concatenates them)" "$BIN" pretrain --config $cfg.new --out r17
edit $cfg 'n = c["method"]["simclr"]["augmentation"]["views"][0]["normalize"]; n["mean"] = [0.5, 0.5, 0.5]; n["std"] = [0.2, 0.2, 0.2]'
row "3 normalisation values for 1 channel" "$BIN" pretrain --config $cfg.new --out r18
row "--method against the config's" "$BIN" pretrain --method byol --config $cfg --out r19
row "--dataset against the config's" "$BIN" pretrain --dataset cifar10 --config $cfg --out r20
edit $cfg 'c["method"]["simclr"]["optimizer"]["lr"] = 1e30'
row "learning rate 1e30 (diverges)" "$BIN" pretrain --config $cfg.new --out r21
row "--out is an existing run" "$BIN" pretrain "${TINY[@]}" --out good
mkdir -p photos && echo meow > photos/cat.jpg
row "--overwrite on a directory that is not a run" "$BIN" pretrain "${TINY[@]}" --out photos --overwrite
row "--resume a directory that does not exist" "$BIN" pretrain --resume nowhere
"$BIN" pretrain "${TINY[@]}" --out early --stop-after-steps 1 --checkpoint-minutes 60 >/dev/null 2>&1
rm -rf early/checkpoint
row "--resume a run with no checkpoint" "$BIN" pretrain --resume early
row "--resume with --epochs" "$BIN" pretrain --resume good --epochs 5
row "--checkpoint-minutes 0" "$BIN" pretrain "${TINY[@]}" --checkpoint-minutes 0 --out r22
row "unknown device" "$BIN" pretrain --device tpu
row "CUDA in a CPU build" "$BIN" pretrain "${TINY[@]}" --device cuda --out r23
row "eval: not a run directory" "$BIN" eval --checkpoint photos
row "eval: probe subset larger than the split" "$BIN" eval --checkpoint good --probe-subset 999999
edit $cfg 'c["method"]["simclr"]["encoder"]["ResNet"]["base_width"] = 32; c["method"]["simclr"]["extraction"]["Projection"]["input_dim"] = 256'; cp $cfg.new $cfg
row "eval: config.json edited to another width" "$BIN" eval --checkpoint good
row "export: config.json edited to another width" "$BIN" export --checkpoint good --out w.safetensors
rm -rf good && cp -r good.pristine good
edit $cfg 'e = c["method"]["simclr"]; e["encoder"] = {"Amdim": {"ndf": 8, "n_rkhs": 16, "depth": 1, "input_size": 32, "in_channels": 1, "use_bn": False}}'; cp $cfg.new $cfg
row "eval: config.json edited to another encoder kind" "$BIN" eval --checkpoint good
rm -rf good && cp -r good.pristine good
head -c 1000 good.pristine/encoder.mpk > good/encoder.mpk
row "eval: truncated encoder.mpk" "$BIN" eval --checkpoint good
"$BIN" pretrain "${TINY[@]}" --seed 2 --out other >/dev/null 2>&1
cp other/encoder.mpk good/encoder.mpk
row "eval: encoder.mpk from another run" "$BIN" eval --checkpoint good
rm -rf good && cp -r good.pristine good && rm good/records.json
row "eval: records.json missing" "$BIN" eval --checkpoint good
rm -rf good && cp -r good.pristine good
"$BIN" export --checkpoint good --out e.safetensors >/dev/null 2>&1
row "export over an existing file" "$BIN" export --checkpoint good --out e.safetensors

# --- Image folders: one class mapping, a pixel limit, headers at start-up.
python3 - <<'EOF2'
import struct, zlib, os
def png(path, w, h, color=0, rows=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    z = zlib.compressobj(9)
    row = b"\0" + bytes([color]) * (w * 3)
    data = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", data) + chunk(b"IEND", b""))
def split(root, classes, n=4):
    for c in classes:
        for k in range(n):
            png(f"{root}/{c}/{k}.png", 16, 16, 40 * k)
split("f_empty/train", ["cat", "dog"]); os.makedirs("f_empty/train/eel"); split("f_empty/test", ["cat", "dog"])
split("f_testonly/train", ["cat", "dog"]); split("f_testonly/test", ["cat", "dog", "zebra"])
split("f_big/train", ["cat", "dog"]); split("f_big/test", ["cat", "dog"])
# 20000 x 20000 RGB (1.2 GB decoded), a few hundred KB on disk.
import shutil
png("f_big/train/dog/huge.png", 20000, 20000)
for d in ["f_bigu", "f_junku"]:
    shutil.copytree("f_big", d)
    os.remove(f"{d}/train/dog/huge.png")
shutil.copy("f_big/train/dog/huge.png", "f_bigu/unlabeled/a/huge.png") if os.makedirs("f_bigu/unlabeled/a") is None else None
split("f_junku/unlabeled", ["x"], 3)
open("f_junku/unlabeled/x/notes.jpg", "w").write("not a jpeg")
# CIFAR-10 as its archive unpacks: the files one level down (one record each).
os.makedirs("c10/cifar-10-batches-bin")
for f in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    open(f"c10/cifar-10-batches-bin/{f}", "wb").write(bytes([3]) + bytes(3072))
EOF2
echo "huge.png on disk: $(du -k f_big/train/dog/huge.png | cut -f1) KB" >&2
row "folder: an empty train class" "$BIN" pretrain --dataset folder --data f_empty "${TINY[@]}" --out r30
row "folder: a class only test/ has" "$BIN" pretrain --dataset folder --data f_testonly "${TINY[@]}" --out r31
row "folder: a 20000x20000 PNG of 1.1 MB in train/" "$BIN" pretrain --dataset folder --data f_big "${TINY[@]}" --out r32
/usr/bin/time -v "$BIN" pretrain --dataset folder --data f_big "${TINY[@]}" --out r32b 2> time.txt >/dev/null
echo "peak memory refusing huge.png: $(grep 'Maximum resident' time.txt | awk '{print $NF}') KB" >&2
row "folder: the same PNG in unlabeled/ (found at start-up)" "$BIN" pretrain --dataset folder --data f_bigu "${TINY[@]}" --out r33
row "folder: a text file named .jpg in unlabeled/" "$BIN" pretrain --dataset folder --data f_junku "${TINY[@]}" --out r34
row "--max-image-pixels 0" "$BIN" pretrain "${TINY[@]}" --max-image-pixels 0 --out r35
row "CIFAR-10 --data one level up (1 record per file)" "$BIN" pretrain --dataset cifar10 --data c10 "${TINY[@]}" --out r36

# --- A live run: a second process is refused; kill -9 releases the lock.
tiny --train-subset 6400
"$BIN" pretrain "${TINY[@]}" --out live >/dev/null 2>&1 &
LIVE=$!
while [ ! -f live/config.json ]; do sleep 0.2; done
row "--overwrite of a run another process trains" "$BIN" pretrain "${TINY[@]}" --out live --overwrite
row "--resume of a run another process trains" "$BIN" pretrain --resume live
row "eval of a run another process trains" "$BIN" eval --checkpoint live
kill -9 $LIVE; wait $LIVE 2>/dev/null
tiny
row "--overwrite after kill -9 of its trainer" "$BIN" pretrain "${TINY[@]}" --out live --overwrite

# --- Checkpoints: a damaged newest one, then none intact.
tiny --train-subset 320
"$BIN" pretrain "${TINY[@]}" --online-knn 0 --checkpoint-steps 2 --stop-after-steps 4 --out ck >/dev/null 2>&1
head -c 100 ck/checkpoint/step-00000004/model.mpk > cut && mv cut ck/checkpoint/step-00000004/model.mpk
row "--resume with the newest checkpoint truncated (falls back)" "$BIN" pretrain --resume ck --stop-after-steps 5
for d in ck/checkpoint/step-*; do echo '{' > "$d/state.json"; done
row "--resume with no intact checkpoint" "$BIN" pretrain --resume ck
tiny

# --- Studies: a failing cell and a refused one are not exit 0.
printf 'name = "bad"\ntitle = "a cell that cannot run"\nfinding = "none"\ncharacteristic = "similarity"\nmethod = "simclr"\nseeds = [1]\n[budget]\nepochs = 1\ntrain_subset = 128\nbatch_size = 32\n[eval]\nprobe_subset = 128\ntest_subset = 128\nbn_batches = 1\nprobe_epochs = 2\n[[cell]]\nlabel = "base"\n[[cell]]\nlabel = "too big"\nset = { "options.batch_size" = 4096 }\n' > bad.toml
row "ablate --check with a refused cell" "$BIN" ablate bad.toml --check
row "ablate with a failing cell (table written)" "$BIN" ablate bad.toml --out study
[ -f study/table.md ] || echo "THE FAILED STUDY WROTE NO TABLE" >&2

echo
echo "panics (exit code 101): $panics"
diff -r good good.pristine >/dev/null && echo "the existing run is unchanged" || echo "THE EXISTING RUN CHANGED"
