"""Where a training step's time goes, per operation, from a `perf` profile.

Runs `perf record --call-graph dwarf` over `cargo xtask bench` timing one
method's step (release build), then gives every sample to an operation (a
convolution's forward or backward, batch norm, the optimiser, ...: the first
in a fixed order that its call stack names; allocation when its innermost
frame is the allocator) and prints each operation's share of the samples.
Setup (loading the embedded dataset, building the model) is left out: only
samples under the method's step or the optimiser are counted.

Usage (perf from Debian's linux-perf; run with nothing else on the machine):
    python3 scripts/step_profile.py [--method simclr] [--steps 12] [--env CSSL_KERNELS=off]
`--env CSSL_KERNELS=off` profiles burn's own batch norm and convolution
instead of cssl-kernels' (the path every non-Flex backend takes).
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A sample whose innermost frame is the allocator or the kernel's page-fault
# handler counts as allocation; otherwise it belongs to the first operation
# below (in this order) that any frame of its stack names.
ALLOCATION = re.compile(r"malloc|_int_free|cfree|__libc_|realloc|__rust_(alloc|dealloc)|page_fault|clear_page|do_anonymous_page|memset")
CATEGORIES = [
    ("conv backward", r"cssl_kernels::conv::backward|ConvBackward|conv2d_x_backward|conv2d_weight_backward|conv2d_bias_backward"),
    ("batch norm / group norm backward (fused)", r"BatchNormBackward|GroupNormBackward"),
    ("element-wise backward (burn's batch norm, relu, add, ...)", r"execute_steps|backward::(binary|unary)"),
    ("optimiser (AdamW) and after-step updates", r"AdamW|SimpleOptimizer|optimize|ema_update"),
    ("conv forward", r"cssl_kernels::conv|ModuleOps<burn_flex::backend::Flex>>::conv2d|burn_flex::ops::conv::conv"),
    ("batch norm / group norm forward", r"cssl_kernels::(batch_norm|group_norm)|BatchNorm<B>::forward|GroupNorm<B>::forward|group_norm"),
    ("loss and head (matmul, softmax)", r"cssl_losses|ProjectionHead|matmul|log_softmax"),
    ("element-wise forward (relu, add, reshape)", r"burn_flex::ops|to_contiguous|reshape|relu"),
    ("autodiff bookkeeping", r"burn_autodiff"),
    ("augmentation and batching", r"cssl_augment|MultiViewBatcher|cssl_data"),
    ("idle core waiting for parallel work", r"sched_yield|futex|wait_until|__schedule"),
    ("parallel loops inlined into rayon (conv / norm chunks)", r"FoldFolder|ForEachConsumer|bridge_producer_consumer"),
]
INSIDE_STEP = re.compile(r"TrainStep>::step|optimize|cssl_kernels|rayon|gemm|Batcher")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the profiled run")
    args = parser.parse_args()
    xtask = os.path.join(ROOT, "target", "release", "xtask")
    if not os.path.exists(xtask):
        subprocess.run(["cargo", "build", "--release", "-p", "xtask"], cwd=ROOT, check=True)
    env = dict(os.environ)
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        cmd = [xtask, "bench", "--no-augmentation", "--methods", args.method, "--steps", str(args.steps)]
        subprocess.run(
            ["perf", "record", "-q", "-F", "499", "--call-graph", "dwarf,32768", "-o", data, "--"] + cmd,
            env=env, check=True, stdout=sys.stderr,
        )
        script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"], capture_output=True, text=True, check=True).stdout
    counts = collections.Counter()
    total = 0
    for sample in script.split("\n\n"):
        frames = [l.strip().split(" ", 1)[-1] for l in sample.strip().splitlines() if l.strip()]
        if not frames or not any(INSIDE_STEP.search(f) for f in frames):
            continue
        total += 1
        if ALLOCATION.search(frames[0]):
            counts["allocation, zeroing and page faults"] += 1
            continue
        hit = next((name for name, pat in CATEGORIES if any(re.search(pat, f) for f in frames)), "other")
        counts[hit] += 1
    label = " ".join(args.env) or "default"
    print(f"{args.method} step, {args.steps} timed steps, {label}: {total} samples in the step")
    for name, n in counts.most_common():
        print(f"  {100.0 * n / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
