//! Side trees: the small key-value trees other parts of Satchel keep beside
//! the metadata (the relay's outbox, the awaited downloads; see `trees`),
//! in whichever database holds the metadata.
//!
//! With sled they are trees of the same database, so one flush covers
//! everything. In a cluster they are rows of one PostgreSQL table, so that
//! every instance sees them: the next leader resumes the relays the last
//! one accepted, and a download through any instance counts. The API is
//! the few operations those parts use, over bytes; each part keeps its own
//! encoding.

use super::postgres::PgMetadata;
use crate::storage::error::StorageError;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One side tree; clones share it.
#[derive(Clone)]
pub struct SideTree {
    kept: Kept,
}

/// Where a side tree is kept.
#[derive(Clone)]
enum Kept {
    Sled(sled::Tree),
    Postgres {
        metadata: PgMetadata,
        name: &'static str,
    },
}

impl SideTree {
    pub(super) fn in_sled(tree: sled::Tree) -> SideTree {
        SideTree {
            kept: Kept::Sled(tree),
        }
    }

    pub(super) fn in_postgres(metadata: PgMetadata, name: &'static str) -> SideTree {
        SideTree {
            kept: Kept::Postgres { metadata, name },
        }
    }

    /// Sets `key` to `value`.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        match &self.kept {
            Kept::Sled(tree) => {
                tree.insert(key, value)?;
                Ok(())
            }
            Kept::Postgres { metadata, name } => metadata.tree_insert(name, &[(key, value)]),
        }
    }

    /// Sets every key of `entries` to its value, all or none.
    pub fn insert_all(&self, entries: &[(&[u8], &[u8])]) -> Result<(), StorageError> {
        match &self.kept {
            Kept::Sled(tree) => {
                let mut batch = sled::Batch::default();
                for (key, value) in entries {
                    batch.insert(*key, *value);
                }
                tree.apply_batch(batch)?;
                Ok(())
            }
            Kept::Postgres { metadata, name } => metadata.tree_insert(name, entries),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.kept {
            Kept::Sled(tree) => Ok(tree.get(key)?.map(|value| value.to_vec())),
            Kept::Postgres { metadata, name } => metadata.tree_get(name, key),
        }
    }

    /// Removes `key`; whether it was there.
    pub fn remove(&self, key: &[u8]) -> Result<bool, StorageError> {
        match &self.kept {
            Kept::Sled(tree) => Ok(tree.remove(key)?.is_some()),
            Kept::Postgres { metadata, name } => metadata.tree_remove(name, key),
        }
    }

    /// Whether any key starts with `prefix`.
    pub fn has_prefix(&self, prefix: &[u8]) -> Result<bool, StorageError> {
        match &self.kept {
            Kept::Sled(tree) => Ok(tree.scan_prefix(prefix).next().transpose()?.is_some()),
            Kept::Postgres { metadata, name } => metadata.tree_has_prefix(name, prefix),
        }
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<Entry>, StorageError> {
        match &self.kept {
            Kept::Sled(tree) => tree
                .iter()
                .map(|entry| {
                    let (key, value) = entry?;
                    Ok((key.to_vec(), value.to_vec()))
                })
                .collect(),
            Kept::Postgres { metadata, name } => metadata.tree_entries(name),
        }
    }

    /// Makes every change so far durable (PostgreSQL's are at once).
    pub fn flush(&self) -> Result<(), StorageError> {
        match &self.kept {
            Kept::Sled(tree) => {
                tree.flush()?;
                Ok(())
            }
            Kept::Postgres { .. } => Ok(()),
        }
    }
}
