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

/// A port and the `n - 1` after it that nobody listens on now, in
/// 20000..32000: below the kernel's ephemeral range (32768 and up on
/// Linux), so that no outgoing connection of another test takes one of
/// them between this check and a node's listening.
pub fn free_ports_below_ephemeral(n: u16) -> u16 {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ ((std::process::id() as u64) << 32);
    loop {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = 20_000 + ((x >> 33) % (12_000 - n as u64)) as u16;
        if (0..n).all(|d| std::net::TcpListener::bind(("0.0.0.0", p + d)).is_ok()) {
            return p;
        }
    }
}
