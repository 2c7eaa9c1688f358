//! The training loop: burn's `TrainStep` / `InferenceStep` (so every method's
//! `optimize` hook - EMA targets, queues, prototypes - runs after each
//! optimiser step), driven step by step so that a run can stop anywhere and
//! continue bitwise where it stopped.

use crate::checkpoint::{Checkpoints, CurvePoint, MetricsRow, TrainState};
use crate::parallel::{StepResult, Workers};
use crate::plots::{write_steps_csv, write_training_plot, CURVE_POINTS};
use crate::record::{load_record, record_info, save_record, Expect, Records};
use crate::run::{write_atomic, RunDir};
use crate::schedule::WarmupCosineLr;
use crate::signal::{clear_stop, install_stop_handler, stop_requested};
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use burn_train::{InferenceStep, ItemLazy, TrainStep};
use cssl_core::{CsslError, Result, ViewBatch};
use cssl_data::{mix_seed, view_batch, PrefetchLoader};
use cssl_methods::SslOutput;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The loss column of `metrics.csv`.
pub const LOSS: &str = "Loss";
/// The learning-rate column of `metrics.csv` (train rows).
pub const LEARNING_RATE: &str = "Learning rate";
/// The embedding-spread column of `metrics.csv` (see `SslOutput::embedding_std`).
pub const EMBEDDING_STD: &str = "Embedding std";

/// How [`pretrain`] runs.
#[derive(Clone, Debug)]
pub struct PretrainOptions {
    /// Epochs to train.
    pub epochs: usize,
    /// Seed of the per-step randomness of the methods (e.g. AMDIM's
    /// sampled locations): step `k` draws from `(seed, k)`.
    pub seed: u64,
    /// Views per sample (for the views/s figure).
    pub views_per_item: usize,
    /// Time between progress lines.
    pub progress_interval: Duration,
    /// Write a checkpoint at least this often (and at every epoch's end).
    pub checkpoint_interval: Duration,
    /// Also write a checkpoint every this many steps (0: only by time and
    /// at epoch ends).
    pub checkpoint_steps: usize,
    /// Stop as if interrupted once this many steps are done (after writing
    /// a checkpoint): a budget, and how tests interrupt a run.
    pub stop_after_steps: Option<usize>,
    /// Continue from the newest checkpoint of the run directory.
    pub resume: bool,
    /// The method's name (recorded with the weights).
    pub method: String,
    /// The method's config (the weights and optimiser state must come from it).
    pub made_from: serde_json::Value,
}

/// The training loop's inputs besides the model and optimiser.
pub struct Training<'a, B: AutodiffBackend> {
    /// The run directory (checkpoints, `metrics.csv`).
    pub run: &'a RunDir,
    /// Where the model lives and the steps run: one device, or the workers
    /// of a data-parallel step.
    pub workers: &'a Workers<B>,
    /// Training batches; an epoch is `train.epoch(e)`.
    pub train: &'a PrefetchLoader,
    /// Validation batches (the method's loss in eval mode, once per epoch).
    pub valid: &'a PrefetchLoader,
    /// The learning rate of each step.
    pub lr: WarmupCosineLr,
    /// See [`PretrainOptions`].
    pub options: PretrainOptions,
}

/// A finished [`pretrain`].
pub struct Pretrained<M> {
    /// The trained model, on the inner (non-autodiff) backend.
    pub model: M,
    /// Seconds spent training, over every session of the run.
    pub train_seconds: f64,
    /// The step a resumed run continued from.
    pub resumed_at: Option<usize>,
}

/// Trains `model` with `optim` for `options.epochs` epochs (or what is left
/// of them after the newest checkpoint, with `options.resume`). At each
/// epoch's end `on_epoch` gets the model in eval mode and returns metrics
/// for the epoch's `valid` row (an online kNN accuracy, say; it must not
/// draw from the backend's random generator). Writes
/// `metrics.csv` (one row per epoch and split), `steps.csv` (the training
/// curve), `training.png` (its plot) and `checkpoint/`.
///
/// Each step: the learning rate of the step, the backend seeded with
/// `(seed, step)`, `TrainStep::step` on each of `t.workers` (one device, or
/// an equal slice of the batch per worker, gradients averaged: see
/// [`Workers::step`]), a check that the loss and embeddings are finite, then
/// `TrainStep::optimize` once, on the main device. The data order and every
/// augmentation are functions of `(seed, epoch, image)`, so a resumed run
/// sees exactly the batches the uninterrupted run would have.
///
/// # Errors
/// [`CsslError::Diverged`] at the first non-finite loss or embedding (the
/// last good checkpoint stays); [`CsslError::Interrupted`] after SIGINT /
/// SIGTERM or `stop_after_steps` (a checkpoint of the last finished step
/// was written); data, record and file errors.
pub fn pretrain<B, M, O>(
    t: Training<'_, B>,
    mut model: M,
    mut optim: O,
    on_epoch: &mut dyn FnMut(&M::InnerModule) -> Result<Vec<(String, f64)>>,
) -> Result<Pretrained<M::InnerModule>>
where
    B: AutodiffBackend,
    M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>> + AutodiffModule<B> + 'static,
    M::InnerModule:
        InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>,
    O: Optimizer<M, B>,
{
    let o = &t.options;
    let device = t.workers.main();
    t.workers.check_batch(t.train.batch_size())?;
    let checkpoints = Checkpoints::of(t.run);
    let steps_per_epoch = t.train.num_batches();
    let total_steps = steps_per_epoch * o.epochs;
    if steps_per_epoch == 0 {
        return Err(CsslError::config(
            "options.batch_size",
            "larger than the training set: no full batch to train on",
        ));
    }
    // Across nodes, node 0 alone writes the run directory; the others
    // train alike and read it only to resume.
    let leader = t.workers.is_leader();
    if leader {
        let removed = checkpoints.remove_partials();
        if removed > 0 {
            println!("removed {removed} unfinished checkpoint(s) a stopped process left behind");
        }
    }
    let mut state = TrainState::default();
    let mut resumed_at = None;
    if o.resume {
        let (saved, dir) = checkpoints.latest()?;
        let expect = |kind| Expect {
            kind,
            made_from: &o.made_from,
            described_by: "config.json",
        };
        let model_file = dir.join("model.mpk");
        let record = load_record::<B, M::Record>(
            &model_file,
            record_info(&saved.records, &dir, "model.mpk")?,
            expect("model"),
            device,
        )?;
        model = model.load_record(record);
        let optim_file = dir.join("optimizer.mpk");
        let record = load_record::<B, O::Record>(
            &optim_file,
            record_info(&saved.records, &dir, "optimizer.mpk")?,
            expect("optimizer"),
            device,
        )?;
        optim = optim.load_record(record);
        if saved.epoch >= o.epochs {
            println!(
                "{}: training had finished (step {} of {total_steps}); evaluating again",
                t.run.path().display(),
                saved.step
            );
        } else {
            println!(
                "resuming {} at step {} of {total_steps} (epoch {}, batch {} of {steps_per_epoch})",
                t.run.path().display(),
                saved.step,
                saved.epoch + 1,
                saved.batch
            );
        }
        resumed_at = Some(saved.step);
        state = saved;
    }
    if leader {
        write_metrics(t.run, &state.rows)?;
    }
    // Every node runs the same config from the same step with the same model.
    let fingerprint = format!(
        "{} seed {} epochs {} batch {} start {}",
        o.made_from,
        o.seed,
        o.epochs,
        t.train.batch_size(),
        state.step
    );
    t.workers.agree(&model, &fingerprint, state.step)?;

    install_stop_handler();
    clear_stop();
    let session_start = Instant::now();
    let seconds_before = state.train_seconds;
    let mut progress = Progress::new(o, steps_per_epoch, t.train.batch_size(), state.step);
    let mut last_checkpoint = Instant::now();
    let mut last_checkpoint_path: Option<PathBuf> = checkpoints.list().first().map(|c| c.1.clone());

    let curve_every = (total_steps / CURVE_POINTS).max(1);
    let plot_title = format!("{}: {}", o.method, t.run.path().display());
    let write_curves = |state: &TrainState| -> Result<()> {
        if !leader {
            return Ok(());
        }
        write_steps_csv(t.run, &state.curve, steps_per_epoch)?;
        write_training_plot(
            t.run,
            &plot_title,
            &state.curve,
            &state.rows,
            steps_per_epoch,
        )
    };
    let save = |state: &mut TrainState, model: &M, optim: &O| -> Result<PathBuf> {
        state.train_seconds = seconds_before + session_start.elapsed().as_secs_f64();
        if !leader {
            return Ok(checkpoints.path(state.step));
        }
        write_curves(state)?;
        checkpoints.save(state, |dir| {
            let mut records = Records::new();
            let info = save_record::<B, _>(
                model.clone().into_record(),
                &dir.join("model.mpk"),
                "model",
                &o.method,
                o.made_from.clone(),
            )?;
            records.insert("model.mpk".into(), info);
            let info = save_record::<B, _>(
                optim.to_record(),
                &dir.join("optimizer.mpk"),
                "optimizer",
                &o.method,
                o.made_from.clone(),
            )?;
            records.insert("optimizer.mpk".into(), info);
            Ok(records)
        })
    };

    let mut signal: Option<String> = None;
    while state.epoch < o.epochs {
        let epoch = state.epoch;
        for batch in t.train.epoch_from(epoch as u64, state.batch) {
            let batch = batch?;
            let step = state.step + 1;
            let lr = t.lr.lr_at(step);
            let seed = mix_seed(&[o.seed, 0x5_7E9, step as u64]);
            let StepResult {
                values,
                grads,
                stop,
            } = t.workers.step(&model, &batch.views, seed)?;
            if let Some(reason) = non_finite(&values) {
                t.workers.finish();
                let kept = match &last_checkpoint_path {
                    Some(p) => format!("the last good checkpoint is {}", p.display()),
                    None => "no checkpoint had been written yet".into(),
                };
                return Err(CsslError::Diverged {
                    step,
                    epoch: epoch + 1,
                    batch: state.batch + 1,
                    reason: format!(
                        "{reason} at learning rate {lr:.3e}; {kept}; nothing was evaluated \
                         (a lower optimizer.lr, or a longer warm-up, usually helps)"
                    ),
                });
            }
            model = model.optimize(&mut optim, lr, grads);
            if t.workers.check_due(step) {
                t.workers.agree(&model, &fingerprint, step)?;
            }
            state.step = step;
            state.batch += 1;
            for (name, v) in values
                .iter()
                .chain(std::iter::once(&(LEARNING_RATE.to_string(), lr)))
            {
                for sums in [&mut state.sums, &mut state.window] {
                    let e = sums.entry(name.clone()).or_insert((0.0, 0));
                    e.0 += v;
                    e.1 += 1;
                }
            }
            if step % curve_every == 0 || step == total_steps {
                let values = std::mem::take(&mut state.window)
                    .into_iter()
                    .map(|(k, (s, n))| (k, s / n.max(1) as f64))
                    .collect();
                state.curve.push(CurvePoint { step, values });
            }
            progress.step(&state, &values, lr);

            let epoch_done = state.batch == steps_per_epoch;
            // Across nodes, the stop request every node saw with this step.
            signal = match t.workers.nodes() {
                1 => stop_requested().map(String::from),
                _ => stop,
            };
            let budget = o.stop_after_steps.is_some_and(|n| step >= n) && step < total_steps;
            let due = last_checkpoint.elapsed() >= o.checkpoint_interval
                || (o.checkpoint_steps > 0 && step % o.checkpoint_steps == 0);
            if (signal.is_some() || budget || due) && !epoch_done {
                last_checkpoint_path = Some(save(&mut state, &model, &optim)?);
                last_checkpoint = Instant::now();
            }
            if signal.is_some() || (budget && !epoch_done) {
                t.workers.finish();
                return Err(interrupted(signal.as_deref(), step, t.run));
            }
            if budget {
                break;
            }
        }
        if state.batch < steps_per_epoch {
            // Only an interruption ends an epoch early; it returned above.
            break;
        }
        // The epoch's end: validation, its rows, a checkpoint.
        let row = |split: &str, sums: &BTreeMap<String, (f64, usize)>| MetricsRow {
            epoch: epoch + 1,
            split: split.into(),
            values: sums
                .iter()
                .map(|(k, (s, n))| (k.clone(), s / (*n).max(1) as f64))
                .collect(),
        };
        let train_row = row("train", &state.sums);
        let inner = model.valid();
        let mut valid_row = row("valid", &validate::<B, M>(&inner, t.valid, device)?);
        valid_row.values.extend(on_epoch(&inner)?);
        drop(inner);
        progress.epoch_end(&train_row, &valid_row);
        state.rows.push(train_row);
        state.rows.push(valid_row);
        state.epoch += 1;
        state.batch = 0;
        state.sums.clear();
        if leader {
            write_metrics(t.run, &state.rows)?;
        }
        // (`save` redraws steps.csv and training.png.)
        last_checkpoint_path = Some(save(&mut state, &model, &optim)?);
        last_checkpoint = Instant::now();
        let budget = o.stop_after_steps.is_some_and(|n| state.step >= n);
        // On one node a signal during validation stops here; across nodes
        // the next step's exchange carries it to every node.
        if t.workers.nodes() == 1 {
            signal = signal.or(stop_requested().map(String::from));
        }
        if (signal.is_some() || budget) && state.epoch < o.epochs {
            t.workers.finish();
            return Err(interrupted(signal.as_deref(), state.step, t.run));
        }
    }
    t.workers.finish();
    state.train_seconds = seconds_before + session_start.elapsed().as_secs_f64();
    progress.finish(state.train_seconds);
    Ok(Pretrained {
        model: model.valid(),
        train_seconds: state.train_seconds,
        resumed_at,
    })
}

fn interrupted(signal: Option<&str>, step: usize, run: &RunDir) -> CsslError {
    CsslError::Interrupted {
        signal: signal.unwrap_or("the step budget").to_string(),
        step,
        saved: format!(
            "checkpoint written; continue with `cssl pretrain --resume {}`",
            run.path().display()
        ),
    }
}

/// The step's loss, embedding spread and monitors, read in one transfer.
pub(crate) fn scalars<B: burn::tensor::backend::Backend>(item: SslOutput<B>) -> Vec<(String, f64)> {
    let s = item.sync();
    let value = |t: burn::tensor::Tensor<burn::backend::Flex, 1>| t.into_scalar().elem::<f64>();
    let mut out = vec![
        (LOSS.to_string(), value(s.loss)),
        (EMBEDDING_STD.to_string(), value(s.embedding_std)),
    ];
    out.extend(
        s.monitors
            .into_iter()
            .map(|(n, v)| (n.to_string(), value(v))),
    );
    out
}

/// Why `values` cannot be trained on, if they cannot.
fn non_finite(values: &[(String, f64)]) -> Option<String> {
    let pick = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    match (pick(LOSS), pick(EMBEDDING_STD)) {
        (Some(l), _) if !l.is_finite() => Some(format!("the loss is {l}")),
        (_, Some(e)) if !e.is_finite() => {
            Some(format!("the embeddings are not finite (spread {e})"))
        }
        _ => None,
    }
}

/// The method's loss and monitors over the validation batches, in eval mode.
fn validate<B, M>(
    inner: &M::InnerModule,
    valid: &PrefetchLoader,
    device: &B::Device,
) -> Result<BTreeMap<String, (f64, usize)>>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    M::InnerModule:
        InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>,
{
    let mut sums = BTreeMap::new();
    for (i, batch) in valid.epoch(0).enumerate() {
        let batch = batch?;
        let out = inner.step(
            view_batch::<B::InnerBackend>(&batch.views, device)
                .with_seed(mix_seed(&[0x7A11D, i as u64])),
        );
        for (name, v) in scalars(out) {
            let e = sums.entry(name).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
    }
    Ok(sums)
}

/// Rewrites `metrics.csv` from `rows` (atomically).
fn write_metrics(run: &RunDir, rows: &[MetricsRow]) -> Result<()> {
    let mut columns: Vec<&String> = rows.iter().flat_map(|r| r.values.keys()).collect();
    columns.sort();
    columns.dedup();
    let mut text = format!(
        "epoch,split{}\n",
        columns.iter().map(|c| format!(",{c}")).collect::<String>()
    );
    for r in rows {
        text += &format!("{},{}", r.epoch, r.split);
        for c in &columns {
            match r.values.get(*c) {
                Some(v) => text += &format!(",{v}"),
                None => text += ",",
            }
        }
        text += "\n";
    }
    write_atomic(&run.file("metrics.csv"), text.as_bytes())
}

/// Progress lines: `epoch 2/5  batch 120/469  loss 4.1210 (epoch mean 4.3001)
/// lr 1.00e-3  812 views/s  elapsed 1m10s  eta 3m10s`, every interval and at
/// each epoch's end.
struct Progress {
    interval: Duration,
    views_per_step: usize,
    epochs: usize,
    steps_per_epoch: usize,
    start: Instant,
    start_step: usize,
    last_print: Instant,
}

impl Progress {
    fn new(
        o: &PretrainOptions,
        steps_per_epoch: usize,
        batch_size: usize,
        start_step: usize,
    ) -> Self {
        let now = Instant::now();
        Self {
            interval: o.progress_interval,
            views_per_step: o.views_per_item * batch_size,
            epochs: o.epochs,
            steps_per_epoch,
            start: now,
            start_step,
            last_print: now,
        }
    }

    fn step(&mut self, state: &TrainState, values: &[(String, f64)], lr: f64) {
        if self.last_print.elapsed() < self.interval {
            return;
        }
        self.last_print = Instant::now();
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let steps = (state.step - self.start_step) as f64;
        let per_step = secs / steps.max(1.0);
        let left = (self.epochs * self.steps_per_epoch).saturating_sub(state.step) as f64;
        let loss = values
            .iter()
            .find(|(n, _)| n == LOSS)
            .map_or(f64::NAN, |v| v.1);
        let mean = state
            .sums
            .get(LOSS)
            .map_or(f64::NAN, |(s, n)| s / (*n).max(1) as f64);
        println!(
            "epoch {}/{}  batch {}/{}  loss {loss:.4} (epoch mean {mean:.4})  lr {lr:.2e}  \
             {:.0} views/s  elapsed {}  eta {}",
            state.epoch + 1,
            self.epochs,
            state.batch,
            self.steps_per_epoch,
            self.views_per_step as f64 / per_step,
            fmt_duration(secs),
            fmt_duration(left * per_step),
        );
    }

    fn epoch_end(&mut self, train: &MetricsRow, valid: &MetricsRow) {
        let show = |r: &MetricsRow| {
            r.values
                .iter()
                .filter(|(k, _)| k.as_str() != LEARNING_RATE)
                .map(|(k, v)| format!("{} {v:.4}", k.to_lowercase()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "epoch {}/{} done: train {} | valid {}",
            train.epoch,
            self.epochs,
            show(train),
            show(valid)
        );
        self.last_print = Instant::now();
    }

    fn finish(&self, total_seconds: f64) {
        println!("training finished in {}", fmt_duration(total_seconds));
    }
}

fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}
