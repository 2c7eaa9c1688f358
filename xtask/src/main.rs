//! `cargo xtask bench`: throughput figures of this machine.
//! `cargo xtask ablate STUDY [flags]`: builds the release `cssl` program
//! (with `--features cuda` when a cell device is CUDA) and runs
//! `cssl ablate STUDY [flags]` (see `cssl ablate --help`).
//!
//! - augmentation: views/s on one core, then on every core, for every
//!   method's pipeline on 32 px RGB images (and the main job's 28 px gray one);
//! - training step: images/s and views/s of full train steps (forward,
//!   backward, AdamW, then the method's EMA / queue / prototype update) of
//!   every method's Fashion-MNIST CPU default, side by side in one run.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use burn_train::{InferenceStep, TrainStep};
use clap::{Parser, Subcommand};
use cssl::augment::{pipelines, DatasetPreset, MultiViewAugmentation, SimClrAugmentationConfig};
use cssl::core::{Augmentation, Image, ViewBatch};
use cssl::data::stl10::STL_IMAGE_BYTES;
use cssl::data::{
    FashionMnist, ImageDataset, ImageSource, MultiViewBatcher, PrefetchLoader, Sample,
    Stl10Unlabeled,
};
use cssl::methods::{MethodConfig, MethodKind, RunSchedule, SslModel, SslOutput, WithModel};
use cssl::train::Workers;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

mod model_bench;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print augmentation and training-step throughput.
    Bench {
        /// Training steps to time (after 2 warm-up steps).
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Batch size of the timed steps (images; two views each).
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Images to augment per measurement.
        #[arg(long, default_value_t = 20_000)]
        images: usize,
        /// Only these methods' steps (comma-separated names; default: all).
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// Skip the augmentation figures.
        #[arg(long)]
        no_augmentation: bool,
        /// Skip the training-step figures.
        #[arg(long)]
        no_steps: bool,
        /// Only the augmentation pipelines whose name contains this.
        #[arg(long, default_value = "")]
        pipelines: String,
        /// Then time the main job's SimCLR step in PyTorch (scripts/torch_simclr_step.py)
        /// right after cssl's, in alternating rounds, and print both and their ratio.
        #[arg(long)]
        compare_torch: bool,
        /// Python interpreter with `torch` for --compare-torch.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Alternating cssl / PyTorch rounds for --compare-torch (and 1 / N
        /// worker rounds for --compare-workers).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Then time the main job's SimCLR step on 1 worker (every core)
        /// and on this many data-parallel CPU workers (the cores shared
        /// evenly), in alternating rounds, and print their ratio.
        #[arg(long)]
        compare_workers: Option<usize>,
        /// Then time the main job's SimCLR step on 1 process of this many
        /// CPU workers and on this many processes of 1 worker each (through
        /// burn-collective on 127.0.0.1, the cores shared evenly), in
        /// alternating rounds, and print their ratio and the bytes each
        /// node puts into the all-reduces per step.
        #[arg(long)]
        compare_nodes: Option<usize>,
        /// Instead of the CPU defaults: time SimCLR with this full-width
        /// encoder (resnet18 | resnet50) on `--size` px RGB views, on
        /// `--device`, and print the cold start (model built to first step
        /// finished) and the steady state after `--warmup` steps.
        #[arg(long)]
        encoder: Option<String>,
        /// View side for --encoder (32: CIFAR stem; larger: ImageNet stem).
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Device for --encoder: cpu, cuda, cuda:N (build with --features
        /// cuda), wgpu, wgpu:N or wgpu:cpu (build with --features wgpu).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Element type for --encoder: f32, bf16 (CUDA only) or f16 (wgpu only).
        #[arg(long, default_value = "f32")]
        precision: String,
        /// Untimed steps after the first for --encoder (kernel compilation, autotuning).
        #[arg(long, default_value_t = 20)]
        warmup: usize,
    },
    /// Run an ablation study: builds the release `cssl` program, then runs
    /// `cssl ablate <ARGS>` (a study name or file, then its flags; see
    /// `cssl ablate --help`).
    Ablate {
        /// The study and `cssl ablate`'s flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Print loader throughput (1 and 2 workers, 32 and 96 px) and the peak
    /// memory of streaming an STL-10-sized unlabeled file (written, then deleted).
    BenchLoader {
        /// Folder for the generated 2.7 GB file.
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: std::path::PathBuf,
        /// Images in the generated unlabeled file (STL-10: 100,000).
        #[arg(long, default_value_t = 100_000)]
        unlabeled: usize,
    },
}

fn main() {
    if let Ok(spec) = std::env::var(NODE_VAR) {
        return bench_node(&spec);
    }
    let (steps, batch_size, images, methods, no_augmentation, pipeline_filter, torch, workers) =
        match Cli::parse().command {
            Command::Bench {
                steps,
                batch_size,
                images,
                methods,
                no_augmentation,
                no_steps,
                pipelines,
                compare_torch,
                python,
                rounds,
                compare_workers,
                compare_nodes,
                encoder,
                size,
                device,
                precision,
                warmup,
            } => {
                if let Some(nodes) = compare_nodes {
                    return compare_nodes_bench(nodes, rounds, batch_size, steps);
                }
                if let Some(encoder) = encoder {
                    return model_bench::run(model_bench::Options {
                        encoder,
                        size,
                        batch: batch_size,
                        steps,
                        warmup,
                        device,
                        precision,
                    });
                }
                (
                    steps,
                    batch_size,
                    images,
                    (!no_steps).then_some(methods),
                    no_augmentation,
                    pipelines,
                    compare_torch.then_some((python.clone(), rounds)),
                    compare_workers.map(|n| (n, rounds)),
                )
            }
            Command::BenchLoader { dir, unlabeled } => return bench_loader(&dir, unlabeled),
            Command::Ablate { args } => return ablate(&args),
        };
    let data = FashionMnist::embedded().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let cores = rayon::current_num_threads();
    println!("machine: {cores} rayon threads");

    let methods: Vec<MethodKind> = match methods {
        None => Vec::new(),
        Some(names) if names.is_empty() => MethodKind::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|name| {
                MethodKind::ALL
                    .into_iter()
                    .find(|k| k.name() == name)
                    .unwrap_or_else(|| {
                        let known: Vec<&str> = MethodKind::ALL.iter().map(|k| k.name()).collect();
                        eprintln!(
                            "error: --methods: unknown method `{name}` (known: {})",
                            known.join(", ")
                        );
                        std::process::exit(2)
                    })
            })
            .collect(),
    };
    let images = if no_augmentation { 0 } else { images };
    let fm: Vec<Image> = (0..images)
        .map(|i| data.train.image(i % data.train.len()))
        .collect();
    // CIFAR-sized RGB images made from Fashion-MNIST pixels (content is irrelevant to speed).
    let cifar: Vec<Image> = fm
        .iter()
        .map(|im| {
            Image::new(
                32,
                32,
                3,
                (0..32 * 32 * 3).map(|k| im.pixels[(k / 3) % 784]).collect(),
            )
        })
        .collect();
    // STL-10-sized RGB images of noise, as the PIL anchor script uses.
    let stl: Vec<Image> = (0..images / 8)
        .map(|i| {
            Image::new(
                96,
                96,
                3,
                (0..96 * 96 * 3)
                    .map(|k| ((k * 7919 + i * 104_729) % 251) as u8)
                    .collect(),
            )
        })
        .collect();
    let cifar_preset = DatasetPreset::cifar();
    let fm_preset = DatasetPreset::fashion_mnist();
    let pipelines: Vec<(&str, MultiViewAugmentation, &Vec<Image>)> = vec![
        (
            "simclr fashion-mnist 28px gray (main job)",
            SimClrAugmentationConfig::fashion_mnist().init(),
            &fm,
        ),
        (
            "byol fashion-mnist 28px gray",
            pipelines::byol(&fm_preset),
            &fm,
        ),
        (
            "cpc 32px rgb (7x7 patch grid)",
            pipelines::cpc(&cifar_preset),
            &cifar,
        ),
        ("amdim 32px rgb", pipelines::amdim(&cifar_preset), &cifar),
        (
            "simclr 32px rgb (cifar: no blur)",
            SimClrAugmentationConfig::cifar().init(),
            &cifar,
        ),
        (
            "simclr 32px rgb, blur p=0.5",
            SimClrAugmentationConfig {
                blur_p: 0.5,
                ..SimClrAugmentationConfig::cifar()
            }
            .init(),
            &cifar,
        ),
        ("moco2 32px rgb", pipelines::moco2(&cifar_preset), &cifar),
        ("byol 32px rgb", pipelines::byol(&cifar_preset), &cifar),
        (
            "swav 32px rgb (2x32 + 4x16 crops)",
            pipelines::swav(
                &cifar_preset,
                &[(32, 2, [0.33, 1.0]), (16, 4, [0.10, 0.33])],
            ),
            &cifar,
        ),
        ("yadim 32px rgb", pipelines::yadim(&cifar_preset), &cifar),
        (
            "simclr 96px rgb (STL-10/ImageNet: blur p=0.5)",
            SimClrAugmentationConfig {
                size: 96,
                ..SimClrAugmentationConfig::default()
            }
            .init(),
            &stl,
        ),
    ];
    for (name, aug, imgs) in pipelines
        .into_iter()
        .filter(|(name, ..)| !no_augmentation && name.contains(pipeline_filter.as_str()))
    {
        let t = Instant::now();
        let mut checksum = 0.0f32;
        for (i, im) in imgs.iter().enumerate() {
            checksum += aug.views(im, i as u64).0[0].data[0];
        }
        let one = (imgs.len() * aug.num_views()) as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let n: usize = imgs
            .par_iter()
            .enumerate()
            .map(|(i, im)| aug.views(im, i as u64).0.len())
            .sum();
        let all = n as f64 / t.elapsed().as_secs_f64();
        println!("augmentation {name:<42} {one:>9.0} views/s per core  {all:>9.0} views/s on {cores} cores  (checksum {checksum:.1})");
    }

    if !methods.is_empty() {
        let one = Workers::one(Default::default());
        println!(
            "training step, each method's Fashion-MNIST CPU default, batch {batch_size}, Autodiff<Flex> \
             (forward + backward + AdamW + the method's after-step update), after 2 warm-up steps:"
        );
        for kind in methods {
            let r = bench_method(&kind.fashion_mnist(), &data.train, batch_size, steps, &one);
            println!(
                "  {:<7} {:>7.1} images/s  {:>7.1} views/s ({} views per image)   augmentation {:.0}% of the step",
                kind.name(),
                r.images_per_s,
                r.images_per_s * r.views as f64,
                r.views,
                100.0 * r.augmentation_share
            );
        }
    }
    if let Some((python, rounds)) = torch {
        compare_torch(&data.train, &python, rounds, batch_size, steps.max(10));
    }
    if let Some((workers, rounds)) = workers {
        compare_workers(&data.train, workers, rounds, batch_size, steps.max(10));
    }
}

/// The main job's SimCLR step (each worker's loss over the gathered global
/// batch) on 1 worker with every core, then on `workers` CPU workers with
/// `cores / workers` threads each, in alternating rounds.
fn compare_workers(
    data: &ImageDataset,
    workers: usize,
    rounds: usize,
    batch_size: usize,
    steps: usize,
) {
    let cores = rayon::current_num_threads();
    if workers < 2 || batch_size % workers != 0 {
        eprintln!("--compare-workers {workers}: expected at least 2 workers that split --batch-size {batch_size} evenly");
        std::process::exit(1);
    }
    let threads = (cores / workers).max(1);
    println!(
        "the main job's SimCLR step (batch {batch_size} x 2 views, {steps} timed steps, \
         forward + backward + AdamW): 1 worker on {cores} threads vs {workers} workers on {threads} \
         thread(s) each, {rounds} alternating rounds:"
    );
    let config = MethodKind::Simclr.fashion_mnist();
    let time = |w: &Workers<Autodiff<Flex>>| {
        let r = bench_method(&config, data, batch_size, steps, w);
        r.images_per_s * r.views as f64
    };
    let one = Workers::one(Default::default());
    let many = Workers::new(vec![Default::default(); workers], Some(threads)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let a = time(&one);
        let b = time(&many);
        println!(
            "  round {round}: 1 worker {a:>7.1} views/s   {workers} workers {b:>7.1} views/s   ratio {:.2}",
            b / a
        );
        ratios.push(b / a);
    }
    print_median(&format!("{workers} workers / 1 worker"), ratios);
}

/// `  median LABEL = m (min a, max b)` of the rounds' ratios.
fn print_median(label: &str, mut ratios: Vec<f64>) {
    ratios.sort_by(f64::total_cmp);
    println!(
        "  median {label} = {:.2} (min {:.2}, max {:.2})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

/// The PyTorch twin of the main job's step.
const TORCH_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/torch_simclr_step.py"
);

/// cssl's and PyTorch's views/s for the main job's SimCLR step, in
/// alternating rounds on the same cores, and their ratio.
/// `cargo xtask ablate`: build `cssl` in release (CUDA when asked for),
/// then hand over to `cssl ablate`, exiting with its code.
fn ablate(args: &[String]) {
    let cuda = args
        .windows(2)
        .any(|w| w[0] == "--device" && w[1].starts_with("cuda"))
        || args.iter().any(|a| a.starts_with("--device=cuda"));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .current_dir(&root)
        .args(["build", "--release", "--bin", "cssl"]);
    if cuda {
        build.args(["--features", "cuda"]);
    }
    let built = build.status().map(|s| s.success()).unwrap_or(false);
    if !built {
        eprintln!("error: building the cssl program failed (see above)");
        std::process::exit(1);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let program = target.join("release").join("cssl");
    let status = std::process::Command::new(&program)
        .arg("ablate")
        .args(args)
        .status()
        .unwrap_or_else(|e| {
            eprintln!("error: {}: {e}", program.display());
            std::process::exit(1)
        });
    std::process::exit(status.code().unwrap_or(1));
}

fn compare_torch(
    data: &ImageDataset,
    python: &str,
    rounds: usize,
    batch_size: usize,
    steps: usize,
) {
    let threads = rayon::current_num_threads();
    let importable = std::process::Command::new(python)
        .args(["-c", "import torch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !importable {
        eprintln!(
            "--compare-torch: `{python} -c \"import torch\"` failed, so there is no PyTorch to compare with.\n\
             Get one (not a dependency of cssl; about 1 GB):\n  \
             python3 -m venv venv-torch && venv-torch/bin/pip install torch\n\
             then: cargo xtask bench --no-augmentation --methods simclr --compare-torch --python venv-torch/bin/python"
        );
        std::process::exit(1);
    }
    println!(
        "cssl vs PyTorch, the main job's SimCLR step (batch {batch_size} x 2 views, {steps} timed steps), \
         {threads} threads each, {rounds} alternating rounds:"
    );
    let config = MethodKind::Simclr.fashion_mnist();
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let ours = bench_method(
            &config,
            data,
            batch_size,
            steps,
            &Workers::one(Default::default()),
        );
        let ours = ours.images_per_s * ours.views as f64;
        let out = std::process::Command::new(python)
            .arg(TORCH_SCRIPT)
            .args([
                "--steps",
                &steps.to_string(),
                "--batch",
                &batch_size.to_string(),
            ])
            .args(["--threads", &threads.to_string()])
            .output()
            .unwrap_or_else(|e| {
                eprintln!("error: {python} {TORCH_SCRIPT}: {e}");
                std::process::exit(1)
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let theirs = stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("views_per_s=")?.parse::<f64>().ok())
            .unwrap_or_else(|| {
                eprintln!(
                    "error: {TORCH_SCRIPT} printed no views_per_s ({}):\n{stdout}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                std::process::exit(1)
            });
        if round == 1 {
            print!("  {}", stdout.lines().next().unwrap_or_default());
            println!();
        }
        println!(
            "  round {round}: cssl {ours:>7.1} views/s   PyTorch {theirs:>7.1} views/s   cssl / PyTorch = {:.2}",
            ours / theirs
        );
        ratios.push(ours / theirs);
    }
    print_median("cssl / PyTorch", ratios);
}

struct StepBench {
    images_per_s: f64,
    views: usize,
    augmentation_share: f64,
}

fn bench_method(
    config: &MethodConfig,
    data: &ImageDataset,
    batch_size: usize,
    steps: usize,
    workers: &Workers<Autodiff<Flex>>,
) -> StepBench {
    let device = Default::default();
    // A long run's schedule: SwAV's prototypes frozen, as in its first epoch.
    let schedule = RunSchedule::new(1000 * batch_size, batch_size, 1);
    config
        .with_model(
            &schedule,
            &device,
            0,
            TimeSteps {
                config,
                data,
                batch_size,
                steps,
                workers,
            },
        )
        .unwrap_or_else(|e| {
            eprintln!("error: {}: {e}", config.kind().name());
            std::process::exit(1)
        })
}

/// Times `steps` full train steps on `workers` after 2 warm-up steps.
struct TimeSteps<'a> {
    config: &'a MethodConfig,
    data: &'a ImageDataset,
    batch_size: usize,
    steps: usize,
    workers: &'a Workers<Autodiff<Flex>>,
}

/// `(node, nodes)`: the share of each batch this process builds (a node
/// of `--compare-nodes`; `(0, 1)` otherwise).
static SHARE: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();

impl WithModel<Autodiff<Flex>> for TimeSteps<'_> {
    type Output = StepBench;

    fn run<M>(self, mut model: M) -> StepBench
    where
        M: TrainStep<Input = ViewBatch<Autodiff<Flex>>, Output = SslOutput<Autodiff<Flex>>>
            + AutodiffModule<Autodiff<Flex>>
            + core::fmt::Display
            + 'static,
        M::InnerModule:
            InferenceStep<Input = ViewBatch<Flex>, Output = SslOutput<Flex>> + SslModel<Flex>,
    {
        type B = Autodiff<Flex>;
        let TimeSteps {
            config,
            data,
            batch_size,
            steps,
            workers,
        } = self;
        let mut optim = AdamWConfig::new().init::<B, M>();
        let augmentation = config.augmentation().clone();
        let views = augmentation.views.len();
        let batcher = MultiViewBatcher::new(Arc::new(augmentation), 0);
        let (node, nodes) = *SHARE.get_or_init(|| (0, 1));
        let per = batch_size / nodes;
        let samples: Vec<Sample> = (node * per..(node + 1) * per)
            .map(|i| burn::data::dataset::Dataset::get(data, i).unwrap())
            .collect();
        let (mut timed, mut aug_time) = (0.0, 0.0);
        for step in 0..steps + 2 {
            let t = Instant::now();
            let batch = batcher.views(&samples);
            let ta = t.elapsed().as_secs_f64();
            let out = workers
                .step(&model, &batch, step as u64)
                .expect("one process: no exchange to fail");
            model = model.optimize(&mut optim, 1e-4, out.grads);
            if step >= 2 {
                timed += t.elapsed().as_secs_f64();
                aug_time += ta;
            }
        }
        let _ = model.valid();
        StepBench {
            images_per_s: (batch_size * steps) as f64 / timed,
            views,
            augmentation_share: aug_time / timed,
        }
    }
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn loader_views_per_s(
    source: Arc<dyn ImageSource>,
    aug: Arc<dyn Augmentation>,
    workers: usize,
) -> (f64, usize) {
    let loader = PrefetchLoader::new(source, aug, 256, 0)
        .with_workers(workers)
        .with_prefetch(2);
    let t = Instant::now();
    let mut views = 0;
    for batch in loader.epoch(0) {
        let b = batch.unwrap_or_else(|e| panic!("{e}"));
        views += b.views.iter().map(|v| v.len()).sum::<usize>();
    }
    (views as f64 / t.elapsed().as_secs_f64(), views)
}

fn bench_loader(dir: &std::path::Path, unlabeled: usize) {
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    // An STL-10-sized unlabeled file, streamed through the 96 px pipeline.
    let path = dir.join("cssl-bench-unlabeled_X.bin");
    {
        use std::io::Write;
        let t = Instant::now();
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        );
        let chunk: Vec<u8> = (0..100 * STL_IMAGE_BYTES)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let mut left = unlabeled;
        while left > 0 {
            let k = left.min(100);
            f.write_all(&chunk[..k * STL_IMAGE_BYTES]).unwrap();
            left -= k;
        }
        f.flush().unwrap();
        println!(
            "wrote {} ({:.2} GB) in {:.1}s; peak memory so far {:.0} MiB",
            path.display(),
            (unlabeled * STL_IMAGE_BYTES) as f64 / 1e9,
            t.elapsed().as_secs_f64(),
            peak_rss_mib()
        );
    }
    let source: Arc<dyn ImageSource> =
        Arc::new(Stl10Unlabeled::open(&path).unwrap_or_else(|e| panic!("{e}")));
    let aug: Arc<dyn Augmentation> = Arc::new(
        SimClrAugmentationConfig {
            size: 96,
            ..SimClrAugmentationConfig::default()
        }
        .init(),
    );
    let (rate, views) = loader_views_per_s(source, aug, 2);
    println!("streamed {unlabeled} unlabeled images ({views} views) at {rate:.0} views/s with 2 workers; peak memory {:.0} MiB", peak_rss_mib());
    std::fs::remove_file(&path).ok();
    // In-memory datasets afterwards, so that the peak above is the streaming run's.
    for (px, n) in [(32usize, 20_000usize), (96, 4_000)] {
        let pixels: Vec<u8> = (0..n * px * px * 3).map(|i| (i * 31 % 251) as u8).collect();
        let source: Arc<dyn ImageSource> = Arc::new(ImageDataset::new(px, px, 3, pixels, None, 0));
        // SimCLR's pipeline: the CIFAR settings at 32 px, the ImageNet ones (with blur) at 96 px.
        let cfg = if px == 32 {
            SimClrAugmentationConfig::cifar()
        } else {
            SimClrAugmentationConfig {
                size: 96,
                ..SimClrAugmentationConfig::default()
            }
        };
        let aug: Arc<dyn Augmentation> = Arc::new(cfg.init());
        for workers in [1, 2] {
            let (rate, views) = loader_views_per_s(source.clone(), aug.clone(), workers);
            println!("loader simclr {px:>3} px, {workers} worker(s): {rate:>8.0} views/s ({views} views)");
        }
    }
}

/// A port and the `n - 1` after it that nobody listens on, in 20000..32000
/// (below the ephemeral range, which outgoing connections take from).
fn free_ports(n: usize) -> u16 {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    loop {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = 20_000 + ((x >> 33) % (12_000 - n as u64)) as u16;
        if (0..n as u16).all(|d| std::net::TcpListener::bind(("0.0.0.0", p + d)).is_ok()) {
            return p;
        }
    }
}

/// What a `--compare-nodes` node process is asked to do:
/// `rank nodes port batch steps`.
const NODE_VAR: &str = "CSSL_BENCH_NODE";

/// A `--compare-nodes` node: joins the others on 127.0.0.1, times the main
/// job's step on its share of the batch, and (node 0) prints
/// `NODE_RESULT <views/s of the global batch> <bytes per step>`.
fn bench_node(spec: &str) {
    let f: Vec<usize> = spec.split(' ').map(|v| v.parse().unwrap()).collect();
    let (rank, nodes, port, batch_size, steps) = (f[0], f[1], f[2] as u16, f[3], f[4]);
    SHARE.set((rank, nodes)).unwrap();
    let data = FashionMnist::embedded().unwrap();
    let mut config = cssl::train::ClusterConfig::new(nodes, rank, format!("127.0.0.1:{port}"));
    config.timeout = std::time::Duration::from_secs(120);
    let cluster = Arc::new(cssl::train::Cluster::join(config).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    }));
    let link: Arc<dyn cssl::core::parallel::NodeLink> = cluster.clone();
    let workers = Workers::one(Default::default()).across(link, 0);
    let r = bench_method(
        &MethodKind::Simclr.fashion_mnist(),
        &data.train,
        batch_size,
        steps,
        &workers,
    );
    let (calls, bytes) =
        cssl::core::parallel::NodeLink::traffic(cluster.as_ref()).unwrap_or((0, 0));
    workers.finish();
    if rank == 0 {
        println!(
            "NODE_RESULT {} {} {}",
            r.images_per_s * r.views as f64,
            bytes as f64 / (steps + 2) as f64,
            calls as f64 / (steps + 2) as f64
        );
    }
}

/// The main job's SimCLR step on 1 process of `nodes` CPU workers, then on
/// `nodes` processes of 1 worker each, in alternating rounds; the cores are
/// shared evenly either way.
fn compare_nodes_bench(nodes: usize, rounds: usize, batch_size: usize, steps: usize) {
    let data = FashionMnist::embedded().unwrap();
    let cores = rayon::current_num_threads();
    if nodes < 2 || batch_size % nodes != 0 {
        eprintln!("--compare-nodes {nodes}: expected at least 2 nodes that split --batch-size {batch_size} evenly");
        std::process::exit(1);
    }
    let threads = (cores / nodes).max(1);
    println!(
        "the main job's SimCLR step (batch {batch_size} x 2 views, {steps} timed steps, forward + \
         backward + AdamW): 1 process of {nodes} workers vs {nodes} processes of 1 worker \
         (burn-collective on 127.0.0.1), {threads} thread(s) per worker, {rounds} alternating rounds:"
    );
    let config = MethodKind::Simclr.fashion_mnist();
    let many = Workers::new(vec![Default::default(); nodes], Some(threads)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut ratios = Vec::new();
    let (mut per_step, mut calls) = (0.0, 0.0);
    for round in 1..=rounds {
        let r = bench_method(&config, &data.train, batch_size, steps, &many);
        let a = r.images_per_s * r.views as f64;
        let port = free_ports(nodes + 1);
        let children: Vec<_> = (0..nodes)
            .map(|rank| {
                std::process::Command::new(&exe)
                    .env(
                        NODE_VAR,
                        format!("{rank} {nodes} {port} {batch_size} {steps}"),
                    )
                    .env("RAYON_NUM_THREADS", threads.to_string())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let text = String::from_utf8_lossy(&outputs[0].stdout).to_string();
        let Some(line) = text.lines().find(|l| l.starts_with("NODE_RESULT")) else {
            for (rank, out) in outputs.iter().enumerate() {
                eprintln!(
                    "node {rank}:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            eprintln!("error: node 0 gave no result");
            std::process::exit(1);
        };
        let f: Vec<f64> = line
            .split(' ')
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        let b = f[0];
        per_step = f[1];
        calls = f[2];
        println!(
            "  round {round}: 1 process x {nodes} {a:>7.1} views/s   {nodes} processes x 1 {b:>7.1} views/s   ratio {:.2}",
            b / a
        );
        ratios.push(b / a);
    }
    print_median(&format!("{nodes} processes / 1 process"), ratios);
    println!(
        "each node put {:.2} MB a step into {calls:.0} all-reduces (gradients, values, gathered \
         embeddings and batch-norm sums); a ring all-reduce sends and receives {:.2} times its \
         buffer per node",
        per_step / 1e6,
        2.0 * (nodes - 1) as f64 / nodes as f64
    );
}
