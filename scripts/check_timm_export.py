#!/usr/bin/env python3
"""Check that a cssl Vision Transformer loads into timm's VisionTransformer and
computes the same features there as in cssl.

Not a cssl dependency and not run by CI: it needs PyTorch, timm and
safetensors, installed with pip into a virtualenv by whoever runs it:

    python3 -m venv .venv && .venv/bin/pip install torch timm safetensors
    cssl export --checkpoint runs/<a ViT run> --out vit.safetensors \\
        --names timm --reference 16
    .venv/bin/python scripts/check_timm_export.py vit.safetensors

The export's metadata holds the encoder config (`cssl_encoder_config`), from
which the script builds timm's own `VisionTransformer` through
`timm.create_model` (the size by width, depth and heads: vit_tiny, vit_small,
vit_base, or `VisionTransformer` directly for any other shape; the config's
image size, patch size and channels; `num_classes=0`, so the output is the
class token after the final norm). It loads the state dict strictly (every
tensor, no extra), runs it in eval mode on the reference images cssl wrote
beside the export, and compares with cssl's features of the same images.
Exit status 0 when the largest absolute difference is at most `--tolerance`
(default 1e-4).

`--self-test` needs no export: it builds a timm ViT with random weights,
checks that the state-dict keys are the ones cssl writes, and prints the
parameter counts of timm's tiny, small and base models (patch 16, 224 px, no
classifier), the figures cssl's `timm_parameter_counts` test pins.
"""

import argparse
import json
import sys

import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

SIZES = {
    (192, 12, 3): "vit_tiny_patch16_224",
    (384, 12, 6): "vit_small_patch16_224",
    (768, 12, 12): "vit_base_patch16_224",
}


def build(config: dict) -> torch.nn.Module:
    if "Vit" not in config:
        sys.exit(f"not a ViT encoder: {config}")
    v = config["Vit"]
    shape = dict(
        img_size=v["image_size"],
        patch_size=v["patch_size"],
        in_chans=v["in_channels"],
        num_classes=0,
    )
    name = SIZES.get((v["dim"], v["depth"], v["heads"]))
    if name and v["mlp_ratio"] == 4.0:
        return timm.create_model(name, pretrained=False, **shape)
    return VisionTransformer(
        embed_dim=v["dim"], depth=v["depth"], num_heads=v["heads"],
        mlp_ratio=v["mlp_ratio"], **shape,
    )


def self_test() -> None:
    for name in SIZES.values():
        m = timm.create_model(name, pretrained=False, num_classes=0)
        print(f"{name} num_classes=0: {sum(p.numel() for p in m.parameters()):,} parameters")
    m = build({"Vit": dict(image_size=28, patch_size=4, in_channels=1, dim=192,
                           depth=12, heads=3, mlp_ratio=4.0)})
    print(f"vit_tiny img_size=28 patch_size=4 in_chans=1: "
          f"{sum(p.numel() for p in m.parameters()):,} parameters")
    keys = list(m.state_dict())
    print(f"{len(keys)} tensors: {keys[:6]} ... {keys[-2:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("export", nargs="?", help="a `cssl export --names timm` file")
    p.add_argument("--reference", help="default: <export>.reference.safetensors")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--self-test", action="store_true")
    a = p.parse_args()
    if a.self_test:
        return self_test()
    if not a.export:
        p.error("an export file, or --self-test")
    reference = a.reference or a.export + ".reference.safetensors"

    with safe_open(a.export, "pt") as f:
        meta = f.metadata() or {}
    if meta.get("cssl_names") != "timm":
        sys.exit(f"{a.export}: export it with `cssl export --names timm`")
    config = json.loads(meta["cssl_encoder_config"])
    model = build(config)
    state = load_file(a.export)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        sys.exit(f"state dict does not fit: missing {missing}, unexpected {unexpected}")
    model.eval()

    ref = load_file(reference)
    images, features = ref["images"], ref["features"]
    with torch.no_grad():
        ours = model(images)
    diff = (ours - features).abs().max().item()
    v = config["Vit"]
    print(
        f"{a.export}: timm {type(model).__name__} width {v['dim']} depth {v['depth']} "
        f"heads {v['heads']} patch {v['patch_size']} at {v['image_size']} px, "
        f"{len(state)} tensors loaded; {images.shape[0]} images {list(images.shape[1:])}, "
        f"features {list(features.shape[1:])} (|cssl| max {features.abs().max().item():.3f}): "
        f"max |timm - cssl| = {diff:.3e} (tolerance {a.tolerance:g})"
    )
    sys.exit(0 if diff <= a.tolerance else 1)


if __name__ == "__main__":
    main()
