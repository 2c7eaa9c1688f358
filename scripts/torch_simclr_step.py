"""The main job's SimCLR training step in PyTorch, for `cargo xtask bench --compare-torch`
(and, with --model resnet18|resnet50, the GPU anchor of `scripts/gpu-check.sh`).

Same model and step as cssl's Fashion-MNIST SimCLR default: ResNet-18 at base
width 16 with a 3x3 stride-2 stem and no max-pool, 1x28x28 inputs, head
128 -> 256 (batch norm, ReLU) -> 64, NT-Xent at temperature 0.2, AdamW at
2e-3; each step is forward, backward and the optimiser step on a batch of
`batch` images x 2 views. The inputs are fixed random tensors (augmentation is
not timed here; cssl's figure includes its own, about 1% of its step).

Prints one line per thread count:
    torch threads=T batch=B views_per_s=V (min ... max ...)
where V is 2 * batch over the median step time of `steps` steps after 3
warm-up steps.

Usage: python3 scripts/torch_simclr_step.py [--steps N] [--batch B] [--threads T ...]
Needs only `torch` (`python3 -m venv venv && venv/bin/pip install torch`).

With --model resnet18|resnet50 it times the step of `cargo xtask bench
--encoder ...` instead: full-width ResNet on --size px RGB views (CIFAR stem
at 32 px and below, ImageNet stem above), head width-2048(BN, ReLU)-128,
NT-Xent at 0.5, AdamW, on --device cpu|cuda, --precision f32 (TF32 matmuls
allowed, as PyTorch's default on Hopper) or bf16 (autocast); it prints
    torch model=... views_per_s=V
after --warmup untimed steps, synchronising the device around the timing.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = 4 * planes
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class FullResNetSimClr(nn.Module):
    """ResNet-18/50 as cssl's `ResNetConfig::resnet18/50(3)`, SimCLR head."""

    def __init__(self, depth, size):
        super().__init__()
        if size <= 32:
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
        blocks, cin = [], 64
        for stage, planes in enumerate([64, 128, 256, 512]):
            for b in range(2 if depth == 18 else [3, 4, 6, 3][stage]):
                stride = 2 if (stage > 0 and b == 0) else 1
                if depth == 18:
                    blocks.append(BasicBlock(cin, planes, stride))
                    cin = planes
                else:
                    blocks.append(Bottleneck(cin, planes, stride))
                    cin = 4 * planes
        self.body = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Linear(cin, 2048), nn.BatchNorm1d(2048), nn.ReLU(), nn.Linear(2048, 128)
        )

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def model_views_per_s(args):
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    net = FullResNetSimClr(18 if args.model == "resnet18" else 50, args.size).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(2 * args.batch, 3, args.size, args.size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = nt_xent(net(x).float(), 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    step()
    sync()
    cold = time.perf_counter() - t0
    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    dt = time.perf_counter() - t0
    print(
        f"torch model={args.model} size={args.size} batch={args.batch} precision={args.precision} "
        f"device={args.device} cold_start_s={cold:.1f} views_per_s={2 * args.batch * args.steps / dt:.0f} "
        f"loss={loss.item():.4f}",
        flush=True,
    )


class SimClrNet(nn.Module):
    def __init__(self, width=16, channels=1):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        blocks, cin = [], width
        for stage, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            blocks += [BasicBlock(cin, cout, 1 if stage == 0 else 2), BasicBlock(cout, cout, 1)]
            cin = cout
        self.body = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Linear(cin, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 64)
        )

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def nt_xent(z, temperature):
    z = F.normalize(z, dim=1)
    n = z.shape[0] // 2
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, positives)


def views_per_s(threads, steps, batch):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = SimClrNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    x = torch.rand(2 * batch, 1, 28, 28)
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss = nt_xent(net(x), 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return 2 * batch / statistics.median(times), 2 * batch / max(times), 2 * batch / min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--model", choices=["small", "resnet18", "resnet50"], default="small")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__} (mkldnn {torch.backends.mkldnn.is_available()})", flush=True)
    if args.model != "small":
        return model_views_per_s(args)
    for threads in args.threads:
        med, lo, hi = views_per_s(threads, args.steps, args.batch)
        print(
            f"torch threads={threads} batch={args.batch} views_per_s={med:.1f} (min {lo:.1f} max {hi:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
