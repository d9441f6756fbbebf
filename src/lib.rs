//! Satchel: XEP-0363 HTTP File Upload for any XMPP server, as an external
//! component, with files encrypted at rest, and a relay that delivers the
//! media message with a thumbnail, also to recipients who are offline.
//!
//! The crate mirrors the parts of the service: [`xmpp`] answers the
//! server (slot requests, disco, ping), [`http`] takes uploads and serves
//! downloads, [`storage`] keeps encrypted files (metadata in sled), [`relay`]
//! delivers the media message to the recipients. [`slots`] holds the
//! policy that joins the first two: who may upload what, and the URL that
//! carries that permission.

pub mod clock;
pub mod config;
pub mod domains;
pub mod http;
pub mod logging;
pub mod media;
pub mod rate_limit;
pub mod relay;
pub mod slots;
pub mod storage;
pub mod xmpp;

mod service;

pub use service::{run, StartError};
