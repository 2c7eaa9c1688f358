use burn::tensor::{backend::Backend, Tensor};

/// Every stage's output of an [`Encoder`](crate::Encoder), shallowest first.
///
/// AMDIM and CPC compare intermediate maps, so encoders return all of them; most
/// methods use only [`FeatureMaps::last`] or [`FeatureMaps::pooled`]. A
/// Vision Transformer returns its patch tokens as one map (a grid of
/// `height / patch x width / patch` tokens) and its class token beside it.
///
/// # Shapes
/// Each map is `[batch, channels_s, height_s, width_s]`; the token
/// `[batch, channels]` of the last map's width.
#[derive(Clone, Debug)]
pub struct FeatureMaps<B: Backend> {
    /// The maps, shallowest first.
    pub maps: Vec<Tensor<B, 4>>,
    /// A summary token of the whole image, for encoders that have one (a
    /// Vision Transformer's class token after its final norm).
    pub token: Option<Tensor<B, 2>>,
}

impl<B: Backend> FeatureMaps<B> {
    /// Wraps the stage outputs.
    pub fn new(maps: Vec<Tensor<B, 4>>) -> Self {
        assert!(!maps.is_empty(), "FeatureMaps: an encoder returned no maps");
        Self { maps, token: None }
    }

    /// Wraps the stage outputs and the encoder's summary token.
    ///
    /// # Shapes
    /// `token`: `[batch, channels]` of the last map.
    pub fn with_token(maps: Vec<Tensor<B, 4>>, token: Tensor<B, 2>) -> Self {
        Self {
            token: Some(token),
            ..Self::new(maps)
        }
    }

    /// The deepest map.
    pub fn last(&self) -> Tensor<B, 4> {
        self.maps.last().expect("non-empty by construction").clone()
    }

    /// The image's feature vector: the encoder's summary token where it has
    /// one (a ViT's class token, as timm's `global_pool='token'`), else the
    /// deepest map, global-average-pooled.
    ///
    /// # Shapes
    /// Returns `[batch, channels]`.
    pub fn pooled(&self) -> Tensor<B, 2> {
        if let Some(token) = &self.token {
            return token.clone();
        }
        self.average_pooled()
    }

    /// The deepest map, global-average-pooled (a ViT's patch tokens averaged,
    /// its class token left out).
    ///
    /// # Shapes
    /// Returns `[batch, channels]`.
    pub fn average_pooled(&self) -> Tensor<B, 2> {
        let last = self.last();
        let [n, c, h, w] = last.dims();
        last.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
    }

    /// Number of stages.
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Always false: there is at least one map.
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}

/// Rows divided by their L2 norm, the norm floored at 1e-8 (as PyTorch's
/// `F.normalize`). Cosine similarity, BYOL's loss, SwAV's prototypes and the
/// collapse monitor all start here.
///
/// # Shapes
/// `[n, d]` -> `[n, d]`.
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-8);
    x / norm
}

struct Materialize;

impl<B: Backend> burn::module::ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        // Reading a lazily initialised parameter draws its values now.
        let _ = param.val();
    }
}

/// Draws every lazily initialised parameter of `module` now, in the module's
/// field order, from the backend's seeded RNG.
///
/// burn initialises parameters lazily, on first use: without this, whatever a
/// method draws between building its encoder and first using it (a queue,
/// prototypes, a momentum copy) would shift the encoder's random numbers, and
/// "the same encoder at random init" would differ between methods.
pub fn materialize<B: Backend, M: burn::module::Module<B>>(module: M) -> M {
    module.visit(&mut Materialize);
    module
}
