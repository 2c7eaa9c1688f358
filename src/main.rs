//! `cssl`: pretrain a self-supervised encoder, evaluate it, export it.
//!
//! - `cssl` (no arguments): pretrains SimCLR on the embedded Fashion-MNIST on
//!   the CPU and prints linear-probe and kNN accuracy against a random-init
//!   encoder and raw pixels.
//! - `cssl pretrain --method NAME [--config RUN/config.json] [flags]`
//! - `cssl eval --checkpoint RUN`
//! - `cssl export --checkpoint RUN --out backbone.safetensors`

use clap::{Args, Parser, Subcommand};
use cssl::core::{CsslError, Result};
use cssl::job::{
    evaluate_checkpoint, export_encoder, results_table, run_config, JobOptions, JobReport, Method,
    RunConfig,
};
use std::path::PathBuf;

/// Runs `$body` with `B` the autodiff backend of `$device` (`cpu`, `cuda`,
/// `cuda:N`) and `device` its device.
macro_rules! on_device {
    ($spec:expr, |$b:ident, $device:ident| $body:expr) => {{
        let spec: &str = $spec;
        match spec {
            "cpu" => {
                type $b = burn::backend::Autodiff<burn::backend::Flex>;
                let $device = Default::default();
                $body
            }
            s if s.starts_with("cuda") => cuda_device(s).and_then(|index| {
                #[cfg(feature = "cuda")]
                {
                    type $b = burn::backend::Autodiff<burn::backend::Cuda>;
                    let $device = burn::backend::cuda::CudaDevice::new(index);
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                {
                    let _ = index;
                    Err(CsslError::config(
                        "device",
                        "this binary was built without CUDA; rebuild with `--features cuda`",
                    ))
                }
            }),
            other => Err(CsslError::config(
                "device",
                format!("unknown device `{other}` (expected cpu, cuda or cuda:N)"),
            )),
        }
    }};
}

/// Contrastive self-supervised learning (Falcon & Cho, 2020) in one binary.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: `pretrain` with these flags.
    #[command(flatten)]
    pretrain: PretrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pretrain a method on the embedded Fashion-MNIST and evaluate it.
    Pretrain(PretrainArgs),
    /// Linear probe and kNN of a finished run's encoder.
    Eval(EvalArgs),
    /// Write a finished run's encoder alone as SafeTensors.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
struct PretrainArgs {
    /// Method to pretrain (default simclr, or the config's).
    #[arg(long, value_enum)]
    method: Option<CliMethod>,
    /// Replay a run: a `config.json` a run wrote (method with all five parts,
    /// optimiser, options, seed). Flags given as well override its options.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Pretraining epochs [default: 2].
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per batch [default: 128].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Pretrain on this many train images, spread over the split; 0 = all
    /// 60,000 [default: per method, sized for ten CPU minutes: 25000 for
    /// simclr and moco, 20000 byol and yadim, 18000 swav, 16000 amdim, 9000 cpc].
    #[arg(long)]
    train_subset: Option<usize>,
    /// Fit the probes on this many train images; 0 = all 60,000 [default: 10000].
    #[arg(long)]
    probe_subset: Option<usize>,
    /// Score the probes on this many test images; 0 = all 10,000 [default: 0].
    #[arg(long)]
    test_subset: Option<usize>,
    /// Seed for initialisation, shuffling and augmentation [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (config.json, metrics.csv, model.mpk, encoder.mpk,
    /// results.json, checkpoint/) [default: runs/<method>-fashion-mnist].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the raw-pixel baseline.
    #[arg(long)]
    no_raw_baseline: bool,
    /// Device: `cpu`, or `cuda` / `cuda:N` (build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A finished run directory (with config.json and encoder.mpk).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Fit the probes on this many train images (0 = all 60,000).
    #[arg(long, default_value_t = 10_000)]
    probe_subset: usize,
    /// Score on this many test images (0 = all 10,000).
    #[arg(long, default_value_t = 0)]
    test_subset: usize,
    /// Device: `cpu`, or `cuda` / `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// A finished run directory (with config.json and encoder.mpk).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The SafeTensors file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CliMethod {
    Amdim,
    Cpc,
    Simclr,
    Moco,
    Byol,
    Swav,
    Yadim,
}

impl From<CliMethod> for Method {
    fn from(m: CliMethod) -> Self {
        match m {
            CliMethod::Amdim => Method::Amdim,
            CliMethod::Cpc => Method::Cpc,
            CliMethod::Simclr => Method::Simclr,
            CliMethod::Moco => Method::Moco,
            CliMethod::Byol => Method::Byol,
            CliMethod::Swav => Method::Swav,
            CliMethod::Yadim => Method::Yadim,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => pretrain(cli.pretrain),
        Some(Command::Pretrain(args)) => pretrain(args),
        Some(Command::Eval(args)) => eval(args),
        Some(Command::Export(args)) => export(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The run config from `--config` (or the method's default) with the flags
/// applied.
fn run_config_from(args: &PretrainArgs) -> Result<RunConfig> {
    let mut run = match &args.config {
        Some(path) => {
            let mut run = RunConfig::load(path)?;
            if let Some(m) = args.method.map(Method::from) {
                if m != run.method.kind() {
                    return Err(CsslError::config(
                        "method",
                        format!(
                            "--method {} but {} is a {} config",
                            m.name(),
                            path.display(),
                            run.method.kind().name()
                        ),
                    ));
                }
            }
            // Never overwrite the run being replayed.
            if args.out.is_none() && path.parent() == Some(run.options.out.as_path()) {
                let mut out = run.options.out.clone().into_os_string();
                out.push("-replay");
                run.options.out = out.into();
            }
            run
        }
        None => {
            let method = args.method.map(Method::from).unwrap_or_default();
            RunConfig {
                dataset: "fashion-mnist".into(),
                options: JobOptions::for_method(method),
                method: method.fashion_mnist(),
            }
        }
    };
    let o = &mut run.options;
    o.epochs = args.epochs.unwrap_or(o.epochs);
    o.batch_size = args.batch_size.unwrap_or(o.batch_size);
    o.train_subset = args.train_subset.unwrap_or(o.train_subset);
    o.probe_subset = args.probe_subset.unwrap_or(o.probe_subset);
    o.test_subset = args.test_subset.unwrap_or(o.test_subset);
    o.seed = args.seed.unwrap_or(o.seed);
    o.out = args.out.clone().unwrap_or(o.out.clone());
    o.raw_pixel_baseline &= !args.no_raw_baseline;
    Ok(run)
}

fn pretrain(args: PretrainArgs) -> Result<()> {
    let run = run_config_from(&args)?;
    let start = std::time::Instant::now();
    let r: JobReport = on_device!(&args.device, |B, device| run_config::<B>(&run, &device))?;
    println!("\n{}", results_table(&r));
    println!(
        "pretraining {:.0}s + evaluation {:.0}s (total wall time {:.0}s); run directory: {}",
        r.train_seconds,
        r.eval_seconds,
        start.elapsed().as_secs_f64(),
        run.options.out.display()
    );
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let s = on_device!(&args.device, |B, device| evaluate_checkpoint::<B>(
        &args.checkpoint,
        args.probe_subset,
        args.test_subset,
        &device
    ))?;
    println!(
        "{}: linear probe {:.2}%, kNN {:.2}%",
        args.checkpoint.display(),
        100.0 * s.linear_probe,
        100.0 * s.knn
    );
    Ok(())
}

fn export(args: ExportArgs) -> Result<()> {
    let n = export_encoder(&args.checkpoint, &args.out)?;
    println!(
        "wrote the encoder of {} ({n} values) to {}",
        args.checkpoint.display(),
        args.out.display()
    );
    Ok(())
}

fn cuda_device(spec: &str) -> Result<usize> {
    match spec.split_once(':') {
        Some((_, n)) => n
            .parse()
            .map_err(|_| CsslError::config("device", format!("`{spec}`: expected cuda:N"))),
        None => Ok(0),
    }
}
