//! The answer to a request that fails: a status and a short reason.
//!
//! The reason is plain text in the body, so a developer with curl sees why;
//! it never includes secrets (tokens) or anything the client did not send.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::refusals::RefusalReason;
use crate::storage::StorageError;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub reason: Cow<'static, str>,
}

impl HttpError {
    pub const fn new(status: StatusCode, reason: &'static str) -> HttpError {
        HttpError {
            status,
            reason: Cow::Borrowed(reason),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, format!("{}\n", self.reason)).into_response();
        // For the log line every refusal gets (see `super::refusals`).
        response.extensions_mut().insert(RefusalReason(self.reason));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
        }
        response
    }
}

impl From<&StorageError> for HttpError {
    fn from(error: &StorageError) -> HttpError {
        match error {
            StorageError::AlreadyUploaded => {
                HttpError::new(StatusCode::CONFLICT, "this slot has already been uploaded")
            }
            StorageError::UploadInProgress => HttpError::new(
                StatusCode::CONFLICT,
                "another upload to this slot is in progress",
            ),
            StorageError::SizeMismatch { .. } => HttpError::new(
                StatusCode::BAD_REQUEST,
                "the body does not match the declared size",
            ),
            StorageError::DiskFull => HttpError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "the server is out of storage space",
            ),
            StorageError::ObjectStore { .. } => HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the object store is unavailable; try again later",
            ),
            StorageError::Postgres { .. } => HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the metadata database is unavailable; try again later",
            ),
            _ => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage failure"),
        }
    }
}
