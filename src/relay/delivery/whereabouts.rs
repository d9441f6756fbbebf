//! What Satchel has learned of where its recipients are, on the current
//! link: the resources the server said are online (XEP-0356 presence
//! permission), who was seen leaving or had a message bounce, and who just
//! answered a probe.
//!
//! None of it is stored: it is forgotten when the link goes down, and after
//! a (re)connection a recipient is unknown until the server says otherwise.

use std::collections::{HashMap, HashSet};

use tracing::debug;

use super::route::RecipientKnowledge;
use crate::logging::LoggedJid;

/// Resources remembered per user: a server has a few per user; a remote
/// one could claim any number.
pub const MAX_RESOURCES_PER_JID: usize = 32;

#[derive(Debug, Default)]
pub struct Whereabouts {
    /// Bare JID -> its available resources.
    online: HashMap<String, HashSet<String>>,
    /// Recipients seen going offline, or whose message bounced, while
    /// presence is visible: their messages wait for them to come back.
    known_offline: HashSet<String>,
    /// Recipients whose resource just answered a probe: the next message to
    /// them goes out as the sender without another probe.
    answered_probe: HashSet<String>,
}

impl Whereabouts {
    /// A resource of `jid` is available.
    pub fn came_online(&mut self, jid: &str, resource: String) {
        let resources = self.online.entry(jid.to_owned()).or_default();
        if resources.len() < MAX_RESOURCES_PER_JID {
            resources.insert(resource);
        } else if !resources.contains(&resource) {
            debug!(jid = %LoggedJid(jid), "too many resources; not remembering another");
        }
        self.known_offline.remove(jid);
    }

    /// A resource of `jid` went away; an entry goes with its last resource,
    /// so the map holds only who is online.
    pub fn went_offline(&mut self, jid: &str, resource: &str) {
        let last_gone = self.online.get_mut(jid).is_none_or(|resources| {
            resources.remove(resource);
            resources.is_empty()
        });
        if last_gone {
            self.online.remove(jid);
            self.known_offline.insert(jid.to_owned());
        }
    }

    /// A message to `jid` bounced: they are not there.
    pub fn bounced(&mut self, jid: &str) {
        self.known_offline.insert(jid.to_owned());
    }

    /// `resource` of `jid` answered a probe, or failed to.
    pub fn probe_answered(&mut self, jid: &str, resource: &str, reachable: bool) {
        if reachable {
            self.answered_probe.insert(jid.to_owned());
        } else if let Some(resources) = self.online.get_mut(jid) {
            resources.remove(resource);
            if resources.is_empty() {
                self.online.remove(jid);
            }
        }
    }

    /// Uses up the answer to a probe of `jid`: a later message needs a new one.
    pub fn spend_probe_answer(&mut self, jid: &str) {
        self.answered_probe.remove(jid);
    }

    /// What is known of `jid`, for the route decision.
    pub fn of(&self, jid: &str) -> RecipientKnowledge<'_> {
        RecipientKnowledge {
            known_offline: self.known_offline.contains(jid),
            answered_probe: self.answered_probe.contains(jid),
            resource_to_probe: self
                .online
                .get(jid)
                .and_then(|resources| resources.iter().next())
                .map(String::as_str),
        }
    }

    /// The link is down: what the server said no longer holds.
    pub fn forget(&mut self) {
        *self = Whereabouts::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_memory_is_bounded_and_freed() {
        let mut whereabouts = Whereabouts::default();
        for resource in 0..10_000 {
            whereabouts.came_online("bob@example.org", format!("r{resource}"));
        }
        assert_eq!(
            whereabouts.online["bob@example.org"].len(),
            MAX_RESOURCES_PER_JID
        );
        for resource in 0..10_000 {
            whereabouts.went_offline("bob@example.org", &format!("r{resource}"));
        }
        assert!(whereabouts.online.is_empty(), "nobody online, nothing kept");
        assert!(whereabouts.known_offline.contains("bob@example.org"));
    }

    #[test]
    fn a_failed_probe_forgets_the_resource_and_a_good_answer_is_used_once() {
        let mut whereabouts = Whereabouts::default();
        whereabouts.came_online("bob@example.org", "phone".into());
        assert_eq!(
            whereabouts.of("bob@example.org").resource_to_probe,
            Some("phone")
        );
        whereabouts.probe_answered("bob@example.org", "phone", false);
        assert_eq!(
            whereabouts.of("bob@example.org"),
            RecipientKnowledge::default()
        );

        whereabouts.probe_answered("bob@example.org", "laptop", true);
        assert!(whereabouts.of("bob@example.org").answered_probe);
        whereabouts.spend_probe_answer("bob@example.org");
        assert!(!whereabouts.of("bob@example.org").answered_probe);
    }

    #[test]
    fn coming_back_clears_known_offline() {
        let mut whereabouts = Whereabouts::default();
        whereabouts.bounced("bob@example.org");
        assert!(whereabouts.of("bob@example.org").known_offline);
        whereabouts.came_online("bob@example.org", "phone".into());
        assert!(!whereabouts.of("bob@example.org").known_offline);
    }
}
