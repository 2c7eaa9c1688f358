//! Record files (`*.mpk`: weights, optimiser state) that say what they were
//! made from, so that loading one into the wrong thing is a typed error
//! naming both sides before any tensor is used.
//!
//! Records are burn's named MessagePack in full precision (a resumed run
//! continues from the exact weights). Each file is described by a
//! [`RecordInfo`] (what it holds, the method, the config it was built from,
//! its length and CRC-32) kept in `records.json` beside it.

use crate::run::write_atomic;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::Backend;
use cssl_core::{CsslError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;

/// What a record file holds and was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordInfo {
    /// `model`, `encoder` or `optimizer`.
    pub kind: String,
    /// The method that trained it.
    pub method: String,
    /// The config it was built from (the encoder's config for an encoder,
    /// the method's for a model or an optimiser).
    pub made_from: serde_json::Value,
    /// Length of the file.
    pub bytes: u64,
    /// CRC-32 of the file.
    pub crc32: u32,
}

/// `records.json`: file name -> what it holds.
pub type Records = BTreeMap<String, RecordInfo>;

/// What a loader expects of a record.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// `model`, `encoder` or `optimizer`.
    pub kind: &'a str,
    /// The config the record must have been made from.
    pub made_from: &'a serde_json::Value,
    /// Where that config came from, for messages (e.g. `config.json`).
    pub described_by: &'a str,
}

/// Writes `record` to `path` (atomically) and describes it.
pub fn save_record<B: Backend, R: Record<B>>(
    record: R,
    path: &Path,
    kind: &str,
    method: &str,
    made_from: serde_json::Value,
) -> Result<RecordInfo> {
    let bytes = Recorder::<B>::record(&Bytes::default(), record, ())
        .map_err(|e| CsslError::record(path, format!("could not encode the {kind}: {e}")))?;
    write_atomic(path, &bytes)?;
    Ok(RecordInfo {
        kind: kind.to_string(),
        method: method.to_string(),
        made_from,
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
    })
}

/// Loads the record at `path`, described by `info`, after checking that
/// it is what `expect` asks for and that its bytes are intact.
///
/// # Errors
/// Another kind of record, a record made from another config (the message
/// names the first field that differs and both values), a truncated or
/// altered file, or bytes that do not decode.
pub fn load_record<B: Backend, R: Record<B>>(
    path: &Path,
    info: &RecordInfo,
    expect: Expect<'_>,
    device: &B::Device,
) -> Result<R> {
    if info.kind != expect.kind {
        return Err(CsslError::record(
            path,
            format!(
                "holds the `{}` record, not the `{}` one",
                info.kind, expect.kind
            ),
        ));
    }
    if let Some((field, made, described)) = first_difference(&info.made_from, expect.made_from) {
        return Err(CsslError::record(path, {
            let what = if field.is_empty() {
                format!("the {}", expect.kind)
            } else {
                format!("`{field}`")
            };
            format!(
                "was made from another config than {0}: {what} is {made} in the record \
                     but {described} in {0}",
                expect.described_by
            )
        }));
    }
    let bytes = read_verified(path, info)?;
    let device = device.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        Recorder::<B>::load::<R>(&Bytes::default(), bytes, &device)
    }))
    .map_err(|_| CsslError::record(path, format!("does not decode as a cssl {}", expect.kind)))?
    .map_err(|e| {
        CsslError::record(
            path,
            format!("does not decode as a cssl {}: {e}", expect.kind),
        )
    })
}

/// The bytes of the record file at `path`, checked against the length and
/// CRC-32 that `info` recorded when it was written.
///
/// # Errors
/// The file cannot be read, is truncated, or was altered.
pub fn read_verified(path: &Path, info: &RecordInfo) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| CsslError::io(path, e))?;
    if (bytes.len() as u64) < info.bytes {
        return Err(CsslError::record(
            path,
            format!(
                "truncated: {} of {} bytes (an interrupted copy?)",
                bytes.len(),
                info.bytes
            ),
        ));
    }
    if bytes.len() as u64 != info.bytes || crc32fast::hash(&bytes) != info.crc32 {
        return Err(CsslError::record(
            path,
            "altered or from another run: its length or checksum is not the one recorded \
             when it was written",
        ));
    }
    Ok(bytes)
}

/// Reads `records.json` in `dir`.
///
/// # Errors
/// A missing or unreadable file (a run written by another program).
pub fn read_records(dir: &Path) -> Result<Records> {
    let path = dir.join("records.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CsslError::io(
            &path,
            std::io::Error::new(
                e.kind(),
                format!("{e} (a run directory lists its weight files in records.json)"),
            ),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CsslError::record(
            &path,
            format!(
                "not a cssl record list: {e} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// The description of `name` in `records`.
pub fn record_info<'a>(records: &'a Records, dir: &Path, name: &str) -> Result<&'a RecordInfo> {
    records.get(name).ok_or_else(|| {
        CsslError::record(
            dir.join("records.json"),
            format!("does not describe {name}"),
        )
    })
}

/// The first place where `a` and `b` differ: `(path, a's value, b's value)`.
pub fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    fn walk(a: &Value, b: &Value, path: &str) -> Option<(String, String, String)> {
        match (a, b) {
            // Two different enum variants (`{"ResNet": ..}` vs `{"Amdim": ..}`).
            (Value::Object(x), Value::Object(y))
                if x.len() == 1 && y.len() == 1 && x.keys().next() != y.keys().next() =>
            {
                Some((path.to_string(), short(a), short(b)))
            }
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match y.get(k) {
                        Some(vb) => {
                            if let Some(d) = walk(va, vb, &p) {
                                return Some(d);
                            }
                        }
                        None => return Some((p, va.to_string(), "absent".into())),
                    }
                }
                y.keys().find(|k| !x.contains_key(*k)).map(|k| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    (p, "absent".into(), y[k].to_string())
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (va, vb))| walk(va, vb, &format!("{path}[{i}]"))),
            _ if a == b => None,
            _ => Some((path.to_string(), short(a), short(b))),
        }
    }
    walk(a, b, "")
}

/// `v` as JSON, cut to 100 characters.
fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use serde_json::json;

    #[test]
    fn the_first_difference_is_named_with_its_path() {
        let a = json!({"ResNet": {"width": 0.25, "layers": [2, 2]}});
        let b = json!({"ResNet": {"width": 0.5, "layers": [2, 2]}});
        assert_eq!(
            first_difference(&a, &b),
            Some(("ResNet.width".into(), "0.25".into(), "0.5".into()))
        );
        let c = json!({"Amdim": {"ndf": 32}});
        assert_eq!(
            first_difference(&a, &c),
            Some(("".into(), a.to_string(), c.to_string()))
        );
        assert_eq!(first_difference(&a, &a), None);
    }

    #[test]
    fn records_round_trip_exactly_and_refuse_what_they_were_not_made_for() {
        let dir = tempfile::tempdir().unwrap();
        let device = Default::default();
        let made = json!({"linear": [3, 2]});
        let m = cssl_core::materialize(LinearConfig::new(3, 2).init::<Flex>(&device));
        let path = dir.path().join("m.mpk");
        let info = save_record::<Flex, _>(
            m.clone().into_record(),
            &path,
            "model",
            "test",
            made.clone(),
        )
        .unwrap();
        let ok = Expect {
            kind: "model",
            made_from: &made,
            described_by: "config.json",
        };
        let r =
            load_record::<Flex, <Linear<Flex> as Module<Flex>>::Record>(&path, &info, ok, &device)
                .unwrap();
        let back = LinearConfig::new(3, 2).init::<Flex>(&device).load_record(r);
        back.weight
            .val()
            .into_data()
            .assert_eq(&m.weight.val().into_data(), true);

        let load =
            |expect: Expect<'_>| match load_record::<Flex, <Linear<Flex> as Module<Flex>>::Record>(
                &path, &info, expect, &device,
            ) {
                Ok(_) => panic!("loaded"),
                Err(e) => e.to_string(),
            };
        let err = load(Expect {
            kind: "encoder",
            ..ok
        });
        assert!(
            err.contains("holds the `model` record, not the `encoder` one"),
            "{err}"
        );
        let other = json!({"linear": [3, 4]});
        let err = load(Expect {
            made_from: &other,
            ..ok
        });
        assert!(
            err.contains("`linear[1]` is 2 in the record but 4 in config.json"),
            "{err}"
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(load(ok).contains("truncated"), "{}", load(ok));
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(
            load(ok).contains("altered or from another run"),
            "{}",
            load(ok)
        );
    }
}
