use std::path::PathBuf;

/// Every error cssl returns. Variants name the file, offset or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum CsslError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold what its format requires.
    #[error("{path}: {reason} (at byte offset {offset})")]
    Format {
        /// The file.
        path: PathBuf,
        /// Byte offset (in the decompressed stream) where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file or folder holds something cssl cannot use, and no byte
    /// position tells where (an image too large, a folder without classes).
    #[error("{path}: {reason}")]
    Invalid {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A run or study directory is in use by another live process (an OS
    /// file lock on its `.lock` file, released when that process ends, even
    /// by kill -9).
    #[error("{path} is in use by {holder}: {reason}")]
    Locked {
        /// The directory.
        path: PathBuf,
        /// Who holds the lock (`process 1234`, as written in the lock file).
        holder: String,
        /// What was refused and what to do.
        reason: String,
    },
    /// A study ran to its end (its tables are written) but some of its cells
    /// failed or were refused: not every result it was asked for exists.
    #[error("{what}: {failed} of {total} cell runs failed or were refused ({detail})")]
    Incomplete {
        /// What ran (`study methods`).
        what: String,
        /// Cell runs (cell x seed) that failed or were refused.
        failed: usize,
        /// Cell runs asked for.
        total: usize,
        /// Where the failures are listed.
        detail: String,
    },
    /// A saved model (record, checkpoint, export) cannot be written or read,
    /// or does not match the config it should belong to.
    #[error("{path}: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration `{field}`: {reason}")]
    Config {
        /// The field, as written in `config.json` (dotted path).
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// Training stopped because it went wrong (a non-finite loss or
    /// embedding): nothing after it is a result.
    #[error("training stopped at step {step} (epoch {epoch}, batch {batch}): {reason}")]
    Diverged {
        /// Global optimiser step (1-based) that produced the value.
        step: usize,
        /// Epoch (1-based).
        epoch: usize,
        /// Batch within the epoch (1-based).
        batch: usize,
        /// What was seen and what was kept.
        reason: String,
    },
    /// A signal (Ctrl-C, SIGTERM) stopped training after a finished step.
    #[error("interrupted by {signal} after step {step}: {saved}")]
    Interrupted {
        /// `SIGINT` or `SIGTERM`.
        signal: String,
        /// Steps completed.
        step: usize,
        /// What was saved, and how to continue.
        saved: String,
    },
    /// A signal stopped a longer job (an ablation study) between or inside
    /// its runs; everything finished is kept.
    #[error("{what} stopped by {signal}: {saved}")]
    Stopped {
        /// What was stopped.
        what: String,
        /// `SIGINT` or `SIGTERM`.
        signal: String,
        /// What was kept, and how to continue.
        saved: String,
    },
    /// The nodes of a run across processes or machines lost each other (a
    /// node stopped answering, the network failed) or disagree (their
    /// models differ): this node stopped.
    #[error("node {node} of {nodes}: {reason}")]
    Cluster {
        /// This node's rank.
        node: usize,
        /// Nodes in the run.
        nodes: usize,
        /// What happened, and what was kept.
        reason: String,
    },
    /// Two parts do not fit together (e.g. a head whose input width is not the
    /// encoder's output width).
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// Where the mismatch was found.
        what: String,
        /// The expected shape.
        expected: String,
        /// The shape found.
        got: String,
    },
}

impl CsslError {
    /// Shorthand for [`CsslError::Config`].
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CsslError::Format`].
    pub fn format(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CsslError::Invalid`].
    pub fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The process exit code that reports this error: 130 for an
    /// interruption (as a shell reports Ctrl-C), 3 for a study with failed
    /// or refused cells (its tables were written), 4 for a directory in use
    /// by another process, 5 for nodes of a run that lost each other or
    /// disagree, 1 for every other error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Interrupted { .. } | Self::Stopped { .. } => 130,
            Self::Incomplete { .. } => 3,
            Self::Locked { .. } => 4,
            Self::Cluster { .. } => 5,
            _ => 1,
        }
    }

    /// Shorthand for [`CsslError::Record`].
    pub fn record(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Record {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CsslError::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`CsslError`].
pub type Result<T> = std::result::Result<T, CsslError>;
