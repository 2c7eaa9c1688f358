//! `cssl ablate` end to end on the shipped `tiny` study (2 cells x 1 seed,
//! a few steps): a study killed with SIGKILL in the middle and run again
//! skips its finished cell and ends with the same table as an uninterrupted
//! run; a cell that cannot run is recorded as failed, the study goes on and
//! exits with 3.

mod common;

use common::cssl_status;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cssl ablate args`: (exit code, stdout + stderr).
fn ablate(args: &[&str]) -> (i32, String) {
    cssl_status(&[&["ablate"], args].concat())
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_killed_study_resumes_without_redoing_cells_and_ends_with_the_same_table() {
    let dir = tempfile::tempdir().unwrap();
    let killed = dir.path().join("killed");
    let whole = dir.path().join("whole");

    // Kill the study (SIGKILL, no chance to clean up) once its first cell is
    // in results.jsonl, while the second trains.
    let mut child = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(["ablate", "tiny", "--out"])
        .arg(&killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let results = killed.join("results.jsonl");
    let start = Instant::now();
    while lines(&results) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no cell finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(lines(&results), 1, "the kill landed after the second cell");
    assert!(!killed.join("table.md").exists());

    let (code, text) = ablate(&["tiny", "--out", killed.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("[1/2] cosine seed 1: finished earlier, skipped"),
        "{text}"
    );
    assert!(text.contains("[2/2] scaled dot seed 1: training"), "{text}");
    assert_eq!(lines(&results), 2);

    let (code, text) = ablate(&["tiny", "--out", whole.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let table = |d: &Path| std::fs::read_to_string(d.join("table.csv")).unwrap();
    assert_eq!(table(&killed), table(&whole));
    assert_eq!(table(&whole).lines().count(), 3, "{}", table(&whole));
    for file in [
        "table.md",
        "cost.csv",
        "bars.png",
        "curves.png",
        "study.toml",
    ] {
        assert!(whole.join(file).exists(), "{file}");
    }

    // A third run does nothing but report.
    let (code, text) = ablate(&["tiny", "--out", whole.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text.matches("finished earlier, skipped").count(),
        2,
        "{text}"
    );

    // Another budget for the same directory is refused, not mixed in...
    let (code, text) = ablate(&["tiny", "--out", whole.to_str().unwrap(), "--epochs", "2"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("--force"), "{text}");
    // ...and --force starts over.
    let (code, text) = ablate(&[
        "tiny",
        "--out",
        whole.to_str().unwrap(),
        "--force",
        "--cells",
        "cosine",
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(lines(&whole.join("results.jsonl")), 1);
}

#[test]
fn a_cell_that_cannot_run_is_recorded_as_failed_and_the_study_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let study = dir.path().join("s.toml");
    let tiny = cssl::ablate::SHIPPED
        .iter()
        .find(|s| s.0 == "tiny")
        .unwrap()
        .1;
    // Keep the base cell, and add one whose batch is larger than its data.
    let text = tiny
        .split("[[cell]]\nlabel = \"scaled dot\"")
        .next()
        .unwrap()
        .to_string()
        + "[[cell]]\nlabel = \"too big\"\nset = { \"options.batch_size\" = 4096 }\n";
    std::fs::write(&study, text).unwrap();
    let out = dir.path().join("out");
    // --check refuses it: exit code 3, nothing trained.
    let (code, text) = ablate(&[study.to_str().unwrap(), "--check"]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("refused too big") && text.contains("1 of 2"),
        "{text}"
    );
    let (code, text) = ablate(&[study.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    // The study goes on, writes its table, then exits with 3 (not 0).
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("too big seed 1: FAILED"), "{text}");
    assert!(
        text.contains("error: study") && text.contains("1 of 2 cell runs failed"),
        "{text}"
    );
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        md.contains("| too big | 0 | failed: ") && md.contains("batch_size"),
        "{md}"
    );

    // Not a study file, and not a study directory: typed errors.
    let (code, text) = ablate(&["no-such-study"]);
    assert_eq!(code, 1);
    assert!(
        text.contains("neither a file nor a shipped study"),
        "{text}"
    );
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let (code, text) = ablate(&["tiny", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(text.contains("not a study directory"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn sigterm_stops_a_study_with_code_130_and_the_rerun_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let child = Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(["ablate", "tiny", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while lines(&out.join("results.jsonl")) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no cell finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let done = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&done.stderr);
    if lines(&out.join("results.jsonl")) == 1 {
        assert_eq!(done.status.code(), Some(130), "{text}");
        assert!(text.contains("study tiny stopped by SIGTERM"), "{text}");
    }
    let (code, text) = ablate(&["tiny", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(lines(&out.join("results.jsonl")), 2);
}

/// The study across two node processes on 127.0.0.1: node 0 writes the
/// results and tables, node 1 trains every cell with it (its logs beside
/// the cells' runs) and writes nothing else.
#[cfg(feature = "collective")]
#[test]
fn a_study_runs_across_two_nodes_and_node_0_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    // Two cells of 2 nodes: ports port .. port + 5.
    let port = common::free_ports_below_ephemeral(6);
    let coordinator = format!("127.0.0.1:{port}");
    let node = |rank: &str| {
        Command::new(env!("CARGO_BIN_EXE_cssl"))
            .args(["ablate", "tiny", "--out", out.to_str().unwrap()])
            .args([
                "--nodes",
                "2",
                "--node-rank",
                rank,
                "--coordinator",
                &coordinator,
            ])
            .args(["--node-timeout", "120"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (n0, n1) = (node("0"), node("1"));
    let texts: Vec<(i32, String)> = [n0, n1]
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            (o.status.code().unwrap_or(-1), text)
        })
        .collect();
    assert_eq!((texts[0].0, texts[1].0), (0, 0), "{texts:?}");
    assert!(texts[1].1.contains("node 1 is done"), "{}", texts[1].1);
    assert_eq!(lines(&out.join("results.jsonl")), 2);
    assert!(out.join("table.md").is_file());
    for cell in ["cosine", "scaled-dot"] {
        let log = std::fs::read_to_string(out.join(cell).join("seed-1.node1.log")).unwrap();
        assert!(
            log.contains("node 1 of 2: training finished"),
            "{cell}: {log}"
        );
        assert!(out.join(cell).join("seed-1").join("results.json").is_file());
    }
}
