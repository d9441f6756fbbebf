//! Command sessions (XEP-0050 `sessionid`): what a command of several
//! stages remembers between them, for whom, and for how long.
//!
//! A session belongs to the full JID that started it: another JID naming
//! its id learns nothing (the answer is the same as for an id that never
//! existed) and does not disturb it. A stranger can make sessions grow, so
//! they are bounded three ways: each expires [`SESSION_TTL`] after its last
//! stage, a user keeps at most [`MAX_SESSIONS_PER_USER`] (starting another
//! drops their oldest), and all users together at most
//! [`MAX_SESSIONS`] (then new ones wait).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session not continued within this is gone.
pub const SESSION_TTL: Duration = Duration::from_secs(600);
/// Sessions one user (bare JID) keeps open at once.
pub const MAX_SESSIONS_PER_USER: usize = 8;
/// Sessions open at once, all users together.
pub const MAX_SESSIONS: usize = 1024;

/// Why a session cannot be continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Never existed, already over, or someone else's: one answer for all.
    #[error("Unknown session")]
    Unknown,
    #[error("The session expired; run the command again")]
    Expired,
    #[error("The session belongs to another command")]
    OtherNode,
}

/// Too many sessions are open; try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Too many command sessions are open; try again in a few minutes")]
pub struct Full;

struct Session<S> {
    /// Full JID of the requester.
    owner: String,
    /// Bare JID of the requester, for the per-user cap.
    user: String,
    node: &'static str,
    state: S,
    touched: Instant,
}

/// The open sessions, holding a state `S` each.
pub struct Sessions<S> {
    open: Mutex<HashMap<String, Session<S>>>,
}

impl<S> Default for Sessions<S> {
    fn default() -> Self {
        Sessions {
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl<S> Sessions<S> {
    /// Opens a session of `node` for `owner` (full JID; `user` its bare
    /// JID) holding `state`; returns its id.
    pub fn start(
        &self,
        owner: &str,
        user: &str,
        node: &'static str,
        state: S,
        now: Instant,
    ) -> Result<String, Full> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        open.retain(|_, session| now.duration_since(session.touched) < SESSION_TTL);
        let mut theirs: Vec<(&String, Instant)> = open
            .iter()
            .filter(|(_, session)| session.user == user)
            .map(|(id, session)| (id, session.touched))
            .collect();
        if theirs.len() >= MAX_SESSIONS_PER_USER {
            theirs.sort_by_key(|(_, touched)| *touched);
            let oldest = theirs[0].0.clone();
            open.remove(&oldest);
        } else if open.len() >= MAX_SESSIONS {
            return Err(Full);
        }
        let id = hex::encode(rand::random::<[u8; 16]>());
        open.insert(
            id.clone(),
            Session {
                owner: owner.to_owned(),
                user: user.to_owned(),
                node,
                state,
                touched: now,
            },
        );
        Ok(id)
    }

    /// Takes session `id` of `node` out, for `owner` to continue; put it
    /// back with [`resume`](Self::resume) if the command goes on.
    pub fn take(&self, id: &str, owner: &str, node: &str, now: Instant) -> Result<S, SessionError> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(session) = open.get(id) else {
            return Err(SessionError::Unknown);
        };
        if session.owner != owner {
            return Err(SessionError::Unknown);
        }
        if session.node != node {
            return Err(SessionError::OtherNode);
        }
        let session = open.remove(id).expect("looked up above");
        if now.duration_since(session.touched) >= SESSION_TTL {
            return Err(SessionError::Expired);
        }
        Ok(session.state)
    }

    /// Puts a taken session back, with a new state, for another stage.
    pub fn resume(
        &self,
        id: String,
        owner: &str,
        user: &str,
        node: &'static str,
        state: S,
        now: Instant,
    ) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        open.insert(
            id,
            Session {
                owner: owner.to_owned(),
                user: user.to_owned(),
                node,
                state,
                touched: now,
            },
        );
    }

    /// How many sessions are open (expired ones included until the next start).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice@example.org/phone";

    #[test]
    fn a_session_is_continued_only_by_its_owner_on_its_node() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions
            .start(ALICE, "alice@example.org", "files", 3, now)
            .unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(
            sessions.take(&id, "mallory@example.org/x", "files", now),
            Err(SessionError::Unknown)
        );
        assert_eq!(
            sessions.take(&id, "alice@example.org/laptop", "files", now),
            Err(SessionError::Unknown),
            "another resource of the same user is someone else too"
        );
        assert_eq!(
            sessions.take(&id, ALICE, "delete", now),
            Err(SessionError::OtherNode)
        );
        assert_eq!(sessions.take(&id, ALICE, "files", now), Ok(3));
        assert_eq!(
            sessions.take(&id, ALICE, "files", now),
            Err(SessionError::Unknown),
            "taken"
        );
        assert_eq!(
            sessions.take("nonsense", ALICE, "files", now),
            Err(SessionError::Unknown)
        );
    }

    #[test]
    fn sessions_expire() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions
            .start(ALICE, "alice@example.org", "files", (), now)
            .unwrap();
        assert_eq!(
            sessions.take(&id, ALICE, "files", now + SESSION_TTL),
            Err(SessionError::Expired)
        );
        sessions
            .start(ALICE, "alice@example.org", "files", (), now)
            .unwrap();
        sessions
            .start(ALICE, "alice@example.org", "files", (), now + SESSION_TTL)
            .unwrap();
        assert_eq!(sessions.len(), 1, "expired sessions are dropped");
    }

    #[test]
    fn one_user_cannot_hold_more_than_their_share() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let first = sessions
            .start(ALICE, "alice@example.org", "files", 0, now)
            .unwrap();
        for n in 1..=MAX_SESSIONS_PER_USER {
            let later = now + Duration::from_millis(n as u64);
            sessions
                .start(ALICE, "alice@example.org", "files", n, later)
                .unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS_PER_USER);
        assert_eq!(
            sessions.take(&first, ALICE, "files", now),
            Err(SessionError::Unknown),
            "the oldest made room"
        );
    }

    #[test]
    fn all_users_together_are_bounded() {
        let sessions = Sessions::default();
        let now = Instant::now();
        for n in 0..MAX_SESSIONS {
            let user = format!("user{n}@example.org");
            sessions.start(&user, &user, "files", (), now).unwrap();
        }
        assert_eq!(
            sessions.start(ALICE, "alice@example.org", "files", (), now),
            Err(Full)
        );
    }
}
