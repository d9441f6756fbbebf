//! Slot and relay requests as a user can shape them: any element the stream
//! reader accepts goes through both parsers without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minidom::Element;
use satchel::relay::request;
use satchel::xmpp::http_upload::parse_request;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(element) = text.parse::<Element>() else {
        return;
    };
    let _ = parse_request(&element);
    let from: jid::Jid = "alice@example.org/fuzz".parse().unwrap();
    let _ = request::parse(&element, from, 50, "upload.example.org/file/");
    let _ = request::file_of_url(text, "upload.example.org/file/");
});
