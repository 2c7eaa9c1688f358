//! CIFAR-10 (first byte even) and CIFAR-100 (odd, fine or coarse) records.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let path = std::path::Path::new("fuzz.bin");
    let (label_bytes, label_at, classes) = match mode % 3 {
        0 => (1, 0, 10),
        1 => (2, 0, 20),
        _ => (2, 1, 100),
    };
    if let Ok((pixels, labels)) = cssl_data::cifar::parse_cifar(bytes, path, label_bytes, label_at, classes) {
        assert_eq!(pixels.len(), labels.len() * 3072);
        assert!(labels.iter().all(|&l| l < classes));
    }
});
