//! What an HTTP client controls: Range headers, path segments (file ids,
//! slot tickets), file names and content types on their way into headers.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use satchel::http::headers::content_disposition;
use satchel::media::{is_inline_safe, media_type_essence};
use satchel::http::range::parse_range;
use satchel::slots::filename::check_filename;
use satchel::slots::ticket::TicketKeys;
use satchel::storage::master_key::MasterKey;
use satchel::storage::FileId;

static TICKETS: LazyLock<TicketKeys> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("store")).expect("store dir");
    let master = MasterKey::load_or_create(&dir.path().join("key"), &dir.path().join("store"))
        .expect("master key");
    TicketKeys::derive(&master, [])
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let size = data.len() as u64;
    let _ = parse_range(Some(text), size);
    let _ = parse_range(Some(text), u64::MAX);
    let _ = parse_range(Some(text), 1);
    let _ = text.parse::<FileId>();
    let _ = TICKETS.open(&FileId([0; 16]), text);
    let _ = check_filename(text);
    let _ = is_inline_safe(text);
    let _ = media_type_essence(text);
    let _ = content_disposition(text, text);
});
