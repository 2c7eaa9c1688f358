//! SimSiam (Chen & He, 2021) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: MoCo v2's (crop 0.2-1, jitter, gray, blur, flip);
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem; no momentum copy;
//! 3. extraction: projector (BN on every layer) and a bottleneck predictor;
//!    the target is the online projection with its gradient stopped;
//! 4. similarity: cosine;
//! 5. loss: negative cosine, symmetrised; no negatives.
//!
//! `cargo run --release --example simsiam` pretrains with the defaults, then
//! prints linear-probe and kNN accuracy on the test split for the pretrained
//! encoder, the same encoder at its random initialisation, and raw pixels.
//! `--help` lists the flags; the run directory's `config.json` replays the
//! run: `cssl pretrain --config runs/simsiam-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Simsiam);
}
