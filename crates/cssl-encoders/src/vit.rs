//! A Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16
//! Words"), as timm's `VisionTransformer` builds it with no classifier
//! (`num_classes=0`): a patch embedding (a `patch x patch` convolution at
//! stride `patch`), a class token, learned position embeddings, `depth`
//! pre-norm blocks (`x + attn(norm1(x))`, then `x + mlp(norm2(x))`, GELU,
//! biases on the fused `qkv`), and a final layer norm (eps `1e-6`).
//!
//! Its modules are named as timm's (`patch_embed.proj`, `cls_token`,
//! `pos_embed`, `blocks.{i}.norm1`, `blocks.{i}.attn.qkv`, `blocks.{i}.attn.proj`,
//! `blocks.{i}.norm2`, `blocks.{i}.mlp.fc1`, `blocks.{i}.mlp.fc2`, `norm`), so
//! that with burn-store's PyTorch adapters (linear weights transposed,
//! `gamma`/`beta` as `weight`/`bias`) a state dict goes both ways.
//!
//! It returns its patch tokens after the final norm as one feature map
//! (`[batch, dim, height / patch, width / patch]`), which every extraction
//! reads as it reads a CNN's last map, and the class token beside it
//! ([`FeatureMaps::pooled`] returns the class token, as timm's
//! `global_pool='token'`).
//!
//! Views of another size than `image_size` (multi-crop's small crops) are
//! read with the position embeddings of the patch grid resized bicubically
//! to the view's grid, as DINO and timm do; the class token's embedding is
//! kept.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::{CsslError, Encoder, FeatureMaps};

/// A Vision Transformer as timm's `VisionTransformer` with no classifier:
/// patch embedding, class token, learned position embeddings, pre-norm
/// blocks, final layer norm (see [`Vit`]).
#[derive(Config, Debug)]
pub struct VitConfig {
    /// Image channels (3 RGB, 1 grayscale).
    #[config(default = 3)]
    pub in_channels: usize,
    /// The side of the square images the position embeddings are learned
    /// for (timm's `img_size`).
    pub image_size: usize,
    /// The side of a square patch (timm's `patch_size`).
    pub patch_size: usize,
    /// The token width (timm's `embed_dim`).
    pub dim: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads per block (`dim` must be a multiple).
    pub heads: usize,
    /// The MLP's hidden width over `dim` (timm: 4).
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
}

impl VitConfig {
    /// ViT-Tiny (`vit_tiny_patch{p}_{s}`): width 192, 12 blocks, 3 heads.
    pub fn tiny(in_channels: usize, image_size: usize, patch_size: usize) -> Self {
        Self::new(image_size, patch_size, 192, 12, 3).with_in_channels(in_channels)
    }

    /// ViT-Small (`vit_small_patch{p}_{s}`): width 384, 12 blocks, 6 heads.
    pub fn small(in_channels: usize, image_size: usize, patch_size: usize) -> Self {
        Self::new(image_size, patch_size, 384, 12, 6).with_in_channels(in_channels)
    }

    /// ViT-Base (`vit_base_patch{p}_{s}`): width 768, 12 blocks, 12 heads.
    pub fn base(in_channels: usize, image_size: usize, patch_size: usize) -> Self {
        Self::new(image_size, patch_size, 768, 12, 12).with_in_channels(in_channels)
    }

    /// By timm's size name: `tiny`, `small` or `base`.
    ///
    /// # Errors
    /// Another name, as a config error on `encoder.size`.
    pub fn by_size(
        size: &str,
        in_channels: usize,
        image_size: usize,
        patch_size: usize,
    ) -> cssl_core::Result<Self> {
        match size {
            "tiny" => Ok(Self::tiny(in_channels, image_size, patch_size)),
            "small" => Ok(Self::small(in_channels, image_size, patch_size)),
            "base" => Ok(Self::base(in_channels, image_size, patch_size)),
            other => Err(CsslError::config(
                "encoder.size",
                format!("`{other}`: ViT sizes are tiny, small and base"),
            )),
        }
    }

    /// Patches along one side of an `image_size` image.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// The MLP's hidden width (timm: `int(dim * mlp_ratio)`).
    pub fn mlp_dim(&self) -> usize {
        (self.dim as f64 * self.mlp_ratio) as usize
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// A zero size, a width that the heads do not divide, or an image side
    /// that the patch does not divide; the error names the field.
    pub fn validate(&self) -> cssl_core::Result<()> {
        let positive = [
            ("encoder.in_channels", self.in_channels),
            ("encoder.image_size", self.image_size),
            ("encoder.patch_size", self.patch_size),
            ("encoder.dim", self.dim),
            ("encoder.depth", self.depth),
            ("encoder.heads", self.heads),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(CsslError::config(field, "must be positive"));
            }
        }
        if self.dim % self.heads != 0 {
            return Err(CsslError::config(
                "encoder.heads",
                format!("{}: must divide the width {}", self.heads, self.dim),
            ));
        }
        if self.image_size % self.patch_size != 0 {
            return Err(CsslError::config(
                "encoder.patch_size",
                format!(
                    "{}: must divide the image size {}",
                    self.patch_size, self.image_size
                ),
            ));
        }
        if !(self.mlp_ratio > 0.0) || self.mlp_dim() == 0 {
            return Err(CsslError::config(
                "encoder.mlp_ratio",
                format!("{}: must give a positive hidden width", self.mlp_ratio),
            ));
        }
        Ok(())
    }

    /// Builds the network (call [`Self::validate`] first for typed errors).
    ///
    /// Weights as timm's default (`weight_init=''`): linear weights normal
    /// with std 0.02 (timm truncates at +-2, i.e. 100 std: the same draw in
    /// practice) and zero biases, position embeddings normal std 0.02, the
    /// class token normal std 1e-6, the patch embedding as PyTorch's
    /// convolution default, layer norms at 1 and 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vit<B> {
        let p = self.patch_size;
        let linear = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        let zero_bias = |mut l: Linear<B>| {
            let o = l.weight.dims()[1];
            l.bias = Some(Initializer::Zeros.init([o], device));
            l
        };
        let norm = || {
            LayerNormConfig::new(self.dim)
                .with_epsilon(1e-6)
                .init(device)
        };
        let patch_embed = PatchEmbed {
            proj: Conv2dConfig::new([self.in_channels, self.dim], [p, p])
                .with_stride([p, p])
                .init(device),
        };
        let tokens = self.grid() * self.grid() + 1;
        let cls_token = Initializer::Normal {
            mean: 0.0,
            std: 1e-6,
        }
        .init([1, 1, self.dim], device);
        let pos_embed = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        }
        .init([1, tokens, self.dim], device);
        let blocks = (0..self.depth)
            .map(|_| VitBlock {
                norm1: norm(),
                attn: Attention {
                    qkv: zero_bias(linear(self.dim, 3 * self.dim)),
                    proj: zero_bias(linear(self.dim, self.dim)),
                    heads: self.heads,
                },
                norm2: norm(),
                mlp: Mlp {
                    fc1: zero_bias(linear(self.dim, self.mlp_dim())),
                    fc2: zero_bias(linear(self.mlp_dim(), self.dim)),
                },
            })
            .collect();
        Vit {
            patch_embed,
            cls_token,
            pos_embed,
            blocks,
            norm: norm(),
            patch_size: p,
            grid: self.grid(),
        }
    }
}

/// The patch embedding: a `patch x patch` convolution at stride `patch`.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// The convolution (timm's `patch_embed.proj`).
    pub proj: Conv2d<B>,
}

/// Multi-head self-attention with one fused `qkv` projection.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Queries, keys and values, `dim -> 3 dim`.
    pub qkv: Linear<B>,
    /// The output projection.
    pub proj: Linear<B>,
    heads: usize,
}

impl<B: Backend> Attention<B> {
    /// # Shapes
    /// `x`: `[batch, tokens, dim]` -> `[batch, tokens, dim]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [n, t, d] = x.dims();
        let h = self.heads;
        let dh = d / h;
        // [n, t, 3, h, dh] -> [3, n, h, t, dh], as timm's reshape and permute.
        let qkv = self
            .qkv
            .forward(x)
            .reshape([n, t, 3, h, dh])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| {
            qkv.clone()
                .slice([i..i + 1, 0..n, 0..h, 0..t, 0..dh])
                .reshape([n, h, t, dh])
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt();
        let out = softmax(scores, 3).matmul(v);
        self.proj.forward(out.swap_dims(1, 2).reshape([n, t, d]))
    }
}

/// The block's MLP: `fc1`, GELU, `fc2`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `dim -> mlp_dim`.
    pub fc1: Linear<B>,
    /// `mlp_dim -> dim`.
    pub fc2: Linear<B>,
}

/// A pre-norm transformer block.
#[derive(Module, Debug)]
pub struct VitBlock<B: Backend> {
    /// Before attention.
    pub norm1: LayerNorm<B>,
    /// Self-attention.
    pub attn: Attention<B>,
    /// Before the MLP.
    pub norm2: LayerNorm<B>,
    /// The MLP.
    pub mlp: Mlp<B>,
}

impl<B: Backend> VitBlock<B> {
    /// `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.
    ///
    /// # Shapes
    /// `x`: `[batch, tokens, dim]` -> same.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x));
        let hidden = gelu(self.mlp.fc1.forward(self.norm2.forward(x.clone())));
        x + self.mlp.fc2.forward(hidden)
    }
}

/// A Vision Transformer (Dosovitskiy et al., 2021) as timm builds it, with
/// timm's parameter names; built by [`VitConfig`]. It returns its patch
/// tokens after the final norm as one feature map and the class token
/// beside it ([`FeatureMaps::pooled`] is the class token); smaller views
/// read the patch grid's position embeddings resized bicubically.
#[derive(Module, Debug)]
pub struct Vit<B: Backend> {
    /// The patch embedding.
    pub patch_embed: PatchEmbed<B>,
    /// The class token, `[1, 1, dim]`.
    pub cls_token: Param<Tensor<B, 3>>,
    /// Position embeddings of the class token and the patch grid,
    /// `[1, 1 + grid^2, dim]`.
    pub pos_embed: Param<Tensor<B, 3>>,
    /// The transformer blocks.
    pub blocks: Vec<VitBlock<B>>,
    /// The final layer norm.
    pub norm: LayerNorm<B>,
    patch_size: usize,
    grid: usize,
}

impl<B: Backend> Vit<B> {
    /// The position embeddings for an `h x w` patch grid: the learned ones,
    /// the patch part resized bicubically when the grid differs.
    ///
    /// # Shapes
    /// Returns `[1, 1 + h w, dim]`.
    fn position_embeddings(&self, h: usize, w: usize) -> Tensor<B, 3> {
        let pos = self.pos_embed.val();
        if h == self.grid && w == self.grid {
            return pos;
        }
        let [_, tokens, d] = pos.dims();
        let g = self.grid;
        let cls = pos.clone().slice([0..1, 0..1, 0..d]);
        let grid = pos
            .slice([0..1, 1..tokens, 0..d])
            .reshape([1, g, g, d])
            .permute([0, 3, 1, 2]);
        let resized = interpolate(
            grid,
            [h, w],
            InterpolateOptions::new(InterpolateMode::Bicubic),
        )
        .permute([0, 2, 3, 1])
        .reshape([1, h * w, d]);
        Tensor::cat(vec![cls, resized], 1)
    }

    /// # Shapes
    /// `x`: `[batch, in_channels, height, width]`, sides multiples of the
    /// patch. Returns one map, `[batch, dim, height / patch, width / patch]`
    /// (the patch tokens after the final norm), and the class token
    /// `[batch, dim]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        let patches = self.patch_embed.proj.forward(x);
        let [n, d, h, w] = patches.dims();
        let tokens = patches.reshape([n, d, h * w]).swap_dims(1, 2);
        let cls = self.cls_token.val().expand([n, 1, d]);
        let mut x = Tensor::cat(vec![cls, tokens], 1) + self.position_embeddings(h, w);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.norm.forward(x);
        let t = 1 + h * w;
        let token = x.clone().slice([0..n, 0..1, 0..d]).reshape([n, d]);
        let grid = x
            .slice([0..n, 1..t, 0..d])
            .swap_dims(1, 2)
            .reshape([n, d, h, w]);
        FeatureMaps::with_token(vec![grid], token)
    }

    /// The side of a patch.
    pub fn patch_size(&self) -> usize {
        self.patch_size
    }
}

impl<B: Backend> Encoder<B> for Vit<B> {
    fn encode(&self, x: Tensor<B, 4>) -> FeatureMaps<B> {
        self.forward(x)
    }

    fn out_channels(&self) -> usize {
        self.norm.gamma.dims()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type B = Flex;

    #[test]
    fn timm_parameter_counts() {
        // timm 1.0 (`sum(p.numel() for p in m.parameters())`):
        //   timm.create_model('vit_tiny_patch16_224', num_classes=0)  ->  5,524,416
        //   timm.create_model('vit_small_patch16_224', num_classes=0) -> 21,665,664
        //   timm.create_model('vit_base_patch16_224', num_classes=0)  -> 85,798,656
        //   timm.create_model('vit_tiny_patch16_224', num_classes=0, img_size=28,
        //                     patch_size=4, in_chans=1)                ->  5,351,808
        // (by hand: 12 blocks of 12 d^2 + 13 d, the patch embedding
        // 768 d + d, 197 d of position embeddings, d of class token, 2 d of
        // final norm).
        type AD = Autodiff<Flex>;
        let d = Default::default();
        for (config, want) in [
            (VitConfig::tiny(3, 224, 16), 5_524_416),
            (VitConfig::small(3, 224, 16), 21_665_664),
            (VitConfig::base(3, 224, 16), 85_798_656),
            (VitConfig::tiny(1, 28, 4), 5_351_808),
        ] {
            let vit = config.init::<AD>(&d);
            assert_eq!(crate::trainable_params(&vit), want, "{config:?}");
            // No buffers: burn's count is the same.
            assert_eq!(vit.num_params(), want);
        }
    }

    #[test]
    fn tokens_come_back_as_a_grid_with_the_class_token_beside_it() {
        let d = Default::default();
        let vit = VitConfig::new(28, 4, 32, 2, 4)
            .with_in_channels(1)
            .init::<B>(&d);
        let x = Tensor::<B, 4>::random([3, 1, 28, 28], Distribution::Default, &d);
        let maps = vit.encode(x.clone());
        assert_eq!(maps.len(), 1);
        assert_eq!(maps.last().dims(), [3, 32, 7, 7]);
        assert_eq!(maps.pooled().dims(), [3, 32]);
        assert_eq!(maps.average_pooled().dims(), [3, 32]);
        assert_eq!(vit.out_channels(), 32);
        // The final layer norm: every token has mean 0 and variance about 1
        // over its width (a little under: at init the class token's width
        // varies by ~0.02^2, on which eps = 1e-6 weighs about 1e-3).
        let token = maps.pooled();
        token
            .clone()
            .mean_dim(1)
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::zeros::<f32, _>([3, 1]),
                Tolerance::absolute(1e-5),
            );
        token.var_bias(1).into_data().assert_approx_eq::<f32>(
            &TensorData::ones::<f32, _>([3, 1]),
            Tolerance::absolute(5e-3),
        );
        // Each image's tokens depend on that image only.
        let one = vit.encode(x.slice([1..2, 0..1, 0..28, 0..28])).pooled();
        one.into_data().assert_approx_eq::<f32>(
            &maps.pooled().slice([1..2, 0..32]).into_data(),
            Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn smaller_views_read_resized_position_embeddings_and_train() {
        type AD = Autodiff<Flex>;
        let d = Default::default();
        let vit = VitConfig::new(28, 4, 16, 1, 2)
            .with_in_channels(1)
            .init::<AD>(&d);
        // A 12 px crop: a 3x3 grid, position embeddings resized from 7x7.
        let x = Tensor::<AD, 4>::random([2, 1, 12, 12], Distribution::Default, &d);
        let maps = vit.encode(x);
        assert_eq!(maps.last().dims(), [2, 16, 3, 3]);
        // (One channel each: a layer norm's outputs sum to a constant over
        // its width, so the sum of every channel has no gradient.)
        let loss = maps.pooled().slice([0..2, 0..1]).sum()
            + maps.last().slice([0..2, 0..1, 0..3, 0..3]).sum();
        let grads = loss.backward();
        let g = vit
            .pos_embed
            .grad(&grads)
            .expect("position embeddings get a gradient");
        assert_eq!(g.dims(), [1, 50, 16]);
        assert!(g.abs().sum().into_scalar() > 0.0);
        assert!(vit.cls_token.grad(&grads).is_some());
    }

    #[test]
    fn bad_sizes_are_config_errors_naming_the_field() {
        let e = VitConfig::new(28, 4, 30, 1, 4).validate().unwrap_err();
        assert!(e.to_string().contains("encoder.heads"), "{e}");
        let e = VitConfig::new(28, 5, 32, 1, 4).validate().unwrap_err();
        assert!(e.to_string().contains("encoder.patch_size"), "{e}");
        let e = VitConfig::by_size("huge", 3, 224, 16).unwrap_err();
        assert!(e.to_string().contains("encoder.size"), "{e}");
        assert!(VitConfig::by_size("small", 3, 224, 16)
            .unwrap()
            .validate()
            .is_ok());
    }
}
