//! What the router passes on: the stanzas it does not answer itself.
//!
//! The [`Router`](super::router::Router) answers IQ requests (disco, ping,
//! slot requests) on its own. Messages, presences, the answers to Satchel's
//! own queries and the link's comings and goings concern the relay, which
//! stands a layer above the XMPP side: it builds its stanzas with the XMPP
//! side's parsers and sends them through its link. So the router does not
//! name the relay; it hands those stanzas to a [`Delegate`], and the wiring
//! (`service.rs`) makes the relay one. The router's tests use a stand-in.
//!
//! The link hands each stanza for the delegate to the router in a task of
//! its own (it answers only the router's own IQ requests on its reading
//! task, [`Router::answers_at_once`](super::router::Router::answers_at_once)),
//! so calls may overlap and must not block: a slow call holds one of the link's
//! handler slots, not the link. [`Delegate::link_up`] comes before the first
//! stanza of a link is read, and what it returns goes out before anything
//! else; [`Delegate::link_down`] comes once the link is lost.
//!
//! XEP-0050 commands are answered above the XMPP side too (they act on the
//! store, the slots and the relay): the router reads the `<command/>` and
//! the commands' disco#items query and asks the delegate
//! ([`Delegate::command_items`], [`Delegate::execute_command`]), which by
//! default has no commands.

use std::future::Future;

use jid::Jid;
use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::adhoc::{CommandRequest, CommandResponse, ListedCommand};

/// Takes the stanzas the router does not answer itself.
pub trait Delegate: Send + Sync + 'static {
    /// A message addressed to the component. Returns the answer to send, if any.
    fn handle_message(&self, message: Element) -> impl Future<Output = Option<Element>> + Send;

    /// A presence the server forwards to the component.
    fn handle_presence(&self, presence: &Element) -> impl Future<Output = ()> + Send;

    /// An IQ result or error addressed to the component; true if it answers
    /// something the delegate asked.
    fn handle_iq_response(&self, iq: &Element) -> impl Future<Output = bool> + Send;

    /// The link came up: the stanzas to send before any other.
    fn link_up(&self) -> Vec<Element>;

    /// The link went down; what is sent from now on waits for the next one.
    fn link_down(&self);

    /// The commands `asker` may run, for disco#items on the commands node.
    fn command_items(&self, asker: &Jid) -> Vec<ListedCommand> {
        let _ = asker;
        Vec::new()
    }

    /// Runs (a stage of) a command for `asker`; the error is the IQ's answer.
    fn execute_command(
        &self,
        asker: &Jid,
        request: CommandRequest,
    ) -> impl Future<Output = Result<CommandResponse, StanzaError>> + Send {
        let _ = (asker, request);
        async {
            Err(StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "en",
                "No such command",
            ))
        }
    }
}
