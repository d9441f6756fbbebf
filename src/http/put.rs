//! PUT: receiving an upload into a slot.
//!
//! The URL alone authorises the upload: it carries the slot, sealed, and
//! [`Redeemer::redeem`] checks the request against it and begins the upload.
//! What is left here is HTTP's part: a cap on uploads in flight, a status for
//! each refusal, and the body. The body streams through a bounded channel
//! into a blocking task that encrypts, hashes and writes chunk by chunk, so
//! memory stays flat whatever the file size and the async workers never wait
//! on the disk. A small file's body (up to
//! [`SMALL_FILE_MAX_BYTES`](crate::storage::SMALL_FILE_MAX_BYTES)) is read
//! whole first instead, and redeemed, written and committed in one blocking
//! call. Nothing is visible until the storage commits the whole file; a
//! broken connection leaves a slot that can be retried until it expires.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

use super::error::HttpError;
use super::state::HttpState;
use crate::clock::unix_now;
use crate::metrics::{metrics, Method};
use crate::slots::redeem::{PutRequest, RedeemError, Redeemer};
use crate::storage::{FileId, FileRecord, StorageError, UploadWriter, SMALL_FILE_MAX_BYTES};

/// Batches buffered between the connection and the storage task.
const BODY_QUEUE: usize = 2;
/// Body frames are handed over in batches of about this size: one hand-over
/// (and one thread wake-up) per frame cost more than the hashing saved by
/// running it beside the encryption. Each upload holds a few batches (queued,
/// being sealed, being hashed), and the frames pin hyper's read buffers, so
/// this sets the memory of concurrent uploads: twice the size took half as
/// much memory again (the README's figures), for no gain in speed.
const BATCH_BYTES: usize = 128 * 1024;

/// What the connection tells the storage task.
enum BodyPiece {
    Data(Vec<Bytes>),
    End,
}

/// Stores the body of a PUT into the slot its URL carries, and counts it.
pub async fn put(
    state: State<HttpState>,
    path: Path<(String, String, String)>,
    request: Request,
) -> Result<Response, HttpError> {
    let _timer = metrics().http_timer(Method::PUT);
    let outcome = store_upload(state, path, request).await;
    match &outcome {
        Ok(_) => {
            metrics().uploads_completed.inc();
        }
        Err(error) => metrics().upload_failed(failure_kind(error.status)),
    }
    outcome
}

/// Why a PUT stored nothing, from a fixed list (the metrics' label).
fn failure_kind(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "no-slot",
        StatusCode::REQUEST_TIMEOUT => "stalled",
        StatusCode::CONFLICT => "conflict",
        StatusCode::LENGTH_REQUIRED => "length-required",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "wrong-type",
        StatusCode::SERVICE_UNAVAILABLE => "busy",
        StatusCode::INSUFFICIENT_STORAGE => "disk-full",
        _ => "storage",
    }
}

async fn store_upload(
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
            return Err(HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many uploads in progress, retry later",
            ));
        };
        let headers = request.headers();
        let put = PutRequest {
            id,
            ticket,
            content_length: headers.get(header::CONTENT_LENGTH).cloned(),
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
        };
        let declared = put
            .content_length
            .as_ref()
            .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
        let file = match declared {
            Some(length) if length <= SMALL_FILE_MAX_BYTES => {
                let body =
                    read_small_body(request.into_body(), length, state.body_idle_timeout).await?;
                store_small(state.redeemer.clone(), put, body).await?
            }
            _ => {
                let writer = redeem(state.redeemer.clone(), put).await?;
                store_body(writer, request.into_body(), state.body_idle_timeout).await?
            }
        };
        info!(size = file.size, content_type = %file.content_type, "upload complete");
        Ok((StatusCode::CREATED, "created\n").into_response())
    }
    .instrument(span)
    .await
}

/// A small file's body, read whole before the slot is redeemed (and not
/// counted until it is): at most
/// `length` bytes (hyper never yields more than the Content-Length), with
/// the idle timeout on every read.
async fn read_small_body(
    mut body: Body,
    length: u64,
    idle_timeout: Duration,
) -> Result<Vec<u8>, HttpError> {
    let mut bytes = Vec::with_capacity(length as usize);
    while let Some(data) = next_data(&mut body, idle_timeout).await? {
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// Redeems the slot, writes a small file and commits it, in one call on the
/// blocking pool: the PUT crosses threads once, and waits for one sync.
async fn store_small(
    redeemer: Redeemer,
    put: PutRequest,
    body: Vec<u8>,
) -> Result<FileRecord, HttpError> {
    let stored = tokio::task::spawn_blocking(move || {
        let now = unix_now();
        let mut writer = redeemer.redeem(&put, now).map_err(|r| refused(&r))?;
        // Counted once the slot accepts them, as a large body's frames are.
        metrics().upload_bytes.inc_by(body.len() as u64);
        writer
            .write(&body)
            .and_then(|()| writer.finish(now))
            .map_err(|error| {
                warn!(%error, "upload failed in storage");
                HttpError::from(&error)
            })
    })
    .await;
    stored.map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage task failed"))?
}

/// Redeems the slot on the blocking pool (the store blocks): the upload
/// begun, or the answer to the refusal.
async fn redeem(redeemer: Redeemer, put: PutRequest) -> Result<UploadWriter, HttpError> {
    tokio::task::spawn_blocking(move || redeemer.redeem(&put, unix_now()))
        .await
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage task failed"))?
        .map_err(|refusal| refused(&refusal))
}

/// The answer to a refused PUT; a failure of the store is logged with its cause.
fn refused(refusal: &RedeemError) -> HttpError {
    let status = match refusal {
        RedeemError::InvalidTicket => StatusCode::FORBIDDEN,
        RedeemError::LengthMissing => StatusCode::LENGTH_REQUIRED,
        RedeemError::LengthMalformed | RedeemError::ContentTypeMalformed => StatusCode::BAD_REQUEST,
        RedeemError::LengthDiffers => StatusCode::PAYLOAD_TOO_LARGE,
        RedeemError::ContentTypeDiffers => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        RedeemError::Expired => StatusCode::FORBIDDEN,
        RedeemError::OverQuota(_) => StatusCode::FORBIDDEN,
        RedeemError::Storage(error) => {
            // A second PUT to a slot is a client's retry, not a failure of ours.
            if !matches!(
                error,
                StorageError::AlreadyUploaded | StorageError::UploadInProgress
            ) {
                warn!(%error, "storage call failed");
            }
            return HttpError::from(error);
        }
    };
    HttpError {
        status,
        reason: refusal.to_string().into(),
    }
}

/// Streams `body` into `writer` and commits the file: the file stored, or
/// why not.
async fn store_body(
    writer: UploadWriter,
    body: Body,
    idle_timeout: Duration,
) -> Result<FileRecord, HttpError> {
    let (pieces_tx, pieces_rx) = mpsc::channel::<BodyPiece>(BODY_QUEUE);
    let storage_task = tokio::task::spawn_blocking(move || write_body(writer, pieces_rx));
    let received = forward_body(body, &pieces_tx, idle_timeout).await;
    if received.is_ok() {
        // The storage task may have failed already; its result says why.
        let _ = pieces_tx.send(BodyPiece::End).await;
    }
    drop(pieces_tx);
    let stored = storage_task
        .await
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage task failed"))?;
    match (received, stored) {
        (_, Ok(Some(file))) => Ok(file),
        (_, Err(error)) => {
            warn!(%error, "upload failed in storage");
            Err(HttpError::from(&error))
        }
        // The refusal's log line tells why; the slot can be retried.
        (Err(error), Ok(None)) => Err(error),
        (Ok(()), Ok(None)) => Err(HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upload not stored",
        )),
    }
}

/// The storage task: writes what the connection hands over and commits the
/// file at the end; `None` if the connection gave up first.
fn write_body(
    mut writer: UploadWriter,
    mut pieces: mpsc::Receiver<BodyPiece>,
) -> Result<Option<FileRecord>, StorageError> {
    while let Some(piece) = pieces.blocking_recv() {
        match piece {
            BodyPiece::Data(batch) => writer.write_pieces(&batch)?,
            BodyPiece::End => return writer.finish(unix_now()).map(Some),
        }
    }
    // Dropping the writer discards the attempt.
    Ok(None)
}

/// Moves the body into the storage task in batches, with an idle timeout on
/// every read.
async fn forward_body(
    mut body: Body,
    pieces: &mpsc::Sender<BodyPiece>,
    idle_timeout: Duration,
) -> Result<(), HttpError> {
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    while let Some(data) = next_data(&mut body, idle_timeout).await? {
        metrics().upload_bytes.inc_by(data.len() as u64);
        batch_bytes += data.len();
        batch.push(data);
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

/// The next data of `body` (trailers are skipped), `None` at its end; a
/// stall longer than `idle_timeout` is 408, a broken body 400.
async fn next_data(body: &mut Body, idle_timeout: Duration) -> Result<Option<Bytes>, HttpError> {
    loop {
        let frame = tokio::time::timeout(idle_timeout, body.frame())
            .await
            .map_err(|_| HttpError::new(StatusCode::REQUEST_TIMEOUT, "the upload stalled"))?;
        let Some(frame) = frame else {
            return Ok(None);
        };
        let frame = frame
            .map_err(|_| HttpError::new(StatusCode::BAD_REQUEST, "the upload was interrupted"))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::quota::Exceeded;

    #[test]
    fn every_failed_status_is_counted_under_a_known_reason() {
        for code in 400..600 {
            let kind = failure_kind(StatusCode::from_u16(code).unwrap());
            assert!(
                crate::metrics::UPLOAD_FAILURES.contains(&kind),
                "{code}: {kind}"
            );
        }
    }

    #[test]
    fn each_refusal_has_its_status_and_reason() {
        for (refusal, status, reason) in [
            (
                RedeemError::InvalidTicket,
                StatusCode::FORBIDDEN,
                "invalid upload token",
            ),
            (
                RedeemError::LengthMissing,
                StatusCode::LENGTH_REQUIRED,
                "Content-Length is required",
            ),
            (
                RedeemError::LengthMalformed,
                StatusCode::BAD_REQUEST,
                "malformed Content-Length",
            ),
            (
                RedeemError::LengthDiffers,
                StatusCode::PAYLOAD_TOO_LARGE,
                "Content-Length differs from the size of the slot",
            ),
            (
                RedeemError::ContentTypeMalformed,
                StatusCode::BAD_REQUEST,
                "malformed Content-Type",
            ),
            (
                RedeemError::ContentTypeDiffers,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type differs from the slot request",
            ),
            (
                RedeemError::Expired,
                StatusCode::FORBIDDEN,
                "upload slot expired",
            ),
            (
                RedeemError::OverQuota(Exceeded::Daily),
                StatusCode::FORBIDDEN,
                "Daily upload quota reached",
            ),
            (
                RedeemError::OverQuota(Exceeded::Storage),
                StatusCode::FORBIDDEN,
                "Storage quota reached",
            ),
            (
                RedeemError::Storage(StorageError::AlreadyUploaded),
                StatusCode::CONFLICT,
                "this slot has already been uploaded",
            ),
        ] {
            let answer = refused(&refusal);
            assert_eq!((answer.status, &*answer.reason), (status, reason));
            let kind = failure_kind(answer.status);
            assert!(crate::metrics::UPLOAD_FAILURES.contains(&kind), "{kind}");
        }
    }
}
