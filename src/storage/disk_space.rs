//! The size and free space of the filesystem holding the store, for the
//! slot service to refuse uploads that would not fit, and whether it takes
//! writes at all, for `GET /health`.
//!
//! Measured at most once per [`DISK_SPACE_MAX_AGE`]: a `statvfs` per slot
//! request would cost more than granting the slot.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::StorageError;

/// The file [`DiskGauge::try_write`] writes and removes, in the store's
/// directory (beside sled's files, whose names it does not share).
const PROBE_FILE: &str = "health-probe";

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

    /// Whether the filesystem takes writes: it has room for an unprivileged
    /// writer, and a small file can be written, synced and removed.
    pub fn try_write(&self) -> Result<(), StorageError> {
        if self.measure()?.available == 0 {
            return Err(StorageError::DiskFull);
        }
        let path = self.path.join(PROBE_FILE);
        let io_error = |source| StorageError::Io {
            context: format!("writing {}", path.display()),
            source,
        };
        let mut file = std::fs::File::create(&path).map_err(io_error)?;
        file.write_all(b"ok\n").map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        std::fs::remove_file(&path).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_passes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = DiskGauge::new(dir.path().to_owned());
        gauge.try_write().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_that_is_gone_fails() {
        let dir = tempfile::tempdir().unwrap();
        let gauge = DiskGauge::new(dir.path().join("gone"));
        assert!(gauge.try_write().is_err());
    }
}
