#!/usr/bin/env python3
"""Check that a cssl backbone loads into a torchvision ResNet and computes the
same pooled features there as in cssl.

Not a cssl dependency and not run by CI: it needs PyTorch, torchvision and
safetensors, installed with pip into a virtualenv by whoever runs it:

    python3 -m venv .venv && .venv/bin/pip install torch torchvision safetensors
    cssl export --checkpoint runs/simclr-fashion-mnist --out simclr.safetensors \\
        --names torchvision --reference 16
    .venv/bin/python scripts/check_torchvision_export.py simclr.safetensors

The export's metadata holds the encoder config (`cssl_encoder_config`), from
which the script builds torchvision's `ResNet` with torchvision's own
`BasicBlock` / `Bottleneck` and `_make_layer` (the stem and widths adapted as
the config says: CIFAR stem = 3x3 conv with the config's stride and no
max-pool; a base width other than 64 rebuilds the stages at that width; the
classifier `fc` becomes the identity, so the output is the pooled feature).
It loads the state dict (only `num_batches_tracked` may be missing: cssl does
not count batches), runs it in eval mode on the reference images cssl wrote
beside the export, and compares with cssl's pooled features of the same
images. Exit status 0 when the largest absolute difference is at most
`--tolerance` (default 1e-4).
"""

import argparse
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


def build(config: dict) -> nn.Module:
    if "ResNet" not in config:
        sys.exit(f"not a ResNet encoder: {config}")
    r = config["ResNet"]
    if r["norm"] != "Batch":
        sys.exit("torchvision's ResNet uses batch norm; this encoder uses layer norm")
    block = BasicBlock if r["block"] == "Basic" else Bottleneck
    layers = r["layers"]
    width = r["base_width"] * r["width_multiplier"]
    standard = {
        (BasicBlock, (2, 2, 2, 2)): resnet18,
        (BasicBlock, (3, 4, 6, 3)): resnet34,
        (Bottleneck, (3, 4, 6, 3)): resnet50,
    }.get((block, tuple(layers)))
    model = standard() if standard else ResNet(block, layers)
    if width != 64:
        # torchvision's own stage builder at cssl's base width.
        model.inplanes = width
        model.layer1 = model._make_layer(block, width, layers[0])
        model.layer2 = model._make_layer(block, 2 * width, layers[1], stride=2)
        model.layer3 = model._make_layer(block, 4 * width, layers[2], stride=2)
        model.layer4 = model._make_layer(block, 8 * width, layers[3], stride=2)
        model.bn1 = nn.BatchNorm2d(width)
    if r["cifar_stem"]:
        stride = max(r["cifar_stem_stride"], 1)
        model.conv1 = nn.Conv2d(r["in_channels"], width, 3, stride, 1, bias=False)
        model.maxpool = nn.Identity()
    elif r["in_channels"] != 3 or width != 64:
        model.conv1 = nn.Conv2d(r["in_channels"], width, 7, 2, 3, bias=False)
    model.fc = nn.Identity()
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export", help="a `cssl export --names torchvision` file")
    p.add_argument("--reference", help="default: <export>.reference.safetensors")
    p.add_argument("--tolerance", type=float, default=1e-4)
    a = p.parse_args()
    reference = a.reference or a.export + ".reference.safetensors"

    with safe_open(a.export, "pt") as f:
        meta = f.metadata() or {}
    if meta.get("cssl_names") != "torchvision":
        sys.exit(f"{a.export}: export it with `cssl export --names torchvision`")
    config = json.loads(meta["cssl_encoder_config"])
    model = build(config)
    state = load_file(a.export)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"state dict does not fit: missing {missing}, unexpected {unexpected}")
    model.eval()

    ref = load_file(reference)
    images, features = ref["images"], ref["features"]
    with torch.no_grad():
        ours = model(images)
    diff = (ours - features).abs().max().item()
    r = config["ResNet"]
    stem = (
        f"CIFAR stem (3x3, stride {max(r['cifar_stem_stride'], 1)}, no max-pool)"
        if r["cifar_stem"]
        else "ImageNet stem (7x7 stride 2, max-pool)"
    )
    print(
        f"{a.export}: torchvision {type(model).__name__} layers {r['layers']} "
        f"base width {r['base_width'] * r['width_multiplier']}, {stem}, "
        f"{len(state)} tensors loaded; {images.shape[0]} images {list(images.shape[1:])}, "
        f"features {list(features.shape[1:])}: max |torchvision - cssl| = {diff:.3e} "
        f"(tolerance {a.tolerance:g})"
    )
    sys.exit(0 if diff <= a.tolerance else 1)


if __name__ == "__main__":
    main()
