//! Images from strangers: decoding is bounded and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satchel::relay::thumbnail::{image_info, make_thumbnail, ThumbnailLimits};

fuzz_target!(|data: &[u8]| {
    let limits = ThumbnailLimits {
        max_input_pixels: 4_000_000,
        max_decode_alloc: 64 * 1024 * 1024,
        ..ThumbnailLimits::default()
    };
    let _ = image_info(data);
    let _ = make_thumbnail(data, "image/jpeg", &limits);
});
