//! The method contract: what every method config provides ([`SslMethod`]),
//! the run schedule every model is built for ([`RunSchedule`]), the one
//! dispatch from a [`MethodConfig`](crate::MethodConfig) to generic code
//! ([`WithModel`]), and the registry macro that turns one line per method
//! into [`MethodKind`](crate::MethodKind) and [`MethodConfig`](crate::MethodConfig).

use crate::SslOutput;
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_train::{InferenceStep, TrainStep};
use cssl_augment::DatasetPreset;
use cssl_core::ViewBatch;
use cssl_encoders::AnyEncoder;
use serde::{Deserialize, Serialize};

/// The run a model is built for. Every schedule inside a method (warm-up,
/// momentum of a target network, SwAV's prototype freeze) is defined on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSchedule {
    /// Images per batch.
    pub batch_size: usize,
    /// Optimiser steps per epoch: full batches only (a last, smaller batch
    /// is left out, so every batch has the same number of negatives and
    /// batch-norm statistics over the same count).
    pub steps_per_epoch: usize,
    /// Optimiser steps in the whole run.
    pub total_steps: usize,
}

impl RunSchedule {
    /// `epochs` passes over `images` images in full batches of `batch_size`.
    pub fn new(images: usize, batch_size: usize, epochs: usize) -> Self {
        let steps_per_epoch = images / batch_size.max(1);
        Self {
            batch_size,
            steps_per_epoch,
            total_steps: steps_per_epoch * epochs,
        }
    }

    /// Steps in `epochs` epochs (fractions allowed), rounded.
    pub fn steps_of_epochs(&self, epochs: f64) -> usize {
        (epochs * self.steps_per_epoch as f64).round() as usize
    }
}

/// A stretch of a run: in epochs (the papers' unit, right for the papers'
/// 100-1000-epoch runs) or as a fraction of all its steps (right for runs
/// of any length: 5% of a 300-step run is 15 steps, of a 300k-step run
/// 15k). Written `{"epochs": 10.0}` or `{"fraction": 0.05}`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Span {
    /// This many epochs (fractions allowed).
    Epochs(f64),
    /// This fraction of the run's steps, in `[0, 1]`.
    Fraction(f64),
}

impl Span {
    /// Steps of `schedule` the span covers, rounded, at most the whole run.
    pub fn steps(&self, schedule: &RunSchedule) -> usize {
        let steps = match *self {
            Span::Epochs(e) => schedule.steps_of_epochs(e),
            Span::Fraction(f) => (f * schedule.total_steps as f64).round() as usize,
        };
        steps.min(schedule.total_steps)
    }

    /// Checks the range; `field` names the span in errors.
    ///
    /// # Errors
    /// A negative or non-finite length, or a fraction above 1.
    pub fn validate(&self, field: &str) -> cssl_core::Result<()> {
        let ok = match *self {
            Span::Epochs(e) => e.is_finite() && e >= 0.0,
            Span::Fraction(f) => (0.0..=1.0).contains(&f),
        };
        if ok {
            Ok(())
        } else {
            Err(cssl_core::CsslError::config(
                field,
                format!("{self:?}: epochs must be finite and at least 0, a fraction in [0, 1]"),
            ))
        }
    }
}

/// A pretraining model that exposes the encoder it trains (what evaluation
/// and export keep).
pub trait SslModel<B: Backend> {
    /// The encoder.
    fn encoder(&self) -> &AnyEncoder<B>;
}

/// What every method config provides. Its fields are the five
/// characteristics and the optimiser, named alike in every method:
/// `augmentation`, `encoder`, `extraction`, `similarity`, `loss`,
/// `optimizer`.
pub trait SslMethod: Sized {
    /// The model it builds.
    type Model<B: Backend>: Module<B> + SslModel<B>;

    /// Train images the CPU default pretrains on by default, so that a
    /// default run (2 epochs, pretraining and evaluation) fits in ten minutes
    /// on two cores.
    const CPU_TRAIN_IMAGES: usize;

    /// Epochs of a default CPU run over [`Self::CPU_TRAIN_IMAGES`] images.
    const CPU_EPOCHS: usize = 2;

    /// Whether the views go through the encoder as one batch (so that they
    /// must share one size). SwAV groups its crops by size and MoCo encodes
    /// queries and keys apart: they say `false`.
    const ENCODES_VIEWS_TOGETHER: bool = true;

    /// The CPU default for images of `preset` with `channels` channels.
    fn cpu_default(preset: &DatasetPreset, channels: usize) -> Self;

    /// The paper's recipe (its encoder, head widths and optimiser) for
    /// `preset`.
    fn paper(preset: &DatasetPreset, channels: usize) -> Self;

    /// Checks that the parts fit each other and the schedule; errors name the
    /// field.
    fn validate(&self, schedule: &RunSchedule) -> cssl_core::Result<()>;

    /// Builds the model for `schedule` after [`Self::validate`]. The encoder
    /// is built (and its weights drawn) before anything else, so that for one
    /// seed the encoder starts the same whatever the method.
    fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<Self::Model<B>>;

    /// Names of the method's extra collapse monitors (see [`SslOutput`]).
    fn monitors(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// The method at test size on Fashion-MNIST, for tests that train it on
    /// several devices, backends or processes: by default its CPU default;
    /// the ResNet methods shrink it with [`crate::test_size`] (ResNet-18 at
    /// 1/16 width, heads of 32-32-16).
    fn tiny() -> Self {
        Self::cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}

/// Builds `config`'s model for `schedule` on `device` with its weights drawn
/// from `seed` by burn's CPU backend (Flex), whatever `B` is: for one seed a
/// model starts bitwise the same on Flex, wgpu and CUDA, so that runs on
/// different devices can be compared step for step. On another backend the
/// model is drawn on the CPU, its record (every parameter, batch-norm
/// statistic and method buffer, such as MoCo's queue and SwAV's prototypes)
/// serialised at full precision and loaded onto `device`.
///
/// # Errors
/// What [`SslMethod::init`] refuses, or a record that does not load.
pub fn init_model<C: SslMethod, B: Backend>(
    config: &C,
    schedule: &RunSchedule,
    device: &B::Device,
    seed: u64,
) -> cssl_core::Result<C::Model<B>> {
    use burn::backend::Flex;
    use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
    B::seed(device, seed);
    // On Flex (plain or under autodiff, which draws through it) the CPU's
    // draw is this one.
    let on_flex = [
        core::any::TypeId::of::<Flex>(),
        core::any::TypeId::of::<burn::backend::Autodiff<Flex>>(),
    ]
    .contains(&core::any::TypeId::of::<B>());
    let model = config.init::<B>(schedule, device)?;
    if on_flex {
        return Ok(model);
    }
    let cpu = Default::default();
    Flex::seed(&cpu, seed);
    let drawn = config.init::<Flex>(schedule, &cpu)?;
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let failed = |e: burn::record::RecorderError| {
        cssl_core::CsslError::config("method", format!("moving the initial weights: {e}"))
    };
    let bytes = Recorder::<Flex>::record(&recorder, drawn.into_record(), ()).map_err(failed)?;
    let record = Recorder::<B>::load(&recorder, bytes, device).map_err(failed)?;
    Ok(model.load_record(record))
}

/// Generic work on a freshly built model of any method: the one place where a
/// [`MethodConfig`](crate::MethodConfig) becomes a concrete model type
/// ([`MethodConfig::with_model`](crate::MethodConfig::with_model)). The job,
/// `xtask` and the tests implement it instead of matching on the method.
pub trait WithModel<B: AutodiffBackend> {
    /// What the work returns.
    type Output;

    /// Runs on `model`.
    fn run<M>(self, model: M) -> Self::Output
    where
        M: TrainStep<Input = ViewBatch<B>, Output = SslOutput<B>>
            + AutodiffModule<B>
            + core::fmt::Display
            + 'static,
        M::InnerModule: InferenceStep<Input = ViewBatch<B::InnerBackend>, Output = SslOutput<B::InnerBackend>>
            + SslModel<B::InnerBackend>;
}

/// The registry: one line per method (`Variant => module::{Model, Config},
/// "name";`) declares the method's module and generates [`MethodKind`],
/// [`MethodConfig`] and their dispatch.
///
/// [`MethodKind`]: crate::MethodKind
/// [`MethodConfig`]: crate::MethodConfig
macro_rules! methods {
    ($($(#[$doc:meta])* $variant:ident => $module:ident::{$model:ident, $config:ident}, $name:literal;)*) => {
        $(mod $module;)*
        $(pub use $module::{$model, $config};)*

        /// The methods, by name (the registry's order).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum MethodKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl MethodKind {
            /// Every method, in the registry's order.
            pub const ALL: [MethodKind; [$($name),*].len()] = [$(Self::$variant),*];

            /// Lower-case name (`config.json`, `--method`).
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// The method's CPU default for images of `preset` with
            /// `channels` channels (e.g. CIFAR-10: `DatasetPreset::cifar()`, 3).
            pub fn cpu_default(self, preset: &cssl_augment::DatasetPreset, channels: usize) -> MethodConfig {
                match self {
                    $(Self::$variant => MethodConfig::$variant(
                        <$config as $crate::SslMethod>::cpu_default(preset, channels),
                    ),)*
                }
            }

            /// The paper's recipe for `preset`.
            pub fn paper(self, preset: &cssl_augment::DatasetPreset, channels: usize) -> MethodConfig {
                match self {
                    $(Self::$variant => MethodConfig::$variant(
                        <$config as $crate::SslMethod>::paper(preset, channels),
                    ),)*
                }
            }

            /// Epochs of a default CPU run ([`SslMethod::CPU_EPOCHS`](crate::SslMethod::CPU_EPOCHS)).
            pub fn cpu_epochs(self) -> usize {
                match self {
                    $(Self::$variant => <$config as $crate::SslMethod>::CPU_EPOCHS,)*
                }
            }

            /// Whether the views go through the encoder as one batch
            /// ([`SslMethod::ENCODES_VIEWS_TOGETHER`](crate::SslMethod::ENCODES_VIEWS_TOGETHER)).
            pub fn encodes_views_together(self) -> bool {
                match self {
                    $(Self::$variant => <$config as $crate::SslMethod>::ENCODES_VIEWS_TOGETHER,)*
                }
            }

            /// The method at test size ([`SslMethod::tiny`](crate::SslMethod::tiny)).
            pub fn tiny(self) -> MethodConfig {
                match self {
                    $(Self::$variant => MethodConfig::$variant(<$config as $crate::SslMethod>::tiny()),)*
                }
            }

            /// Train images of a default CPU run ([`SslMethod::CPU_TRAIN_IMAGES`](crate::SslMethod::CPU_TRAIN_IMAGES)).
            pub fn cpu_train_images(self) -> usize {
                match self {
                    $(Self::$variant => <$config as $crate::SslMethod>::CPU_TRAIN_IMAGES,)*
                }
            }
        }

        /// One method's full config (its five characteristics and its
        /// optimiser); serialised as `{"simclr": {...}}`.
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        #[allow(clippy::large_enum_variant)]
        pub enum MethodConfig {
            $(#[doc = concat!("See [`", stringify!($config), "`].")] #[serde(rename = $name)] $variant($config),)*
        }

        impl MethodConfig {
            /// Which method this is.
            pub fn kind(&self) -> MethodKind {
                match self {
                    $(Self::$variant(_) => MethodKind::$variant,)*
                }
            }

            /// The augmentation pipeline (characteristic 1).
            pub fn augmentation(&self) -> &cssl_augment::MultiViewAugmentation {
                match self {
                    $(Self::$variant(c) => &c.augmentation,)*
                }
            }

            /// The augmentation pipeline, to replace it.
            pub fn augmentation_mut(&mut self) -> &mut cssl_augment::MultiViewAugmentation {
                match self {
                    $(Self::$variant(c) => &mut c.augmentation,)*
                }
            }

            /// The encoder (characteristic 2).
            pub fn encoder(&self) -> &cssl_encoders::EncoderConfig {
                match self {
                    $(Self::$variant(c) => &c.encoder,)*
                }
            }

            /// The encoder, to replace it.
            pub fn encoder_mut(&mut self) -> &mut cssl_encoders::EncoderConfig {
                match self {
                    $(Self::$variant(c) => &mut c.encoder,)*
                }
            }

            /// The similarity (characteristic 4).
            pub fn similarity(&self) -> &cssl_losses::SimilarityConfig {
                match self {
                    $(Self::$variant(c) => &c.similarity,)*
                }
            }

            /// The similarity, to replace it.
            pub fn similarity_mut(&mut self) -> &mut cssl_losses::SimilarityConfig {
                match self {
                    $(Self::$variant(c) => &mut c.similarity,)*
                }
            }

            /// The optimiser and schedule.
            pub fn optimizer(&self) -> &$crate::OptimizerConfig {
                match self {
                    $(Self::$variant(c) => &c.optimizer,)*
                }
            }

            /// The optimiser, to change it.
            pub fn optimizer_mut(&mut self) -> &mut $crate::OptimizerConfig {
                match self {
                    $(Self::$variant(c) => &mut c.optimizer,)*
                }
            }

            /// Names of the method's extra collapse monitors.
            pub fn monitors(&self) -> Vec<&'static str> {
                match self {
                    $(Self::$variant(c) => $crate::SslMethod::monitors(c),)*
                }
            }

            /// Checks, before anything trains, that the parts fit each other,
            /// the schedule and the data: `image` is one input's
            /// `(channels, height, width)`; every view the pipeline makes of
            /// it must fit the encoder.
            pub fn validate(
                &self,
                image: (usize, usize, usize),
                schedule: &$crate::RunSchedule,
            ) -> cssl_core::Result<()> {
                match self {
                    $(Self::$variant(c) => $crate::SslMethod::validate(c, schedule),)*
                }?;
                self.optimizer().validate()?;
                if self.kind().encodes_views_together() {
                    $crate::check_views_share_a_shape(self.augmentation(), image)?;
                }
                $crate::check_views_fit_encoder(self.augmentation(), self.encoder(), image)
            }

            /// Builds the model for `schedule` on `device` and hands it to
            /// `work`: the one dispatch from a config to generic code.
            ///
            /// The weights are drawn from `seed` on the CPU ([`init_model`](crate::init_model)),
            /// so that a model starts the same on every backend.
            pub fn with_model<B, W>(
                &self,
                schedule: &$crate::RunSchedule,
                device: &B::Device,
                seed: u64,
                work: W,
            ) -> cssl_core::Result<W::Output>
            where
                B: burn::tensor::backend::AutodiffBackend,
                W: $crate::WithModel<B>,
            {
                Ok(match self {
                    $(Self::$variant(c) => work.run($crate::init_model::<$config, B>(c, schedule, device, seed)?),)*
                })
            }
        }

        $(impl<B: burn::tensor::backend::Backend> $crate::SslModel<B> for $model<B> {
            fn encoder(&self) -> &cssl_encoders::AnyEncoder<B> {
                &self.encoder
            }
        })*
    };
}

pub(crate) use methods;

impl Default for crate::MethodKind {
    fn default() -> Self {
        Self::Simclr
    }
}

impl std::str::FromStr for crate::MethodKind {
    type Err = cssl_core::CsslError;

    fn from_str(s: &str) -> cssl_core::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                cssl_core::CsslError::config(
                    "method",
                    format!(
                        "unknown method `{s}`; expected one of {}",
                        Self::ALL.map(|m| m.name()).join(", ")
                    ),
                )
            })
    }
}

impl crate::MethodKind {
    /// The method's CPU default for the embedded Fashion-MNIST.
    pub fn fashion_mnist(self) -> crate::MethodConfig {
        self.cpu_default(&DatasetPreset::fashion_mnist(), 1)
    }
}
