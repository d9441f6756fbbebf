//! The XMPP side: Satchel as an external component (XEP-0114) of the server.
//!
//! [`connection`] keeps the link to the server up, [`stream`] reads it stanza
//! by stanza, and [`router`] answers each stanza: IQ requests itself, the
//! rest through its [`delegate`] (the relay, wired in by the service).
//! [`link_state`] tells the other parts whether the link is up.
//!
//! The other modules hold the shapes of one XEP each, named after it as
//! `xmpp_parsers` names its own: [`disco`] (XEP-0030), [`http_upload`]
//! (XEP-0363), [`adhoc`] (XEP-0050), [`addresses`] (XEP-0033), [`bob`] (XEP-0231), [`hints`]
//! (XEP-0334), [`privilege`] (XEP-0356), [`file_metadata`] (XEP-0446) and
//! [`sfs`] (XEP-0447). The first three serve the router, the others the relay.

pub mod addresses;
pub mod adhoc;
pub mod bob;
pub mod connection;
pub mod delegate;
pub mod disco;
pub mod file_metadata;
pub mod hints;
pub mod http_upload;
pub mod link_state;
pub mod privilege;
pub mod router;
pub mod sfs;
pub mod stream;
