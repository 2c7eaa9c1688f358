//! The idx parser must return Ok or a typed error on any bytes, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.idx");
    if let Ok(a) = cssl_data::idx::parse_idx(data, path) {
        assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
    }
});
