#!/usr/bin/env bash
# A tiny `cssl pretrain` end to end on a wgpu adapter: an uninterrupted run, a
# run killed (-9) after its second checkpoint and resumed, the two runs' final
# weights compared (param ids aside), eval and export of the resumed run.
#
#   cargo build --release --features wgpu && scripts/wgpu-resume-check.sh [DEVICE]
#
# DEVICE defaults to wgpu:cpu (Mesa's lavapipe); about 5 minutes there.
set -u
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
B=$(realpath "${BIN:-target/release}/cssl")
DEVICE=${1:-wgpu:cpu}
W=$(mktemp -d); cd "$W"; echo "work directory: $W"
FLAGS="--device $DEVICE --train-subset 64 --batch-size 16 --epochs 2 --probe-subset 100 --test-subset 100 --no-raw-baseline --online-knn 0 --checkpoint-steps 2"
t=$(date +%s); $B pretrain $FLAGS --out full > full.log 2>&1; echo "full: exit $? in $(( $(date +%s) - t )) s"
t=$(date +%s); $B pretrain $FLAGS --out cut > cut.log 2>&1 & pid=$!
while [ ! -d cut/checkpoint/step-00000004 ] && kill -0 $pid 2>/dev/null; do sleep 0.2; done; kill -9 $pid; wait $pid; echo "cut: killed (-9) after $(( $(date +%s) - t )) s; checkpoints: $(ls cut/checkpoint | tr '\n' ' ')"
t=$(date +%s); $B pretrain --resume cut > resume.log 2>&1; echo "resume: exit $? in $(( $(date +%s) - t )) s"
# Every byte that differs must lie in a parameter id (fresh in each process).
for f in model.mpk encoder.mpk; do
  python3 - "full/$f" "cut/$f" <<'PY'
import re, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
ids = {i for m in re.finditer(rb"\xa2id\xad", a) for i in range(m.end(), m.end() + 13)}
diff = [i for i in range(min(len(a), len(b))) if a[i] != b[i]]
same = len(a) == len(b) and all(i in ids for i in diff)
print(f"{sys.argv[1]} against {sys.argv[2]}: {'bitwise equal' if same else 'DIFFERENT'} "
      f"({len(diff)} bytes differ, all in parameter ids: {same})")
PY
done
diff <(cut -d, -f1-5 full/metrics.csv) <(cut -d, -f1-5 cut/metrics.csv) && echo "metrics.csv equal" || echo "metrics differ"
t=$(date +%s); $B eval --checkpoint cut --device "$DEVICE" > eval.log 2>&1; echo "eval: exit $? in $(( $(date +%s) - t )) s: $(tail -1 eval.log)"
t=$(date +%s); $B export --checkpoint cut --out cut.safetensors > export.log 2>&1; echo "export: exit $? in $(( $(date +%s) - t )) s: $(ls -l cut.safetensors | awk '{print $5}') bytes"
grep -h "linear probe\|pretrained\|random" full.log resume.log | head
