//! MoCo v3 (Chen, Xie & He, 2021) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: BYOL's (crop, jitter, gray, asymmetric blur and solarisation, flip);
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem, and its momentum copy
//!    (`MocoV3Config::vit_small` is the paper's ViT recipe);
//! 3. extraction: projector (batch norm on its output), predictor on the
//!    online branch, momentum target (0.99 to 1, cosine schedule);
//! 4. similarity: cosine / 0.2;
//! 5. loss: symmetric InfoNCE of predictions against the other view's
//!    targets, the batch's other images as negatives (no queue), scaled by 2 tau.
//!
//! `cargo run --release --example moco_v3` pretrains with the defaults, then
//! prints linear-probe and kNN accuracy on the test split for the pretrained
//! encoder, the same encoder at its random initialisation, and raw pixels.
//! `--help` lists the flags; the run directory's `config.json` replays the
//! run: `cssl pretrain --config runs/moco_v3-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::MocoV3);
}
