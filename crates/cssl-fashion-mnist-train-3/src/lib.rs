//! Part 3 of 3 (after the part in `cssl-fashion-mnist`) of the gzip
//! stream of Fashion-MNIST's training images (`train-images-idx3-ubyte.gz`,
//! Xiao et al., 2017, MIT licence: see `data/LICENSE`). The file is split
//! so that every crate stays within crates.io's size limit;
//! [cssl-fashion-mnist](https://docs.rs/cssl-fashion-mnist) joins the parts.
#![no_std]
#![warn(missing_docs)]

/// This part's bytes (a slice of the gzip stream, not a gzip file alone).
pub const BYTES: &[u8] = include_bytes!("../data/train-images-idx3-ubyte.gz.03");
