//! CPC v2 (Hénaff et al., 2019) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: flip, crop, jitter, gray, translate-with-reflect, then an 8 px patch grid with overlap 4 (`pipelines::cpc`);
//! 2. encoder: a layer-norm ResNet-18 (1/8 width) on every patch, pooled into a 6x6 grid of patch vectors;
//! 3. extraction: a masked context network predicts the vectors 1-3 rows below;
//! 4. similarity: dot;
//! 5. loss: InfoNCE against every patch vector of the batch.
//!
//! `cargo run --release --example cpc` pretrains with the defaults (the README
//! gives each method's measured wall time), then prints linear-probe and kNN accuracy on the
//! test split for the pretrained encoder, the same encoder at its random
//! initialisation, and raw pixels. Flags: `--dataset`, `--data DIR`,
//! `--device cpu|cuda[:N]` (with `--features cuda`), `--epochs`,
//! `--batch-size`, `--seed`, `--train-subset`, `--out`; `--help` lists all.
//! The run directory's `config.json` replays the run:
//! `cssl pretrain --config runs/cpc-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Cpc);
}
