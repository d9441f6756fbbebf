//! The XMPP side: Satchel as an external component (XEP-0114) of the server.
//!
//! `connection` keeps the link alive, `stream` reads it stanza by stanza,
//! `router` answers each stanza, and one
//! module per XEP (`disco`, `upload`) holds the protocol's shapes.

pub mod addresses;
pub mod bob;
pub mod connection;
pub mod delegate;
pub mod disco;
pub mod file_metadata;
pub mod hints;
pub mod privilege;
pub mod router;
pub mod sfs;
pub mod stream;
pub mod upload;
