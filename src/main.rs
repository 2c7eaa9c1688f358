//! `cssl`: pretrain a self-supervised encoder and evaluate it.
//!
//! With no arguments, pretrains SimCLR on the embedded Fashion-MNIST on the CPU
//! and prints linear-probe and kNN accuracy against a random-init encoder;
//! `--method byol` pretrains BYOL instead.

use clap::Parser;
use cssl::job::{results_table, run_fashion_mnist, JobOptions, Method};
use std::path::PathBuf;

/// Contrastive self-supervised learning (Falcon & Cho, 2020) in one binary.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Method to pretrain.
    #[arg(long, value_enum, default_value_t = CliMethod::Simclr)]
    method: CliMethod,
    /// Pretraining epochs.
    #[arg(long, default_value_t = JobOptions::default().epochs)]
    epochs: usize,
    /// Images per batch (two views each).
    #[arg(long, default_value_t = JobOptions::default().batch_size)]
    batch_size: usize,
    /// Pretrain on this many train images, spread over the split (0 = all 60,000).
    #[arg(long, default_value_t = JobOptions::default().train_subset)]
    train_subset: usize,
    /// Fit the probes on this many train images, spread over the split (0 = all 60,000).
    #[arg(long, default_value_t = JobOptions::default().probe_subset)]
    probe_subset: usize,
    /// Score the probes on this many test images (0 = all 10,000).
    #[arg(long, default_value_t = JobOptions::default().test_subset)]
    test_subset: usize,
    /// Seed for initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = JobOptions::default().seed)]
    seed: u64,
    /// Run directory (config.json, metrics.csv, model.mpk, results.json,
    /// checkpoint/); default runs/<method>-fashion-mnist.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the raw-pixel baseline.
    #[arg(long)]
    no_raw_baseline: bool,
    /// Device: `cpu`, or `cuda` / `cuda:N` (build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CliMethod {
    Simclr,
    Byol,
    Moco,
    Swav,
}

fn main() {
    let cli = Cli::parse();
    let method = match cli.method {
        CliMethod::Simclr => Method::Simclr,
        CliMethod::Byol => Method::Byol,
        CliMethod::Moco => Method::Moco,
        CliMethod::Swav => Method::Swav,
    };
    let options = JobOptions {
        method,
        epochs: cli.epochs,
        batch_size: cli.batch_size,
        train_subset: cli.train_subset,
        probe_subset: cli.probe_subset,
        test_subset: cli.test_subset,
        seed: cli.seed,
        out: cli
            .out
            .unwrap_or_else(|| PathBuf::from(format!("runs/{}-fashion-mnist", method.name()))),
        raw_pixel_baseline: !cli.no_raw_baseline,
    };
    let start = std::time::Instant::now();
    let report = match cli.device.as_str() {
        "cpu" => run_fashion_mnist::<burn::backend::Autodiff<burn::backend::Flex>>(
            &options,
            &Default::default(),
        ),
        d if d.starts_with("cuda") => run_cuda(d, &options),
        d => {
            eprintln!("error: unknown device `{d}` (expected cpu, cuda or cuda:N)");
            std::process::exit(2);
        }
    };
    match report {
        Ok(r) => {
            println!("\n{}", results_table(&r));
            println!(
                "pretraining {:.0}s + evaluation {:.0}s (total wall time {:.0}s); run directory: {}",
                r.train_seconds,
                r.eval_seconds,
                start.elapsed().as_secs_f64(),
                options.out.display()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(feature = "cuda")]
fn run_cuda(spec: &str, options: &JobOptions) -> cssl::core::Result<cssl::job::JobReport> {
    let index = match spec.split_once(':') {
        Some((_, n)) => n.parse().map_err(|_| {
            cssl::core::CsslError::config("device", format!("`{spec}`: expected cuda:N"))
        })?,
        None => 0,
    };
    let device = burn::backend::cuda::CudaDevice::new(index);
    run_fashion_mnist::<burn::backend::Autodiff<burn::backend::Cuda>>(options, &device)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda(_spec: &str, _options: &JobOptions) -> cssl::core::Result<cssl::job::JobReport> {
    Err(cssl::core::CsslError::config(
        "device",
        "this binary was built without CUDA; rebuild with `--features cuda`",
    ))
}
