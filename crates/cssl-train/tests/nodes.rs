//! Data-parallel training across processes through burn-collective, on
//! 127.0.0.1: the test starts its own binary again as node processes
//! (`node_process`, which does nothing unless started so), each joining a
//! [`Cluster`] and taking a few SGD steps on its share of the batch.
//!
//! - 2 processes x 1 worker leave every float of the model (parameters,
//!   batch-norm statistics, target networks, queues, prototypes) where
//!   1 process x 2 workers and 1 x 1 leave it, for SimCLR, MoCo v2, SwAV
//!   and BYOL; the nodes compare model checksums after every step.
//! - 2 processes x 2 workers step as 1 x 4 (SimCLR, MoCo v2).
//! - burn-collective's all-reduce runs many times across nodes (0.21.0 as
//!   published hangs at the second: patches/burn-collective/PATCH.md).
//! - A killed node: the other stops with a `Cluster` error (exit code 5)
//!   within its timeout, never hangs.
#![cfg(feature = "collective")]

mod common;

use burn::backend::{Autodiff, Flex};
use common::{steps, update_gap, views, Stepped, IMAGES};
use cssl_core::parallel::NodeLink;
use cssl_core::View;
use cssl_methods::MethodKind;
use cssl_train::{Cluster, ClusterConfig, Workers};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type B = Autodiff<Flex>;

/// burn's CPU generator is global: one in-process run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// SGD steps of each run, and their learning rate.
const STEPS: usize = 3;
const LR: f64 = 0.5;

/// What a node process is asked to do (the `CSSL_TEST_NODE` variable):
/// `rank nodes port method steps out timeout_s workers`.
const NODE_VAR: &str = "CSSL_TEST_NODE";

fn method(name: &str) -> MethodKind {
    name.parse().expect("a registered method")
}

/// Free ports for a coordinator and two nodes.
fn free_port() -> u16 {
    common::free_ports_below_ephemeral(3)
}

/// Starts this test binary as node `rank` of `nodes` (of one worker).
fn spawn_node(
    rank: usize,
    nodes: usize,
    port: u16,
    kind: &str,
    steps: usize,
    out: &Path,
    timeout: u64,
) -> Child {
    spawn_node_of(rank, nodes, 1, port, kind, steps, out, timeout)
}

/// Starts this test binary as node `rank` of `nodes`, of `workers` workers.
#[allow(clippy::too_many_arguments)]
fn spawn_node_of(
    rank: usize,
    nodes: usize,
    workers: usize,
    port: u16,
    kind: &str,
    steps: usize,
    out: &Path,
    timeout: u64,
) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "node_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            NODE_VAR,
            format!(
                "{rank} {nodes} {port} {kind} {steps} {} {timeout} {workers}",
                out.display()
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits at most `limit` for `child`; kills it past that. Its exit code
/// (`None` when it was killed), output, and the time it took.
fn wait(mut child: Child, limit: Duration) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (status.code(), text, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return (
                None,
                String::from_utf8_lossy(&out.stderr).into(),
                start.elapsed(),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The losses and floats of `s` and of its first step, as bytes.
fn write_stepped(path: &Path, s: &Stepped) {
    let mut bytes = Vec::new();
    for s in [s.first(), s] {
        bytes.extend(s.loss.to_le_bytes());
        for list in [&s.before, &s.after] {
            bytes.extend((list.len() as u64).to_le_bytes());
            bytes.extend(list.iter().flat_map(|v| v.to_le_bytes()));
        }
    }
    std::fs::write(path, bytes).unwrap();
}

fn read_stepped(path: &Path) -> Stepped {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut one = || {
        let loss = f64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        at += 8;
        let mut list = || {
            let n = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            at += 8;
            let v = bytes[at..at + 4 * n]
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            at += 4 * n;
            v
        };
        let before = list();
        let after = list();
        Stepped {
            loss,
            before,
            after,
            first: Box::new(None),
        }
    };
    let first = one();
    let mut last = one();
    last.first = Box::new(Some(first));
    last
}

/// A node process: joins the cluster named by `CSSL_TEST_NODE`, takes its
/// steps on its share of the batch, writes what it stepped to a file.
/// Started by the tests below; without the variable it does nothing.
#[test]
#[ignore = "a node process of the tests in this file, started by them"]
fn node_process() {
    let Ok(spec) = std::env::var(NODE_VAR) else {
        return;
    };
    let f: Vec<&str> = spec.split(' ').collect();
    let (rank, nodes, port): (usize, usize, u16) = (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    );
    let (kind, n_steps, out) = (
        method(f[3]),
        f[4].parse::<usize>().unwrap(),
        Path::new(f[5]),
    );
    let mut config = ClusterConfig::new(nodes, rank, format!("127.0.0.1:{port}"));
    config.timeout = Duration::from_secs(f[6].parse().unwrap());
    let cluster = Cluster::join(config).unwrap_or_else(|e| panic!("{e}"));
    let link: Arc<dyn NodeLink> = Arc::new(cluster);
    let local: usize = f[7].parse().unwrap();
    let workers = match local {
        1 => Workers::<B>::one(Default::default()),
        n => Workers::<B>::new(vec![Default::default(); n], None).unwrap(),
    }
    .across(link, 1);
    let method_config = kind.tiny();
    let all = views(method_config.augmentation());
    let per = IMAGES / nodes;
    let mine: Vec<Vec<View>> = all
        .iter()
        .map(|v| v[rank * per..(rank + 1) * per].to_vec())
        .collect();
    println!("node {rank}: joined");
    let stepped = steps(&method_config, &workers, &mine, n_steps, LR);
    write_stepped(out, &stepped);
    println!("node {rank}: done");
}

/// Runs `kind` on 2 node processes of 1 worker; what node 0 and node 1
/// stepped.
fn two_processes(kind: &str) -> (Stepped, Stepped) {
    two_processes_of(kind, 1)
}

/// Runs `kind` on 2 node processes of `workers` workers each.
fn two_processes_of(kind: &str, workers: usize) -> (Stepped, Stepped) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let outs = [dir.path().join("0"), dir.path().join("1")];
    let children: Vec<Child> = (0..2)
        .map(|r| spawn_node_of(r, 2, workers, port, kind, STEPS, &outs[r], 60))
        .collect();
    for (r, child) in children.into_iter().enumerate() {
        let (code, text, _) = wait(child, Duration::from_secs(180));
        assert_eq!(code, Some(0), "{kind}: node {r} failed:\n{text}");
    }
    (read_stepped(&outs[0]), read_stepped(&outs[1]))
}

/// Asserts that `b` moved every float as `a` did (within `1e-3` of its own
/// update plus `1e-5` of the largest), with the same loss.
fn assert_alike(what: &str, a: &Stepped, b: &Stepped) {
    assert_eq!(a.after.len(), b.after.len(), "{what}");
    let (largest, (gap, update)) = update_gap(a, b);
    assert!(
        largest > 1e-3,
        "{what}: the steps moved nothing ({largest})"
    );
    assert!(
        gap <= 1e-3 * update.abs() + 1e-5 * largest,
        "{what}: moved a float {gap} away from an update of {update} (largest update {largest})"
    );
    let rel = ((a.loss - b.loss) / a.loss).abs();
    assert!(rel < 1e-5, "{what}: loss {} vs {}", a.loss, b.loss);
    println!(
        "{what}: largest update {largest:.3e}, worst gap {gap:.3e} (update {update:.3e}), loss {:.6} vs {:.6}",
        a.loss, b.loss
    );
}

/// 2 processes x 1 worker against 1 x 2 and 1 x 1 in this process:
///
/// - after [`STEPS`] steps, every float of 2 x 1 equals 1 x 2's bit for
///   bit (the exchange across processes is exact; both run their kernels
///   on the same thread pool, so that every sum adds in the same order);
/// - after the first step, 2 x 1 moved every float as 1 x 1 did, within
///   `1e-3` of its update plus `1e-5` of the largest (one device sums a
///   batch in another order), and after [`STEPS`] steps the losses agree
///   within `1e-4`: later steps amplify those roundings (SwAV's Sinkhorn,
///   batch norm over 8 images of a tiny ResNet), so the floats are only
///   compared after the first.
fn assert_two_processes_step_like_one(name: &str) {
    let kind = method(name);
    let config = kind.tiny();
    let all = views(config.augmentation());
    let (one, two_workers) = {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let one = steps(
            &config,
            &Workers::<B>::one(Default::default()),
            &all,
            STEPS,
            LR,
        );
        let two = Workers::<B>::new(vec![Default::default(); 2], None).unwrap();
        (one, steps(&config, &two, &all, STEPS, LR))
    };
    let (node0, node1) = two_processes(name);
    assert_eq!(
        node0.after, node1.after,
        "{name}: the two nodes' models differ"
    );
    assert_eq!(
        node0.loss, node1.loss,
        "{name}: the two nodes' losses differ"
    );
    let differing = two_workers
        .after
        .iter()
        .zip(&node0.after)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        (differing, two_workers.loss),
        (0, node0.loss),
        "{name}: 2 processes x 1 differ from 1 x 2 after {STEPS} steps"
    );
    println!(
        "{name}: 2 processes x 1 = 1 x 2 bit for bit after {STEPS} steps ({} floats, loss {:.6})",
        node0.after.len(),
        node0.loss
    );
    assert_first_step_and_loss(
        &format!("{name}: 2 processes x 1 vs 1 x 1"),
        &one,
        &node0,
        1e-4,
    );
}

/// `b` moved every float as `a` did on the first step ([`assert_alike`]),
/// and its loss after [`STEPS`] steps is within `rel` of `a`'s.
fn assert_first_step_and_loss(what: &str, a: &Stepped, b: &Stepped, rel: f64) {
    assert_alike(&format!("{what}, first step"), a.first(), b.first());
    let gap = ((a.loss - b.loss) / a.loss).abs();
    assert!(
        gap < rel,
        "{what}: loss after {STEPS} steps {} vs {}",
        a.loss,
        b.loss
    );
    println!(
        "{what}: loss after {STEPS} steps {:.6} vs {:.6}",
        a.loss, b.loss
    );
}

/// NT-Xent over negatives gathered across the processes.
#[test]
fn simclr_two_processes_step_like_two_workers_and_one() {
    assert_two_processes_step_like_one("simclr");
}

/// MoCo v2: each node's queue takes the global batch's keys once, in rank
/// order.
#[test]
fn moco_two_processes_step_like_two_workers_and_one() {
    assert_two_processes_step_like_one("moco");
}

/// SwAV: Sinkhorn codes over scores gathered across the processes.
#[test]
fn swav_two_processes_step_like_two_workers_and_one() {
    assert_two_processes_step_like_one("swav");
}

/// BYOL: the EMA target moves once per global step on every node.
#[test]
fn byol_two_processes_step_like_two_workers_and_one() {
    assert_two_processes_step_like_one("byol");
}

/// 2 processes of 2 workers each: the workers of a node meet in memory,
/// then the nodes through burn-collective. Against 1 process of 4 workers
/// (ranks 0-1 on node 0, 2-3 on node 1): the first step moves every float
/// alike (within `1e-3` of its update plus `1e-5` of the largest), and the
/// losses after [`STEPS`] steps agree within `1e-5`. (Not bit for bit: a
/// node averages its two workers' gradients before the nodes average
/// theirs, where one process sums all four, in another order.)
fn assert_two_processes_of_two_step_like_four_workers(name: &str) {
    let config = method(name).tiny();
    let all = views(config.augmentation());
    let four = {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let four = Workers::<B>::new(vec![Default::default(); 4], None).unwrap();
        steps(&config, &four, &all, STEPS, LR)
    };
    let (node0, node1) = two_processes_of(name, 2);
    assert_eq!(
        node0.after, node1.after,
        "{name}: the two nodes' models differ"
    );
    assert_first_step_and_loss(
        &format!("{name}: 2 processes x 2 vs 1 x 4"),
        &four,
        &node0,
        1e-5,
    );
}

#[test]
fn simclr_two_processes_of_two_workers_step_like_four() {
    assert_two_processes_of_two_step_like_four_workers("simclr");
}

#[test]
fn moco_two_processes_of_two_workers_step_like_four() {
    assert_two_processes_of_two_step_like_four_workers("moco");
}

/// Starts two nodes that train for a long time, waits until node 1 has
/// joined and stepped a moment, does `fail` to node 1, and returns how long
/// node 0 took to stop after that, with its error line. Asserts that node 0
/// stopped with an error within `timeout` and a margin.
fn fail_node_1(what: &str, timeout: u64, fail: impl FnOnce(&mut Child)) -> (Duration, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut children: Vec<Child> = (0..2)
        .map(|r| {
            spawn_node(
                r,
                2,
                port,
                "simclr",
                100_000,
                &dir.path().join(r.to_string()),
                timeout,
            )
        })
        .collect();
    let mut stdout = children[1].stdout.take().unwrap();
    let mut seen = String::new();
    let start = Instant::now();
    while !seen.contains("joined") && start.elapsed() < Duration::from_secs(60) {
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen += &String::from_utf8_lossy(&buf[..n]);
    }
    assert!(seen.contains("joined"), "node 1 never joined: {seen}");
    std::thread::sleep(Duration::from_millis(500));
    let mut victim = children.pop().unwrap();
    fail(&mut victim);
    let failed = Instant::now();
    let (code, text, _) = wait(children.pop().unwrap(), Duration::from_secs(timeout + 60));
    let took = failed.elapsed();
    let _ = victim.kill();
    let _ = victim.wait();
    let error = text
        .lines()
        .find(|l| l.contains("node 0 of 2:"))
        .unwrap_or_default()
        .to_string();
    println!(
        "node 1 {what}: node 0 stopped {:.1}s later, exit code {code:?}: {error}",
        took.as_secs_f64()
    );
    assert!(code.is_some(), "node 0 hung:\n{text}");
    assert_ne!(code, Some(0), "node 0 went on without node 1:\n{text}");
    assert!(!error.is_empty(), "no error from node 0:\n{text}");
    assert!(took < Duration::from_secs(timeout + 20), "took {took:?}");
    (took, error)
}

/// Node 1 is killed while both train: node 0 sees the broken connection
/// and stops with a `Cluster` error.
#[test]
fn a_killed_node_stops_the_other() {
    let (_, error) = fail_node_1("killed", 5, |c| c.kill().unwrap());
    assert!(
        error.contains("connection") || error.contains("no answer"),
        "{error}"
    );
}

/// Node 1 stops answering (SIGSTOP: alive, connections open): node 0 waits
/// its timeout, then stops with a `Cluster` error naming the wait.
#[cfg(unix)]
#[test]
fn a_node_that_stops_answering_stops_the_other_after_the_timeout() {
    let (took, error) = fail_node_1("stopped (SIGSTOP)", 5, |c| unsafe {
        libc::kill(c.id() as libc::pid_t, libc::SIGSTOP);
    });
    assert!(
        error.contains("no answer from the other nodes within 5s"),
        "{error}"
    );
    assert!(took >= Duration::from_secs(4), "took {took:?}");
}
