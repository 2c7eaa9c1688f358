use crate::Features;
use burn::config::Config;
use burn::tensor::{backend::Backend, Tensor, TensorData};

/// Weighted kNN classification (Wu et al., 2018, as in lightly and solo-learn):
/// cosine similarity, the `k` most similar train rows vote with weight
/// `exp(s / temperature)`.
#[derive(Config, Debug)]
pub struct KnnConfig {
    /// Neighbours.
    #[config(default = 200)]
    pub k: usize,
    /// Vote temperature; 0 means unweighted majority vote.
    #[config(default = 0.07)]
    pub temperature: f64,
}

fn normalised(f: &Features) -> Vec<f32> {
    let mut v = f.data.clone();
    for row in v.chunks_mut(f.dim) {
        let n = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// Accuracy on `test` of kNN over `train`.
///
/// # Panics
/// If the feature widths differ or `train` is empty.
pub fn knn_accuracy<B: Backend>(
    train: &Features,
    test: &Features,
    config: &KnnConfig,
    device: &B::Device,
) -> f64 {
    assert_eq!(
        train.dim, test.dim,
        "knn_accuracy: train features have {} dims, test {}",
        train.dim, test.dim
    );
    assert!(!train.is_empty(), "knn_accuracy: no train features");
    let (d, n) = (train.dim, train.len());
    let k = config.k.min(n);
    let classes = train
        .num_classes
        .max(train.labels.iter().max().unwrap() + 1);
    let bank =
        Tensor::<B, 2>::from_data(TensorData::new(normalised(train), [n, d]), device).transpose();
    let queries = normalised(test);
    let mut correct = 0usize;
    let chunk = 256;
    for start in (0..test.len()).step_by(chunk) {
        let end = (start + chunk).min(test.len());
        let q = Tensor::<B, 2>::from_data(
            TensorData::new(queries[start * d..end * d].to_vec(), [end - start, d]),
            device,
        );
        let sims: Vec<f32> = q
            .matmul(bank.clone())
            .into_data()
            .to_vec()
            .expect("f32 similarities");
        let mut idx: Vec<usize> = Vec::with_capacity(n);
        for (r, row) in sims.chunks(n).enumerate() {
            idx.clear();
            idx.extend(0..n);
            if k < n {
                idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            }
            let mut votes = vec![0.0f64; classes];
            for &j in &idx[..k] {
                let w = if config.temperature > 0.0 {
                    (row[j] as f64 / config.temperature).exp()
                } else {
                    1.0
                };
                votes[train.labels[j]] += w;
            }
            let pred = (0..classes)
                .max_by(|&a, &b| votes[a].total_cmp(&votes[b]))
                .unwrap();
            correct += (pred == test.labels[start + r]) as usize;
        }
    }
    correct as f64 / test.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn feats(rows: &[[f32; 2]], labels: &[usize]) -> Features {
        Features {
            data: rows.iter().flatten().copied().collect(),
            dim: 2,
            labels: labels.to_vec(),
            num_classes: 2,
        }
    }

    #[test]
    fn votes_by_direction_and_weight() {
        let d = Default::default();
        // Class 0 points right, class 1 up. Cosine ignores the length.
        let train = feats(
            &[[1.0, 0.0], [5.0, 0.1], [0.0, 1.0], [0.1, 3.0], [0.2, 2.0]],
            &[0, 0, 1, 1, 1],
        );
        let test = feats(&[[2.0, 0.2], [0.1, 0.9]], &[0, 1]);
        assert_eq!(
            knn_accuracy::<Flex>(&train, &test, &KnnConfig::new().with_k(1), &d),
            1.0
        );
        // k = all: unweighted majority says class 1 for both (3 vs 2)...
        assert_eq!(
            knn_accuracy::<Flex>(
                &train,
                &test,
                &KnnConfig::new().with_k(5).with_temperature(0.0),
                &d
            ),
            0.5
        );
        // ...but weighting by exp(s / 0.07) lets the close class-0 pair win.
        assert_eq!(
            knn_accuracy::<Flex>(&train, &test, &KnnConfig::new().with_k(5), &d),
            1.0
        );
    }
}
