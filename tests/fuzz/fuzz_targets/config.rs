//! The operator's TOML: any text gives a configuration or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satchel::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
});
