//! AMDIM (Bachman et al., 2019) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: one flip shared by both views, then per view crop, jitter, gray (`pipelines::amdim`, 32 px crops);
//! 2. encoder: the AMDIM encoder (7x7, 5x5 and 1x1 maps; (ndf, n_rkhs, depth) = (32, 128, 2) on the CPU);
//! 3. extraction: 1-5, 1-7 and 5-5 comparisons between the views, both directions;
//! 4. similarity: dot / sqrt(dim);
//! 5. loss: NCE over `20 tanh(s / 20)` plus `5e-2 mean(s^2)`.
//!
//! `cargo run --release --example amdim` pretrains with the defaults (the README
//! gives each method's measured wall time), then prints linear-probe and kNN accuracy on the
//! test split for the pretrained encoder, the same encoder at its random
//! initialisation, and raw pixels. Flags: `--dataset`, `--data DIR`,
//! `--device cpu|cuda[:N]` (with `--features cuda`), `--epochs`,
//! `--batch-size`, `--seed`, `--train-subset`, `--out`; `--help` lists all.
//! The run directory's `config.json` replays the run:
//! `cssl pretrain --config runs/amdim-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Amdim);
}
