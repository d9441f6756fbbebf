//! Relay: Satchel delivers the media message for the sender.
//!
//! After an upload, the recipients get a small message carrying the URL, the
//! file's metadata and a server-made thumbnail, so the media previews before
//! it is downloaded, and they get it durably: also when they were offline.

pub mod delivery;
pub mod outbox;
pub mod rate_limit;
pub mod thumbnail;
