//! What the store reads back from its own disk, which whoever can write to
//! that disk may have altered: a file record, in either of its stored
//! forms, decodes or is refused; a sealed chunk, under either cipher, is
//! refused unless authentic (which forged bytes never are).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use satchel::storage::cipher::Cipher;
use satchel::storage::crypto::{open_chunk, FileKey};
use satchel::storage::master_key::MasterKey;
use satchel::storage::{FileId, FileRecord};

static KEYS: LazyLock<[FileKey; 2]> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("store")).expect("store dir");
    let master = MasterKey::load_or_create(&dir.path().join("key"), &dir.path().join("store"))
        .expect("master key");
    Cipher::ALL.map(|cipher| master.file_key(&FileId([7; 16]), cipher))
});

fuzz_target!(|data: &[u8]| {
    let _ = FileRecord::decode(data);
    // First byte: cipher and last flag; next four: the chunk index.
    if let [flags, i0, i1, i2, i3, sealed @ ..] = data {
        let key = &KEYS[usize::from(flags & 1)];
        let last = flags & 2 != 0;
        let index = u32::from_be_bytes([*i0, *i1, *i2, *i3]);
        let mut buf = sealed.to_vec();
        let opened = open_chunk(key, &[1; 7], index, last, &mut buf);
        assert!(opened.is_err(), "forged chunk accepted");
    }
});
