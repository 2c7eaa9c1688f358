//! SimCLR (Chen et al., 2020) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: crop, flip, strong jitter, gray (two views; `SimClrAugmentationConfig::fashion_mnist`);
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem;
//! 3. extraction: pooled last map + projection head 128-256-64;
//! 4. similarity: cosine / 0.2;
//! 5. loss: NT-Xent with the self-pair masked.
//!
//! `cargo run --release --example simclr` pretrains with the defaults (the README
//! gives each method's measured wall time), then prints linear-probe and kNN accuracy on the
//! test split for the pretrained encoder, the same encoder at its random
//! initialisation, and raw pixels. Flags: `--dataset`, `--data DIR`,
//! `--device cpu|cuda[:N]` (with `--features cuda`), `--epochs`,
//! `--batch-size`, `--seed`, `--train-subset`, `--out`; `--help` lists all.
//! The run directory's `config.json` replays the run:
//! `cssl pretrain --config runs/simclr-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Simclr);
}
