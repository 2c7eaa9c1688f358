//! `cssl`: pretrain a self-supervised encoder, evaluate it, export it.
//!
//! - `cssl` (no arguments): pretrains SimCLR on the embedded Fashion-MNIST on
//!   the CPU and prints linear-probe and kNN accuracy against a random-init
//!   encoder and raw pixels.
//! - `cssl pretrain --method NAME [--config RUN/config.json] [flags]`
//! - `cssl eval --checkpoint RUN`
//! - `cssl export --checkpoint RUN --out backbone.safetensors`
//!
//! `cssl --help` lists every flag.

fn main() {
    cssl::cli::main()
}
