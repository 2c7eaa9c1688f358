//! The named pipelines of Falcon & Cho's table, with per-dataset presets.
//! SimCLR's has its own config ([`crate::SimClrAugmentationConfig`]); the
//! others are built here from a [`DatasetPreset`].

use crate::{MultiViewAugmentation, Normalize, Op, Patchify, ViewTransform};
use serde::{Deserialize, Serialize};

/// Image size and normalisation of a dataset, and its CPC patch grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetPreset {
    /// Side of the (large) views.
    pub size: usize,
    /// Normalisation.
    pub normalize: Normalize,
    /// CPC patch size and overlap for this size.
    pub patch: Patchify,
    /// CPC's translate-with-reflect range in pixels.
    pub max_shift: usize,
}

impl DatasetPreset {
    /// Fashion-MNIST, 28 px gray. CPC grid: patch 8, overlap 4 -> 6 x 6.
    pub fn fashion_mnist() -> Self {
        Self {
            size: 28,
            normalize: Normalize::fashion_mnist(),
            patch: Patchify {
                patch: 8,
                overlap: 4,
            },
            max_shift: 3,
        }
    }

    /// CIFAR-10/100, 32 px RGB. CPC grid: patch 8, overlap 4 -> 7 x 7.
    pub fn cifar() -> Self {
        Self {
            size: 32,
            normalize: Normalize {
                mean: vec![0.4914, 0.4822, 0.4465],
                std: vec![0.2470, 0.2435, 0.2616],
            },
            patch: Patchify {
                patch: 8,
                overlap: 4,
            },
            max_shift: 4,
        }
    }

    /// STL-10 at 64 px (CPC, AMDIM). CPC grid: patch 16, overlap 8 -> 7 x 7.
    pub fn stl10() -> Self {
        Self {
            size: 64,
            normalize: Normalize {
                mean: vec![0.43, 0.42, 0.39],
                std: vec![0.27, 0.26, 0.27],
            },
            patch: Patchify {
                patch: 16,
                overlap: 8,
            },
            max_shift: 8,
        }
    }

    /// ImageNet at 128 px (CPC, AMDIM). CPC grid: patch 32, overlap 16 -> 7 x 7.
    pub fn imagenet128() -> Self {
        Self {
            size: 128,
            normalize: Normalize {
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
            },
            patch: Patchify {
                patch: 32,
                overlap: 16,
            },
            max_shift: 16,
        }
    }
}

fn rrc(size: usize, scale: [f32; 2], ratio: [f32; 2]) -> Op {
    Op::RandomResizedCrop { size, scale, ratio }
}

fn jitter(b: f32, c: f32, s: f32, h: f32, p: f32) -> Op {
    Op::ColorJitter {
        brightness: b,
        contrast: c,
        saturation: s,
        hue: h,
        p,
    }
}

fn blur(p: f32) -> Op {
    Op::GaussianBlur {
        p,
        sigma: [0.1, 2.0],
        kernel_fraction: 0.1,
    }
}

fn view(ops: Vec<Op>, d: &DatasetPreset) -> ViewTransform {
    ViewTransform {
        ops,
        normalize: d.normalize.clone(),
        patchify: None,
    }
}

const STANDARD_RATIO: [f32; 2] = [3.0 / 4.0, 4.0 / 3.0];

/// CPC v2: one view, flip, crop, jitter (0.4, 0.4, 0.4, 0.2) p 0.8, gray
/// p 0.25, translate-with-reflect p 0.8, then the patch grid.
pub fn cpc(d: &DatasetPreset) -> MultiViewAugmentation {
    let mut t = view(
        vec![
            Op::HorizontalFlip { p: 0.5 },
            rrc(d.size, [0.5, 1.0], STANDARD_RATIO),
            jitter(0.4, 0.4, 0.4, 0.2, 0.8),
            Op::RandomGrayscale { p: 0.25 },
            Op::TranslateReflect {
                p: 0.8,
                max_shift: d.max_shift,
            },
        ],
        d,
    );
    t.patchify = Some(d.patch);
    MultiViewAugmentation {
        shared: vec![],
        views: vec![t],
    }
}

/// AMDIM: one flip shared by both views, then per view a crop (area 0.3-1,
/// ratio 0.7-1.4), jitter (0.4, 0.4, 0.4, 0.2) p 0.8 and gray p 0.25.
pub fn amdim(d: &DatasetPreset) -> MultiViewAugmentation {
    let t = view(
        vec![
            rrc(d.size, [0.3, 1.0], [0.7, 1.4]),
            jitter(0.4, 0.4, 0.4, 0.2, 0.8),
            Op::RandomGrayscale { p: 0.25 },
        ],
        d,
    );
    MultiViewAugmentation {
        shared: vec![Op::HorizontalFlip { p: 0.5 }],
        views: vec![t.clone(), t],
    }
}

/// MoCo v2: crop (0.2-1), jitter (0.4, 0.4, 0.4, 0.1) p 0.8, gray p 0.2,
/// blur (sigma 0.1-2) p 0.5, flip; two views.
pub fn moco2(d: &DatasetPreset) -> MultiViewAugmentation {
    let t = view(
        vec![
            rrc(d.size, [0.2, 1.0], STANDARD_RATIO),
            jitter(0.4, 0.4, 0.4, 0.1, 0.8),
            Op::RandomGrayscale { p: 0.2 },
            blur(0.5),
            Op::HorizontalFlip { p: 0.5 },
        ],
        d,
    );
    MultiViewAugmentation {
        shared: vec![],
        views: vec![t.clone(), t],
    }
}

/// BYOL (Grill et al., 2020, table 6): crop (0.08-1), flip, jitter
/// (0.4, 0.4, 0.2, 0.1) p 0.8, gray p 0.2, then asymmetric: blur p 1.0 and no
/// solarisation on view 1, blur p 0.1 and solarisation p 0.2 on view 2.
pub fn byol(d: &DatasetPreset) -> MultiViewAugmentation {
    MultiViewAugmentation {
        shared: vec![],
        views: byol_views(d.size, [0.08, 1.0], d).to_vec(),
    }
}

/// BYOL's two asymmetric views at `size` px, cropped to `scale` of the area.
fn byol_views(size: usize, scale: [f32; 2], d: &DatasetPreset) -> [ViewTransform; 2] {
    let common = |blur_p: f32, solarize_p: f32| {
        view(
            vec![
                rrc(size, scale, STANDARD_RATIO),
                Op::HorizontalFlip { p: 0.5 },
                jitter(0.4, 0.4, 0.2, 0.1, 0.8),
                Op::RandomGrayscale { p: 0.2 },
                blur(blur_p),
                Op::Solarize {
                    p: solarize_p,
                    threshold: 0.5,
                },
            ],
            d,
        )
    };
    [common(1.0, 0.0), common(0.1, 0.2)]
}

/// DINO (Caron et al., 2021) multi-crop: two global crops at the preset's
/// side, cropped to `global_scale` of the area, with BYOL's asymmetric blur
/// and solarisation (the teacher sees these), then `count` local crops of
/// `size` px at `scale` of the area with flip, jitter (0.4, 0.4, 0.2, 0.1)
/// p 0.8, gray p 0.2 and blur p 0.5. DINO's ImageNet default: global 224 px
/// at 0.4-1, local 8 x 96 px at 0.05-0.4.
pub fn dino(
    d: &DatasetPreset,
    global_scale: [f32; 2],
    (size, count, scale): (usize, usize, [f32; 2]),
) -> MultiViewAugmentation {
    let local = view(
        vec![
            rrc(size, scale, STANDARD_RATIO),
            Op::HorizontalFlip { p: 0.5 },
            jitter(0.4, 0.4, 0.2, 0.1, 0.8),
            Op::RandomGrayscale { p: 0.2 },
            blur(0.5),
        ],
        d,
    );
    let mut views = byol_views(d.size, global_scale, d).to_vec();
    views.extend(std::iter::repeat_n(local, count));
    MultiViewAugmentation {
        shared: vec![],
        views,
    }
}

/// SwAV multi-crop: for each `(size, count, scale)` group, `count` views of
/// crop, flip, jitter (0.8, 0.8, 0.8, 0.2) p 0.8, gray p 0.2, blur p 0.5.
/// STL-10 default: `[(96, 2, [0.33, 1]), (36, 4, [0.10, 0.33])]`.
pub fn swav(d: &DatasetPreset, crops: &[(usize, usize, [f32; 2])]) -> MultiViewAugmentation {
    let views = crops
        .iter()
        .flat_map(|&(size, count, scale)| {
            let t = view(
                vec![
                    rrc(size, scale, STANDARD_RATIO),
                    Op::HorizontalFlip { p: 0.5 },
                    jitter(0.8, 0.8, 0.8, 0.2, 0.8),
                    Op::RandomGrayscale { p: 0.2 },
                    blur(0.5),
                ],
                d,
            );
            std::iter::repeat_n(t, count)
        })
        .collect();
    MultiViewAugmentation {
        shared: vec![],
        views,
    }
}

/// SwAV's STL-10 crops: 2 x 96 px (area 0.33-1) and 4 x 36 px (0.10-0.33).
pub const SWAV_STL10_CROPS: [(usize, usize, [f32; 2]); 2] =
    [(96, 2, [0.33, 1.0]), (36, 4, [0.10, 0.33])];

/// YADIM, "the CPC and AMDIM pipelines merged": AMDIM's structure (one shared
/// flip, two views, each cropped, jittered (0.4, 0.4, 0.4, 0.2) p 0.8 and
/// grayed p 0.25, as both pipelines do) plus CPC's translate-with-reflect
/// p 0.8. CPC's patch grid is *not* merged: YADIM compares the last feature
/// maps of whole views, so it needs no patches. Crops use the wider of the two
/// area ranges (AMDIM's 0.3-1).
pub fn yadim(d: &DatasetPreset) -> MultiViewAugmentation {
    let t = view(
        vec![
            rrc(d.size, [0.3, 1.0], [0.7, 1.4]),
            jitter(0.4, 0.4, 0.4, 0.2, 0.8),
            Op::RandomGrayscale { p: 0.25 },
            Op::TranslateReflect {
                p: 0.8,
                max_shift: d.max_shift,
            },
        ],
        d,
    );
    MultiViewAugmentation {
        shared: vec![Op::HorizontalFlip { p: 0.5 }],
        views: vec![t.clone(), t],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimClrAugmentationConfig;
    use cssl_core::{Augmentation, Image};

    fn all(d: &DatasetPreset) -> Vec<(&'static str, MultiViewAugmentation)> {
        vec![
            ("cpc", cpc(d)),
            ("amdim", amdim(d)),
            (
                "simclr",
                SimClrAugmentationConfig {
                    size: d.size,
                    normalize: d.normalize.clone(),
                    ..SimClrAugmentationConfig::cifar()
                }
                .init(),
            ),
            ("moco2", moco2(d)),
            ("byol", byol(d)),
            (
                "swav",
                swav(d, &[(d.size, 2, [0.33, 1.0]), (d.size / 2, 4, [0.1, 0.33])]),
            ),
            ("yadim", yadim(d)),
        ]
    }

    #[test]
    fn every_pipeline_is_valid_and_deterministic_per_seed() {
        for d in [
            DatasetPreset::cifar(),
            DatasetPreset::fashion_mnist(),
            DatasetPreset::stl10(),
        ] {
            let c = d.normalize.mean.len();
            let img = Image::new(
                d.size + 4,
                d.size,
                c,
                (0..(d.size + 4) * d.size * c)
                    .map(|i| (i * 31 % 256) as u8)
                    .collect(),
            );
            for (name, p) in all(&d) {
                p.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
                let a = p.views(&img, 11);
                assert_eq!(a, p.views(&img, 11), "{name} not deterministic");
                assert_ne!(a, p.views(&img, 12), "{name} ignores the seed");
                for (v, view) in a.0.iter().enumerate() {
                    assert_eq!(
                        (view.channels, view.height, view.width),
                        p.view_shape(v, (c, d.size, d.size + 4)),
                        "{name} view {v}"
                    );
                }
            }
        }
    }

    #[test]
    fn amdim_views_share_one_flip() {
        // A left-bright image: with crops covering everything and no colour
        // ops, both views must be flipped the same way for every seed.
        let d = DatasetPreset::fashion_mnist();
        let mut p = amdim(&d);
        for t in &mut p.views {
            t.ops = vec![];
        }
        let img = Image::new(
            28,
            28,
            1,
            (0..784)
                .map(|i| if i % 28 < 14 { 255 } else { 0 })
                .collect(),
        );
        let mut flips = [0, 0];
        for seed in 0..40 {
            let v = p.views(&img, seed);
            let left = |k: usize| v.0[k].data[0] > 0.0;
            assert_eq!(left(0), left(1), "seed {seed}: views flipped differently");
            flips[left(0) as usize] += 1;
        }
        assert!(
            flips[0] > 5 && flips[1] > 5,
            "the shared flip never varies: {flips:?}"
        );
    }

    #[test]
    fn cpc_gives_a_tiled_7x7_grid_on_cifar() {
        let p = cpc(&DatasetPreset::cifar());
        assert_eq!(p.view_shape(0, (3, 32, 32)), (3, 56, 56));
        let v = p.views(&Image::new(32, 32, 3, vec![100; 3072]), 0);
        assert_eq!(v.0.len(), 1);
        assert_eq!((v.0[0].height, v.0[0].width), (56, 56));
    }

    #[test]
    fn swav_multicrop_sizes() {
        let p = swav(&DatasetPreset::stl10(), &SWAV_STL10_CROPS);
        let sizes: Vec<usize> = (0..p.num_views())
            .map(|v| p.view_shape(v, (3, 96, 96)).1)
            .collect();
        assert_eq!(sizes, vec![96, 96, 36, 36, 36, 36]);
    }
}
