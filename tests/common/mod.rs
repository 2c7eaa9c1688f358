//! What the end-to-end tests share.
#![allow(dead_code)]

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use cssl::job::load_encoder;
use std::path::Path;
use std::process::Command;

/// Runs `cssl args` and returns (exit code, stdout + stderr).
pub fn cssl_status(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(args)
        .output()
        .expect("the cssl binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Every float of a run's encoder, as bits, in module order.
pub fn encoder_bits(run: &Path) -> Vec<u32> {
    struct Bits(Vec<u32>);
    impl ModuleVisitor<Flex> for Bits {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Flex, D>>) {
            let data = p.val().into_data();
            self.0.extend(data.iter::<f32>().map(f32::to_bits));
        }
    }
    let (_, encoder) = load_encoder::<Flex>(run, &Default::default()).unwrap();
    let mut bits = Bits(Vec::new());
    encoder.visit(&mut bits);
    bits.0
}
