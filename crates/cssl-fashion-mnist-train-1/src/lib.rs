#![doc = include_str!("../README.md")]
#![no_std]
#![warn(missing_docs)]

/// This part's bytes (a slice of the gzip stream, not a gzip file alone).
pub const BYTES: &[u8] = include_bytes!("../data/train-images-idx3-ubyte.gz.01");
