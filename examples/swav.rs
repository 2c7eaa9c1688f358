//! SwAV (Caron et al., 2020) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: multi-crop, 2 x 28 px and 4 x 14 px (`pipelines::swav`);
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem;
//! 3. extraction: projection head, then scores against 100 learnable prototypes; codes by Sinkhorn-Knopp;
//! 4. similarity: cosine to the prototypes / 0.1;
//! 5. loss: swapped prediction.
//!
//! `cargo run --release --example swav` pretrains with the defaults (the README
//! gives each method's measured wall time), then prints linear-probe and kNN accuracy on the
//! test split for the pretrained encoder, the same encoder at its random
//! initialisation, and raw pixels. Flags: `--dataset`, `--data DIR`,
//! `--device cpu|cuda[:N]` (with `--features cuda`), `--epochs`,
//! `--batch-size`, `--seed`, `--train-subset`, `--out`; `--help` lists all.
//! The run directory's `config.json` replays the run:
//! `cssl pretrain --config runs/swav-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Swav);
}
