//! What an HTTP client controls: Range headers, path segments (file ids,
//! tokens), file names and content types on their way into headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satchel::http::headers::{content_disposition, is_inline_safe, media_type_essence};
use satchel::http::range::parse_range;
use satchel::slots::filename::check_filename;
use satchel::slots::token::token_matches;
use satchel::storage::FileId;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let size = data.len() as u64;
    let _ = parse_range(Some(text), size);
    let _ = parse_range(Some(text), u64::MAX);
    let _ = parse_range(Some(text), 1);
    let _ = text.parse::<FileId>();
    let _ = token_matches(text, &[0; 32]);
    let _ = check_filename(text);
    let _ = is_inline_safe(text);
    let _ = media_type_essence(text);
    let _ = content_disposition(text, text);
});
