//! Barlow Twins (Zbontar et al., 2021) on the embedded Fashion-MNIST, on the CPU by default.
//!
//! 1. augmentation: BYOL's (crop, jitter, gray, asymmetric blur and solarisation, flip);
//! 2. encoder: ResNet-18 at 1/4 width, CIFAR stem;
//! 3. extraction: a 3-layer projector 128-1024-1024-1024, each view on its own;
//! 4. similarity: cosine between the two views' centred dimensions over the
//!    batch (the cross-correlation matrix);
//! 5. loss: the cross-correlation pushed to the identity (lambda 5.1e-3);
//!    no negatives, no momentum encoder.
//!
//! `cargo run --release --example barlow_twins` pretrains with the defaults,
//! then prints linear-probe and kNN accuracy on the test split for the
//! pretrained encoder, the same encoder at its random initialisation, and raw
//! pixels. `--help` lists the flags; the run directory's `config.json`
//! replays the run: `cssl pretrain --config runs/barlow_twins-fashion-mnist/config.json`.

fn main() {
    cssl::cli::example_main(cssl::methods::MethodKind::BarlowTwins);
}
