//! AMDIM's multi-scale comparisons (Bachman et al., 2019): the global (1x1)
//! vector of one view against every location of the other view's 5x5 and 7x7
//! maps, and one random location of one view's 5x5 map against every 5x5
//! location of the other ("1-5, 1-7, 5-5"), each in both directions.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use cssl_core::{FeatureMaps, Similarity};

/// Scaled-dot scores of one source vector per sample against every location
/// of every sample's target map.
///
/// # Shapes
/// `src`: `[N, D]`, `trg`: `[N, D, H, W]`. Returns `[N, N, H W]`, divided by
/// `sqrt(D)` (AMDIM's scores, before clipping).
pub fn global_to_local<B: Backend>(src: Tensor<B, 2>, trg: Tensor<B, 4>) -> Tensor<B, 3> {
    let [n, d, h, w] = trg.dims();
    let t = trg.permute([1, 0, 2, 3]).reshape([d, n * h * w]);
    (src.matmul(t) / (d as f64).sqrt()).reshape([n, n, h * w])
}

/// Scores of one source vector per sample against every location of every
/// sample's target map, under any similarity (AMDIM's own is the scaled dot
/// of [`global_to_local`]).
///
/// # Shapes
/// `src`: `[N, D]`, `trg`: `[N, D, H, W]`. Returns `[N, N, H W]`.
pub fn local_scores<B: Backend, S: Similarity<B>>(
    similarity: &S,
    src: Tensor<B, 2>,
    trg: Tensor<B, 4>,
) -> Tensor<B, 3> {
    let [n, d, h, w] = trg.dims();
    let t = trg.permute([0, 2, 3, 1]).reshape([n * h * w, d]);
    similarity.scores(src, t).reshape([n, n, h * w])
}

/// The vector at location `locations[i]` (row-major) of sample `i`'s map.
///
/// # Shapes
/// `map`: `[N, D, H, W]` -> `[N, D]`.
pub fn pick_locations<B: Backend>(map: Tensor<B, 4>, locations: &[usize]) -> Tensor<B, 2> {
    let [n, d, h, w] = map.dims();
    assert_eq!(
        locations.len(),
        n,
        "pick_locations: {} locations for {n} samples",
        locations.len()
    );
    let idx: Vec<i64> = locations
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l as i64, d))
        .collect();
    let idx = Tensor::<B, 3, Int>::from_data(TensorData::new(idx, [n, d, 1]), &map.device());
    map.reshape([n, d, h * w]).gather(2, idx).reshape([n, d])
}

/// The six score tensors of one AMDIM step, as `(a -> b, b -> a)` pairs for
/// 1-5, 1-7 and 5-5, ready for `cssl_losses::amdim_nce` (AMDIM scores with
/// the scaled dot, `cssl_losses::ScaledDotSimilarity`).
///
/// `a` and `b` are the two views' maps as the AMDIM encoder returns them:
/// `[r7, r5, r1]`. `loc_a`, `loc_b`: the random 5x5 location per sample used
/// as the 5-5 source.
pub fn amdim_comparisons<B: Backend, S: Similarity<B>>(
    similarity: &S,
    a: &FeatureMaps<B>,
    b: &FeatureMaps<B>,
    loc_a: &[usize],
    loc_b: &[usize],
) -> Vec<(Tensor<B, 3>, Tensor<B, 3>)> {
    assert!(
        a.len() == 3 && b.len() == 3,
        "amdim_comparisons: expected [r7, r5, r1] maps, got {} and {}",
        a.len(),
        b.len()
    );
    let (r7a, r5a, r1a) = (a.maps[0].clone(), a.maps[1].clone(), a.maps[2].clone());
    let (r7b, r5b, r1b) = (b.maps[0].clone(), b.maps[1].clone(), b.maps[2].clone());
    let g = |m: Tensor<B, 4>| {
        let [n, d, _, _] = m.dims();
        m.reshape([n, d])
    };
    let (ga, gb) = (g(r1a), g(r1b));
    let (la, lb) = (
        pick_locations(r5a.clone(), loc_a),
        pick_locations(r5b.clone(), loc_b),
    );
    let s = |src, trg| local_scores(similarity, src, trg);
    vec![
        (s(ga.clone(), r5b.clone()), s(gb.clone(), r5a.clone())),
        (s(ga, r7b), s(gb, r7a)),
        (s(la, r5b), s(lb, r5a)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    #[test]
    fn scores_are_scaled_dots_at_the_right_places() {
        let d = Default::default();
        let src = Tensor::<Flex, 2>::random([2, 4], Distribution::Normal(0.0, 1.0), &d);
        let trg = Tensor::<Flex, 4>::random([2, 4, 3, 3], Distribution::Normal(0.0, 1.0), &d);
        let s = global_to_local(src.clone(), trg.clone());
        assert_eq!(s.dims(), [2, 2, 9]);
        // s[1, 0, 5] = <src_1, trg_0 at (1, 2)> / 2.
        let v: f32 = (src.slice([1..2, 0..4]).reshape([4])
            * trg.clone().slice([0..1, 0..4, 1..2, 2..3]).reshape([4]))
        .sum()
        .into_scalar()
            / 2.0;
        let got: f32 = s.slice([1..2, 0..1, 5..6]).reshape([1]).into_scalar();
        assert!((v - got).abs() < 1e-5);
        // Picking location 5 of sample 0 and 0 of sample 1.
        let p = pick_locations(trg.clone(), &[5, 0]);
        let want: Vec<f32> = trg
            .clone()
            .slice([0..1, 0..4, 1..2, 2..3])
            .reshape([4])
            .into_data()
            .to_vec()
            .unwrap();
        let got: Vec<f32> = p
            .slice([0..1, 0..4])
            .reshape([4])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(want, got);
    }

    /// AMDIM's scaled dot, as `cssl_losses::ScaledDotSimilarity` computes it.
    struct ScaledDot;

    impl Similarity<Flex> for ScaledDot {
        fn scores(&self, a: Tensor<Flex, 2>, b: Tensor<Flex, 2>) -> Tensor<Flex, 2> {
            let d = a.dims()[1] as f64;
            a.matmul(b.transpose()) / d.sqrt()
        }

        fn paired(&self, a: Tensor<Flex, 2>, b: Tensor<Flex, 2>) -> Tensor<Flex, 1> {
            let d = a.dims()[1] as f64;
            (a * b).sum_dim(1).squeeze_dim(1) / d.sqrt()
        }
    }

    #[test]
    fn local_scores_under_the_scaled_dot_are_global_to_local() {
        let d = Default::default();
        let src = Tensor::<Flex, 2>::random([3, 4], Distribution::Normal(0.0, 1.0), &d);
        let trg = Tensor::<Flex, 4>::random([3, 4, 2, 3], Distribution::Normal(0.0, 1.0), &d);
        let a = local_scores(&ScaledDot, src.clone(), trg.clone());
        let b = global_to_local(src, trg);
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn six_comparisons_with_amdim_shapes() {
        let d = Default::default();
        let maps = |_: u8| {
            FeatureMaps::<Flex>::new(vec![
                Tensor::random([3, 8, 7, 7], Distribution::Normal(0.0, 1.0), &d),
                Tensor::random([3, 8, 5, 5], Distribution::Normal(0.0, 1.0), &d),
                Tensor::random([3, 8, 1, 1], Distribution::Normal(0.0, 1.0), &d),
            ])
        };
        let pairs = amdim_comparisons(&ScaledDot, &maps(0), &maps(1), &[0, 12, 24], &[3, 3, 3]);
        let dims: Vec<_> = pairs.iter().map(|(x, y)| (x.dims(), y.dims())).collect();
        assert_eq!(
            dims,
            vec![
                ([3, 3, 25], [3, 3, 25]),
                ([3, 3, 49], [3, 3, 49]),
                ([3, 3, 25], [3, 3, 25])
            ]
        );
    }
}
