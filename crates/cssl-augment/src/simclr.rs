use crate::{MultiViewAugmentation, Normalize, Op, ViewTransform};
use serde::{Deserialize, Serialize};

/// SimCLR's pipeline (Chen et al., 2020, appendix A): "random crop and resize
/// (with random flip), colour distortions, and Gaussian blur", two views drawn
/// from the same distribution.
///
/// Defaults are the paper's ImageNet settings; [`Self::cifar`] and
/// [`Self::fashion_mnist`] follow its CIFAR-10 settings (jitter strength 0.5,
/// no blur on small images).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimClrAugmentationConfig {
    /// Output side of the crops.
    pub size: usize,
    /// Crop area range.
    pub crop_scale: [f32; 2],
    /// Flip probability.
    pub flip_p: f32,
    /// Colour-distortion strength `s`: jitter (0.8s, 0.8s, 0.8s, 0.2s).
    pub jitter_strength: f32,
    /// Probability of applying the jitter.
    pub jitter_p: f32,
    /// Probability of grayscale.
    pub gray_p: f32,
    /// Probability of blur (kernel 10% of the side, sigma 0.1-2).
    pub blur_p: f32,
    /// Final normalisation.
    pub normalize: Normalize,
}

impl Default for SimClrAugmentationConfig {
    fn default() -> Self {
        Self {
            size: 224,
            crop_scale: [0.08, 1.0],
            flip_p: 0.5,
            jitter_strength: 1.0,
            jitter_p: 0.8,
            gray_p: 0.2,
            blur_p: 0.5,
            normalize: Normalize {
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
        }
    }
}

impl SimClrAugmentationConfig {
    /// CIFAR-10 (32 px): s = 0.5, no blur.
    pub fn cifar() -> Self {
        Self {
            size: 32,
            jitter_strength: 0.5,
            blur_p: 0.0,
            normalize: Normalize {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![0.2470, 0.2435, 0.2616],
            },
            ..Self::default()
        }
    }

    /// Fashion-MNIST (28 px, grayscale): the CIFAR settings at 28 px. On gray
    /// images the jitter acts through brightness and contrast only.
    pub fn fashion_mnist() -> Self {
        Self {
            size: 28,
            crop_scale: [0.2, 1.0],
            normalize: Normalize::fashion_mnist(),
            ..Self::cifar()
        }
    }

    /// The per-view transform.
    pub fn view_transform(&self) -> ViewTransform {
        let s = self.jitter_strength;
        ViewTransform {
            ops: vec![
                Op::RandomResizedCrop {
                    size: self.size,
                    scale: self.crop_scale,
                    ratio: [3.0 / 4.0, 4.0 / 3.0],
                },
                Op::HorizontalFlip { p: self.flip_p },
                Op::ColorJitter {
                    brightness: 0.8 * s,
                    contrast: 0.8 * s,
                    saturation: 0.8 * s,
                    hue: 0.2 * s,
                    p: self.jitter_p,
                },
                Op::RandomGrayscale { p: self.gray_p },
                Op::GaussianBlur {
                    p: self.blur_p,
                    sigma: [0.1, 2.0],
                    kernel_fraction: 0.1,
                },
            ],
            normalize: self.normalize.clone(),
            patchify: None,
        }
    }

    /// The two-view pipeline.
    pub fn init(&self) -> MultiViewAugmentation {
        let t = self.view_transform();
        MultiViewAugmentation {
            shared: vec![],
            views: vec![t.clone(), t],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cssl_core::{Augmentation, Image};

    fn image(seed: u8) -> Image {
        Image::new(
            28,
            28,
            1,
            (0..784)
                .map(|i| ((i * 7 + seed as usize) % 256) as u8)
                .collect(),
        )
    }

    #[test]
    fn deterministic_per_seed() {
        let aug = SimClrAugmentationConfig::fashion_mnist().init();
        aug.validate().unwrap();
        let img = image(1);
        let a = aug.views(&img, 42);
        assert_eq!(a, aug.views(&img, 42));
        let b = aug.views(&img, 43);
        assert_ne!(a, b);
        // The two views of one seed differ from each other too.
        assert_ne!(a.0[0], a.0[1]);
        assert_eq!(a.0[0].data.len(), 28 * 28);
        assert_eq!(aug.view_shape(0, (1, 28, 28)), (1, 28, 28));
    }

    #[test]
    fn rgb_pipeline_runs_with_blur() {
        let cfg = SimClrAugmentationConfig {
            size: 32,
            blur_p: 1.0,
            ..SimClrAugmentationConfig::cifar()
        };
        let aug = cfg.init();
        let img = Image::new(
            40,
            36,
            3,
            (0..40 * 36 * 3).map(|i| (i % 256) as u8).collect(),
        );
        let v = aug.views(&img, 5);
        assert_eq!((v.0[1].channels, v.0[1].height, v.0[1].width), (3, 32, 32));
        assert_eq!(v, aug.views(&img, 5));
    }

    #[test]
    fn config_roundtrips_through_json() {
        let cfg = SimClrAugmentationConfig::fashion_mnist();
        let s = serde_json::to_string(&cfg).unwrap();
        assert_eq!(
            serde_json::from_str::<SimClrAugmentationConfig>(&s).unwrap(),
            cfg
        );
    }
}
