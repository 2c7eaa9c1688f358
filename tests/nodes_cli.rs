//! `cssl pretrain --nodes 2` end to end, as two processes on 127.0.0.1
//! sharing a run directory (as nodes on a shared filesystem would):
//!
//! - node 0 alone writes the run directory and evaluates; node 1 trains in
//!   step and says where the run is;
//! - SIGINT on node 1 stops both after the same step, with one checkpoint
//!   (node 0's) and exit code 130 on both;
//! - `--resume` on both nodes ends with the uninterrupted two-node run's
//!   encoder bit for bit;
//! - the same checkpoint resumed by one process (a different number of
//!   nodes: the data order does not depend on it) finishes too;
//! - nodes started with different configs stop before training (exit 5);
//! - flags that cannot make a cluster are refused, naming them.
#![cfg(feature = "collective")]

mod common;

use common::{cssl_status, encoder_bits};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Free ports for a coordinator and two nodes.
fn free_port() -> u16 {
    common::free_ports_below_ephemeral(3)
}

/// A small SimCLR run: 2 epochs of 24 steps of 16 images.
fn run_args(out: &Path) -> Vec<String> {
    [
        "pretrain",
        "--method",
        "simclr",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--train-subset",
        "384",
        "--probe-subset",
        "64",
        "--test-subset",
        "64",
        "--online-knn",
        "0",
        "--seed",
        "5",
        "--no-raw-baseline",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn node_args(rank: usize, port: u16) -> Vec<String> {
    [
        "--nodes",
        "2",
        "--node-rank",
        &rank.to_string(),
        "--coordinator",
        &format!("127.0.0.1:{port}"),
        "--node-timeout",
        "60",
    ]
    .map(String::from)
    .to_vec()
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cssl"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits at most 5 minutes; the exit code and everything printed.
fn finish(mut child: Child) -> (i32, String) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Runs both nodes with `args` (each with its node flags); their exit
/// codes and output.
fn two_nodes(args: &[String]) -> [(i32, String); 2] {
    let port = free_port();
    let children: Vec<Child> = (0..2)
        .map(|r| spawn(&[args.to_vec(), node_args(r, port)].concat()))
        .collect();
    let mut results = children.into_iter().map(finish);
    [results.next().unwrap(), results.next().unwrap()]
}

/// The step of an `interrupted by ... after step N` message.
fn stopped_at(text: &str) -> usize {
    let at = text
        .find("after step ")
        .unwrap_or_else(|| panic!("no stop in:\n{text}"));
    text[at + 11..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn two_node_processes_train_stop_together_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (full, cut, alone) = (
        dir.path().join("full"),
        dir.path().join("cut"),
        dir.path().join("alone"),
    );

    // Uninterrupted: node 0 writes and evaluates, node 1 only trains.
    let [(c0, t0), (c1, t1)] = two_nodes(&run_args(&full));
    assert_eq!((c0, c1), (0, 0), "node 0:\n{t0}\nnode 1:\n{t1}");
    assert!(
        t0.contains("linear probe") && full.join("results.json").is_file(),
        "{t0}"
    );
    assert!(
        t1.contains("node 1 of 2: training finished") && !t1.contains("linear probe"),
        "{t1}"
    );

    // SIGINT on node 1 once both train: both stop after the same step.
    let port = free_port();
    let args = run_args(&cut);
    let node0 = spawn(&[args.clone(), node_args(0, port)].concat());
    let mut node1 = spawn(&[args, node_args(1, port)].concat());
    let mut lines = BufReader::new(node1.stdout.take().unwrap()).lines();
    let mut head = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        head += &line;
        head += "\n";
        if line.starts_with("cssl: simclr") {
            break;
        }
    }
    assert!(head.contains("node 1 of 2"), "{head}");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-INT", &node1.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let rest: String = lines.map_while(|l| l.ok()).map(|l| l + "\n").collect();
    let (c1, t1) = finish(node1);
    let t1 = head + &rest + &t1;
    let (c0, t0) = finish(node0);
    assert_eq!((c0, c1), (130, 130), "node 0:\n{t0}\nnode 1:\n{t1}");
    let (s0, s1) = (stopped_at(&t0), stopped_at(&t1));
    assert_eq!(s0, s1, "the nodes stopped after different steps");
    assert!(t0.contains("SIGINT on node 1"), "{t0}");
    assert!(s0 < 48, "the signal came after the run ended ({s0})");
    let checkpoints: Vec<_> = std::fs::read_dir(cut.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    println!("both nodes stopped after step {s0}; checkpoints: {checkpoints:?}");
    assert!(
        checkpoints.contains(&format!("step-{s0:08}")),
        "no checkpoint of step {s0}: {checkpoints:?}"
    );
    copy_dir(&cut, &alone);

    // Resumed on two nodes: the uninterrupted run's encoder, bit for bit.
    let resume = ["pretrain", "--resume", cut.to_str().unwrap()].map(String::from);
    let [(c0, t0), (c1, t1)] = two_nodes(&resume);
    assert_eq!((c0, c1), (0, 0), "node 0:\n{t0}\nnode 1:\n{t1}");
    let (a, b) = (encoder_bits(&full), encoder_bits(&cut));
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!((a.len(), differing), (b.len(), 0), "resumed on 2 nodes");

    // The same checkpoint resumed by one process.
    let (code, text) = cssl_status(&["pretrain", "--resume", alone.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("linear probe"), "{text}");
}

/// Nodes started with different seeds (a different config) are refused at
/// the start, on both, with exit code 5, before a step is taken.
#[test]
fn nodes_with_different_configs_stop_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let port = free_port();
    let children: Vec<Child> = (0..2)
        .map(|r| {
            let mut args = run_args(&out);
            let seed = args.iter().position(|a| a == "--seed").unwrap() + 1;
            args[seed] = (5 + r).to_string();
            spawn(&[args, node_args(r, port)].concat())
        })
        .collect();
    for (r, child) in children.into_iter().enumerate() {
        let (code, text) = finish(child);
        assert_eq!(code, 5, "node {r}:\n{text}");
        assert!(
            text.contains(&format!("node {r} of 2:")) && text.contains("different config"),
            "node {r}:\n{text}"
        );
        assert!(
            !text.contains("epoch 1/2 done"),
            "node {r} trained:\n{text}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != ".lock" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn flags_that_make_no_cluster_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let base = run_args(&out);
    let refused = |extra: &[&str], needle: &str| {
        let args: Vec<String> = base
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, text) = cssl_status(&args);
        assert_eq!(code, 1, "{extra:?}:\n{text}");
        assert!(
            text.contains(needle),
            "{extra:?}: expected {needle:?} in\n{text}"
        );
        assert!(!out.exists(), "{extra:?} wrote a run directory");
    };
    refused(&["--nodes", "2"], "missing --node-rank, --coordinator");
    refused(
        &[
            "--nodes",
            "2",
            "--node-rank",
            "2",
            "--coordinator",
            "127.0.0.1:1",
        ],
        "node_rank",
    );
    refused(
        &[
            "--nodes",
            "2",
            "--node-rank",
            "0",
            "--coordinator",
            "nohost",
        ],
        "HOST:PORT",
    );
    // 16 images do not split over 2 nodes of 3 workers.
    refused(
        &[
            "--nodes",
            "2",
            "--node-rank",
            "1",
            "--coordinator",
            "127.0.0.1:1",
            "--device",
            "cpu:3",
            "--node-timeout",
            "1",
        ],
        "options.batch_size",
    );
}
