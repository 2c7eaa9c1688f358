//! MoCo v2 (Chen et al., 2020) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: crop (0.2-1), jitter, gray, blur, flip (`pipelines::moco2`);
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem; keys from a momentum copy (m = 0.99);
//! 3. extraction: pooled last map + MLP head; a queue of 4,096 past keys as negatives;
//! 4. similarity: cosine / 0.2;
//! 5. loss: InfoNCE over the key and the queue.
//!
//! `cargo run --release --example moco` pretrains with the defaults (the README
//! gives each method's measured wall time), then prints linear-probe and kNN accuracy on the
//! test split for the pretrained encoder, the same encoder at its random
//! initialisation, and raw pixels. Flags: `--dataset`, `--data DIR`,
//! `--device cpu|cuda[:N]` (with `--features cuda`), `--epochs`,
//! `--batch-size`, `--seed`, `--train-subset`, `--out`; `--help` lists all.
//! The run directory's `config.json` replays the run:
//! `cssl pretrain --config runs/moco-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Moco);
}
