//! VICReg (Bardes et al., 2022) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: BYOL's (crop, jitter, gray, asymmetric blur and solarisation, flip);
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem;
//! 3. extraction: a 3-layer expander 128-1024-1024-1024, each view on its own;
//! 4. similarity: minus the mean squared difference of each image's two embeddings;
//! 5. loss: 25 invariance + 25 variance + 1 covariance; no negatives, no
//!    momentum encoder, no normalisation of the embeddings.
//!
//! `cargo run --release --example vicreg` pretrains with the defaults, then
//! prints linear-probe and kNN accuracy on the test split for the pretrained
//! encoder, the same encoder at its random initialisation, and raw pixels.
//! `--help` lists the flags; the run directory's `config.json` replays the
//! run: `cssl pretrain --config runs/vicreg-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Vicreg);
}
