//! The command line of the `cssl` program and of the examples
//! (`cargo run --release --example byol -- --epochs 4`).

use crate::device::{on_device, OnBackend};
use crate::job::{
    evaluate_checkpoint, export_encoder, results_table, run_node, Dataset, EvalOverrides,
    JobReport, RunConfig, RunControl, RunFlags, Scores, TensorNames,
};
use burn::tensor::backend::AutodiffBackend;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use cssl_core::parallel::NodeLink;
use cssl_core::{CsslError, Result};
use cssl_methods::MethodKind;
use cssl_train::Workers;
use std::path::PathBuf;
use std::sync::Arc;

/// Contrastive self-supervised learning (Falcon & Cho, 2020) in one binary.
#[derive(Parser, Debug)]
#[command(name = "cssl", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: `pretrain` with these flags.
    #[command(flatten)]
    pretrain: PretrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pretrain a method and evaluate it (linear probe, kNN) against its
    /// random-init encoder and raw pixels.
    Pretrain(PretrainArgs),
    /// Linear probe and kNN of a finished run's encoder.
    Eval(EvalArgs),
    /// Write a finished run's encoder alone as SafeTensors.
    Export(ExportArgs),
    /// Run an ablation study: cells (a base method with one characteristic
    /// replaced) over seeds, with 95% intervals, tables and plots; re-running
    /// skips finished cells and resumes an interrupted one.
    Ablate(AblateArgs),
    /// The devices `--device` can name in this build: CPU cores, and the
    /// wgpu adapters (with `--features wgpu`) by their `wgpu:N` index.
    Devices,
}

/// `cssl ablate`.
#[derive(Args, Debug)]
pub struct AblateArgs {
    /// A study file (TOML), or a shipped study: augmentation, encoder,
    /// extraction, similarity, methods, optimizer, tiny.
    study: String,
    /// Study directory (results.jsonl, cell runs, tables, plots) [default:
    /// `runs/ablate-<name>`].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run seeds 1..=N instead of the study's.
    #[arg(long)]
    seeds: Option<usize>,
    /// Override the study's epochs per cell.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the study's train images per cell.
    #[arg(long)]
    train_subset: Option<usize>,
    /// Override the study's dataset (the cells' defaults follow it).
    #[arg(long, value_parser = dataset_parser())]
    dataset: Option<Dataset>,
    /// Read the dataset from this directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Device of every cell: cpu, cuda, cuda:N, wgpu, wgpu:N or wgpu:cpu;
    /// several (cpu:N, cuda:0,1, wgpu:0,1) for data-parallel steps.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Only these cells (comma-separated labels).
    #[arg(long, value_delimiter = ',')]
    cells: Vec<String>,
    /// Forget this study directory's results and runs and start over.
    #[arg(long)]
    force: bool,
    /// Check every cell's config against the data; train nothing.
    #[arg(long)]
    check: bool,
    /// Price of one hour of this machine: adds a price per cell to the cost table.
    #[arg(long)]
    price_per_hour: Option<f64>,
    /// Every cell across nodes (node 0 writes the study).
    #[command(flatten)]
    nodes: NodeArgs,
}

/// `cssl pretrain`.
#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Method to pretrain (with `--config`: the config's).
    #[arg(long, value_parser = method_parser())]
    method: Option<MethodKind>,
    /// Replay a run: a `config.json` a run wrote (the method with its six fields,
    /// optimiser, options, seed). Flags given as well override its options.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// The flags of a pretraining run (the examples take exactly these).
#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Dataset (fashion-mnist is embedded; the others need `--data`).
    #[arg(long, value_parser = dataset_parser())]
    dataset: Option<Dataset>,
    /// Read the dataset's files from this directory: Fashion-MNIST's four idx
    /// files (gzipped or not; default: the embedded copy), CIFAR-10's
    /// `cifar-10-batches-bin/`, CIFAR-100's `cifar-100-binary/`, STL-10's
    /// `stl10_binary/` (pretraining on `unlabeled_X.bin`, streamed), or a
    /// folder with `train/<class>/`, `test/<class>/` and `unlabeled/`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Pretraining epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Pretrain on this many train images, spread over the split; 0 = all.
    #[arg(long)]
    train_subset: Option<usize>,
    /// Fit the probes on this many train images; 0 = all.
    #[arg(long)]
    probe_subset: Option<usize>,
    /// Score the probes on this many test images; 0 = all.
    #[arg(long)]
    test_subset: Option<usize>,
    /// Passes over the features per linear-probe fit (each of the search's
    /// fits and the refit); fewer for a quick look.
    #[arg(long)]
    probe_epochs: Option<usize>,
    /// Seed for initialisation, shuffling and augmentation.
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (config.json, metrics.csv, model.mpk, encoder.mpk,
    /// results.json, checkpoint/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the raw-pixel baseline.
    #[arg(long)]
    no_raw_baseline: bool,
    /// Device: `cpu`, `cuda` / `cuda:N` (build with `--features cuda`), or
    /// `wgpu` / `wgpu:N` / `wgpu:cpu` (build with `--features wgpu`; `cssl
    /// devices` lists the adapters); several for data-parallel steps:
    /// `cpu:N` (N CPU workers sharing the cores), `cuda:0,1,...` or
    /// `wgpu:0,1,...`. The batch is split evenly over them.
    #[arg(long, visible_alias = "devices")]
    device: Option<String>,
    /// Continue the run in this directory from its newest checkpoint, with
    /// its own config.json (same schedules, data order and augmentations).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Replace the run directory `--out` if it exists (it is cleared first).
    #[arg(long)]
    overwrite: bool,
    /// Write a checkpoint at least every this many minutes (and at the end
    /// of every epoch).
    #[arg(long)]
    checkpoint_minutes: Option<f64>,
    /// Also write a checkpoint every this many steps (0: off).
    #[arg(long)]
    checkpoint_steps: Option<usize>,
    /// Online kNN at every epoch's end (a `kNN accuracy` column in
    /// metrics.csv and the progress line): this many train images are the
    /// bank, half as many test images the queries; 0 turns it off.
    #[arg(long)]
    online_knn: Option<usize>,
    /// Image folders: refuse an image that decodes to more pixels than this
    /// (read from its header, before decoding).
    #[arg(long)]
    max_image_pixels: Option<u64>,
    /// Stop after this many steps as an interruption would (a checkpoint,
    /// then exit code 130); `--resume` continues. For tests and budgets.
    #[arg(long, hide = true)]
    stop_after_steps: Option<usize>,
    #[command(flatten)]
    nodes: NodeArgs,
}

/// Where this process stands in a run across processes or machines
/// (without these flags: the launchers' RANK / WORLD_SIZE / MASTER_ADDR /
/// MASTER_PORT, or SLURM_PROCID / SLURM_NTASKS with MASTER_ADDR).
#[derive(Args, Debug, Default, Clone)]
pub struct NodeArgs {
    /// Nodes (processes, usually one per machine) that train this run
    /// together; each runs its `--device` workers on its share of every
    /// batch.
    #[arg(long)]
    nodes: Option<usize>,
    /// This node's rank, 0..nodes: node 0 coordinates and alone writes the
    /// run directory.
    #[arg(long)]
    node_rank: Option<usize>,
    /// HOST:PORT of node 0's coordinator (every node gives the same).
    #[arg(long)]
    coordinator: Option<String>,
    /// HOST:PORT where the other nodes reach this one [default: this
    /// machine's address towards the coordinator, port coordinator's + 1 +
    /// rank].
    #[arg(long)]
    node_address: Option<String>,
    /// Seconds a node waits for the others (to join, and at every exchange)
    /// before it stops with an error (exit code 5).
    #[arg(long, default_value_t = 300.0)]
    node_timeout: f64,
    /// Compare a checksum of every node's model every this many steps (0:
    /// at the start only).
    #[arg(long, default_value_t = 50)]
    node_check_every: usize,
}

impl NodeArgs {
    /// The cluster these flags (or the launcher's variables) name, if any.
    ///
    /// # Errors
    /// A [`CsslError::Config`] naming a missing or invalid flag.
    #[cfg(feature = "collective")]
    pub fn config(&self) -> Result<Option<cssl_train::ClusterConfig>> {
        use cssl_train::ClusterConfig;
        let mut config = match (self.nodes, self.node_rank, &self.coordinator) {
            (None, None, None) => match ClusterConfig::from_env()? {
                Some(c) => c,
                None => return Ok(None),
            },
            (Some(1), None | Some(0), _) => return Ok(None),
            (Some(nodes), Some(rank), Some(coordinator)) => {
                ClusterConfig::new(nodes, rank, coordinator.clone())
            }
            (nodes, rank, coordinator) => {
                let missing = [
                    ("--nodes", nodes.is_none()),
                    ("--node-rank", rank.is_none()),
                    ("--coordinator", coordinator.is_none()),
                ]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(f, _)| *f)
                .collect::<Vec<_>>()
                .join(", ");
                return Err(CsslError::config(
                    "nodes",
                    format!("a run across nodes needs --nodes, --node-rank and --coordinator; missing {missing}"),
                ));
            }
        };
        if !(self.node_timeout.is_finite() && self.node_timeout > 0.0) {
            return Err(CsslError::config(
                "node_timeout",
                format!(
                    "{}: must be a positive number of seconds",
                    self.node_timeout
                ),
            ));
        }
        config.node_address = self.node_address.clone();
        config.timeout = std::time::Duration::from_secs_f64(self.node_timeout);
        config.check_every = self.node_check_every;
        config.check()?;
        Ok(Some(config))
    }
}

/// `cssl eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A finished run directory (with config.json and encoder.mpk).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Fit the probes on this many train images, 0 = all (default: the
    /// run's own, which reproduces its figures).
    #[arg(long)]
    probe_subset: Option<usize>,
    /// Score on this many test images, 0 = all (default: the run's own).
    #[arg(long)]
    test_subset: Option<usize>,
    /// Seed of the linear probe (default: the run's, which reproduces the
    /// run's own figures).
    #[arg(long)]
    seed: Option<u64>,
    /// Read the dataset from this directory instead of the run's.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Batches of clean images that re-estimate batch norm's statistics
    /// before features are extracted, 0 = off (default: the run's).
    #[arg(long)]
    bn_batches: Option<usize>,
    /// Also score raw pixels under the same probe and kNN.
    #[arg(long)]
    raw_pixels: bool,
    /// Device: `cpu`, `cuda` / `cuda:N`, or `wgpu` / `wgpu:N` / `wgpu:cpu`.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// `cssl export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A finished run directory (with config.json and encoder.mpk).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The SafeTensors file to write.
    #[arg(long)]
    out: PathBuf,
    /// Tensor names: `cssl` (module paths), `torchvision` (ResNet
    /// state-dict keys, loadable into a torchvision ResNet) or `timm` (ViT
    /// state-dict keys, loadable into a timm `VisionTransformer`).
    #[arg(long, value_enum, default_value = "cssl")]
    names: CliNames,
    /// Also write `<out>.reference.safetensors`: this many test images after
    /// the run's evaluation transform and the encoder's pooled features of
    /// them (for `scripts/check_torchvision_export.py` and
    /// `scripts/check_timm_export.py`).
    #[arg(long, default_value_t = 0)]
    reference: usize,
    /// Replace `--out` if it exists.
    #[arg(long)]
    overwrite: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CliNames {
    Cssl,
    Torchvision,
    Timm,
}

/// `--method`'s values: the registry's names.
fn method_parser() -> impl TypedValueParser<Value = MethodKind> {
    PossibleValuesParser::new(MethodKind::ALL.map(|m| m.name()))
        .map(|s| s.parse::<MethodKind>().expect("a registered name"))
}

/// `--dataset`'s values.
fn dataset_parser() -> impl TypedValueParser<Value = Dataset> {
    PossibleValuesParser::new(Dataset::ALL.map(|d| d.name()))
        .map(|s| s.parse::<Dataset>().expect("a known dataset"))
}

/// The defaults the run flags fall back to, written into their help from
/// the registry and `JobOptions` (never by hand).
fn default_helps() -> Vec<(&'static str, String)> {
    let method = MethodKind::default();
    let dataset = Dataset::default();
    let o = crate::job::JobOptions::for_method(method, dataset);
    let f = RunFlags::default();
    let per_method = MethodKind::ALL
        .map(|m| format!("{} {}", m.name(), m.cpu_train_images()))
        .join(", ");
    vec![
        ("method", method.name().to_string()),
        ("dataset", dataset.name().to_string()),
        (
            "epochs",
            format!(
                "per method: {}",
                MethodKind::ALL
                    .map(|m| format!("{} {}", m.name(), m.cpu_epochs()))
                    .join(", ")
            ),
        ),
        ("batch_size", o.batch_size.to_string()),
        (
            "train_subset",
            format!("per method, so that a default run fits in ten CPU minutes: {per_method}"),
        ),
        ("probe_subset", o.probe_subset.to_string()),
        ("test_subset", o.test_subset.to_string()),
        ("probe_epochs", o.probe.epochs.to_string()),
        ("seed", o.seed.to_string()),
        ("out", "runs/<method>-<dataset>".to_string()),
        ("max_image_pixels", o.max_image_pixels.to_string()),
    ]
    .into_iter()
    .chain(
        [
            ("device", f.device),
            ("checkpoint_minutes", f.checkpoint_minutes.to_string()),
            ("checkpoint_steps", f.checkpoint_steps.to_string()),
            ("online_knn", f.online_knn.to_string()),
        ]
        .map(|(id, v)| (id, format!("{v}; --resume: the run's own"))),
    )
    .collect()
}

/// `arg`'s help with ` [default: value]` appended.
fn with_default(arg: clap::Arg, value: &str) -> clap::Arg {
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    arg.help(format!("{help} [default: {value}]"))
}

/// `command` (and its `pretrain` subcommand) with the defaults written into
/// the help texts.
fn with_registry_help(command: clap::Command) -> clap::Command {
    let defaults = default_helps();
    let apply = |mut c: clap::Command| {
        for (id, value) in &defaults {
            if c.get_arguments().any(|a| a.get_id() == *id) {
                c = c.mut_arg(*id, |a| with_default(a, value));
            }
        }
        c
    };
    let command = apply(command);
    if command.find_subcommand("pretrain").is_some() {
        command.mut_subcommand("pretrain", apply)
    } else {
        command
    }
}

/// Parses the process's arguments as `P`, with the registry's help texts.
fn parse<P: CommandFactory + FromArgMatches>() -> P {
    let matches = with_registry_help(P::command()).get_matches();
    P::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The `cssl` program.
pub fn main() {
    let cli: Cli = parse();
    let result = match cli.command {
        None => pretrain(cli.pretrain),
        Some(Command::Pretrain(args)) => pretrain(args),
        Some(Command::Eval(args)) => eval(args),
        Some(Command::Export(args)) => export(args),
        Some(Command::Ablate(args)) => ablate(args),
        Some(Command::Devices) => {
            devices();
            Ok(())
        }
    };
    exit_on_error(result);
}

/// An example: `method`'s default run with the run flags.
pub fn example_main(method: MethodKind) {
    #[derive(Parser, Debug)]
    #[command(
        about = "Pretrain one method (default: on the embedded Fashion-MNIST) and evaluate it"
    )]
    struct Example {
        #[command(flatten)]
        run: RunArgs,
    }
    let args: Example = parse();
    exit_on_error(pretrain(PretrainArgs {
        method: Some(method),
        config: None,
        run: args.run,
    }));
}

/// Prints `result`'s error and exits with [`CsslError::exit_code`] (the
/// README's "Exit codes").
fn exit_on_error(result: Result<()>) {
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// The run config of `cssl pretrain`: `--config` (or the method's default)
/// with the flags applied.
pub fn run_config_from(args: &PretrainArgs) -> Result<RunConfig> {
    if let Some(dir) = &args.run.resume {
        return resumed_config(args, dir);
    }
    let mut run = match &args.config {
        Some(path) => {
            let mut run = RunConfig::load(path)?;
            if let Some(m) = args.method {
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
            // Never write into the run being replayed.
            if args.run.out.is_none() {
                let mut out = run.options.out.clone().into_os_string();
                out.push("-replay");
                run.options.out = free_dir(out.into());
            }
            run
        }
        None => {
            let method = args.method.unwrap_or_default();
            let mut run = RunConfig::default_for(method, args.run.dataset.unwrap_or_default());
            // The default directory is never clobbered: a second run of the
            // same command gets `runs/<method>-<dataset>-2`.
            if args.run.out.is_none() && !args.run.overwrite {
                run.options.out = free_dir(run.options.out.clone());
            }
            run
        }
    };
    let a = &args.run;
    if let Some(d) = a.dataset.filter(|d| *d != run.dataset) {
        return Err(CsslError::config(
            "dataset",
            format!(
                "--dataset {} but the config was made for {}; parts such as the \
                 encoder's input channels follow the dataset",
                d.name(),
                run.dataset.name()
            ),
        ));
    }
    let o = &mut run.options;
    o.data_dir = a.data.clone().or(o.data_dir.take());
    o.epochs = a.epochs.unwrap_or(o.epochs);
    o.batch_size = a.batch_size.unwrap_or(o.batch_size);
    o.train_subset = a.train_subset.unwrap_or(o.train_subset);
    o.probe_subset = a.probe_subset.unwrap_or(o.probe_subset);
    o.test_subset = a.test_subset.unwrap_or(o.test_subset);
    o.probe.epochs = a.probe_epochs.unwrap_or(o.probe.epochs);
    o.seed = a.seed.unwrap_or(o.seed);
    o.out = a.out.clone().unwrap_or(o.out.clone());
    o.raw_pixel_baseline &= !a.no_raw_baseline;
    o.max_image_pixels = a.max_image_pixels.unwrap_or(o.max_image_pixels);
    if o.max_image_pixels == 0 {
        return Err(CsslError::config(
            "options.max_image_pixels",
            "must be at least 1",
        ));
    }
    // A data directory resolves the same from any working directory later.
    if let Some(d) = &o.data_dir {
        o.data_dir = Some(std::path::absolute(d).map_err(|e| CsslError::io(d, e))?);
    }
    Ok(run)
}

/// `path`, or the first of `path-2`, `path-3`, ... that does not exist.
fn free_dir(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    (2..)
        .map(|i| {
            let mut p = path.clone().into_os_string();
            p.push(format!("-{i}"));
            PathBuf::from(p)
        })
        .find(|p| !p.exists())
        .expect("a free name")
}

/// The config of `--resume DIR`: the run's own, unchanged.
fn resumed_config(args: &PretrainArgs, dir: &std::path::Path) -> Result<RunConfig> {
    let a = &args.run;
    let changed = [
        ("--config", args.config.is_some()),
        ("--dataset", a.dataset.is_some()),
        ("--data", a.data.is_some()),
        ("--epochs", a.epochs.is_some()),
        ("--batch-size", a.batch_size.is_some()),
        ("--train-subset", a.train_subset.is_some()),
        ("--probe-subset", a.probe_subset.is_some()),
        ("--test-subset", a.test_subset.is_some()),
        ("--probe-epochs", a.probe_epochs.is_some()),
        ("--seed", a.seed.is_some()),
        ("--out", a.out.is_some()),
        ("--no-raw-baseline", a.no_raw_baseline),
        ("--max-image-pixels", a.max_image_pixels.is_some()),
        ("--overwrite", a.overwrite),
    ];
    if let Some((flag, _)) = changed.iter().find(|(_, set)| *set) {
        return Err(CsslError::config(
            "resume",
            format!(
                "{flag} cannot be combined with --resume: a resumed run continues with its \
                 own config.json ({})",
                dir.join("config.json").display()
            ),
        ));
    }
    let mut run = RunConfig::load(&dir.join("config.json"))?;
    if let Some(m) = args.method.filter(|m| *m != run.method.kind()) {
        return Err(CsslError::config(
            "method",
            format!(
                "--method {} but {} is a {} run",
                m.name(),
                dir.display(),
                run.method.kind().name()
            ),
        ));
    }
    // The run lives where it is now, whatever its config says.
    run.options.out = dir.to_path_buf();
    Ok(run)
}

/// The run control of `args` (resume, overwrite, checkpoint cadence,
/// device): the flags given, and for `--resume` the run's own kept flags
/// for those not given.
fn run_control(args: &RunArgs) -> Result<RunControl> {
    let base = match &args.resume {
        Some(dir) => RunFlags::load(dir)?.unwrap_or_default(),
        None => RunFlags::default(),
    };
    let flags = RunFlags {
        device: args.device.clone().unwrap_or(base.device),
        checkpoint_minutes: args.checkpoint_minutes.unwrap_or(base.checkpoint_minutes),
        checkpoint_steps: args.checkpoint_steps.unwrap_or(base.checkpoint_steps),
        online_knn: args.online_knn.unwrap_or(base.online_knn),
    };
    if !(flags.checkpoint_minutes.is_finite() && flags.checkpoint_minutes > 0.0) {
        return Err(CsslError::config(
            "checkpoint_minutes",
            format!(
                "{}: must be a positive number of minutes",
                flags.checkpoint_minutes
            ),
        ));
    }
    Ok(RunControl {
        resume: args.resume.is_some(),
        overwrite: args.overwrite,
        checkpoint_interval: std::time::Duration::from_secs_f64(flags.checkpoint_minutes * 60.0),
        checkpoint_steps: flags.checkpoint_steps,
        stop_after_steps: args.stop_after_steps,
        online_knn: flags.online_knn,
        flags: Some(flags),
        ..RunControl::default()
    })
}

struct Pretrain<'a>(
    &'a RunConfig,
    &'a RunControl,
    Option<Arc<dyn NodeLink>>,
    usize,
);

impl OnBackend for Pretrain<'_> {
    type Output = Option<JobReport>;
    fn run<B: AutodiffBackend>(self, workers: Workers<B>) -> Result<Option<JobReport>> {
        let workers = match self.2 {
            Some(link) => workers.across(link, self.3),
            None => workers,
        };
        run_node::<B>(self.0, self.1, &workers)
    }
}

/// Joins the run across nodes that `args` (or the launcher's variables)
/// name, if any.
#[cfg(feature = "collective")]
fn join_nodes(args: &NodeArgs) -> Result<Option<(Arc<dyn NodeLink>, usize)>> {
    let Some(config) = args.config()? else {
        return Ok(None);
    };
    println!(
        "node {} of {}: joining through {} (waiting at most {:.0}s for the others)",
        config.rank,
        config.nodes,
        config.coordinator,
        config.timeout.as_secs_f64()
    );
    let check_every = config.check_every;
    let cluster = cssl_train::Cluster::join(config)?;
    Ok(Some((Arc::new(cluster), check_every)))
}

#[cfg(not(feature = "collective"))]
fn join_nodes(args: &NodeArgs) -> Result<Option<(Arc<dyn NodeLink>, usize)>> {
    match (args.nodes, ENV_NODES.iter().any(|v| std::env::var_os(v).is_some())) {
        (None | Some(1), false) => Ok(None),
        _ => Err(CsslError::config(
            "nodes",
            "this binary was built without the `collective` feature; rebuild with it to train across nodes",
        )),
    }
}

#[cfg(not(feature = "collective"))]
const ENV_NODES: [&str; 2] = ["WORLD_SIZE", "SLURM_NTASKS"];

/// Refuses, before joining, a batch that does not split over every
/// worker of every node.
fn check_nodes_batch(args: &NodeArgs, device: &str, batch_size: usize) -> Result<()> {
    #[cfg(feature = "collective")]
    if let Some(config) = args.config()? {
        let workers = device.parse::<crate::device::DeviceSpec>()?.workers();
        let world = config.nodes * workers;
        if batch_size % world != 0 {
            return Err(CsslError::config(
                "options.batch_size",
                format!(
                    "{batch_size} does not split evenly over {} nodes of {workers} workers: every \
                     worker takes an equal slice",
                    config.nodes
                ),
            ));
        }
    }
    #[cfg(not(feature = "collective"))]
    let _ = (args, device, batch_size);
    Ok(())
}

fn pretrain(args: PretrainArgs) -> Result<()> {
    let run = run_config_from(&args)?;
    let control = run_control(&args.run)?;
    let start = std::time::Instant::now();
    let device = control.flags.as_ref().map_or("cpu", |f| f.device.as_str());
    check_nodes_batch(&args.run.nodes, device, run.options.batch_size)?;
    let nodes = join_nodes(&args.run.nodes)?;
    let (link, check_every) = match nodes {
        Some((l, c)) => (Some(l), c),
        None => (None, 0),
    };
    let node = link.as_ref().map(|l| (l.node(), l.nodes()));
    let traffic = link.clone();
    let result = on_device(device, Pretrain(&run, &control, link, check_every));
    if let Some((calls, bytes)) = traffic.and_then(|l| l.traffic()) {
        let (rank, nodes) = node.unwrap_or((0, 1));
        println!(
            "node {rank} of {nodes}: {calls} all-reduces carried {:.2} MB from this node \
             (a ring all-reduce sends and receives {:.2} times its buffer per node)",
            bytes as f64 / 1e6,
            2.0 * (nodes - 1) as f64 / nodes as f64
        );
    }
    let Some(r) = result? else {
        let (rank, nodes) = node.unwrap_or((0, 1));
        println!(
            "node {rank} of {nodes}: training finished in {:.0}s; node 0 evaluates and writes {}",
            start.elapsed().as_secs_f64(),
            run.options.out.display()
        );
        return Ok(());
    };
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

struct Eval<'a>(&'a EvalArgs);

impl OnBackend for Eval<'_> {
    type Output = (Scores, Option<Scores>);
    fn run<B: AutodiffBackend>(self, workers: Workers<B>) -> Result<(Scores, Option<Scores>)> {
        let device = workers.single()?;
        let a = self.0;
        let overrides = EvalOverrides {
            probe_subset: a.probe_subset,
            test_subset: a.test_subset,
            data: a.data.clone(),
            seed: a.seed,
            bn_batches: a.bn_batches,
            raw_pixels: a.raw_pixels,
        };
        evaluate_checkpoint::<B>(&a.checkpoint, &overrides, &device)
    }
}

fn eval(args: EvalArgs) -> Result<()> {
    let (s, raw) = on_device(&args.device, Eval(&args))?;
    println!(
        "{}: linear probe {:.2}%, kNN {:.2}%",
        args.checkpoint.display(),
        100.0 * s.linear_probe,
        100.0 * s.knn
    );
    if let Some(r) = raw {
        println!(
            "raw pixels: linear probe {:.2}%, kNN {:.2}%",
            100.0 * r.linear_probe,
            100.0 * r.knn
        );
    }
    Ok(())
}

fn devices() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu: burn's Flex on {cores} cores (cpu:N for N data-parallel workers)");
    if cfg!(feature = "cuda") {
        println!("cuda:N: CUDA GPU N (this build has the cuda feature)");
    } else {
        println!("cuda: not in this build (rebuild with `--features cuda`)");
    }
    #[cfg(feature = "wgpu")]
    {
        let adapters = cssl_train::wgpu::adapters();
        if adapters.is_empty() {
            println!("wgpu: no adapter found (see `--device wgpu` for what to install)");
        }
        for (i, a) in adapters.iter().enumerate() {
            println!("wgpu:{i}: {a}");
        }
    }
    #[cfg(not(feature = "wgpu"))]
    println!("wgpu: not in this build (rebuild with `--features wgpu`)");
}

fn ablate(args: AblateArgs) -> Result<()> {
    let program = std::env::current_exe().map_err(|e| CsslError::io("cssl", e))?;
    crate::ablate::ablate(&crate::ablate::AblateOptions {
        study: args.study,
        out: args.out,
        seeds: args.seeds,
        epochs: args.epochs,
        train_subset: args.train_subset,
        dataset: args.dataset,
        data: args.data,
        device: args.device,
        cells: args.cells,
        force: args.force,
        check: args.check,
        price_per_hour: args.price_per_hour,
        program,
        nodes: study_nodes(&args.nodes)?,
    })
    .map(|_| ())
}

/// Where this node stands in a study across nodes, if the flags (or the
/// launcher's variables) name one.
fn study_nodes(args: &NodeArgs) -> Result<Option<crate::ablate::StudyNodes>> {
    #[cfg(feature = "collective")]
    {
        let Some(c) = args.config()? else {
            return Ok(None);
        };
        let split = |field: &str, a: &str| -> Result<(String, u16)> {
            let bad = || CsslError::config(field, format!("`{a}`: expected HOST:PORT"));
            let (h, p) = a.rsplit_once(':').ok_or_else(bad)?;
            Ok((h.to_string(), p.parse().map_err(|_| bad())?))
        };
        let (host, port) = split("coordinator", &c.coordinator)?;
        Ok(Some(crate::ablate::StudyNodes {
            nodes: c.nodes,
            rank: c.rank,
            host,
            port,
            node_address: c
                .node_address
                .as_deref()
                .map(|a| split("node_address", a))
                .transpose()?,
            timeout_s: c.timeout.as_secs_f64(),
            check_every: c.check_every,
        }))
    }
    #[cfg(not(feature = "collective"))]
    join_nodes(args).map(|_| None)
}

fn export(args: ExportArgs) -> Result<()> {
    let names = match args.names {
        CliNames::Cssl => TensorNames::Cssl,
        CliNames::Torchvision => TensorNames::Torchvision,
        CliNames::Timm => TensorNames::Timm,
    };
    let e = export_encoder(
        &args.checkpoint,
        &args.out,
        names,
        args.reference,
        args.overwrite,
    )?;
    println!(
        "wrote the encoder of {} ({} values) to {}",
        args.checkpoint.display(),
        e.values,
        args.out.display()
    );
    if let Some(r) = e.reference {
        println!(
            "wrote {} reference images and their features to {}",
            args.reference,
            r.display()
        );
    }
    Ok(())
}
