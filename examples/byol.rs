//! BYOL (Grill et al., 2020) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: SimCLR-like with asymmetric blur and solarisation (`pipelines::byol`);
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem; the target network is its EMA (tau 0.99 -> 1);
//! 3. extraction: projector and, on the online branch, a predictor;
//! 4. similarity: cosine;
//! 5. loss: `2 - 2 cos`, symmetrised; no negatives.
//!
//! `cargo run --release --example byol` pretrains with the defaults (the README
//! gives each method's measured wall time), then prints linear-probe and kNN accuracy on the
//! test split for the pretrained encoder, the same encoder at its random
//! initialisation, and raw pixels. Flags: `--dataset`, `--data DIR`,
//! `--device cpu|cuda[:N]` (with `--features cuda`), `--epochs`,
//! `--batch-size`, `--seed`, `--train-subset`, `--out`; `--help` lists all.
//! The run directory's `config.json` replays the run:
//! `cssl pretrain --config runs/byol-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Byol);
}
