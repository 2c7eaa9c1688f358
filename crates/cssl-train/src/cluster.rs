//! Data-parallel training across processes and machines (nodes) through
//! burn-collective: every node runs its own [`Workers`](crate::Workers) on
//! its shard of each global batch, and the nodes meet once per exchange
//! through burn-collective's all-reduce (a global orchestrator on node 0,
//! peer-to-peer websockets between the nodes, a ring all-reduce).
//!
//! What crosses the network, per global step:
//! - one all-reduce of the node's mean gradient (4 bytes per parameter),
//!   with the node's loss and monitors and its stop request in slots of
//!   the same buffer;
//! - the methods' gathers inside the step (embeddings for gathered
//!   negatives and SwAV's codes, MoCo's keys, batch-norm sums on CPU
//!   workers): burn 0.21's collective has only all-reduce across nodes, so
//!   a gather is an all-reduce over a buffer of one slot per node, each
//!   node writing its own slot and zeros elsewhere (`x + 0 = x`: every
//!   value arrives exactly; `f64` values cross as four exact 16-bit
//!   pieces);
//! - every [`ClusterConfig::check_every`] steps, a checksum of each node's
//!   model (a difference stops the run).
//!
//! burn-collective runs here on burn's CPU backend (Flex) over host memory,
//! whatever backend trains: the tensors cross the network as bytes anyway,
//! and the exchange inside a node already goes through host memory.
//!
//! A node that stops answering makes every call here fail after
//! [`ClusterConfig::timeout`] (burn-collective's calls have no timeout of
//! their own: they run on a thread of their own, which a failed process
//! leaves behind when it exits).

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{
    all_reduce, finish_collective, register, CollectiveConfig, CollectiveError, PeerId,
    ReduceOperation,
};
use cssl_core::parallel::NodeLink;
use cssl_core::{CsslError, Result};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

/// Where this process stands among the nodes of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// Nodes (processes) in the run, at least 2.
    pub nodes: usize,
    /// This node's rank, `0..nodes`; rank 0 starts the coordinator and
    /// alone writes the run directory.
    pub rank: usize,
    /// The coordinator, `HOST:PORT`: rank 0 listens on `PORT`, every node
    /// connects to it.
    pub coordinator: String,
    /// How the other nodes reach this one, `HOST:PORT` (its tensor
    /// service listens on `PORT`). Default: the address this machine
    /// reaches the coordinator from, port `coordinator port + 1 + rank`.
    pub node_address: Option<String>,
    /// How long a node waits for the others (joining, and at each
    /// exchange) before it stops with an error.
    pub timeout: Duration,
    /// Compare a checksum of every node's model every this many steps (0:
    /// only at the start).
    pub check_every: usize,
}

/// The environment variables [`ClusterConfig::from_env`] reads.
pub const ENV_VARS: [&str; 6] = [
    "RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_PROCID",
    "SLURM_NTASKS",
];

impl ClusterConfig {
    /// Default wait for the other nodes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
    /// Default steps between model checksums.
    pub const DEFAULT_CHECK_EVERY: usize = 50;
    /// Default coordinator port when a launcher names only the host.
    pub const DEFAULT_PORT: u16 = 29500;

    /// A config from the launchers' usual variables: `RANK`, `WORLD_SIZE`,
    /// `MASTER_ADDR`, `MASTER_PORT` (torchrun; `MASTER_PORT` defaults to
    /// 29500), or under `srun` `SLURM_PROCID` and `SLURM_NTASKS` with
    /// `MASTER_ADDR` (and `MASTER_PORT`) exported by the batch script.
    /// `None` when they name one node or none.
    ///
    /// # Errors
    /// A [`CsslError::Config`] naming the variable that is missing or not
    /// a number.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Self::from_env`] over any variable lookup (for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let number = |k: &str| -> Result<Option<usize>> {
            var(k)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        CsslError::config(k, format!("`{v}` is not a number (environment)"))
                    })
                })
                .transpose()
        };
        let (rank, nodes, from) = match (number("RANK")?, number("WORLD_SIZE")?) {
            (Some(r), Some(n)) => (r, n, "RANK/WORLD_SIZE"),
            (None, None) => match (number("SLURM_PROCID")?, number("SLURM_NTASKS")?) {
                (Some(r), Some(n)) => (r, n, "SLURM_PROCID/SLURM_NTASKS"),
                _ => return Ok(None),
            },
            (Some(_), None) => {
                return Err(CsslError::config(
                    "WORLD_SIZE",
                    "RANK is set but WORLD_SIZE is not (environment)",
                ))
            }
            (None, Some(_)) => {
                return Err(CsslError::config(
                    "RANK",
                    "WORLD_SIZE is set but RANK is not (environment)",
                ))
            }
        };
        if nodes <= 1 {
            return Ok(None);
        }
        let host = var("MASTER_ADDR").ok_or_else(|| {
            CsslError::config(
                "MASTER_ADDR",
                format!(
                    "{from} name {nodes} nodes but MASTER_ADDR (the coordinator's host) is not \
                     set; export it (under SLURM: the first host of \
                     `scontrol show hostnames $SLURM_JOB_NODELIST`) or pass --coordinator"
                ),
            )
        })?;
        let port = number("MASTER_PORT")?.unwrap_or(Self::DEFAULT_PORT as usize);
        let config = Self::new(nodes, rank, format!("{host}:{port}"));
        config.check()?;
        Ok(Some(config))
    }

    /// Node `rank` of `nodes`, coordinated at `coordinator` (`HOST:PORT`),
    /// with the default timeout and checksum interval.
    pub fn new(nodes: usize, rank: usize, coordinator: impl Into<String>) -> Self {
        Self {
            nodes,
            rank,
            coordinator: coordinator.into(),
            node_address: None,
            timeout: Self::DEFAULT_TIMEOUT,
            check_every: Self::DEFAULT_CHECK_EVERY,
        }
    }

    /// Checks the numbers and addresses.
    ///
    /// # Errors
    /// A [`CsslError::Config`] naming the flag.
    pub fn check(&self) -> Result<()> {
        if self.nodes < 2 {
            return Err(CsslError::config(
                "nodes",
                format!("{}: a run across nodes has at least 2", self.nodes),
            ));
        }
        if self.rank >= self.nodes {
            return Err(CsslError::config(
                "node_rank",
                format!("{} is not below --nodes {}", self.rank, self.nodes),
            ));
        }
        if self.timeout.is_zero() {
            return Err(CsslError::config("node_timeout", "must be positive"));
        }
        host_port("coordinator", &self.coordinator)?;
        if let Some(a) = &self.node_address {
            host_port("node_address", a)?;
        }
        Ok(())
    }

    /// `HOST:PORT` of this node's tensor service.
    fn node_address(&self) -> Result<(String, u16)> {
        if let Some(a) = &self.node_address {
            return host_port("node_address", a);
        }
        let (host, port) = host_port("coordinator", &self.coordinator)?;
        let port = port
            .checked_add(1 + self.rank as u16)
            .filter(|_| self.rank < u16::MAX as usize)
            .ok_or_else(|| {
                CsslError::config(
                    "node_address",
                    "coordinator port + 1 + rank is past 65535; give --node-address",
                )
            })?;
        // The local address of a route to the coordinator (a UDP socket
        // that connects sends nothing).
        let target = (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                CsslError::config(
                    "coordinator",
                    format!("cannot resolve the host of `{}`", self.coordinator),
                )
            })?;
        let local = UdpSocket::bind(match target {
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(_) => "[::]:0",
        })
        .and_then(|s| s.connect(target).and_then(|_| s.local_addr()))
        .map_err(|e| {
            CsslError::config(
                "node_address",
                format!(
                    "no route to the coordinator {} to take this node's address from ({e}); \
                     give --node-address",
                    self.coordinator
                ),
            )
        })?;
        Ok((local.ip().to_string(), port))
    }
}

/// `s` as `(host, port)`.
fn host_port(field: &str, s: &str) -> Result<(String, u16)> {
    let bad = || {
        CsslError::config(
            field,
            format!("`{s}`: expected HOST:PORT (e.g. 10.0.0.1:29500)"),
        )
    };
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Node 0's orchestrator: what stops it, and its thread.
type Coordinator = (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
);

/// One all-reduce for the collective thread.
struct Request {
    values: Vec<f32>,
    reply: SyncSender<std::result::Result<Vec<f32>, String>>,
}

/// This process's place among the nodes of a run, joined: the link the
/// workers' gathers use ([`NodeLink`]), and the step-level exchanges of
/// [`Workers`](crate::Workers).
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    /// Node 0: stops the orchestrator, and its thread.
    coordinator: std::sync::Mutex<Option<Coordinator>>,
    requests: std::sync::Mutex<Option<SyncSender<Request>>>,
    /// Set at the first failure: every later call fails at once.
    broken: AtomicBool,
    calls: AtomicU64,
    bytes: AtomicU64,
}

impl Cluster {
    /// Joins the run: node 0 starts burn-collective's global orchestrator
    /// on the coordinator's port; every node starts its tensor service and
    /// registers, then waits (at most the timeout) for every other node.
    ///
    /// # Errors
    /// A [`CsslError::Config`] for a bad address; a [`CsslError::Cluster`]
    /// when the nodes do not all join in time.
    pub fn join(config: ClusterConfig) -> Result<Self> {
        config.check()?;
        // Warnings and errors only: burn-communication logs every
        // connection at INFO once a server starts, unless a subscriber is
        // already set (this one; a program's own, set earlier, wins).
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_writer(std::io::stderr)
            .try_init();
        let (_, port) = host_port("coordinator", &config.coordinator)?;
        let (node_host, node_port) = config.node_address()?;
        // burn's servers bind 0.0.0.0 and only log a failure to: say it here.
        let ports = match config.rank {
            0 => vec![("coordinator", port), ("node_address", node_port)],
            _ => vec![("node_address", node_port)],
        };
        for (field, p) in ports {
            if let Err(e) = std::net::TcpListener::bind(("0.0.0.0", p)) {
                return Err(CsslError::config(
                    field,
                    format!(
                        "port {p} of node {} cannot be listened on ({e}); choose free ports \
                         (--coordinator, --node-address)",
                        config.rank
                    ),
                ));
            }
        }
        let coordinator = match config.rank {
            0 => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let thread = std::thread::Builder::new()
                    .name("cssl-coordinator".into())
                    .spawn(move || {
                        let runtime = tokio::runtime::Builder::new_multi_thread()
                            .worker_threads(1)
                            .enable_all()
                            .build()
                            .expect("a tokio runtime for the coordinator");
                        // Until the run is over (or this process ends): the
                        // orchestrator's own stop is the OS's Ctrl-C, which
                        // must stop training cleanly instead.
                        runtime.block_on(async {
                            tokio::select! {
                                _ = burn_collective::start_global_orchestrator(port) => {}
                                _ = stopped => {}
                            }
                        });
                    })
                    .map_err(|e| CsslError::config("coordinator", e.to_string()))?;
                Some((stop, thread))
            }
            _ => None,
        };
        let collective = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(config.nodes as u32)
            .with_global_address(
                format!("ws://{}", config.coordinator)
                    .parse()
                    .expect("any string"),
            )
            .with_node_address(
                format!("ws://{node_host}:{node_port}")
                    .parse()
                    .expect("any string"),
            )
            .with_data_service_port(node_port);
        let (tx, rx) = sync_channel::<Request>(1);
        let (joined_tx, joined_rx) = sync_channel(1);
        let id = PeerId(config.rank as u32);
        std::thread::Builder::new()
            .name("cssl-collective".into())
            .spawn(move || collective_thread(id, collective, joined_tx, rx))
            .map_err(|e| CsslError::config("nodes", e.to_string()))?;
        let cluster = Self {
            config,
            coordinator: std::sync::Mutex::new(coordinator),
            requests: std::sync::Mutex::new(Some(tx)),
            broken: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        };
        match joined_rx.recv_timeout(cluster.config.timeout) {
            Ok(Ok(())) => Ok(cluster),
            Ok(Err(why)) => Err(cluster.error(format!("joining failed: {why}"))),
            Err(_) => Err(cluster.error(format!(
                "not every node joined within {}s of this one (coordinator {}); start all \
                 {} with the same --coordinator, or raise --node-timeout",
                cluster.config.timeout.as_secs_f64(),
                cluster.config.coordinator,
                cluster.config.nodes
            ))),
        }
    }

    /// The config it joined with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// This node's rank.
    pub fn rank(&self) -> usize {
        self.config.rank
    }

    /// Nodes in the run.
    pub fn nodes(&self) -> usize {
        self.config.nodes
    }

    /// A [`CsslError::Cluster`] for this node.
    pub fn error(&self, reason: impl Into<String>) -> CsslError {
        CsslError::Cluster {
            node: self.config.rank,
            nodes: self.config.nodes,
            reason: reason.into(),
        }
    }

    /// The element-wise sum of every node's `values` (the same length on
    /// every node).
    ///
    /// # Errors
    /// In words: a node did not answer within the timeout, or the
    /// collective failed; every later call fails at once.
    fn reduce(&self, values: Vec<f32>) -> std::result::Result<Vec<f32>, String> {
        if self.broken.load(Ordering::SeqCst) {
            return Err("an earlier exchange with the other nodes failed".into());
        }
        let n = values.len();
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(4 * n as u64, Ordering::Relaxed);
        // The ring all-reduce cuts the buffer in one piece per node.
        let mut values = values;
        values.resize(n.max(self.nodes()), 0.0);
        let (reply, answer) = sync_channel(1);
        let sent = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|tx| tx.send(Request { values, reply }).is_ok())
            .unwrap_or(false);
        let result = match sent {
            false => Err("the collective thread has stopped".to_string()),
            true => wait(&answer, self.config.timeout),
        };
        if result.is_err() {
            self.broken.store(true, Ordering::SeqCst);
        }
        let mut out = result?;
        if out.len() != n.max(self.nodes()) {
            self.broken.store(true, Ordering::SeqCst);
            return Err(format!("sent {n} values, got {} back", out.len()));
        }
        out.truncate(n);
        Ok(out)
    }

    /// Ends the run's collective: a last exchange, so that no node leaves
    /// while another still reads from it, then unregisters. Failures are
    /// ignored (the work is done); idempotent.
    fn leave(&self) {
        let Some(tx) = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        if !self.broken.load(Ordering::SeqCst) {
            let (reply, answer) = sync_channel(1);
            if tx
                .send(Request {
                    values: vec![0.0; self.nodes()],
                    reply,
                })
                .is_ok()
            {
                let _ = wait(&answer, self.config.timeout.min(Duration::from_secs(30)));
            }
        }
        // Closing the channel ends the collective thread, which unregisters.
        drop(tx);
        // Give the last reads from this node's tensor service a moment.
        std::thread::sleep(Duration::from_millis(200));
        self.stop_coordinator();
    }

    /// Node 0: stops the orchestrator (frees its port for the next run).
    fn stop_coordinator(&self) {
        let coordinator = self
            .coordinator
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, thread)) = coordinator {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Without a finished run, leave without the goodbye exchange.
        self.broken.store(true, Ordering::SeqCst);
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.stop_coordinator();
    }
}

fn wait(
    answer: &Receiver<std::result::Result<Vec<f32>, String>>,
    timeout: Duration,
) -> std::result::Result<Vec<f32>, String> {
    match answer.recv_timeout(timeout) {
        Ok(r) => r,
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "no answer from the other nodes within {}s: a node stopped, hangs, or cannot be \
             reached (--node-timeout sets the wait)",
            timeout.as_secs_f64()
        )),
        Err(RecvTimeoutError::Disconnected) => {
            Err("the collective thread failed (see the message above)".into())
        }
    }
}

/// Registers with burn-collective, then serves all-reduces until the
/// channel closes, then unregisters.
fn collective_thread(
    id: PeerId,
    config: CollectiveConfig,
    joined: SyncSender<std::result::Result<(), String>>,
    requests: Receiver<Request>,
) {
    let device = Default::default();
    if let Err(e) = register::<Flex>(id, device, config) {
        let _ = joined.send(Err(format!("{e:?}")));
        return;
    }
    let _ = joined.send(Ok(()));
    for Request { values, reply } in requests {
        let n = values.len();
        let tensor = Tensor::<Flex, 1>::from_data(TensorData::new(values, [n]), &device);
        let result = all_reduce::<Flex>(id, tensor.into_primitive().tensor(), ReduceOperation::Sum)
            .map_err(|e| match e {
                // burn-collective's server thread ended: a download from
                // another node failed (its connection closed) and panicked it.
                CollectiveError::LocalServerMissing => "the connection to another node broke (it \
                stopped or crashed, or the network failed)"
                    .to_string(),
                e => format!("burn-collective: {e:?}"),
            })
            .and_then(|t| {
                Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(t))
                    .into_data()
                    .into_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))
            });
        let failed = result.is_err();
        let _ = reply.send(result);
        if failed {
            return;
        }
    }
    let _ = finish_collective::<Flex>(id);
}

impl NodeLink for Cluster {
    fn node(&self) -> usize {
        self.rank()
    }

    fn nodes(&self) -> usize {
        self.config.nodes
    }

    fn all_reduce_sum(&self, values: Vec<f32>) -> std::result::Result<Vec<f32>, String> {
        self.reduce(values)
    }

    fn finish(&self) {
        self.leave()
    }

    /// All-reduces so far, and the bytes this node put into them (each
    /// all-reduce's buffer, 4 bytes a value; a ring all-reduce sends and
    /// receives `2 (N - 1) / N` times that per node).
    fn traffic(&self) -> Option<(u64, u64)> {
        Some((
            self.calls.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_the_launchers_variables() {
        let torchrun = [
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "10.0.0.7"),
            ("MASTER_PORT", "1234"),
        ];
        let c = ClusterConfig::from_vars(vars(&torchrun)).unwrap().unwrap();
        assert_eq!(
            (c.rank, c.nodes, c.coordinator.as_str()),
            (1, 4, "10.0.0.7:1234")
        );
        let slurm = [
            ("SLURM_PROCID", "2"),
            ("SLURM_NTASKS", "3"),
            ("MASTER_ADDR", "node01"),
        ];
        let c = ClusterConfig::from_vars(vars(&slurm)).unwrap().unwrap();
        assert_eq!(
            (c.rank, c.nodes, c.coordinator.as_str()),
            (2, 3, "node01:29500")
        );
        // One task, or none: no cluster.
        assert_eq!(ClusterConfig::from_vars(vars(&[])).unwrap(), None);
        let one = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")];
        assert_eq!(ClusterConfig::from_vars(vars(&one)).unwrap(), None);
    }

    #[test]
    fn names_what_is_missing_or_wrong() {
        let e = |pairs: &[(&str, &str)]| {
            ClusterConfig::from_vars(vars(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(e(&[("RANK", "0"), ("WORLD_SIZE", "2")]).contains("MASTER_ADDR"));
        assert!(e(&[("RANK", "x"), ("WORLD_SIZE", "2")]).contains("`RANK`"));
        assert!(e(&[("RANK", "0")]).contains("WORLD_SIZE"));
        assert!(
            e(&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")]).contains("node_rank")
        );
        let bad = ClusterConfig::new(2, 0, "no-port");
        assert!(bad.check().unwrap_err().to_string().contains("coordinator"));
        assert!(ClusterConfig::new(1, 0, "h:1").check().is_err());
    }
}
