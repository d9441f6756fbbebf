//! One log line for every refused request: an operator learns why a client
//! failed from the log, not from a packet capture.
//!
//! Every answer of 400 or above is logged after it is made, at info (a
//! client's mistake) or warn (5xx, ours), with the method, the status, the
//! reason the client was told, the file id where the URL has one, and the
//! client's address. Never the path: a PUT URL carries its ticket, and the
//! ticket is the permission to upload.
//!
//! Refusals are what a flood is made of, so the lines are rate-limited: at
//! most [`LINES_PER_MINUTE`] a minute, then one summary line when the minute
//! is over saying how many were left out (as the connection cap does for
//! the connections it refuses).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tracing::{info, warn};

use crate::storage::FileId;

/// Refusals logged one by one in any minute; past this, they are counted.
pub const LINES_PER_MINUTE: u32 = 100;
const WINDOW: Duration = Duration::from_secs(60);

/// The reason a refusal gave its client, attached to the response by
/// [`super::HttpError`]; answers made elsewhere (axum's own rejections) are
/// described by their status.
#[derive(Clone, Debug)]
pub struct RefusalReason(pub Cow<'static, str>);

/// The address of the client a request came from, attached by the server.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// How many refusals were logged and left out in the current minute.
#[derive(Debug)]
pub struct RefusalLog {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    logged: u32,
    left_out: u64,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Log it; first say how many the minute before left out, if any.
    Log { left_out_before: u64 },
    /// Count it for the summary.
    LeaveOut,
}

impl Window {
    fn admit(&mut self, now: Instant) -> Admission {
        let mut left_out_before = 0;
        if self
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= WINDOW)
        {
            left_out_before = std::mem::take(&mut self.left_out);
            self.started = Some(now);
            self.logged = 0;
        }
        if self.logged < LINES_PER_MINUTE {
            self.logged += 1;
            Admission::Log { left_out_before }
        } else {
            self.left_out += 1;
            Admission::LeaveOut
        }
    }
}

impl RefusalLog {
    pub fn new() -> Arc<RefusalLog> {
        Arc::new(RefusalLog {
            window: Mutex::new(Window {
                started: None,
                logged: 0,
                left_out: 0,
            }),
        })
    }

    fn admit(&self, now: Instant) -> Admission {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(now)
    }
}

/// The middleware: answers the request, then logs the answer if it is a refusal.
pub async fn log_refusals(
    State(log): State<Arc<RefusalLog>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let file = file_id_in(request.uri().path());
    let client = request.extensions().get::<ClientAddr>().copied();
    let response = next.run(request).await;
    let status = response.status();
    if status.as_u16() < 400 {
        return response;
    }
    let left_out_before = match log.admit(Instant::now()) {
        Admission::Log { left_out_before } => left_out_before,
        Admission::LeaveOut => return response,
    };
    if left_out_before > 0 {
        warn!(
            left_out = left_out_before,
            "more requests were refused in the last minute than are logged one by one"
        );
    }
    let reason = response
        .extensions()
        .get::<RefusalReason>()
        .map(|reason| reason.0.clone())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("refused").into());
    let file = file.map(|id| id.to_string());
    let client = client.map(|ClientAddr(address)| address.to_string());
    let file = file.as_deref().unwrap_or("-");
    let client = client.as_deref().unwrap_or("-");
    let status = status.as_u16();
    if status >= 500 {
        warn!(%method, status, %reason, file, client, "request refused");
    } else {
        info!(%method, status, %reason, file, client, "request refused");
    }
    response
}

/// The file id of `/upload/{id}/…` and `/file/{id}/…`, if the URL has one.
fn file_id_in(path: &str) -> Option<FileId> {
    let mut segments = path.strip_prefix('/')?.split('/');
    match (segments.next(), segments.next()) {
        (Some("upload" | "file"), Some(id)) => id.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_up_to_the_limit_then_summed_up_a_minute_later() {
        let mut window = Window {
            started: None,
            logged: 0,
            left_out: 0,
        };
        let start = Instant::now();
        for _ in 0..LINES_PER_MINUTE {
            assert_eq!(window.admit(start), Admission::Log { left_out_before: 0 });
        }
        for _ in 0..5 {
            assert_eq!(window.admit(start + WINDOW / 2), Admission::LeaveOut);
        }
        assert_eq!(
            window.admit(start + WINDOW),
            Admission::Log { left_out_before: 5 },
            "the next minute starts with the count of the last"
        );
        assert_eq!(
            window.admit(start + WINDOW),
            Admission::Log { left_out_before: 0 }
        );
    }

    #[test]
    fn only_the_id_of_a_url_is_taken_never_its_ticket() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            file_id_in(&format!("/upload/{id}/SECRET-TICKET/a.png")).map(|f| f.to_string()),
            Some(id.to_owned())
        );
        assert_eq!(
            file_id_in(&format!("/file/{id}/a.png")).map(|f| f.to_string()),
            Some(id.to_owned())
        );
        for other in [
            "/",
            "",
            "/file/",
            "/file/not-an-id/a.png",
            &format!("/elsewhere/{id}/a"),
            &format!("//file/{id}"),
        ] {
            assert_eq!(file_id_in(other), None, "{other}");
        }
    }
}
