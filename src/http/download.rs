//! GET and HEAD: serving a stored file, whole or as one range.
//!
//! Files are immutable, so the ETag is their content hash and they may be
//! cached for ever. The body is the store's [`RangeReader`] as a stream: its
//! windows are read and opened on rayon's pool a few ahead of the
//! connection, which is woken when one is ready, so memory stays bounded, a
//! slow reader only slows its own download, and no thread sits between the
//! pool and the socket. A chunk that fails authentication ends the body
//! early, so the client sees a broken transfer, never altered bytes.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use tracing::{debug, error, warn, Instrument};

use super::error::HttpError;
use super::headers::content_disposition;
use super::range::{parse_range, RangeRequest};
use super::state::HttpState;
use crate::clock::unix_now;
use crate::metrics::{self, metrics, Timer};
use crate::storage::{FileId, FileRecord, RangeReader};

/// The query a relayed recipient's URL carries.
#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    /// The recipient's download token (see [`crate::storage::downloads`]).
    r: Option<String>,
}

/// Serves a file, whole or a range; the request's duration is recorded
/// when its body is sent (or at once, when it has none).
pub async fn get(
    State(state): State<HttpState>,
    Path((id, _filename)): Path<(String, String)>,
    Query(query): Query<DownloadQuery>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let timer = metrics().http_timer(metrics::Method::GET);
    let id: FileId = id
        .parse()
        .map_err(|_| HttpError::new(StatusCode::NOT_FOUND, "no such file"))?;
    let span = tracing::info_span!("download", file = %id);
    async move {
        let file = state
            .blocking(move |store| store.file(&id))
            .await?
            // Expired files are gone for clients even before the collector runs.
            .filter(|file| file.expires >= unix_now())
            .ok_or(HttpError::new(StatusCode::NOT_FOUND, "no such file"))?;
        let etag = etag(&file);
        let mut response = Response::builder()
            .header(header::ETAG, etag.clone())
            .header(header::CACHE_CONTROL, state.cache_control.clone())
            .header(header::ACCEPT_RANGES, "bytes");

        if if_none_match(&headers, &etag) {
            return Ok(response
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .expect("static headers are valid"));
        }

        response = response
            .header(header::CONTENT_TYPE, served_type(&file.content_type))
            .header(
                header::CONTENT_DISPOSITION,
                content_disposition(&file.content_type, &file.filename),
            );
        let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
        let range_header = range_header.filter(|_| if_range_matches(&headers, &etag));
        let range = match parse_range(range_header, file.size) {
            RangeRequest::Full => {
                response = response.status(StatusCode::OK);
                0..file.size
            }
            RangeRequest::Partial(range) => {
                response = response.status(StatusCode::PARTIAL_CONTENT).header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{}", range.start, range.end - 1, file.size),
                );
                range
            }
            RangeRequest::Unsatisfiable => {
                return Ok(response
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{}", file.size))
                    .body(Body::empty())
                    .expect("headers are valid"));
            }
        };
        response = response.header(header::CONTENT_LENGTH, range.end - range.start);
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            debug!(start = range.start, end = range.end, "serving");
            let (record, wanted) = (file.clone(), range.clone());
            let reader = state
                .blocking(move |store| store.read_range(&record, wanted))
                .await?;
            let reaches_the_end = range.end == file.size;
            decrypting_body(state, file, reader, reaches_the_end, query.r, timer)
        };
        Ok(response.body(body).expect("headers are valid"))
    }
    .instrument(span)
    .await
}

/// The body of a download: the pieces `reader` yields, counted.
fn decrypting_body(
    state: HttpState,
    file: FileRecord,
    reader: RangeReader,
    reaches_the_end: bool,
    download_token: Option<String>,
    timer: Timer,
) -> Body {
    let download = Download {
        reader,
        ending: reaches_the_end.then_some((state, file, download_token)),
        span: tracing::Span::current(),
        _timer: timer,
    };
    let pieces = futures_util::stream::unfold(Some(download), |download| async move {
        let mut download = download?;
        // RangeReader is also an Iterator, for blocking callers.
        match StreamExt::next(&mut download.reader).await {
            Some(Ok(piece)) => {
                metrics().download_bytes.inc_by(piece.len() as u64);
                // Hyper stops asking once the Content-Length is sent, so the
                // end is known from the reader, not from its `None`.
                if download.reader.is_finished() {
                    download.finished().await;
                    return Some((Ok(piece), None));
                }
                Some((Ok(piece), Some(download)))
            }
            Some(Err(cause)) => {
                let span = download.span;
                span.in_scope(
                    || error!(%cause, "stored file failed to decrypt; cutting the response"),
                );
                Some((Err(std::io::Error::other("storage failure")), None))
            }
            None => None,
        }
    });
    Body::from_stream(pieces)
}

/// A download being sent; the request's duration is recorded when it is
/// dropped: with its last piece, or when the client goes.
struct Download {
    reader: RangeReader,
    /// What records a recipient's download, when the range ends the file.
    ending: Option<(HttpState, FileRecord, Option<String>)>,
    span: tracing::Span,
    _timer: Timer,
}

impl Download {
    /// Serving the file's last byte with a recipient's token counts as
    /// their download.
    async fn finished(self) {
        let Some((state, file, Some(token))) = self.ending else {
            return;
        };
        let Some(tracker) = state.downloads else {
            return;
        };
        let id = file.id;
        let recorded = tokio::task::spawn_blocking(move || tracker.downloaded(&id, &token)).await;
        if let Ok(Err(cause)) = recorded {
            self.span
                .in_scope(|| warn!(%cause, "cannot record a download"));
        }
    }
}

/// A strong ETag from the content hash.
fn etag(file: &FileRecord) -> String {
    format!("\"{}\"", hex::encode(&file.blake3[..16]))
}

/// An empty or missing type is served as opaque bytes.
fn served_type(content_type: &str) -> HeaderValue {
    HeaderValue::from_str(content_type)
        .ok()
        .filter(|_| !content_type.trim().is_empty())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// RFC 9110 §13.1.2: a weak comparison against any listed tag, or `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// RFC 9110 §13.1.5: a Range applies only if If-Range (when present) names our ETag.
fn if_range_matches(headers: &HeaderMap, etag: &str) -> bool {
    match headers.get(header::IF_RANGE) {
        None => true,
        Some(value) => value.to_str().map(|v| v.trim() == etag).unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, value.parse().unwrap());
        map
    }

    #[test]
    fn if_none_match_forms() {
        let tag = "\"abc\"";
        assert!(if_none_match(&headers("if-none-match", "\"abc\""), tag));
        assert!(if_none_match(&headers("if-none-match", "W/\"abc\""), tag));
        assert!(if_none_match(
            &headers("if-none-match", "\"x\", \"abc\""),
            tag
        ));
        assert!(if_none_match(&headers("if-none-match", "*"), tag));
        assert!(!if_none_match(&headers("if-none-match", "\"abd\""), tag));
        assert!(!if_none_match(&HeaderMap::new(), tag));
    }

    #[test]
    fn if_range_needs_our_exact_tag() {
        let tag = "\"abc\"";
        assert!(if_range_matches(&HeaderMap::new(), tag));
        assert!(if_range_matches(&headers("if-range", "\"abc\""), tag));
        assert!(!if_range_matches(&headers("if-range", "W/\"abc\""), tag));
        assert!(!if_range_matches(
            &headers("if-range", "Tue, 01 Jan 2030 00:00:00 GMT"),
            tag
        ));
    }

    #[test]
    fn empty_type_is_served_as_octet_stream() {
        assert_eq!(served_type(""), "application/octet-stream");
        assert_eq!(served_type("image/png"), "image/png");
    }
}
