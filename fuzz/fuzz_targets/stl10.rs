//! STL-10 image and label files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz_X.bin");
    if let Ok(px) = cssl_data::stl10::parse_stl_images(data, path) {
        assert_eq!(px.len(), data.len());
    }
    let expected = data.first().map(|&b| b as usize).unwrap_or(0);
    if let Ok(labels) = cssl_data::stl10::parse_stl_labels(data, path, expected) {
        assert!(labels.iter().all(|&l| l < 10));
    }
});
