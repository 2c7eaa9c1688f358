//! The end-to-end jobs behind the `cssl` program and the examples, by what
//! they do: what a run is ([`config`]), pretraining ([`mod@pretrain`]),
//! evaluation ([`mod@evaluate`]) and export ([`mod@export`]). The main job pretrains
//! a method (SimCLR by default) on the embedded Fashion-MNIST, then compares
//! the learned encoder with the same encoder at its random initialisation
//! (and with raw pixels) under the same linear probe and kNN classifier.
//! Library functions return values; the command line prints them.

pub mod config;
pub mod evaluate;
pub mod export;
pub mod pretrain;

pub use config::{subset, Dataset, JobOptions, RunConfig, Splits};
pub use evaluate::{
    eval_transform, evaluate, evaluate_checkpoint, evaluate_raw_pixels, load_encoder,
    results_table, EvalOverrides, EvalSettings, JobReport, Scores,
};
pub use export::{export_encoder, import_encoder, Export, TensorNames};
pub use pretrain::{
    check_run_config, run_config, run_config_with, run_node, RunControl, RunFlags, ONLINE_KNN,
    RUN_CONTROL_FILE,
};
