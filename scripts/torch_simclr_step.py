"""The main job's SimCLR training step in PyTorch, for `cargo xtask bench --compare-torch`.

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
    args = parser.parse_args()
    print(f"torch {torch.__version__} (mkldnn {torch.backends.mkldnn.is_available()})", flush=True)
    for threads in args.threads:
        med, lo, hi = views_per_s(threads, args.steps, args.batch)
        print(
            f"torch threads={threads} batch={args.batch} views_per_s={med:.1f} (min {lo:.1f} max {hi:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
