//! The master key: the one secret every file key is derived from.
//!
//! It lives in its own small file, *outside* the store directory, so that a
//! copy or backup of the store alone cannot decrypt anything. Because losing
//! or leaking it is so costly, loading is strict: the file must be exactly 32
//! bytes and readable by its owner only, and a key path inside the store is
//! refused outright. A missing key file is created with fresh random bytes.
//!
//! After a rotation the store holds files sealed under earlier keys: those
//! are loaded too, for reading only (`MasterKeys`).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use rand::RngCore;

use super::cipher::Cipher;
use super::crypto::{derive_file_key, FileKey};
use super::error::StorageError;
use super::records::FileId;

const KEY_LEN: usize = 32;

/// The 32-byte master key and its short public identifier.
///
/// `Debug` shows only the id: key bytes must never reach a log line.
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
    id: u32,
}

impl MasterKey {
    /// Loads the key at `path`, creating it (mode 0600) if it does not exist.
    ///
    /// `store_dir` must exist; a key path inside it is refused.
    pub fn load_or_create(path: &Path, store_dir: &Path) -> Result<MasterKey, StorageError> {
        refuse_inside_store(path, store_dir)?;
        match File::open(path) {
            Ok(file) => load(path, file),
            Err(err) if err.kind() == io::ErrorKind::NotFound => create(path),
            Err(source) => Err(StorageError::Io {
                context: format!("opening key file {}", path.display()),
                source,
            }),
        }
    }

    /// Loads a key that must already exist (an earlier generation).
    pub fn load_existing(path: &Path, store_dir: &Path) -> Result<MasterKey, StorageError> {
        refuse_inside_store(path, store_dir)?;
        let file = File::open(path).map_err(|source| StorageError::Io {
            context: format!("opening previous key file {}", path.display()),
            source,
        })?;
        load(path, file)
    }

    /// Checks the key file at `path` as loading does (a regular file of a
    /// key's length, readable by its owner only), without keeping the key:
    /// for `satchel check-config`, which may run before the store exists.
    pub fn check_file(path: &Path) -> Result<(), StorageError> {
        let file = File::open(path).map_err(|source| StorageError::Io {
            context: format!("opening key file {}", path.display()),
            source,
        })?;
        load(path, file).map(drop)
    }

    /// Identifies the key without revealing it: the first four bytes of its
    /// BLAKE3 hash. Recorded with every file so a key mix-up is detectable.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The key of file `file_id` under `cipher`, derived from this master
    /// key; each cipher gets a key of its own.
    pub fn file_key(&self, file_id: &FileId, cipher: Cipher) -> FileKey {
        derive_file_key(&self.bytes, file_id, cipher)
    }

    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        let hash = blake3::hash(&bytes);
        let mut id = [0u8; 4];
        id.copy_from_slice(&hash.as_bytes()[..4]);
        MasterKey {
            bytes,
            id: u32::from_be_bytes(id),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

/// The master key new files are sealed under, and the earlier generations
/// still needed to read the files they sealed (see "Rotating the master key"
/// in the README).
pub(super) struct MasterKeys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// Loads (or creates) the current key at `key_file` and loads the
    /// earlier ones, which must exist. `store_dir` must exist; key paths
    /// inside it are refused.
    pub fn load(
        key_file: &Path,
        previous_key_files: &[PathBuf],
        store_dir: &Path,
    ) -> Result<MasterKeys, StorageError> {
        let current = MasterKey::load_or_create(key_file, store_dir)?;
        let previous = previous_key_files
            .iter()
            .map(|path| MasterKey::load_existing(path, store_dir))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MasterKeys { current, previous })
    }

    /// The key new files are sealed under.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The earlier generations, for reading only.
    pub fn previous(&self) -> &[MasterKey] {
        &self.previous
    }

    /// The key, current or earlier, whose id is `key_id`.
    pub fn by_id(&self, key_id: u32) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id() == key_id)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey {{ id: {:08x} }}", self.id)
    }
}

fn key_file_error(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::KeyFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn canonicalize(path: &Path) -> Result<PathBuf, StorageError> {
    fs::canonicalize(path).map_err(|source| StorageError::Io {
        context: format!("resolving {}", path.display()),
        source,
    })
}

/// Resolves symbolic links and `..` on both sides before comparing, so the
/// key cannot sneak into the store through another spelling of its path.
fn refuse_inside_store(path: &Path, store_dir: &Path) -> Result<(), StorageError> {
    let store_dir = canonicalize(store_dir)?;
    let resolved = if path.exists() {
        canonicalize(path)?
    } else {
        let file_name = path
            .file_name()
            .ok_or_else(|| key_file_error(path, "the key path does not name a file"))?;
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        canonicalize(parent)?.join(file_name)
    };
    if resolved.starts_with(&store_dir) {
        return Err(key_file_error(
            path,
            format!(
                "the key file must not be inside the store directory {}: \
                 anyone with a copy of the store could then decrypt it",
                store_dir.display()
            ),
        ));
    }
    Ok(())
}

fn load(path: &Path, file: File) -> Result<MasterKey, StorageError> {
    let metadata = file.metadata().map_err(|source| StorageError::Io {
        context: format!("reading metadata of key file {}", path.display()),
        source,
    })?;
    if !metadata.is_file() {
        return Err(key_file_error(path, "not a regular file"));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_file_error(
            path,
            format!(
                "mode {mode:04o} lets other users read the master key; run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    // Read one byte more than a key so a longer file is noticed.
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    file.take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| StorageError::Io {
            context: format!("reading key file {}", path.display()),
            source,
        })?;
    let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|bytes: Vec<u8>| {
        key_file_error(
            path,
            format!(
                "holds {}{} bytes, a master key is exactly {KEY_LEN}",
                bytes.len(),
                if bytes.len() > KEY_LEN {
                    " or more"
                } else {
                    ""
                }
            ),
        )
    })?;
    Ok(MasterKey::from_bytes(bytes))
}

fn create(path: &Path) -> Result<MasterKey, StorageError> {
    let mut bytes = [0u8; KEY_LEN];
    OsRng.fill_bytes(&mut bytes);
    let io_error = |context: &str| {
        let context = format!("{context} key file {}", path.display());
        move |source| StorageError::Io { context, source }
    };
    // `create_new` so that two processes racing here cannot both win and
    // end up with different keys.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("creating"))?;
    file.write_all(&bytes).map_err(io_error("writing"))?;
    file.sync_all().map_err(io_error("syncing"))?;
    tracing::info!(path = %path.display(), "created a new master key");
    Ok(MasterKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("store");
        fs::create_dir(&store).unwrap();
        (root, store)
    }

    #[test]
    fn creates_then_loads_the_same_key() {
        let (root, store) = dirs();
        let path = root.path().join("master.key");
        let created = MasterKey::load_or_create(&path, &store).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(&path).unwrap().len(), KEY_LEN);

        let loaded = MasterKey::load_or_create(&path, &store).unwrap();
        assert_eq!(created.bytes(), loaded.bytes());
        assert_eq!(created.id(), loaded.id());
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let key = MasterKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{key:?}");
        assert_eq!(shown, format!("MasterKey {{ id: {:08x} }}", key.id()));
    }

    #[test]
    fn refuses_a_key_inside_the_store() {
        let (_root, store) = dirs();
        let result = MasterKey::load_or_create(&store.join("master.key"), &store);
        assert!(matches!(result, Err(StorageError::KeyFile { .. })));

        fs::create_dir(store.join("sub")).unwrap();
        let sneaky = store.join("sub").join("..").join("master.key");
        let result = MasterKey::load_or_create(&sneaky, &store);
        assert!(matches!(result, Err(StorageError::KeyFile { .. })));
        assert!(!store.join("master.key").exists());
    }

    #[test]
    fn refuses_a_key_reaching_the_store_through_a_symlink() {
        let (root, store) = dirs();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&store, &link).unwrap();
        let result = MasterKey::load_or_create(&link.join("master.key"), &store);
        assert!(matches!(result, Err(StorageError::KeyFile { .. })));
    }

    #[test]
    fn refuses_a_key_readable_by_others() {
        let (root, store) = dirs();
        let path = root.path().join("master.key");
        MasterKey::load_or_create(&path, &store).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = MasterKey::load_or_create(&path, &store).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StorageError::KeyFile { .. }));
        assert!(message.contains("chmod 600"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn refuses_a_key_of_the_wrong_length() {
        let (root, store) = dirs();
        for len in [0, 31, 33, 64] {
            let path = root.path().join(format!("short-{len}.key"));
            fs::write(&path, vec![1u8; len]).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let result = MasterKey::load_or_create(&path, &store);
            assert!(
                matches!(result, Err(StorageError::KeyFile { .. })),
                "length {len}"
            );
        }
    }
}
