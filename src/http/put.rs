//! PUT: receiving an upload into a slot.
//!
//! The URL alone authorises the upload: it carries the slot, sealed (see
//! [`crate::slots::ticket`]). The body streams through a bounded
//! channel into a blocking task that encrypts, hashes and writes chunk by
//! chunk, so memory stays flat whatever the file size and the async workers
//! never wait on the disk. Nothing is visible until the storage commits the
//! whole file; a broken connection leaves a slot that can be retried until it
//! expires.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

use super::error::HttpError;
use super::HttpState;
use crate::clock::unix_now;
use crate::media::media_type_essence;
use crate::slots::quota;
use crate::slots::terms::SlotTerms;
use crate::storage::{FileId, FileRecord, StorageError};

/// Batches buffered between the connection and the storage task.
const BODY_QUEUE: usize = 2;
/// Body frames are handed over in batches of about this size: one hand-over
/// (and one thread wake-up) per frame cost more than the hashing saved by
/// running it beside the encryption. Each upload holds a few batches (queued,
/// being sealed, being hashed), and the frames pin hyper's read buffers, so
/// this sets the memory of concurrent uploads: at 256 KiB, twenty 128 MiB
/// uploads peaked at 59 MiB of RSS here, at 128 KiB at 37 MiB, for a single
/// upload's speed within the noise.
const BATCH_BYTES: usize = 128 * 1024;

/// What the connection tells the storage task.
enum BodyPiece {
    Data(Vec<Bytes>),
    End,
}

pub async fn put(
    State(state): State<HttpState>,
    Path((id, ticket, _filename)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, HttpError> {
    let id: FileId = id
        .parse()
        .map_err(|_| HttpError::new(StatusCode::NOT_FOUND, "no such upload slot"))?;
    let span = tracing::info_span!("upload", file = %id);
    async move {
        let Ok(_permit) = state.upload_permits.clone().try_acquire_owned() else {
            warn!("too many uploads in flight; refusing");
            return Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many uploads in progress, retry later",
            ));
        };
        let Some(slot) = state.tickets.open(&id, &ticket) else {
            warn!("PUT with an invalid ticket");
            return Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "invalid upload token",
            ));
        };
        let content_type = check_headers(&slot, request.headers())?;
        let now = unix_now();
        if now > slot.expires {
            // Checked after the headers: a retry of an expired slot learns the real reason.
            return Err(HttpError::new(StatusCode::FORBIDDEN, "upload slot expired"));
        }
        let expires = now.saturating_add(state.retention_for(slot.purpose).as_secs());
        let limits = state.quota;
        let writer = state
            .blocking(move |store| {
                // After `begin_upload`, so that a retry of a completed
                // upload hears that it is complete.
                let writer = store.begin_upload(&slot.new_upload(), content_type, expires)?;
                let usage = store.usage(&slot.uploader, now)?;
                Ok(quota::exceeded(limits, usage, slot.size).map_or(Ok(writer), Err))
            })
            .await?
            .map_err(|over| {
                info!(quota = over.reason(), "upload refused: over quota");
                HttpError::new(StatusCode::FORBIDDEN, over.reason())
            })?;

        let (pieces_tx, mut pieces_rx) = mpsc::channel::<BodyPiece>(BODY_QUEUE);
        let storage_task = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            while let Some(piece) = pieces_rx.blocking_recv() {
                match piece {
                    BodyPiece::Data(batch) => writer.write_pieces(&batch)?,
                    BodyPiece::End => return writer.finish(unix_now()).map(Some),
                }
            }
            // The connection gave up: dropping the writer discards the attempt.
            Ok::<Option<FileRecord>, StorageError>(None)
        });

        let received = forward_body(request.into_body(), &pieces_tx, &state).await;
        if received.is_ok() {
            // The storage task may have failed already; its result says why.
            let _ = pieces_tx.send(BodyPiece::End).await;
        }
        drop(pieces_tx);
        let stored = storage_task.await.map_err(|_| {
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage task failed")
        })?;
        match (received, stored) {
            (_, Ok(Some(file))) => {
                info!(size = file.size, content_type = %file.content_type, "upload complete");
                Ok((StatusCode::CREATED, "created\n").into_response())
            }
            (_, Err(error)) => {
                warn!(%error, "upload failed in storage");
                Err(HttpError::from(&error))
            }
            (Err(error), Ok(None)) => {
                info!(
                    reason = error.reason,
                    "upload interrupted; the slot can be retried"
                );
                Err(error)
            }
            (Ok(()), Ok(None)) => Err(HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "upload not stored",
            )),
        }
    }
    .instrument(span)
    .await
}

/// Checks Content-Length and Content-Type against the slot; returns the type to store.
fn check_headers(slot: &SlotTerms, headers: &HeaderMap) -> Result<String, HttpError> {
    let length = headers.get(header::CONTENT_LENGTH).ok_or(HttpError::new(
        StatusCode::LENGTH_REQUIRED,
        "Content-Length is required",
    ))?;
    let length: u64 = length
        .to_str()
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse().ok())
        .ok_or(HttpError::new(
            StatusCode::BAD_REQUEST,
            "malformed Content-Length",
        ))?;
    if length != slot.size {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Content-Length differs from the size of the slot",
        ));
    }
    let sent_type = match headers.get(header::CONTENT_TYPE) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| HttpError::new(StatusCode::BAD_REQUEST, "malformed Content-Type"))?
                .trim(),
        ),
        None => None,
    }
    .filter(|t| !t.is_empty());
    match (&slot.content_type, sent_type) {
        (Some(expected), Some(sent))
            if media_type_essence(expected) == media_type_essence(sent) =>
        {
            Ok(expected.clone())
        }
        (Some(_), _) => Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type differs from the slot request",
        )),
        (None, Some(sent)) => Ok(sent.to_owned()),
        (None, None) => Ok("application/octet-stream".to_owned()),
    }
}

/// Moves the body into the storage task in batches, with an idle timeout on
/// every read.
async fn forward_body(
    mut body: Body,
    pieces: &mpsc::Sender<BodyPiece>,
    state: &HttpState,
) -> Result<(), HttpError> {
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let frame = tokio::time::timeout(state.body_idle_timeout, body.frame())
            .await
            .map_err(|_| HttpError::new(StatusCode::REQUEST_TIMEOUT, "the upload stalled"))?;
        let Some(frame) = frame else {
            break;
        };
        let frame = frame
            .map_err(|_| HttpError::new(StatusCode::BAD_REQUEST, "the upload was interrupted"))?;
        if let Ok(data) = frame.into_data() {
            batch_bytes += data.len();
            batch.push(data);
        }
        if batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            if pieces
                .send(BodyPiece::Data(std::mem::take(&mut batch)))
                .await
                .is_err()
            {
                // The storage task stopped (size exceeded, disk full): it reports why.
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        // A closed channel is reported by the storage task, as above.
        let _ = pieces.send(BodyPiece::Data(batch)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Purpose;

    fn slot(content_type: Option<&str>) -> SlotTerms {
        SlotTerms {
            id: FileId([1; 16]),
            uploader: "alice@example.org".into(),
            filename: "a.png".into(),
            size: 10,
            content_type: content_type.map(str::to_owned),
            purpose: Purpose::Message,
            created: 0,
            expires: u64::MAX,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn length_must_be_present_and_equal() {
        let status = |pairs: &[(&'static str, &str)]| {
            check_headers(&slot(None), &headers(pairs))
                .unwrap_err()
                .status
        };
        assert_eq!(status(&[]), StatusCode::LENGTH_REQUIRED);
        assert_eq!(
            status(&[("content-length", "11")]),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(&[("content-length", "9")]),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        for bad in ["-10", "+10", "ten", "1e1", "99999999999999999999999"] {
            assert_eq!(
                status(&[("content-length", bad)]),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn content_type_follows_the_slot() {
        let ok = |slot_type: Option<&str>, pairs: &[(&'static str, &str)]| {
            check_headers(&slot(slot_type), &headers(pairs))
        };
        let with = |t: &'static str| [("content-length", "10"), ("content-type", t)];
        assert_eq!(
            ok(Some("image/png"), &with("image/png")).unwrap(),
            "image/png"
        );
        assert_eq!(
            ok(Some("image/png"), &with("Image/PNG")).unwrap(),
            "image/png"
        );
        assert_eq!(
            ok(Some("image/png"), &with("text/html"))
                .unwrap_err()
                .status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            ok(Some("image/png"), &[("content-length", "10")])
                .unwrap_err()
                .status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(ok(None, &with("text/plain")).unwrap(), "text/plain");
        assert_eq!(ok(None, &with("")).unwrap(), "application/octet-stream");
        assert_eq!(
            ok(None, &[("content-length", "10")]).unwrap(),
            "application/octet-stream"
        );
    }
}
