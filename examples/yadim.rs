//! YADIM (Falcon & Cho, 2020) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: the AMDIM and CPC pipelines merged (`pipelines::yadim`, 32 px crops);
//! 2. encoder: the AMDIM encoder (any encoder works: set `encoder` in the config);
//! 3. extraction: the last feature map of each view, no projection head;
//! 4. similarity: dot (scaled by 1/sqrt(dim));
//! 5. loss: NCE (AMDIM's, with score clipping).
//!
//! `cargo run --release --example yadim` pretrains with the defaults (the README
//! gives each method's measured wall time), then prints linear-probe and kNN accuracy on the
//! test split for the pretrained encoder, the same encoder at its random
//! initialisation, and raw pixels. Flags: `--dataset`, `--data DIR`,
//! `--device cpu|cuda[:N]` (with `--features cuda`), `--epochs`,
//! `--batch-size`, `--seed`, `--train-subset`, `--out`; `--help` lists all.
//! The run directory's `config.json` replays the run:
//! `cssl pretrain --config runs/yadim-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Yadim);
}
