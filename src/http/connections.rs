//! How many HTTP connections may be open, and who gives way when that many are.
//!
//! Every open connection costs a file descriptor and some memory, so their
//! number is capped. A cap alone is a lock, though: idle connections cost an
//! attacker nothing, and whoever holds the cap's worth of them keeps every
//! real client out until the header timeout reaps them, while a server that
//! stops accepting leaves newcomers hanging unseen in the kernel's backlog.
//!
//! So Satchel always accepts, and at the cap a newcomer takes the place of
//! the connection that has waited longest for a request: one that has sent
//! nothing or only part of a request head since it connected or since its
//! last response. Such a connection has nothing in flight, so closing it
//! loses no work (one that has been answered before is closed the graceful
//! way, so a response on its way out still arrives), and a flood of idle or
//! slow-header connections only ever displaces itself: a real client sends
//! its request within milliseconds of connecting and is busy, out of reach,
//! until it is answered. Only when every open connection is busy is the
//! newcomer refused, at once, with a 503 and Retry-After.
//!
//! The default cap follows the open-file limit, which Satchel raises from its
//! soft to its hard value at start-up: a connection may hold two descriptors
//! (its socket and, during a download, the file it reads), and the store and
//! the XMPP link need a few more. It is also bounded, to bound memory: a
//! connection that has sent nothing costs about 2 KiB (hyper is only started
//! on its first byte), one trickling a request head about 15 KiB (hyper's
//! read and write buffers).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tracing::{info, warn};

/// Descriptors kept for everything but connections: the store, blob files
/// being written, the XMPP link, the runtime itself.
const RESERVED_FILES: u64 = 256;
/// Largest default cap, whatever the open-file limit.
const MAX_DEFAULT_CONNECTIONS: u64 = 16_384;
/// Refused newcomers whose request is drained before closing (see `refuse`).
const MAX_LINGERING_REFUSALS: usize = 64;
const LINGER: Duration = Duration::from_secs(1);
const REFUSAL_REASON: &str = "too many connections are busy, retry later\n";

/// Raises the soft open-file limit to the hard one; returns the limit in force.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            info!(
                from = limit.rlim_cur,
                to = raised.rlim_cur,
                "open-file limit raised"
            );
            return raised.rlim_cur;
        }
        warn!(
            error = %std::io::Error::last_os_error(),
            limit = limit.rlim_cur,
            "cannot raise the open-file limit to its hard value"
        );
    }
    limit.rlim_cur
}

/// The connection cap: `configured` if the open-file limit allows it, else
/// the error to stop with; without a configured value, what the limit allows.
pub fn connection_cap(configured: Option<usize>, open_file_limit: u64) -> Result<usize, String> {
    let allowed = open_file_limit.saturating_sub(RESERVED_FILES) / 2;
    match configured {
        None if allowed == 0 => Err(format!(
            "the open-file limit ({open_file_limit}) leaves no room for HTTP connections; \
             raise it (ulimit -n, LimitNOFILE=)"
        )),
        None => Ok(allowed.min(MAX_DEFAULT_CONNECTIONS) as usize),
        Some(wanted) if wanted as u64 > allowed => Err(format!(
            "http.max_connections = {wanted} needs {} open files, but the limit is \
             {open_file_limit}; raise it (ulimit -n, LimitNOFILE=) or lower the key",
            wanted as u64 * 2 + RESERVED_FILES
        )),
        Some(wanted) => Ok(wanted),
    }
}

/// The open connections, counted, and among them those waiting for a request.
pub struct ConnectionLimit {
    max: usize,
    open: Mutex<Open>,
    lingering_refusals: Arc<Semaphore>,
}

struct Open {
    count: usize,
    next_turn: u64,
    /// Connections waiting for a request (just opened, or idle after a
    /// response), longest-waiting first, keyed by when they began to wait.
    waiting: BTreeMap<u64, Weak<OpenConnection>>,
    /// When shedding and refusing were last reported, so that a flood is
    /// logged once a minute, not once per connection.
    reported_shedding: Option<Instant>,
    reported_refusal: Option<Instant>,
}

impl Open {
    fn start_waiting(&mut self, connection: &Arc<OpenConnection>) {
        if connection.being_shed.load(Ordering::Relaxed) {
            return;
        }
        let turn = self.next_turn;
        self.next_turn += 1;
        self.waiting.insert(turn, Arc::downgrade(connection));
        connection.waiting_since.store(turn, Ordering::Relaxed);
    }

    fn stop_waiting(&mut self, connection: &OpenConnection) {
        let turn = connection
            .waiting_since
            .swap(NOT_WAITING, Ordering::Relaxed);
        self.waiting.remove(&turn);
    }

    /// Tells the longest-waiting connection to close; false if none is waiting.
    fn shed_longest_waiting(&mut self) -> bool {
        while let Some((_, connection)) = self.waiting.pop_first() {
            // A connection that cannot be upgraded is being dropped: try the next.
            if let Some(connection) = connection.upgrade() {
                connection
                    .waiting_since
                    .store(NOT_WAITING, Ordering::Relaxed);
                connection.being_shed.store(true, Ordering::Relaxed);
                // Stored if the connection is not listening yet: it closes as soon as it does.
                connection.shed.notify_one();
                return true;
            }
        }
        false
    }
}

const NOT_WAITING: u64 = u64::MAX;
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Whether a report last made at `last` may be made again; if so, it is now.
fn report_due(last: &mut Option<Instant>) -> bool {
    let due = last.is_none_or(|at| at.elapsed() >= REPORT_EVERY);
    if due {
        *last = Some(Instant::now());
    }
    due
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<ConnectionLimit> {
        Arc::new(ConnectionLimit {
            max,
            open: Mutex::new(Open {
                count: 0,
                next_turn: 0,
                waiting: BTreeMap::new(),
                reported_shedding: None,
                reported_refusal: None,
            }),
            lingering_refusals: Arc::new(Semaphore::new(MAX_LINGERING_REFUSALS)),
        })
    }

    /// Admits a newcomer, making room at the cap by shedding the connection
    /// that has waited longest for a request; None if every connection is busy.
    pub fn admit(self: &Arc<Self>) -> Option<Arc<OpenConnection>> {
        let mut open = self.lock();
        if open.count >= self.max {
            if !open.shed_longest_waiting() {
                if report_due(&mut open.reported_refusal) {
                    warn!(
                        max_connections = self.max,
                        "connection cap reached and every connection is busy; newcomers \
                         get 503 (logged once a minute)"
                    );
                }
                return None;
            }
            if report_due(&mut open.reported_shedding) {
                warn!(
                    max_connections = self.max,
                    "connection cap reached; newcomers replace the connections that have \
                     waited longest for a request (logged once a minute)"
                );
            }
        }
        open.count += 1;
        let connection = Arc::new(OpenConnection {
            limit: self.clone(),
            shed: Notify::new(),
            being_shed: AtomicBool::new(false),
            waiting_since: AtomicU64::new(NOT_WAITING),
            has_sent_a_request: AtomicBool::new(false),
        });
        open.start_waiting(&connection);
        Some(connection)
    }

    /// Answers a newcomer the cap has no room for: a 503, then the socket is
    /// drained a moment before closing, since closing it with the request
    /// still unread would reset the connection and lose the answer.
    pub fn refuse(&self, mut socket: TcpStream) {
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{REFUSAL_REASON}",
            REFUSAL_REASON.len()
        );
        // A fresh socket's send buffer has room for these few bytes.
        let _ = socket.try_write(response.as_bytes());
        let Ok(permit) = self.lingering_refusals.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _ = socket.shutdown().await;
            let mut sink = [0; 4096];
            let drain = async { while socket.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
            let _ = tokio::time::timeout(LINGER, drain).await;
            drop(permit);
        });
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // The critical sections cannot panic midway; a poisoned lock holds sound data.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One admitted connection; it leaves the count when dropped.
pub struct OpenConnection {
    limit: Arc<ConnectionLimit>,
    shed: Notify,
    /// Set under the lock once it is told to close; it never waits again.
    being_shed: AtomicBool,
    /// Its key in `Open::waiting`, or `NOT_WAITING`; changed under the lock.
    waiting_since: AtomicU64,
    has_sent_a_request: AtomicBool,
}

impl OpenConnection {
    /// A request head has arrived: the connection is busy until the returned
    /// guard, kept with the response body, is dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestInFlight {
        self.has_sent_a_request.store(true, Ordering::Relaxed);
        self.limit.lock().stop_waiting(self);
        RequestInFlight(self.clone())
    }

    /// Resolves when the connection should close to make room for a newcomer.
    pub async fn shed_requested(&self) {
        self.shed.notified().await
    }

    /// Whether a request head ever arrived: before one, closing loses nothing;
    /// after, a response may still be on its way out.
    pub fn has_sent_a_request(&self) -> bool {
        self.has_sent_a_request.load(Ordering::Relaxed)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut open = self.limit.lock();
        open.count -= 1;
        open.stop_waiting(self);
    }
}

/// A request being answered on a connection; the connection waits for the
/// next one again once this is dropped.
pub struct RequestInFlight(Arc<OpenConnection>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        // hyper answers the requests of a connection one at a time.
        self.0.limit.lock().start_waiting(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn is_shed(connection: &OpenConnection) -> bool {
        let mut shed = std::pin::pin!(connection.shed_requested());
        let waker = std::task::Waker::noop();
        shed.as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
            .is_ready()
    }

    #[test]
    fn at_the_cap_the_connection_waiting_longest_for_a_request_is_shed() {
        let limit = ConnectionLimit::new(3);
        let first = limit.admit().unwrap();
        let second = limit.admit().unwrap();
        let third = limit.admit().unwrap();
        let in_flight = first.request_started();
        // The first is busy, so the second (waiting longest) goes.
        let fourth = limit.admit().unwrap();
        assert!(is_shed(&second));
        assert!(!is_shed(&first) && !is_shed(&third));
        drop(second);
        // Once answered, the first waits again, but for less long than the third.
        drop(in_flight);
        let _fifth = limit.admit().unwrap();
        assert!(is_shed(&third) && !is_shed(&first));
        assert_eq!(
            limit.lock().count,
            4,
            "the third is closing, not closed yet"
        );
        drop(third);
        let _sixth = limit.admit().unwrap();
        assert!(is_shed(&fourth) && !is_shed(&first));
    }

    #[test]
    fn when_every_connection_is_busy_the_newcomer_is_refused() {
        let limit = ConnectionLimit::new(2);
        let first = limit.admit().unwrap();
        let second = limit.admit().unwrap();
        let first_busy = first.request_started();
        let second_busy = second.request_started();
        assert!(limit.admit().is_none());
        drop(second_busy);
        let _third = limit.admit().unwrap();
        assert!(is_shed(&second));
        drop(second);
        drop(first_busy);
        drop(first);
        assert_eq!(limit.lock().count, 1);
        assert_eq!(limit.lock().waiting.len(), 1);
    }

    #[test]
    fn default_cap_follows_the_open_file_limit() {
        assert_eq!(connection_cap(None, 1024), Ok(384));
        assert_eq!(connection_cap(None, 20_000), Ok(9_872));
        assert_eq!(connection_cap(None, 1 << 20), Ok(16_384));
        assert!(connection_cap(None, 200).is_err());
        assert_eq!(connection_cap(Some(100), 1024), Ok(100));
        let error = connection_cap(Some(5000), 1024).unwrap_err();
        assert!(error.contains("http.max_connections"), "{error}");
    }
}
