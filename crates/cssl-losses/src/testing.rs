//! Test helper: autodiff gradients against central finite differences.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};

/// The autodiff backend the checks run on.
pub type AD = Autodiff<Flex>;

/// Asserts that the gradient of `f` at `values` matches central differences
/// (step 1e-2, f32) within `2e-3 + 2e-2 |numeric|` per coordinate.
pub fn finite_difference_check<const D: usize>(
    values: &[f32],
    shape: [usize; D],
    f: impl Fn(Tensor<AD, D>) -> Tensor<AD, 1>,
) {
    let device = Default::default();
    let make = |v: Vec<f32>| Tensor::<AD, D>::from_data(TensorData::new(v, shape), &device);
    let x = make(values.to_vec()).require_grad();
    let grads = f(x.clone()).backward();
    let g: Vec<f32> = x
        .grad(&grads)
        .expect("input has a gradient")
        .into_data()
        .to_vec()
        .unwrap();
    let eps = 1e-2f32;
    for i in 0..values.len() {
        let mut plus = values.to_vec();
        plus[i] += eps;
        let mut minus = values.to_vec();
        minus[i] -= eps;
        let numeric = (f(make(plus)).into_scalar() - f(make(minus)).into_scalar()) / (2.0 * eps);
        assert!(
            (g[i] - numeric).abs() <= 2e-3 + 2e-2 * numeric.abs(),
            "coordinate {i}: autodiff {} vs finite difference {numeric}",
            g[i]
        );
    }
}
