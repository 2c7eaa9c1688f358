//! CPC's patch grid: a view cut into overlapping square patches, read by the
//! CPC encoder patch by patch.

use cssl_core::{CsslError, View};
use serde::{Deserialize, Serialize};

/// Cuts a view into `patch x patch` patches every `patch - overlap` pixels
/// (torch's `unfold`): CIFAR 32 px, patch 8, overlap 4 -> a 7 x 7 grid.
///
/// The grid is returned as one [`View`] whose image is the patches **tiled
/// edge to edge** in grid order (`rows * patch` by `cols * patch`), so that
/// grids stack into ordinary `[N, C, H, W]` batches; [`PatchGrid`] says how to
/// split it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patchify {
    /// Patch side in pixels.
    pub patch: usize,
    /// Overlap between neighbouring patches in pixels.
    pub overlap: usize,
}

/// The layout of a tiled patch grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchGrid {
    /// Patch rows.
    pub rows: usize,
    /// Patch columns.
    pub cols: usize,
    /// Patch side.
    pub patch: usize,
}

impl Patchify {
    /// The grid of an `height x width` input.
    pub fn grid(&self, height: usize, width: usize) -> PatchGrid {
        let stride = self.patch - self.overlap;
        PatchGrid {
            rows: (height - self.patch) / stride + 1,
            cols: (width - self.patch) / stride + 1,
            patch: self.patch,
        }
    }

    /// Checks `overlap < patch` and that the patch fits an `input`-sized view.
    pub fn validate(&self, field: &str, input: usize) -> cssl_core::Result<()> {
        if self.patch == 0 || self.overlap >= self.patch {
            return Err(CsslError::config(
                format!("{field}.overlap"),
                format!(
                    "{} must be below the patch size {}",
                    self.overlap, self.patch
                ),
            ));
        }
        if self.patch > input {
            return Err(CsslError::config(
                format!("{field}.patch"),
                format!("{} is larger than the {input} px view", self.patch),
            ));
        }
        Ok(())
    }

    /// The tiled grid of `view`.
    pub fn apply(&self, view: &View) -> View {
        let g = self.grid(view.height, view.width);
        let stride = self.patch - self.overlap;
        let (th, tw) = (g.rows * g.patch, g.cols * g.patch);
        let mut data = vec![0.0; view.channels * th * tw];
        for c in 0..view.channels {
            let src = &view.data[c * view.height * view.width..(c + 1) * view.height * view.width];
            let dst = &mut data[c * th * tw..(c + 1) * th * tw];
            for r in 0..g.rows {
                for q in 0..g.cols {
                    for y in 0..g.patch {
                        let s = (r * stride + y) * view.width + q * stride;
                        let d = (r * g.patch + y) * tw + q * g.patch;
                        dst[d..d + g.patch].copy_from_slice(&src[s..s + g.patch]);
                    }
                }
            }
        }
        View {
            channels: view.channels,
            height: th,
            width: tw,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cifar_grid_is_7x7_and_holds_the_right_pixels() {
        // A 32 px, 2-channel view whose value encodes (channel, y, x).
        let view = View {
            channels: 2,
            height: 32,
            width: 32,
            data: (0..2 * 32 * 32).map(|i| i as f32).collect(),
        };
        let p = Patchify {
            patch: 8,
            overlap: 4,
        };
        let g = p.grid(32, 32);
        assert_eq!(
            g,
            PatchGrid {
                rows: 7,
                cols: 7,
                patch: 8
            }
        );
        let t = p.apply(&view);
        assert_eq!((t.height, t.width), (56, 56));
        for c in 0..2 {
            for r in 0..7 {
                for q in 0..7 {
                    for y in 0..8 {
                        for x in 0..8 {
                            let got = t.data[c * 56 * 56 + (r * 8 + y) * 56 + q * 8 + x];
                            let want = (c * 1024 + (r * 4 + y) * 32 + q * 4 + x) as f32;
                            assert_eq!(got, want, "c{c} patch ({r},{q}) pixel ({y},{x})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn stl_and_imagenet_grids() {
        assert_eq!(
            Patchify {
                patch: 16,
                overlap: 8
            }
            .grid(64, 64)
            .rows,
            7
        );
        assert_eq!(
            Patchify {
                patch: 32,
                overlap: 16
            }
            .grid(128, 128)
            .cols,
            7
        );
        assert!(Patchify {
            patch: 8,
            overlap: 8
        }
        .validate("patchify", 32)
        .is_err());
    }
}
