use crate::Features;
use burn::config::Config;
use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// The linear probe: multinomial logistic regression on standardised frozen
/// features, trained with Adam on mini-batches, LR decayed by a cosine.
#[derive(Config, Debug)]
pub struct LinearProbeConfig {
    /// Passes over the train features.
    #[config(default = 30)]
    pub epochs: usize,
    /// Mini-batch size.
    #[config(default = 512)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[config(default = 1e-3)]
    pub lr: f64,
    /// L2 penalty on the weights.
    #[config(default = 1e-5)]
    pub weight_decay: f64,
    /// Shuffling seed.
    #[config(default = 0)]
    pub seed: u64,
}

/// Accuracies of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// On the features it was trained on.
    pub train_accuracy: f64,
    /// On the held-out features.
    pub test_accuracy: f64,
}

#[derive(Module, Debug)]
struct Probe<B: burn::tensor::backend::Backend> {
    linear: Linear<B>,
}

/// Per-column mean and standard deviation of the train features.
fn standardiser(f: &Features) -> (Vec<f32>, Vec<f32>) {
    let n = f.len().max(1) as f64;
    let mut mean = vec![0.0f64; f.dim];
    let mut sq = vec![0.0f64; f.dim];
    for i in 0..f.len() {
        for (j, &v) in f.row(i).iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let m: Vec<f32> = mean.iter().map(|s| (s / n) as f32).collect();
    let s: Vec<f32> = sq
        .iter()
        .zip(&mean)
        .map(|(q, s)| ((q / n - (s / n).powi(2)).max(0.0).sqrt() as f32).max(1e-6))
        .collect();
    (m, s)
}

fn standardise(f: &Features, mean: &[f32], std: &[f32]) -> Vec<f32> {
    f.data
        .iter()
        .enumerate()
        .map(|(i, &v)| (v - mean[i % f.dim]) / std[i % f.dim])
        .collect()
}

/// Trains a linear classifier on `train` and reports its accuracy on both sets.
///
/// # Panics
/// If the two feature sets differ in width or either is empty.
pub fn linear_probe<B: AutodiffBackend>(
    train: &Features,
    test: &Features,
    config: &LinearProbeConfig,
    device: &B::Device,
) -> ProbeResult {
    assert_eq!(
        train.dim, test.dim,
        "linear_probe: train features have {} dims, test {}",
        train.dim, test.dim
    );
    assert!(
        !train.is_empty() && !test.is_empty(),
        "linear_probe: empty feature set"
    );
    let classes = train
        .num_classes
        .max(test.num_classes)
        .max(train.labels.iter().chain(&test.labels).max().unwrap() + 1);
    let (mean, std) = standardiser(train);
    let xtr = standardise(train, &mean, &std);
    let xte = standardise(test, &mean, &std);
    let d = train.dim;

    let mut model = Probe {
        linear: LinearConfig::new(d, classes).init::<B>(device),
    };
    let mut optim = AdamConfig::new()
        .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(
            config.weight_decay as f32,
        )))
        .init();
    let ce = CrossEntropyLossConfig::new().init(device);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let steps_per_epoch = train.len().div_ceil(config.batch_size);
    let total = (steps_per_epoch * config.epochs).max(1);
    let mut step = 0;
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(config.batch_size) {
            let mut x = Vec::with_capacity(chunk.len() * d);
            for &i in chunk {
                x.extend_from_slice(&xtr[i * d..(i + 1) * d]);
            }
            let y: Vec<i64> = chunk.iter().map(|&i| train.labels[i] as i64).collect();
            let x = Tensor::<B, 2>::from_data(TensorData::new(x, [chunk.len(), d]), device);
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [chunk.len()]), device);
            let loss = ce.forward(model.linear.forward(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr =
                config.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            model = optim.step(lr, model, grads);
            step += 1;
        }
    }
    let model = model.valid();
    let accuracy = |x: &[f32], labels: &[usize]| {
        let mut correct = 0usize;
        let n = labels.len();
        for start in (0..n).step_by(4096) {
            let end = (start + 4096).min(n);
            let xb = Tensor::<B::InnerBackend, 2>::from_data(
                TensorData::new(x[start * d..end * d].to_vec(), [end - start, d]),
                device,
            );
            let pred: Vec<i64> = model
                .linear
                .forward(xb)
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .to_vec()
                .unwrap();
            correct += pred
                .iter()
                .zip(&labels[start..end])
                .filter(|(p, l)| **p as usize == **l)
                .count();
        }
        correct as f64 / n as f64
    };
    ProbeResult {
        train_accuracy: accuracy(&xtr, &train.labels),
        test_accuracy: accuracy(&xte, &test.labels),
    }
}

/// A linear probe fitted by a small search: every `(lr, weight_decay)` of
/// the grid is trained on the train features minus a held-out part and
/// scored on that part; the best is refitted on all the train features and
/// scored on the test features. Each representation gets the settings that
/// suit it (a 784-d raw-pixel input overfits where 128-d features still
/// underfit), chosen without looking at the test split.
#[derive(Config, Debug)]
pub struct ProbeSearchConfig {
    /// Passes over the train features per fit.
    #[config(default = 100)]
    pub epochs: usize,
    /// Mini-batch size.
    #[config(default = 512)]
    pub batch_size: usize,
    /// Peak learning rates tried.
    #[config(default = "vec![1e-3, 3e-3, 1e-2]")]
    pub lrs: Vec<f64>,
    /// L2 penalties tried.
    #[config(default = "vec![1e-5, 1e-3]")]
    pub weight_decays: Vec<f64>,
    /// Fraction of the train features held out to choose (in `(0, 1)`).
    #[config(default = 0.1)]
    pub holdout: f64,
}

/// What [`linear_probe_search`] chose and measured.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeSearchResult {
    /// The refitted probe's accuracies.
    pub probe: ProbeResult,
    /// The chosen learning rate.
    pub lr: f64,
    /// The chosen L2 penalty.
    pub weight_decay: f64,
    /// Its accuracy on the held-out part.
    pub holdout_accuracy: f64,
}

/// Fits a linear probe by [`ProbeSearchConfig`]'s search, `seed` drawing the
/// held-out part, the initialisations and the batch orders.
///
/// # Panics
/// If the feature sets differ in width, either is empty, or the grid is.
pub fn linear_probe_search<B: AutodiffBackend>(
    train: &Features,
    test: &Features,
    config: &ProbeSearchConfig,
    seed: u64,
    device: &B::Device,
) -> ProbeSearchResult {
    assert!(
        !config.lrs.is_empty() && !config.weight_decays.is_empty(),
        "linear_probe_search: empty grid"
    );
    let probe = |lr: f64, weight_decay: f64| {
        LinearProbeConfig::new()
            .with_epochs(config.epochs)
            .with_batch_size(config.batch_size)
            .with_lr(lr)
            .with_weight_decay(weight_decay)
            .with_seed(seed)
    };
    let grid: Vec<(f64, f64)> = config
        .lrs
        .iter()
        .flat_map(|&lr| config.weight_decays.iter().map(move |&wd| (lr, wd)))
        .collect();
    let (lr, weight_decay, holdout_accuracy) = if grid.len() == 1 {
        (grid[0].0, grid[0].1, f64::NAN)
    } else {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x4001d));
        let held =
            ((train.len() as f64 * config.holdout).round() as usize).clamp(1, train.len() - 1);
        let (val, fit) = (train.select(&order[..held]), train.select(&order[held..]));
        grid.iter()
            .map(|&(lr, wd)| {
                B::seed(device, seed);
                let r = linear_probe::<B>(&fit, &val, &probe(lr, wd), device);
                (lr, wd, r.test_accuracy)
            })
            // The first best wins ties: smaller learning rates come first.
            .fold(
                (0.0, 0.0, -1.0),
                |best, c| if c.2 > best.2 { c } else { best },
            )
    };
    B::seed(device, seed);
    ProbeSearchResult {
        probe: linear_probe::<B>(train, test, &probe(lr, weight_decay), device),
        lr,
        weight_decay,
        holdout_accuracy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    /// Three well-separated Gaussian-free clusters on a line in 2-D, plus a
    /// nuisance dimension: linearly separable, so the probe must reach 100%.
    fn toy(n: usize, offset: usize) -> Features {
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = (i + offset) % 3;
            let jitter = ((i * 7919 + offset) % 100) as f32 / 100.0 - 0.5; // in [-0.5, 0.5)
            data.extend_from_slice(&[
                c as f32 * 3.0 + 0.4 * jitter,
                -(c as f32) * 2.0 + 0.3 * jitter,
                jitter * 5.0,
            ]);
            labels.push(c);
        }
        Features {
            data,
            dim: 3,
            labels,
            num_classes: 3,
        }
    }

    #[test]
    fn separates_a_linearly_separable_toy_set() {
        let device = Default::default();
        let r = linear_probe::<Autodiff<Flex>>(
            &toy(300, 0),
            &toy(90, 1),
            &LinearProbeConfig::new()
                .with_epochs(60)
                .with_batch_size(32)
                .with_lr(0.05),
            &device,
        );
        assert_eq!(r.train_accuracy, 1.0, "{r:?}");
        assert_eq!(r.test_accuracy, 1.0, "{r:?}");
    }

    #[test]
    fn the_search_picks_a_rate_that_fits_and_is_reproducible() {
        let device = Default::default();
        // A rate far too small to fit in 5 epochs, and one that fits.
        let config = ProbeSearchConfig::new()
            .with_epochs(5)
            .with_batch_size(32)
            .with_lrs(vec![1e-6, 0.05])
            .with_weight_decays(vec![0.0]);
        let run = || {
            linear_probe_search::<Autodiff<Flex>>(&toy(300, 0), &toy(90, 1), &config, 7, &device)
        };
        let r = run();
        assert_eq!(r.lr, 0.05, "{r:?}");
        assert!(
            r.holdout_accuracy > 0.9 && r.probe.test_accuracy > 0.9,
            "{r:?}"
        );
        assert_eq!(run(), r);
    }

    #[test]
    fn random_labels_are_not_learned_on_test() {
        // Labels independent of the features: test accuracy near chance (1/3).
        let device = Default::default();
        let mut tr = toy(300, 0);
        let mut te = toy(300, 1);
        for (i, l) in tr.labels.iter_mut().enumerate() {
            *l = (i * 31 / 7) % 3;
        }
        for (i, l) in te.labels.iter_mut().enumerate() {
            *l = (i * 17 / 5 + 1) % 3;
        }
        let r = linear_probe::<Autodiff<Flex>>(
            &tr,
            &te,
            &LinearProbeConfig::new()
                .with_epochs(20)
                .with_batch_size(32)
                .with_lr(0.05),
            &device,
        );
        assert!(r.test_accuracy < 0.6, "{r:?}");
    }
}
