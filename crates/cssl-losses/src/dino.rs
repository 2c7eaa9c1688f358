//! DINO (Caron et al., 2021, "Emerging Properties in Self-Supervised Vision
//! Transformers"): self-distillation with no labels. The teacher's
//! distribution over `K` outputs, centred and sharpened,
//! `P_t = softmax((t - c) / tau_t)`, is the target of the student's
//! `P_s = softmax(s / tau_s)` for every pair of a global crop seen by the
//! teacher and another crop seen by the student: the loss is the mean over
//! those pairs of the cross-entropy `-sum_k P_t log P_s`, averaged over the
//! batch. The centre `c` follows the teacher's batch means:
//! `c <- m c + (1 - m) mean(t)`. "Centering prevents one dimension to
//! dominate but encourages collapse to the uniform distribution, while the
//! sharpening has the opposite effect."

use burn::config::Config;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{backend::Backend, Tensor};
use cssl_core::{ContrastiveLoss, CsslError};

/// DINO's loss over crops.
///
/// `teacher[i]` are the teacher's scores of global crop `i`, `student[v]`
/// the student's of crop `v` (the global crops first, in the same order):
/// every pair `(i, v)` with `v != i` counts once.
///
/// # Shapes
/// Every score tensor `[N, K]`; `centre`: `[K]`. Returns `[1]`.
///
/// # Panics
/// With fewer student crops than teacher crops, or no pair.
pub fn dino_loss<B: Backend>(
    teacher: &[Tensor<B, 2>],
    student: &[Tensor<B, 2>],
    centre: Tensor<B, 1>,
    teacher_temperature: f64,
    student_temperature: f64,
) -> Tensor<B, 1> {
    assert!(
        student.len() >= teacher.len() && student.len() >= 2,
        "dino_loss: {} teacher crops, {} student crops",
        teacher.len(),
        student.len()
    );
    let k = centre.dims()[0];
    let centre = centre.reshape([1, k]);
    let targets: Vec<Tensor<B, 2>> = teacher
        .iter()
        .map(|t| {
            softmax(
                (t.clone().detach() - centre.clone()) / teacher_temperature,
                1,
            )
        })
        .collect();
    let logs: Vec<Tensor<B, 2>> = student
        .iter()
        .map(|s| log_softmax(s.clone() / student_temperature, 1))
        .collect();
    let mut total: Option<Tensor<B, 1>> = None;
    let mut pairs = 0usize;
    for (i, p) in targets.iter().enumerate() {
        for (v, log_q) in logs.iter().enumerate() {
            if v == i {
                continue;
            }
            let h = (p.clone() * log_q.clone()).sum_dim(1).mean().neg();
            total = Some(match total {
                Some(t) => t + h,
                None => h,
            });
            pairs += 1;
        }
    }
    total.expect("at least one pair") / pairs as f64
}

/// The centre after one update: `m c + (1 - m) mean over rows of every
/// teacher crop's scores`.
///
/// # Shapes
/// `centre`: `[K]`; each of `teacher`: `[N, K]`. Returns `[K]`.
pub fn dino_centre<B: Backend>(
    centre: Tensor<B, 1>,
    teacher: &[Tensor<B, 2>],
    momentum: f64,
) -> Tensor<B, 1> {
    let k = centre.dims()[0];
    let mean = Tensor::cat(teacher.to_vec(), 0)
        .detach()
        .mean_dim(0)
        .reshape([k]);
    centre * momentum + mean * (1.0 - momentum)
}

/// DINO's loss: temperatures of both networks, the centre's momentum.
#[derive(Config, Debug)]
pub struct DinoLossConfig {
    /// The student's temperature (DINO: 0.1).
    #[config(default = 0.1)]
    pub student_temperature: f64,
    /// The teacher's temperature, lower than the student's: the sharpening
    /// (DINO: 0.04; its longer ViT runs warm it up to 0.07).
    #[config(default = 0.04)]
    pub teacher_temperature: f64,
    /// The centre's momentum `m` (DINO: 0.9).
    #[config(default = 0.9)]
    pub centre_momentum: f64,
}

impl DinoLossConfig {
    /// Checks the temperatures and the momentum.
    ///
    /// # Errors
    /// A temperature that is not positive, or a momentum outside `[0, 1]`,
    /// naming the field under `loss.`.
    pub fn validate(&self) -> cssl_core::Result<()> {
        for (field, t) in [
            ("loss.student_temperature", self.student_temperature),
            ("loss.teacher_temperature", self.teacher_temperature),
        ] {
            if !(t > 0.0) {
                return Err(CsslError::config(field, format!("{t}: must be positive")));
            }
        }
        if !(0.0..=1.0).contains(&self.centre_momentum) {
            return Err(CsslError::config(
                "loss.centre_momentum",
                format!("{}: must be in [0, 1]", self.centre_momentum),
            ));
        }
        Ok(())
    }

    /// Builds the loss.
    pub fn init(&self) -> DinoLoss {
        DinoLoss {
            student_temperature: self.student_temperature,
            teacher_temperature: self.teacher_temperature,
            centre_momentum: self.centre_momentum,
        }
    }
}

/// See [`DinoLossConfig`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DinoLoss {
    /// The student's temperature.
    pub student_temperature: f64,
    /// The teacher's temperature.
    pub teacher_temperature: f64,
    /// The centre's momentum.
    pub centre_momentum: f64,
}

impl<B: Backend> ContrastiveLoss<B> for DinoLoss {
    /// The teacher's scores of the global crops, the student's of every crop
    /// (global ones first), `[N, K]` each, and the centre `[K]`.
    type Input = (Vec<Tensor<B, 2>>, Vec<Tensor<B, 2>>, Tensor<B, 1>);

    fn loss(&self, (teacher, student, centre): Self::Input) -> Tensor<B, 1> {
        dino_loss(
            &teacher,
            &student,
            centre,
            self.teacher_temperature,
            self.student_temperature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{TensorData, Tolerance};

    type B = Flex;

    fn t(v: [[f32; 3]; 2]) -> Tensor<B, 2> {
        Tensor::from_data(v, &Default::default())
    }

    // Python (plain float64):
    //   T = [[[1.0, 0.2, -0.5], [0.3, 0.8, 0.1]], [[0.5, -0.2, 0.9], [-0.4, 0.6, 0.2]]]
    //   S = T's two crops' student scores and one local crop:
    //       [[[0.9, 0.1, -0.3], [0.2, 0.7, 0.4]], [[0.4, 0.0, 0.6], [-0.2, 0.5, 0.3]],
    //        [[0.1, 0.3, 0.2], [0.6, -0.1, 0.0]]]
    //   c = [0.1, -0.05, 0.2]; tau_t = 0.04; tau_s = 0.1
    //   P_t(i) = softmax((T[i] - c) / tau_t) per row; logQ(v) = log_softmax(S[v] / tau_s)
    //   pairs (i, v), v != i: (0, 1), (0, 2), (1, 0), (1, 2)
    //   loss = mean over pairs of mean over rows of -sum_k P_t log Q  -> 4.016008509213255
    //   centre: 0.9 c + 0.1 * mean of the 4 teacher rows -> [0.125, -0.01, 0.1975]
    #[test]
    fn matches_a_float64_reference() {
        let teacher = vec![
            t([[1.0, 0.2, -0.5], [0.3, 0.8, 0.1]]),
            t([[0.5, -0.2, 0.9], [-0.4, 0.6, 0.2]]),
        ];
        let student = vec![
            t([[0.9, 0.1, -0.3], [0.2, 0.7, 0.4]]),
            t([[0.4, 0.0, 0.6], [-0.2, 0.5, 0.3]]),
            t([[0.1, 0.3, 0.2], [0.6, -0.1, 0.0]]),
        ];
        let centre = Tensor::<B, 1>::from_data([0.1f32, -0.05, 0.2], &Default::default());
        let loss = DinoLossConfig::new().init();
        ContrastiveLoss::<B>::loss(&loss, (teacher.clone(), student, centre.clone()))
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([4.016008509213255f32]),
                Tolerance::rel_abs(1e-5, 1e-5),
            );
        dino_centre(centre, &teacher, 0.9)
            .into_data()
            .assert_approx_eq::<f32>(
                &TensorData::from([0.125f32, -0.01, 0.1975]),
                Tolerance::absolute(1e-6),
            );
    }

    #[test]
    fn gradients_reach_the_student_only_and_match_finite_differences() {
        let flat: Vec<f32> = [
            0.9f32, 0.1, -0.3, 0.2, 0.7, 0.4, 0.4, 0.0, 0.6, -0.2, 0.5, 0.3,
        ]
        .to_vec();
        crate::testing::finite_difference_check(&flat, [4, 3], |s| {
            let d = s.device();
            let teacher = vec![
                Tensor::from_data([[1.0f32, 0.2, -0.5], [0.3, 0.8, 0.1]], &d),
                Tensor::from_data([[0.5f32, -0.2, 0.9], [-0.4, 0.6, 0.2]], &d),
            ];
            let student = vec![s.clone().slice([0..2, 0..3]), s.slice([2..4, 0..3])];
            // Student temperature 1: finite differences on a gentle slope.
            dino_loss(&teacher, &student, Tensor::zeros([3], &d), 0.5, 1.0)
        });
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let e = DinoLossConfig::new()
            .with_teacher_temperature(0.0)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("loss.teacher_temperature"), "{e}");
        let e = DinoLossConfig::new()
            .with_centre_momentum(1.5)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("loss.centre_momentum"), "{e}");
    }
}
