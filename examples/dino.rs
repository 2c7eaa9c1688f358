//! DINO (Caron et al., 2021) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: multi-crop, 2 global crops (BYOL's asymmetric blur and
//!    solarisation) and 4 local crops at half the side;
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem (`DinoConfig::vit_small`
//!    is the paper's ViT recipe);
//! 3. extraction: the student's head and 1,024 prototypes; the teacher, a
//!    momentum copy of all three (0.99 to 1), sees the global crops; the
//!    centre of its outputs;
//! 4. similarity: cosine to the prototypes;
//! 5. loss: cross-entropy of the student (temperature 0.1) against the
//!    centred, sharpened teacher (0.04), every global crop against every
//!    other crop.
//!
//! `cargo run --release --example dino` pretrains with the defaults, then
//! prints linear-probe and kNN accuracy on the test split for the pretrained
//! encoder, the same encoder at its random initialisation, and raw pixels.
//! `--help` lists the flags; the run directory's `config.json` replays the
//! run: `cssl pretrain --config runs/dino-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::Dino);
}
