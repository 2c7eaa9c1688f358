#!/usr/bin/env bash
# GPU check: builds nothing. Takes the release binaries (built elsewhere with
# `cargo build --release --features cuda --bin cssl` and
# `cargo build --release -p xtask --features cuda`; `--features wgpu` for a
# wgpu adapter: Vulkan, Metal, DX12 or Mesa's lavapipe), then
#   1. cold start and steady state of SimCLR's step: ResNet-18 at 32 px,
#      batch 512, and ResNet-50 at 32 px, batch 256 (f32; bf16 with --bf16);
#   2. the same step in PyTorch when `python3 -c "import torch"` works
#      (scripts/torch_simclr_step.py), for a ratio on the same GPU (CUDA);
#   3. a short SimCLR pretrain + evaluation on generated CIFAR-10-format files,
#      on one device, then data-parallel on DEVICES (every GPU when there
#      are several; cpu:2 with DEVICE=cpu);
# and prints one summary. On a machine without a GPU: DEVICE=cpu (small
# batches) shows that it runs end to end; DEVICE=wgpu:cpu runs the GPU code
# path on lavapipe (tiny batches, e.g. R18_BATCH=8 R50_BATCH=4 STEPS=2
# WARMUP=1 LIMIT=1200: lavapipe is slow).
#
# Usage: scripts/gpu-check.sh [--bf16]
# Env: BIN (folder of the binaries, default target/release), DEVICE (cuda;
#      or cpu, cuda:N, wgpu, wgpu:N, wgpu:cpu),
#      PYTHON (python3), R18_BATCH (512), R50_BATCH (256), STEPS (20),
#      WARMUP (20), LIMIT (seconds per step of the check, 300), DEVICES
#      (cuda:0,1,... for every GPU when there are several; cpu:2 on the CPU;
#      empty: no data-parallel run), TRAIN (2000) and BATCH (128) of the
#      short pretrain.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
R18_BATCH=${R18_BATCH:-512}
R50_BATCH=${R50_BATCH:-256}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-20}
LIMIT=${LIMIT:-300}
if [ -z "${DEVICES+set}" ]; then
  if [ "$DEVICE" = cpu ]; then DEVICES=cpu:2
  elif [ "${DEVICE#wgpu}" != "$DEVICE" ]; then DEVICES=
  else
    GPUS=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | paste -sd, -)
    case "$GPUS" in *,*) DEVICES="cuda:$GPUS" ;; *) DEVICES= ;; esac
  fi
fi
PRECISIONS="f32"
[ "${1:-}" = "--bf16" ] && PRECISIONS="f32 bf16"
for b in "$BIN/xtask" "$BIN/cssl"; do
  [ -x "$b" ] || { echo "gpu-check: $b missing: build it first (see the header of $0)" >&2; exit 2; }
done
OUT=$(mktemp -d)
SUMMARY="$OUT/summary.txt"
TORCH=no
if [ "${DEVICE#cuda}" != "$DEVICE" ] && "$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then TORCH=yes; fi
case "$DEVICE" in
  wgpu*) NAME=$("$BIN/cssl" devices | grep '^wgpu:' | paste -sd';' -) ;;
  *) NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo 'no nvidia-smi') ;;
esac
echo "gpu-check on $DEVICE (${NAME:-none}), torch anchor: $TORCH" | tee "$SUMMARY"

bench() { # encoder batch precision
  local log="$OUT/$1-$3.log"
  timeout "$LIMIT" "$BIN/xtask" bench --encoder "$1" --size 32 --batch-size "$2" --device "$DEVICE" \
    --precision "$3" --warmup "$WARMUP" --steps "$STEPS" > "$log" 2>&1
  local rc=$?
  cat "$log"
  local cold steady
  cold=$(grep -o 'cold start: [0-9.]* s' "$log" | grep -o '[0-9.]*' | head -1)
  steady=$(grep -o 'steady state: [0-9]* views/s' "$log" | grep -o '[0-9]*' | head -1)
  local anchor="-"
  if [ "$TORCH" = yes ]; then
    anchor=$(timeout "$LIMIT" "$PYTHON" scripts/torch_simclr_step.py --model "$1" --size 32 --batch "$2" \
      --device cuda --precision "$3" --steps "$STEPS" --warmup "$WARMUP" 2>&1 | tee -a "$log" | grep -o 'views_per_s=[0-9]*' | cut -d= -f2)
    anchor=${anchor:--}
  fi
  local ratio="-"
  if [ -n "$steady" ] && [ "$anchor" != "-" ]; then ratio=$(awk "BEGIN{printf \"%.2f\", $steady/$anchor}"); fi
  printf "%-9s 32px batch %-4s %-5s cold start %6s s  steady %7s views/s  PyTorch %7s views/s  cssl/PyTorch %s  (exit %s)\n" \
    "$1" "$2" "$3" "${cold:--}" "${steady:--}" "$anchor" "$ratio" "$rc" | tee -a "$SUMMARY"
}

for p in $PRECISIONS; do
  bench resnet18 "$R18_BATCH" "$p"
  bench resnet50 "$R50_BATCH" "$p"
done

# A short SimCLR run on generated CIFAR-10-format files (label byte + 3,072 pixel bytes).
DATA="$OUT/cifar/cifar-10-batches-bin"
mkdir -p "$DATA"
"$PYTHON" - "$DATA" <<'PY'
import os, sys
for name in ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]:
    with open(os.path.join(sys.argv[1], name + ".bin"), "wb") as f:
        for i in range(1000):
            f.write(bytes([i % 10]) + os.urandom(3072))
PY
pretrain() { # devices name
  local start rc views
  start=$(date +%s)
  timeout "$LIMIT" "$BIN/cssl" pretrain --dataset cifar10 --data "$DATA" --device "$1" --epochs 1 \
    --train-subset "${TRAIN:-2000}" --probe-subset 1000 --test-subset 1000 --batch-size "${BATCH:-128}" --no-raw-baseline \
    --out "$OUT/$2" > "$OUT/$2.log" 2>&1
  rc=$?
  tail -12 "$OUT/$2.log"
  views=$(grep -o '[0-9]* views/s' "$OUT/$2.log" | tail -1)
  printf "simclr pretrain + eval on generated CIFAR-10 files (1 epoch, ${TRAIN:-2000} images) on %s: exit %s in %s s (last progress: %s)\n" \
    "$1" "$rc" "$(( $(date +%s) - start ))" "${views:--}" | tee -a "$SUMMARY"
}
pretrain "$DEVICE" run
[ -n "$DEVICES" ] && pretrain "$DEVICES" run-parallel
echo
echo "== summary"
cat "$SUMMARY"
