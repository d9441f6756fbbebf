//! Satchel: XEP-0363 HTTP File Upload for any XMPP server, as an external
//! component, with files encrypted at rest, and a relay that delivers the
//! media message with a thumbnail, also to recipients who are offline.
//!
//! # Crate map
//!
//! The modules stand in layers, from the ground up. A module imports from
//! its own layer and those below, never from one above: what a lower layer
//! needs from a higher one it names as a trait, which the top implements.
//!
//! 1. Rules and plumbing that know nothing of XMPP or HTTP: [`clock`] (unix
//!    seconds, UTC days), [`domains`] (which domains Satchel serves),
//!    [`media`] (what a browser may show inline), [`logging`] (what of a
//!    user may reach the log), [`rate_limit`] (how often one user may
//!    ask), [`config`] (the operator's file, and what SIGHUP reloads of
//!    it), [`storage`] (encrypted files; metadata in sled, or in
//!    PostgreSQL for a cluster), [`cluster`] (which instance of a cluster
//!    holds the XMPP link), [`metrics`]
//!    (the series Prometheus reads, and their listener) and [`systemd`]
//!    (telling systemd Satchel is ready).
//! 2. [`slots`]: the upload policy. Who may upload what and how much, the
//!    ticket sealed into the PUT URL, and its redemption when the PUT comes.
//! 3. The two faces of the service: [`xmpp`] (the link to the server, the
//!    router that answers disco and slot requests, one module per XEP) and
//!    [`http`] (PUT into slots, GET and HEAD of stored files).
//! 4. [`relay`]: delivering the media message to its recipients, durably.
//!    It sends through the XMPP link, and takes the stanzas the router does
//!    not answer as its [`Delegate`](xmpp::delegate::Delegate). Beside it
//!    [`commands`]: the XEP-0050 commands of users and admins, which act on
//!    the store, the slots and the relay.
//! 5. `service`, behind [`run`]: starts every part and wires them together;
//!    the one module that knows them all. Beside it [`check`], behind
//!    `satchel check-config`: tries what start-up would, without starting;
//!    and [`migrate`], behind `satchel migrate`: copies a store into
//!    another (a single node's into a cluster's).

pub mod check;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod domains;
pub mod http;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod migrate;
pub mod pem;
pub mod rate_limit;
pub mod relay;
pub mod slots;
pub mod storage;
pub mod systemd;
pub mod xmpp;

mod service;

pub use service::{run, Component, StartError};
