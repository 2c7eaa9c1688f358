//! What the end-to-end tests share.

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
