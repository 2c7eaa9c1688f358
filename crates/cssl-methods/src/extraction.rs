//! Characteristic 3 of every method as one config type each: the `extraction`
//! field of a method config holds *everything* that turns the encoder's maps
//! into what the similarity compares, including the state it carries across
//! steps (momentum target, queue, prototypes) and the schedules of that state.
//!
//! | type | methods | holds |
//! |---|---|---|
//! | [`PairExtractionConfig`] | SimCLR, YADIM | projection head, or the last map alone |
//! | [`PredictorExtractionConfig`] | BYOL, SimSiam, MoCo v3 | projector, predictor, and a momentum target (BYOL) or none (SimSiam: stop-gradient) |
//! | [`ProjectorExtractionConfig`] | Barlow Twins, VICReg | projector (VICReg's "expander"), each view's embeddings over the global batch |
//! | [`MocoExtractionConfig`] | MoCo v2 | head, momentum target, queue |
//! | [`SwavExtractionConfig`] | SwAV | head, prototypes, prototype freeze |
//! | [`DinoExtractionConfig`] | DINO | head, prototypes, freeze; the teacher (a momentum copy of all three) and its centre |
//! | [`CpcExtractionConfig`] | CPC v2 | context network, prediction steps |
//! | [`AmdimExtractionConfig`] | AMDIM | the 1-5, 1-7, 5-5 comparisons |
//!
//! Methods of one family share the type, so an extraction swap inside a
//! family is a config edit (SimCLR with YADIM's last map; BYOL without its
//! momentum target is SimSiam's extraction).

use crate::common::same_dim;
use crate::RunSchedule;
use crate::Span;
use burn::config::Config;
use burn::module::{Module, RunningState};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use cssl_core::{l2_normalize, CsslError, Encoder, Similarity};
use cssl_encoders::{AnyEncoder, EncoderConfig};
use cssl_extract::{
    copy_weights, ema_update, CpcContext, CpcContextConfig, MomentumConfig, NegativesQueue,
    NegativesQueueConfig, ProjectionHead, ProjectionHeadConfig, Prototypes, PrototypesConfig,
    StepCounter,
};

pub use cssl_extract::{PairExtraction, PairExtractionConfig};

/// The momentum (EMA) target of BYOL and MoCo: copies of the online encoder
/// and head, with their own `ParamId`s and no gradient, that follow the online
/// network by [`ema_update`] after every optimiser step, with `tau` from
/// [`MomentumConfig`] over the run's [`RunSchedule::total_steps`]. The step
/// counter is saved with checkpoints.
#[derive(Module, Debug)]
pub struct MomentumTarget<B: Backend> {
    encoder: AnyEncoder<B>,
    head: ProjectionHead<B>,
    steps: StepCounter<B>,
    tau0: f64,
    cosine_schedule: bool,
    total_steps: usize,
}

impl<B: Backend> MomentumTarget<B> {
    /// Copies of `encoder` and `head` (built from their configs, then
    /// overwritten with the online weights).
    pub fn new(
        config: &MomentumConfig,
        (encoder_config, encoder): (&EncoderConfig, &AnyEncoder<B>),
        (head_config, head): (&ProjectionHeadConfig, &ProjectionHead<B>),
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> Self {
        Self {
            encoder: copy_weights(encoder_config.init(device), encoder).no_grad(),
            head: copy_weights(head_config.init(device), head).no_grad(),
            steps: StepCounter::new(device),
            tau0: config.tau0,
            cosine_schedule: config.cosine_schedule,
            total_steps: schedule.total_steps,
        }
    }

    /// The target's head output for `x` (pooled last map, then the head),
    /// detached.
    ///
    /// # Shapes
    /// `x`: `[n, c, h, w]` -> `[n, head output]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(self.encoder.encode(x).pooled()).detach()
    }

    /// The target encoder.
    pub fn encoder(&self) -> &AnyEncoder<B> {
        &self.encoder
    }

    /// The target head.
    pub fn head(&self) -> &ProjectionHead<B> {
        &self.head
    }

    /// The momentum the next update uses.
    pub fn tau(&self) -> f64 {
        MomentumConfig {
            tau0: self.tau0,
            cosine_schedule: self.cosine_schedule,
        }
        .tau(self.steps.get(), self.total_steps)
    }

    /// `target <- tau * target + (1 - tau) * online` for encoder and head,
    /// then advances the schedule.
    pub fn update(mut self, encoder: &AnyEncoder<B>, head: &ProjectionHead<B>) -> Self {
        let tau = self.tau();
        self.encoder = ema_update(self.encoder, encoder, tau);
        self.head = ema_update(self.head, head, tau);
        self.steps.advance();
        self
    }
}

/// Checks a momentum config.
fn validate_momentum(m: &MomentumConfig, field: &str) -> cssl_core::Result<()> {
    if !(0.0..=1.0).contains(&m.tau0) {
        return Err(CsslError::config(
            format!("{field}.tau0"),
            format!("{}: must be in [0, 1]", m.tau0),
        ));
    }
    Ok(())
}

/// The redundancy-reduction methods' extraction (Barlow Twins, VICReg): one
/// projector, shared by both views, whose outputs the loss reads as two
/// `[N, D]` batches. Their losses are statistics of the batch, so in a
/// data-parallel step each view's embeddings span the global batch.
#[derive(Config, Debug)]
pub struct ProjectorExtractionConfig {
    /// The projector (Barlow Twins' and VICReg's 8192-8192-8192 MLP).
    pub projector: ProjectionHeadConfig,
    /// Each view through encoder and projector on its own, so that each
    /// view's batch norm sees only that view (as both papers' code does);
    /// `false` encodes both views as one batch.
    #[config(default = true)]
    pub separate_views: bool,
}

impl ProjectorExtractionConfig {
    /// Checks that the projector reads an encoder of `encoder_dim` channels.
    pub fn validate(&self, encoder_dim: usize) -> cssl_core::Result<()> {
        self.projector.validate("extraction.projector")?;
        same_dim(
            "extraction.projector.input_dim (the encoder's output channels)",
            encoder_dim,
            self.projector.input_dim,
        )
    }

    /// Builds the extraction.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ProjectorExtraction<B> {
        ProjectorExtraction {
            projector: self.projector.init(device),
            separate_views: self.separate_views,
        }
    }
}

/// See [`ProjectorExtractionConfig`].
#[derive(Module, Debug)]
pub struct ProjectorExtraction<B: Backend> {
    projector: ProjectionHead<B>,
    separate_views: bool,
}

impl<B: Backend> ProjectorExtraction<B> {
    /// Each view's embeddings, over the global batch in a data-parallel
    /// step (this worker's rows carry the gradient).
    ///
    /// # Shapes
    /// `x`: both views as one `[2N, c, h, w]` batch. Returns two `[N, D]`
    /// (`[world N, D]` in a data-parallel step).
    pub fn embeddings(
        &self,
        encoder: &AnyEncoder<B>,
        x: Tensor<B, 4>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let n = x.dims()[0] / 2;
        let embed = |x: Tensor<B, 4>| self.projector.forward(encoder.encode(x).pooled());
        let (a, b) = if self.separate_views {
            (embed(x.clone().narrow(0, 0, n)), embed(x.narrow(0, n, n)))
        } else {
            let z = embed(x);
            (z.clone().narrow(0, 0, n), z.narrow(0, n, n))
        };
        (
            cssl_core::parallel::all_gather(a),
            cssl_core::parallel::all_gather(b),
        )
    }

    /// The projector.
    pub fn projector(&self) -> &ProjectionHead<B> {
        &self.projector
    }
}

/// BYOL's and SimSiam's extraction: an online projector g and predictor q;
/// the target branch is a momentum copy of encoder and projector (BYOL) or,
/// without `momentum`, the online projection itself with its gradient stopped
/// (SimSiam: "the target ... is the online network with stop-gradient").
#[derive(Config, Debug)]
pub struct PredictorExtractionConfig {
    /// The projector g.
    pub projector: ProjectionHeadConfig,
    /// The predictor q (online branch only).
    pub predictor: ProjectionHeadConfig,
    /// The momentum target's settings; `None`: no target network.
    pub momentum: Option<MomentumConfig>,
    /// Run each view through the networks on its own, so that batch norm
    /// normalises each view with its own statistics (the reference BYOL and
    /// SimSiam code does; the two views' pipelines differ on purpose). With
    /// `false` both views form one batch.
    #[config(default = false)]
    pub separate_views: bool,
}

impl PredictorExtractionConfig {
    /// Checks the widths against an encoder of `encoder_dim` channels.
    pub fn validate(&self, encoder_dim: usize) -> cssl_core::Result<()> {
        self.projector.validate("extraction.projector")?;
        self.predictor.validate("extraction.predictor")?;
        same_dim(
            "extraction.projector.input_dim (the encoder's output channels)",
            encoder_dim,
            self.projector.input_dim,
        )?;
        same_dim(
            "extraction.predictor.input_dim (the projector's output)",
            self.projector.output_dim,
            self.predictor.input_dim,
        )?;
        same_dim(
            "extraction.predictor.output_dim (the projector's output)",
            self.projector.output_dim,
            self.predictor.output_dim,
        )?;
        match &self.momentum {
            Some(m) => validate_momentum(m, "extraction.momentum"),
            None => Ok(()),
        }
    }

    /// Builds the extraction for `encoder` (built first, so that its random
    /// init does not depend on what comes after it).
    pub fn init<B: Backend>(
        &self,
        (encoder_config, encoder): (&EncoderConfig, &AnyEncoder<B>),
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> PredictorExtraction<B> {
        let projector = self.projector.init(device);
        let target = self.momentum.as_ref().map(|m| {
            MomentumTarget::new(
                m,
                (encoder_config, encoder),
                (&self.projector, &projector),
                schedule,
                device,
            )
        });
        PredictorExtraction {
            projector,
            predictor: self.predictor.init(device),
            target,
            separate_views: self.separate_views,
        }
    }
}

/// See [`PredictorExtractionConfig`].
#[derive(Module, Debug)]
pub struct PredictorExtraction<B: Backend> {
    projector: ProjectionHead<B>,
    predictor: ProjectionHead<B>,
    target: Option<MomentumTarget<B>>,
    separate_views: bool,
}

impl<B: Backend> PredictorExtraction<B> {
    /// Each view's online projection `z`, prediction `p` and target `t`
    /// (the momentum target's projection, or `z` with its gradient stopped).
    ///
    /// # Shapes
    /// `x`: both views as one `[2N, c, h, w]` batch. Returns three
    /// `[2N, D]`, view 1's rows first.
    fn branches(
        &self,
        encoder: &AnyEncoder<B>,
        x: Tensor<B, 4>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
        let n = x.dims()[0] / 2;
        let branches = |x: Tensor<B, 4>| {
            let z = self.projector.forward(encoder.encode(x.clone()).pooled());
            let p = self.predictor.forward(z.clone());
            let t = match &self.target {
                Some(target) => target.forward(x),
                None => z.clone().detach(),
            };
            (z, p, t)
        };
        if self.separate_views {
            let (z1, p1, t1) = branches(x.clone().narrow(0, 0, n));
            let (z2, p2, t2) = branches(x.narrow(0, n, n));
            (
                Tensor::cat(vec![z1, z2], 0),
                Tensor::cat(vec![p1, p2], 0),
                Tensor::cat(vec![t1, t2], 0),
            )
        } else {
            branches(x)
        }
    }

    /// The paired similarities `(s_12, s_21)` of each view's prediction with
    /// the other view's (stop-gradient) target, and the online projections.
    ///
    /// # Shapes
    /// `x`: both views as one `[2N, c, h, w]` batch. Returns `[N]`, `[N]`,
    /// `[2N, D]`.
    pub fn paired_scores<S: Similarity<B>>(
        &self,
        encoder: &AnyEncoder<B>,
        x: Tensor<B, 4>,
        similarity: &S,
    ) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 2>) {
        let n = x.dims()[0] / 2;
        let (z, p, t) = self.branches(encoder, x);
        let d = p.dims()[1];
        let half = |m: &Tensor<B, 2>, k: usize| m.clone().slice([k * n..(k + 1) * n, 0..d]);
        let s12 = similarity.paired(half(&p, 0), half(&t, 1));
        let s21 = similarity.paired(half(&p, 1), half(&t, 0));
        (s12, s21, z)
    }

    /// Every view-1 prediction scored against every view-2 target (`S_12`)
    /// and the other way round (`S_21`), over the global batch in a
    /// data-parallel step (MoCo v3: the other images' targets are the
    /// negatives); and the online projections.
    ///
    /// # Shapes
    /// `x`: both views as one `[2N, c, h, w]` batch. Returns `[M, M]`,
    /// `[M, M]` (`M` = the global batch) and `[2N, D]`.
    pub fn cross_scores<S: Similarity<B>>(
        &self,
        encoder: &AnyEncoder<B>,
        x: Tensor<B, 4>,
        similarity: &S,
    ) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
        let n = x.dims()[0] / 2;
        let (z, p, t) = self.branches(encoder, x);
        let d = p.dims()[1];
        let half = |m: &Tensor<B, 2>, k: usize| {
            cssl_core::parallel::all_gather(m.clone().slice([k * n..(k + 1) * n, 0..d]))
        };
        let s12 = similarity.scores(half(&p, 0), half(&t, 1));
        let s21 = similarity.scores(half(&p, 1), half(&t, 0));
        (s12, s21, z)
    }

    /// The online projector.
    pub fn projector(&self) -> &ProjectionHead<B> {
        &self.projector
    }

    /// The momentum target, if any.
    pub fn target(&self) -> Option<&MomentumTarget<B>> {
        self.target.as_ref()
    }

    /// Moves the momentum target (if any) towards `encoder` and the projector.
    pub fn update_target(mut self, encoder: &AnyEncoder<B>) -> Self {
        self.target = self
            .target
            .map(|target| target.update(encoder, &self.projector));
        self
    }
}

/// MoCo v2's extraction: the MLP head (v2) for queries, a momentum key
/// encoder + head, and the queue of past keys as negatives.
#[derive(Config, Debug)]
pub struct MocoExtractionConfig {
    /// The MLP head (queries; the key head is its momentum copy).
    pub head: ProjectionHeadConfig,
    /// The key network's momentum and schedule.
    pub momentum: MomentumConfig,
    /// The queue of negative keys.
    pub queue: NegativesQueueConfig,
}

impl MocoExtractionConfig {
    /// Checks widths and the queue against the encoder and the schedule.
    pub fn validate(&self, encoder_dim: usize, schedule: &RunSchedule) -> cssl_core::Result<()> {
        self.head.validate("extraction.head")?;
        same_dim(
            "extraction.head.input_dim (the encoder's output channels)",
            encoder_dim,
            self.head.input_dim,
        )?;
        same_dim(
            "extraction.queue.dim (the head's output)",
            self.head.output_dim,
            self.queue.dim,
        )?;
        validate_momentum(&self.momentum, "extraction.momentum")?;
        self.queue.validate(schedule.batch_size)
    }

    /// Builds head, key network and queue for `encoder` (built first).
    pub fn init<B: Backend>(
        &self,
        (encoder_config, encoder): (&EncoderConfig, &AnyEncoder<B>),
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> cssl_core::Result<MocoExtraction<B>> {
        let head = self.head.init(device);
        let target = MomentumTarget::new(
            &self.momentum,
            (encoder_config, encoder),
            (&self.head, &head),
            schedule,
            device,
        );
        Ok(MocoExtraction {
            head,
            target,
            queue: self.queue.init(schedule.batch_size, device)?,
        })
    }
}

/// See [`MocoExtractionConfig`].
#[derive(Module, Debug)]
pub struct MocoExtraction<B: Backend> {
    /// The query head.
    pub head: ProjectionHead<B>,
    /// The key encoder and head.
    pub target: MomentumTarget<B>,
    /// The negatives.
    pub queue: NegativesQueue<B>,
}

impl<B: Backend> MocoExtraction<B> {
    /// Queries `[N, D]` (through the online encoder and head) and unit keys
    /// `[N, D]` (through the key network, detached).
    pub fn queries_and_keys(
        &self,
        encoder: &AnyEncoder<B>,
        xq: Tensor<B, 4>,
        xk: Tensor<B, 4>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let q = self.head.forward(encoder.encode(xq).pooled());
        let k = l2_normalize(self.target.forward(xk)).detach();
        (q, k)
    }

    /// Moves the key network towards `encoder` and the query head.
    pub fn update_target(mut self, encoder: &AnyEncoder<B>) -> Self {
        self.target = self.target.update(encoder, &self.head);
        self
    }
}

/// SwAV's extraction: projection head, then scores against learnable
/// prototypes (online clustering), the prototypes frozen for the first part
/// of the run.
#[derive(Config, Debug)]
pub struct SwavExtractionConfig {
    /// The projection head.
    pub head: ProjectionHeadConfig,
    /// The prototypes.
    pub prototypes: PrototypesConfig,
    /// How long the prototypes stay frozen at the start (paper: 1 epoch
    /// of 100-800, `{"epochs": 1.0}`; or a fraction of the run).
    #[config(default = "Span::Epochs(1.0)")]
    pub freeze_prototypes: Span,
}

impl SwavExtractionConfig {
    /// Checks widths against an encoder of `encoder_dim` channels.
    pub fn validate(&self, encoder_dim: usize) -> cssl_core::Result<()> {
        self.head.validate("extraction.head")?;
        same_dim(
            "extraction.head.input_dim (the encoder's output channels)",
            encoder_dim,
            self.head.input_dim,
        )?;
        same_dim(
            "extraction.prototypes.dim (the head's output)",
            self.head.output_dim,
            self.prototypes.dim,
        )?;
        self.freeze_prototypes
            .validate("extraction.freeze_prototypes")
    }

    /// Builds head and prototypes; the freeze lasts
    /// `freeze_prototypes` of `schedule`.
    pub fn init<B: Backend>(
        &self,
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> SwavExtraction<B> {
        SwavExtraction {
            head: self.head.init(device),
            prototypes: self.prototypes.init(device),
            steps: StepCounter::new(device),
            freeze_steps: self.freeze_prototypes.steps(schedule),
        }
    }
}

/// See [`SwavExtractionConfig`].
#[derive(Module, Debug)]
pub struct SwavExtraction<B: Backend> {
    /// The projection head.
    pub head: ProjectionHead<B>,
    /// The prototypes.
    pub prototypes: Prototypes<B>,
    steps: StepCounter<B>,
    freeze_steps: usize,
}

impl<B: Backend> SwavExtraction<B> {
    /// Whether the prototypes are still frozen.
    pub fn prototypes_frozen(&self) -> bool {
        self.steps.get() < self.freeze_steps
    }

    /// Before the optimiser step: drops the prototypes' gradient while they
    /// are frozen. `IB` is the backend the gradients live on.
    pub fn before_step<IB: Backend>(&self, grads: &mut GradientsParams) {
        if self.prototypes_frozen() {
            self.prototypes.freeze::<IB>(grads);
        }
    }

    /// After the optimiser step: renormalises the prototypes, counts the step.
    pub fn after_step(mut self) -> Self {
        self.prototypes = self.prototypes.normalized();
        self.steps.advance();
        self
    }
}

/// DINO's extraction: SwAV's head and prototypes on the student (the
/// prototypes are DINO's weight-normalised last layer: unit rows scoring
/// the normalised bottleneck), and a teacher that is a momentum copy of
/// encoder, head and prototypes, with the centre of its outputs. The
/// teacher sees the first `global_crops` views; the student sees all.
#[derive(Config, Debug)]
pub struct DinoExtractionConfig {
    /// The head up to the bottleneck (DINO: 3 layers, hidden 2048,
    /// bottleneck 256).
    pub head: ProjectionHeadConfig,
    /// The last layer: `K` unit prototypes (DINO: 65,536 outputs).
    pub prototypes: PrototypesConfig,
    /// The teacher's momentum (DINO: 0.996 to 1 on BYOL's cosine schedule).
    pub momentum: MomentumConfig,
    /// Views the teacher sees: the pipeline's first ones, the global crops.
    #[config(default = 2)]
    pub global_crops: usize,
    /// How long the student's prototypes stay frozen at the start (DINO
    /// freezes its last layer for the first epoch).
    #[config(default = "Span::Epochs(1.0)")]
    pub freeze_prototypes: Span,
}

impl DinoExtractionConfig {
    /// Checks widths against an encoder of `encoder_dim` channels.
    pub fn validate(&self, encoder_dim: usize) -> cssl_core::Result<()> {
        self.head.validate("extraction.head")?;
        same_dim(
            "extraction.head.input_dim (the encoder's output channels)",
            encoder_dim,
            self.head.input_dim,
        )?;
        same_dim(
            "extraction.prototypes.dim (the head's output)",
            self.head.output_dim,
            self.prototypes.dim,
        )?;
        validate_momentum(&self.momentum, "extraction.momentum")?;
        if self.global_crops == 0 {
            return Err(CsslError::config(
                "extraction.global_crops",
                "the teacher needs at least one view",
            ));
        }
        self.freeze_prototypes
            .validate("extraction.freeze_prototypes")
    }

    /// Builds the student's head and prototypes, then the teacher (copies
    /// of `encoder`, the head and the prototypes) and a zero centre.
    pub fn init<B: Backend>(
        &self,
        (encoder_config, encoder): (&EncoderConfig, &AnyEncoder<B>),
        schedule: &RunSchedule,
        device: &B::Device,
    ) -> DinoExtraction<B> {
        let head = self.head.init(device);
        let prototypes = self.prototypes.init(device);
        let teacher = MomentumTarget::new(
            &self.momentum,
            (encoder_config, encoder),
            (&self.head, &head),
            schedule,
            device,
        );
        let teacher_prototypes = copy_weights(self.prototypes.init(device), &prototypes).no_grad();
        DinoExtraction {
            head,
            prototypes,
            teacher,
            teacher_prototypes,
            centre: RunningState::new(Tensor::zeros([self.prototypes.count], device)),
            global_crops: self.global_crops,
            steps: StepCounter::new(device),
            freeze_steps: self.freeze_prototypes.steps(schedule),
        }
    }
}

/// See [`DinoExtractionConfig`].
#[derive(Module, Debug)]
pub struct DinoExtraction<B: Backend> {
    /// The student's head.
    pub head: ProjectionHead<B>,
    /// The student's prototypes.
    pub prototypes: Prototypes<B>,
    teacher: MomentumTarget<B>,
    teacher_prototypes: Prototypes<B>,
    centre: RunningState<Tensor<B, 1>>,
    global_crops: usize,
    steps: StepCounter<B>,
    freeze_steps: usize,
}

impl<B: Backend> DinoExtraction<B> {
    /// Views the teacher sees (the first ones).
    pub fn global_crops(&self) -> usize {
        self.global_crops
    }

    /// The teacher's scores of the global crops: its embeddings' cosine
    /// with its prototypes, detached.
    ///
    /// # Shapes
    /// `x`: the global crops of one size as one `[g N, c, h, w]` batch.
    /// Returns `[g N, K]`.
    pub fn teacher_scores<S: Similarity<B>>(
        &self,
        x: Tensor<B, 4>,
        similarity: &S,
    ) -> Tensor<B, 2> {
        similarity
            .scores(
                self.teacher.forward(x),
                self.teacher_prototypes.weight.val(),
            )
            .detach()
    }

    /// The teacher (encoder and head).
    pub fn teacher(&self) -> &MomentumTarget<B> {
        &self.teacher
    }

    /// The centre of the teacher's outputs, `[K]`.
    pub fn centre(&self) -> Tensor<B, 1> {
        self.centre.value_sync()
    }

    /// Replaces the centre (after a training step's batch).
    pub fn set_centre(&self, centre: Tensor<B, 1>) {
        self.centre.update(centre.detach());
    }

    /// Whether the student's prototypes are still frozen.
    pub fn prototypes_frozen(&self) -> bool {
        self.steps.get() < self.freeze_steps
    }

    /// Before the optimiser step: drops the prototypes' gradient while they
    /// are frozen. `IB` is the backend the gradients live on.
    pub fn before_step<IB: Backend>(&self, grads: &mut GradientsParams) {
        if self.prototypes_frozen() {
            self.prototypes.freeze::<IB>(grads);
        }
    }

    /// After the optimiser step: renormalises the student's prototypes,
    /// moves the teacher (encoder, head, prototypes) towards the student
    /// with one momentum, counts the step.
    pub fn after_step(mut self, encoder: &AnyEncoder<B>) -> Self {
        let tau = self.teacher.tau();
        self.prototypes = self.prototypes.normalized();
        self.teacher = self.teacher.update(encoder, &self.head);
        self.teacher_prototypes =
            ema_update(self.teacher_prototypes, &self.prototypes, tau).normalized();
        self.steps.advance();
        self
    }
}

/// CPC v2's extraction: the masked context network over the patch grid and
/// how far below it predicts.
#[derive(Config, Debug)]
pub struct CpcExtractionConfig {
    /// The context network (its `channels` = the encoder's output channels).
    pub context: CpcContextConfig,
    /// Predict `first_step..=max_steps` rows below (fewer when the grid is
    /// short).
    pub max_steps: usize,
    /// The nearest row predicted. With overlapping patches (8 px at stride
    /// 4) the next row shares half its pixels with the context's last row,
    /// so predicting it can be solved from the overlap; bolts starts at 2.
    #[config(default = 1)]
    pub first_step: usize,
}

impl CpcExtractionConfig {
    /// Checks the context network against an encoder of `encoder_dim` channels.
    pub fn validate(&self, encoder_dim: usize) -> cssl_core::Result<()> {
        same_dim(
            "extraction.context.channels (the encoder's output channels)",
            encoder_dim,
            self.context.channels,
        )?;
        if self.max_steps == 0 {
            return Err(CsslError::config(
                "extraction.max_steps",
                "must be at least 1",
            ));
        }
        if self.first_step == 0 || self.first_step > self.max_steps {
            return Err(CsslError::config(
                "extraction.first_step",
                format!(
                    "{}: must be in 1..=max_steps ({})",
                    self.first_step, self.max_steps
                ),
            ));
        }
        Ok(())
    }

    /// Builds the context network.
    pub fn init<B: Backend>(&self, device: &B::Device) -> CpcExtraction<B> {
        CpcExtraction {
            context: self.context.init(device),
            max_steps: self.max_steps,
            first_step: self.first_step,
        }
    }
}

/// See [`CpcExtractionConfig`].
#[derive(Module, Debug)]
pub struct CpcExtraction<B: Backend> {
    /// The context network.
    pub context: CpcContext<B>,
    /// Rows ahead predicted at most.
    pub max_steps: usize,
    /// Rows ahead predicted at least.
    pub first_step: usize,
}

/// AMDIM's extraction: the 1-5, 1-7 and 5-5 comparisons between the two
/// views' maps (global 1x1 vector against the other view's 5x5 and 7x7
/// locations, and one random 5x5 location against the other view's 5x5
/// map), both directions. No parameters; it needs an encoder that returns
/// AMDIM's `[r7, r5, r1]` maps.
#[derive(Config, Debug)]
pub struct AmdimExtractionConfig {}
