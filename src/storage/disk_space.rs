//! The size and free space of the filesystem holding the store, for the
//! slot service to refuse uploads that would not fit.
//!
//! Measured at most once per [`DISK_SPACE_MAX_AGE`]: a `statvfs` per slot
//! request would cost more than granting the slot.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::StorageError;

/// How stale [`Store::disk_space`](super::Store::disk_space) may be.
pub const DISK_SPACE_MAX_AGE: Duration = Duration::from_secs(1);

/// The filesystem holding the store, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total: u64,
    /// What unprivileged writers may still use.
    pub available: u64,
}

/// Measures the filesystem of one directory, remembering the last measure.
pub(super) struct DiskGauge {
    path: PathBuf,
    last: Mutex<Option<(Instant, DiskSpace)>>,
}

impl DiskGauge {
    pub fn new(path: PathBuf) -> DiskGauge {
        DiskGauge {
            path,
            last: Mutex::new(None),
        }
    }

    /// The last measure, or a new one if it is older than
    /// [`DISK_SPACE_MAX_AGE`].
    pub fn measure(&self) -> Result<DiskSpace, StorageError> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((measured, space)) = *last {
            if measured.elapsed() < DISK_SPACE_MAX_AGE {
                return Ok(space);
            }
        }
        let stats = fs4::statvfs(&self.path).map_err(|source| StorageError::Io {
            context: format!("measuring free space of {}", self.path.display()),
            source,
        })?;
        let space = DiskSpace {
            total: stats.total_space(),
            available: stats.available_space(),
        };
        *last = Some((Instant::now(), space));
        Ok(space)
    }
}
