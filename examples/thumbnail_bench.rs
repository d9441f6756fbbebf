//! Timings of `make_thumbnail` on large inputs, to check that relaying a
//! phone photo stays cheap on the blocking pool.
//!
//! Run with `cargo run --release --example thumbnail_bench`. The inputs are
//! generated: a smooth gradient plus per-pixel noise, so that the encoded
//! files are about as hard to decode as camera photos (pure gradients decode
//! unrealistically fast, pure noise unrealistically slow).

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use satchel::relay::thumbnail::{make_thumbnail, ThumbnailLimits};

const RUNS: usize = 10;

fn main() {
    let photo = photo_like(4000, 3000);

    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&photo)
        .expect("JPEG encodes");
    let png = encoded(&DynamicImage::ImageRgb8(photo.clone()), ImageFormat::Png);
    // `image` only writes lossless WebP; lossy WebP from cameras and
    // messengers decodes faster than this.
    let webp = encoded(
        &DynamicImage::ImageRgb8(photo_like(2000, 2000)),
        ImageFormat::WebP,
    );

    let decode_only = timed(RUNS, || {
        image::load_from_memory(&jpeg).expect("JPEG decodes");
    });
    println!(
        "decode only, 4000x3000 JPEG q90: median {:.1} ms, fastest {:.1} ms",
        millis(decode_only.median),
        millis(decode_only.fastest)
    );

    for (name, input, declared_type) in [
        ("4000x3000 JPEG q90", &jpeg, "image/jpeg"),
        ("4000x3000 PNG", &png, "image/png"),
        ("2000x2000 WebP (lossless)", &webp, "image/webp"),
    ] {
        bench(name, input, declared_type);
    }
}

fn bench(name: &str, input: &[u8], declared_type: &str) {
    let limits = ThumbnailLimits::default();
    let mut result = None;
    let elapsed = timed(RUNS, || {
        result = Some(make_thumbnail(input, declared_type, &limits).expect("thumbnail"));
    });
    let (info, thumbnail) = result.expect("at least one run");
    println!(
        "{name} ({} KiB, {}x{}): median {:.1} ms, fastest {:.1} ms over {RUNS} runs \
         -> {} {}x{}, {} bytes",
        input.len() / 1024,
        info.width,
        info.height,
        millis(elapsed.median),
        millis(elapsed.fastest),
        thumbnail.media_type,
        thumbnail.width,
        thumbnail.height,
        thumbnail.bytes.len(),
    );
}

/// Median and fastest of `runs` runs: the fastest shows the cost on an
/// idle core when other processes compete for the CPU.
fn timed(runs: usize, mut work: impl FnMut()) -> Timing {
    let mut timings: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    timings.sort();
    Timing {
        median: timings[runs / 2],
        fastest: timings[0],
    }
}

struct Timing {
    median: Duration,
    fastest: Duration,
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn photo_like(width: u32, height: u32) -> RgbImage {
    let mut state: u32 = 0x2545_F491;
    RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let grain = (state % 48) as i32 - 24;
        let channel = |base: u32| (base as i32 + grain).clamp(0, 255) as u8;
        Rgb([
            channel(x * 255 / width),
            channel(y * 255 / height),
            channel((x + y) * 255 / (width + height)),
        ])
    })
}

fn encoded(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .expect("image encodes");
    bytes
}
