//! The component stream as the XMPP server sends it: any bytes after a valid
//! stream header must end in stanzas, an error or the end, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satchel::xmpp::stream::StanzaReader;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
xmlns:stream='http://etherx.jabber.org/streams' from='upload.localhost' id='fuzz'>";

fuzz_target!(|data: &[u8]| {
    let input = [HEADER, data].concat();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut reader = StanzaReader::new(input.as_slice(), 4096);
        if reader.read_header().await.is_err() {
            return;
        }
        while let Ok(Some(_)) = reader.next().await {}
    });
});
