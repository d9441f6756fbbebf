//! The delivery jobs, one per (relay, recipient) still owed a message, and
//! the ids that lead back to them.
//!
//! Every stanza sent for a job carries an [`AttemptId`]: the relay, the
//! recipient's index and the attempt's number. A bounce or a probe answer
//! names the id, so its job is found by key, and it counts only while that
//! attempt is the job's current one: an answer to an earlier attempt is
//! stale.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

use crate::relay::record::RelayId;

/// Prefix of the ids of probes, so that their answers find their way back.
pub const PROBE_ID_PREFIX: &str = "satchel-probe-";

/// Which recipient of which relay a job delivers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub relay: RelayId,
    /// Index in the relay's recipients.
    pub recipient: usize,
}

/// One attempt of a job: written `RELAY-RECIPIENT-ATTEMPT` as the id of
/// the message it sends, and after [`PROBE_ID_PREFIX`] as the id of its
/// probe.
///
/// Ids are no secret: every recipient of a relay sees the stem of the ids
/// of the others' messages, so whoever answers must still be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptId {
    pub job: JobKey,
    pub attempt: u32,
}

impl AttemptId {
    /// The id of this attempt's probe.
    pub fn probe_id(&self) -> String {
        format!("{PROBE_ID_PREFIX}{self}")
    }

    /// The attempt a probe id names, if it is one of ours.
    pub fn of_probe(query_id: &str) -> Option<AttemptId> {
        query_id.strip_prefix(PROBE_ID_PREFIX)?.parse().ok()
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}",
            self.job.relay, self.job.recipient, self.attempt
        )
    }
}

/// An id that is not `RELAY-RECIPIENT-ATTEMPT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not the id of a relayed message")]
pub struct NotAnAttemptId;

impl FromStr for AttemptId {
    type Err = NotAnAttemptId;

    fn from_str(id: &str) -> Result<AttemptId, NotAnAttemptId> {
        let mut parts = id.splitn(3, '-');
        let (Some(relay), Some(recipient), Some(attempt)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(NotAnAttemptId);
        };
        Ok(AttemptId {
            job: JobKey {
                relay: relay.parse().map_err(|_| NotAnAttemptId)?,
                recipient: recipient.parse().map_err(|_| NotAnAttemptId)?,
            },
            attempt: attempt.parse().map_err(|_| NotAnAttemptId)?,
        })
    }
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// To be tried from this instant on.
    Due(Instant),
    /// Asking one of the recipient's resources whether it is really there.
    Probing { resource: String, since: Instant },
    /// Sent; waiting out the bounce window.
    Sent { at: Instant },
    /// Waiting for the recipient to come online.
    Held,
}

#[derive(Debug)]
pub struct Job {
    /// The recipient's bare JID.
    pub recipient: String,
    pub state: JobState,
    /// Attempts made so far (probes and messages); the current one's number.
    pub attempts: u32,
    /// The wait before the next try after a bounce.
    pub backoff: Duration,
}

impl Job {
    pub fn due(recipient: String, now: Instant, first_retry: Duration) -> Job {
        Job {
            recipient,
            state: JobState::Due(now),
            attempts: 0,
            backoff: first_retry,
        }
    }
}

/// The jobs in progress, by key.
#[derive(Debug, Default)]
pub struct JobTable {
    jobs: HashMap<JobKey, Job>,
}

impl JobTable {
    pub fn insert(&mut self, key: JobKey, job: Job) {
        self.jobs.insert(key, job);
    }

    pub fn remove(&mut self, key: JobKey) -> Option<Job> {
        self.jobs.remove(&key)
    }

    /// Forgets every job of `relay`.
    pub fn remove_relay(&mut self, relay: RelayId) {
        self.jobs.retain(|key, _| key.relay != relay);
    }

    pub fn get_mut(&mut self, key: JobKey) -> Option<&mut Job> {
        self.jobs.get_mut(&key)
    }

    /// The job whose current attempt is `attempt`, as a message waiting out
    /// its bounce window.
    pub fn sent(&mut self, attempt: AttemptId) -> Option<&mut Job> {
        self.current(attempt)
            .filter(|job| matches!(job.state, JobState::Sent { .. }))
    }

    /// The job whose current attempt is `attempt`, as a probe in flight.
    pub fn probing(&mut self, attempt: AttemptId) -> Option<&mut Job> {
        self.current(attempt)
            .filter(|job| matches!(job.state, JobState::Probing { .. }))
    }

    fn current(&mut self, attempt: AttemptId) -> Option<&mut Job> {
        self.jobs
            .get_mut(&attempt.job)
            .filter(|job| job.attempts == attempt.attempt)
    }

    /// The keys of the jobs for which `select` holds.
    pub fn select(&self, select: impl Fn(&Job) -> bool) -> Vec<JobKey> {
        self.jobs
            .iter()
            .filter(|(_, job)| select(job))
            .map(|(key, _)| *key)
            .collect()
    }

    /// Makes due now every job that `select` picks.
    pub fn make_due(&mut self, now: Instant, select: impl Fn(&Job) -> bool) {
        for job in self.jobs.values_mut().filter(|job| select(job)) {
            job.state = JobState::Due(now);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&JobKey, &Job)> {
        self.jobs.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(attempt: u32) -> AttemptId {
        AttemptId {
            job: JobKey {
                relay: RelayId([0xab; 16]),
                recipient: 3,
            },
            attempt,
        }
    }

    #[test]
    fn ids_parse_back_to_their_attempt() {
        let id = attempt(2);
        assert_eq!(id.to_string(), "abababababababababababababababab-3-2");
        assert_eq!(id.to_string().parse(), Ok(id));
        assert_eq!(AttemptId::of_probe(&id.probe_id()), Some(id));
        for junk in [
            "",
            "junk-1",
            "abababababababababababababababab-3",
            "abababababababababababababababab-x-2",
            "abababababababababababababababab-3-2-1",
            "satchel-server-info-1",
        ] {
            assert_eq!(junk.parse::<AttemptId>(), Err(NotAnAttemptId), "{junk}");
        }
        assert_eq!(AttemptId::of_probe(&id.to_string()), None);
    }

    #[test]
    fn only_the_current_attempt_finds_its_job() {
        let now = Instant::now();
        let mut table = JobTable::default();
        let mut job = Job::due("bob@example.org".into(), now, Duration::from_secs(1));
        job.attempts = 2;
        job.state = JobState::Sent { at: now };
        table.insert(attempt(2).job, job);
        assert!(table.sent(attempt(1)).is_none(), "a stale attempt");
        assert!(table.probing(attempt(2)).is_none(), "not a probe");
        assert!(table.sent(attempt(2)).is_some());
    }
}
