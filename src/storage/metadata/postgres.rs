//! The metadata database in PostgreSQL, for cluster mode
//! (`metadata.backend = "postgres"`): what the sled backend keeps, in
//! tables every instance shares, and the claims that make a slot
//! single-use across instances.
//!
//! | table             | one row per                                                          |
//! |-------------------|----------------------------------------------------------------------|
//! | `satchel_files`   | completed file: uploader, expiry, size, master key, the encoded [`FileRecord`], a small file's sealed chunks |
//! | `satchel_uploads` | id that may own a blob without a record, and since when              |
//! | `satchel_usage`   | uploader: bytes stored, the UTC day counted and its bytes            |
//! | `satchel_claims`  | id someone works on: who, until when, and an upload's reserved bytes |
//! | `satchel_leader`  | the leadership: which instance holds the XMPP link, until when       |
//! | `satchel_trees`   | entry of a side tree (the relay's outbox, the awaited downloads)     |
//!
//! The indexes of the sled backend are PostgreSQL indexes here (by expiry,
//! by uploader), so they cannot disagree with the rows either.
//!
//! Claims are leases timed by the database's clock (`now()`), so instances
//! whose clocks differ still agree on when one has run out: an upload cut
//! off by a dead instance can be retried on another once its lease ends,
//! and never while its owner still renews it. An upload claims its id and
//! reserves its size in one transaction that first locks its uploader's
//! usage row, so that concurrent uploads of one user, on any instance,
//! queue there and each sees the others' reservations: they admit exactly
//! the room there is. The commit settles the reservation (usage counted,
//! claim deleted) in the transaction that publishes the record, and only if
//! the claim is still this instance's. Nothing relies on the object store's
//! conditional writes (Garage ignores them).
//!
//! Like the rest of the store, these calls block: they run the database's
//! futures on Satchel's runtime from the store's blocking threads.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::runtime::Handle;
use tokio_postgres::NoTls;

use super::pg_tls;
use super::side_tree::Entry;
use super::{FilesPerKey, PostgresCluster};
use crate::clock::utc_day;
use crate::storage::error::StorageError;
use crate::storage::quota::{exceeded, QuotaCheck};
use crate::storage::records::{FileId, FileRecord, UserUsage};

/// Connections per instance; each blocking store call holds one.
const POOL_SIZE: usize = 16;
/// A database that does not answer within this is down, for a PUT's sake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for a free connection before failing.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// Rows fetched per query when walking every file.
const WALK_BATCH: i64 = 1000;

/// Created at every start if missing; a transaction-scoped advisory lock
/// keeps instances starting together from racing on the catalogs.
const SCHEMA: &str = "
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(736174636865);
CREATE TABLE IF NOT EXISTS satchel_files (
    id bytea PRIMARY KEY,
    uploader text NOT NULL,
    expires bigint NOT NULL,
    size bigint NOT NULL,
    key_id bigint NOT NULL,
    record bytea NOT NULL,
    small_file bytea
);
CREATE INDEX IF NOT EXISTS satchel_files_by_expiry ON satchel_files (expires, id);
CREATE INDEX IF NOT EXISTS satchel_files_by_user ON satchel_files (uploader, expires, id);
CREATE TABLE IF NOT EXISTS satchel_uploads (
    id bytea PRIMARY KEY,
    started bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS satchel_usage (
    uploader text PRIMARY KEY,
    stored_bytes bigint NOT NULL DEFAULT 0,
    day bigint NOT NULL DEFAULT 0,
    day_bytes bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS satchel_claims (
    id bytea PRIMARY KEY,
    owner text NOT NULL,
    lease_until timestamptz NOT NULL,
    uploader text,
    reserved bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS satchel_claims_by_user ON satchel_claims (uploader);
CREATE TABLE IF NOT EXISTS satchel_trees (
    tree text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);
CREATE TABLE IF NOT EXISTS satchel_leader (
    role text PRIMARY KEY,
    owner text NOT NULL,
    lease_until timestamptz NOT NULL
);
";

/// Takes or renews the leadership: granted to its holder, or to anyone
/// once its lease has run out.
const LEAD: &str = "
INSERT INTO satchel_leader (role, owner, lease_until)
VALUES ('component', $1, now() + make_interval(secs => $2))
ON CONFLICT (role) DO UPDATE
    SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
    WHERE satchel_leader.owner = EXCLUDED.owner OR satchel_leader.lease_until < now()
RETURNING owner";

/// Takes the claim on an id unless a live lease holds it.
const TAKE_CLAIM: &str = "
INSERT INTO satchel_claims (id, owner, lease_until, uploader, reserved)
VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)
ON CONFLICT (id) DO UPDATE
    SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until,
        uploader = EXCLUDED.uploader, reserved = EXCLUDED.reserved
    WHERE satchel_claims.lease_until < now()
RETURNING id";

/// Adds a completed upload to its uploader's usage, starting the day afresh
/// when the stored one is not the upload's.
const COUNT_UPLOAD: &str = "
INSERT INTO satchel_usage AS u (uploader, stored_bytes, day, day_bytes)
VALUES ($1, $2, $3, $2)
ON CONFLICT (uploader) DO UPDATE
    SET stored_bytes = u.stored_bytes + $2,
        day_bytes = CASE WHEN u.day = $3 THEN u.day_bytes + $2 ELSE $2 END,
        day = $3";

/// The metadata of one store in PostgreSQL; clones share the pool.
#[derive(Clone)]
pub(in crate::storage) struct PgMetadata {
    pool: Pool,
    runtime: Handle,
    /// This instance's view of the store's totals: counted at open, kept up
    /// to date by its own commits and deletions, recounted by
    /// [`recount`](Self::recount) (at every garbage collection).
    stored_bytes: Arc<AtomicU64>,
    stored_files: Arc<AtomicU64>,
    /// Who this process is in `satchel_claims`: the instance's name and a
    /// random token, so that a restarted instance does not take the claims
    /// of its former self for its own.
    owner: Arc<str>,
    /// How long a claim lasts unless renewed.
    lease: Duration,
}

/// What [`PgMetadata::claim_upload`] found.
pub(in crate::storage) enum UploadClaim {
    Taken,
    InProgress,
    AlreadyUploaded,
    OverQuota(crate::storage::quota::Exceeded),
}

impl PgMetadata {
    /// Connects to the cluster's database as this instance, whose claims
    /// last the cluster's lease unless renewed, creates the tables if
    /// missing, and counts the files. Must run inside Satchel's runtime.
    pub fn open(cluster: &PostgresCluster) -> Result<(PgMetadata, FilesPerKey), StorageError> {
        let (pool, runtime) = connect(cluster)?;
        let PostgresCluster {
            instance, lease, ..
        } = cluster;
        let metadata = PgMetadata {
            pool,
            runtime,
            stored_bytes: Arc::default(),
            stored_files: Arc::default(),
            owner: format!("{instance}/{:016x}", rand::random::<u64>()).into(),
            lease: *lease,
        };
        metadata.wait(async {
            let mut client = metadata.client().await?;
            let transaction = client
                .transaction()
                .await
                .map_err(failed("creating the tables"))?;
            transaction
                .batch_execute(SCHEMA)
                .await
                .map_err(failed("creating the tables"))?;
            transaction
                .commit()
                .await
                .map_err(failed("creating the tables"))
        })?;
        let files_per_key = metadata.recount()?;
        Ok((metadata, files_per_key))
    }

    /// Runs `call` to completion from a thread that may block.
    fn wait<F: Future>(&self, call: F) -> F::Output {
        tokio::task::block_in_place(|| self.runtime.block_on(call))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StorageError> {
        checkout(&self.pool).await
    }

    /// Runs one statement and returns its rows.
    fn query(
        &self,
        context: &str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        self.wait(async {
            let client = self.client().await?;
            let statement = client.prepare_cached(sql).await.map_err(failed(context))?;
            client
                .query(&statement, params)
                .await
                .map_err(failed(context))
        })
    }

    /// Recounts the files and bytes stored, and the files per master key.
    pub fn recount(&self) -> Result<FilesPerKey, StorageError> {
        let rows = self.query(
            "counting the files",
            "SELECT key_id, count(*), sum(size)::bigint FROM satchel_files GROUP BY key_id",
            &[],
        )?;
        let mut files_per_key = FilesPerKey::new();
        let mut stored_bytes = 0u64;
        for row in rows {
            let key_id = u32::try_from(row.get::<_, i64>(0))
                .map_err(|_| StorageError::Decode("key id out of range".into()))?;
            files_per_key.insert(key_id, unsigned(row.get(1), "file count")?);
            stored_bytes = stored_bytes.saturating_add(unsigned(row.get(2), "stored bytes")?);
        }
        self.stored_bytes.store(stored_bytes, Ordering::Relaxed);
        self.stored_files
            .store(files_per_key.values().sum(), Ordering::Relaxed);
        Ok(files_per_key)
    }

    pub fn holds_files(&self) -> Result<bool, StorageError> {
        let rows = self.query(
            "looking for files",
            "SELECT 1 FROM satchel_files LIMIT 1",
            &[],
        )?;
        Ok(!rows.is_empty())
    }

    pub fn file(&self, id: &FileId) -> Result<Option<FileRecord>, StorageError> {
        let rows = self.query(
            "reading a file record",
            "SELECT record FROM satchel_files WHERE id = $1",
            &[&id.0.as_slice()],
        )?;
        rows.first()
            .map(|row| decode_record(row.get(0), id))
            .transpose()
    }

    pub fn has_file(&self, id: &FileId) -> Result<bool, StorageError> {
        let rows = self.query(
            "looking for a file",
            "SELECT 1 FROM satchel_files WHERE id = $1",
            &[&id.0.as_slice()],
        )?;
        Ok(!rows.is_empty())
    }

    pub fn small_file(&self, id: &FileId) -> Result<Option<Vec<u8>>, StorageError> {
        let rows = self.query(
            "reading a small file",
            "SELECT small_file FROM satchel_files WHERE id = $1",
            &[&id.0.as_slice()],
        )?;
        Ok(rows.first().and_then(|row| row.get(0)))
    }

    pub fn record_upload(&self, id: &FileId, started: u64) -> Result<(), StorageError> {
        self.query(
            "recording an upload",
            "INSERT INTO satchel_uploads (id, started) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET started = EXCLUDED.started",
            &[&id.0.as_slice(), &signed(started)?],
        )?;
        Ok(())
    }

    pub fn forget_upload(&self, id: &FileId) -> Result<(), StorageError> {
        self.query(
            "forgetting an upload",
            "DELETE FROM satchel_uploads WHERE id = $1",
            &[&id.0.as_slice()],
        )?;
        Ok(())
    }

    pub fn has_upload(&self, id: &FileId) -> Result<bool, StorageError> {
        let rows = self.query(
            "looking for an upload",
            "SELECT 1 FROM satchel_uploads WHERE id = $1",
            &[&id.0.as_slice()],
        )?;
        Ok(!rows.is_empty())
    }

    pub fn uploads(&self) -> Result<Vec<(FileId, u64)>, StorageError> {
        self.query(
            "listing the uploads",
            "SELECT id, started FROM satchel_uploads",
            &[],
        )?
        .iter()
        .map(|row| Ok((file_id(row.get(0))?, unsigned(row.get(1), "upload start")?)))
        .collect()
    }

    /// Makes `record` visible with its uploader's usage and, for a small
    /// file, its sealed chunks, in one transaction that also ends the
    /// upload's claim: if the claim is no longer this process's, nothing is
    /// committed.
    pub fn commit_file(
        &self,
        record: &FileRecord,
        small_file: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let owner = &*self.owner;
        let context = "committing a file";
        let id = record.id.0.as_slice();
        let size = signed(record.size)?;
        let expires = signed(record.expires)?;
        let today = signed(utc_day(record.created))?;
        let encoded = record.encode();
        self.wait(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(failed(context))?;
            let ended = transaction
                .execute(
                    "DELETE FROM satchel_claims WHERE id = $1 AND owner = $2",
                    &[&id, &owner],
                )
                .await
                .map_err(failed(context))?;
            if ended == 0 {
                return Err(StorageError::ClaimLost(record.id));
            }
            let inserted = transaction
                .execute(
                    "INSERT INTO satchel_files
                         (id, uploader, expires, size, key_id, record, small_file)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &id,
                        &record.uploader,
                        &expires,
                        &size,
                        &i64::from(record.key_id),
                        &encoded,
                        &small_file,
                    ],
                )
                .await
                .map_err(failed(context))?;
            if inserted == 0 {
                return Err(StorageError::AlreadyUploaded);
            }
            if small_file.is_none() {
                transaction
                    .execute("DELETE FROM satchel_uploads WHERE id = $1", &[&id])
                    .await
                    .map_err(failed(context))?;
            }
            transaction
                .execute(COUNT_UPLOAD, &[&record.uploader, &size, &today])
                .await
                .map_err(failed(context))?;
            transaction.commit().await.map_err(failed(context))
        })?;
        self.stored_bytes.fetch_add(record.size, Ordering::Relaxed);
        self.stored_files.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the record of file `id` (and its small-file bytes), takes it
    /// out of its uploader's usage and lists the id in `satchel_uploads`,
    /// in one transaction; returns the file's size, or `None` if it was
    /// already gone.
    pub fn unlist_file(&self, id: &FileId) -> Result<Option<u64>, StorageError> {
        let context = "deleting a file record";
        let key = id.0.as_slice();
        let size: Option<u64> = self.wait(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(failed(context))?;
            let Some(row) = transaction
                .query_opt(
                    "DELETE FROM satchel_files WHERE id = $1 RETURNING uploader, size",
                    &[&key],
                )
                .await
                .map_err(failed(context))?
            else {
                return Ok::<_, StorageError>(None);
            };
            let uploader: String = row.get(0);
            let size: i64 = row.get(1);
            transaction
                .execute(
                    "INSERT INTO satchel_uploads (id, started) VALUES ($1, 0)
                     ON CONFLICT (id) DO UPDATE SET started = 0",
                    &[&key],
                )
                .await
                .map_err(failed(context))?;
            transaction
                .execute(
                    "UPDATE satchel_usage SET stored_bytes = greatest(stored_bytes - $2, 0)
                     WHERE uploader = $1",
                    &[&uploader, &size],
                )
                .await
                .map_err(failed(context))?;
            transaction.commit().await.map_err(failed(context))?;
            Ok(Some(unsigned(size, "file size")?))
        })?;
        if let Some(size) = size {
            let less = |by: u64| move |value: u64| Some(value.saturating_sub(by));
            let _ = self
                .stored_files
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(1));
            let _ =
                self.stored_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(size));
        }
        Ok(size)
    }

    pub fn expired_before(&self, now: u64) -> Result<Vec<(u64, FileId)>, StorageError> {
        self.query(
            "listing expired files",
            "SELECT expires, id FROM satchel_files WHERE expires < $1 ORDER BY expires, id",
            &[&signed(now)?],
        )?
        .iter()
        .map(|row| Ok((unsigned(row.get(0), "expiry")?, file_id(row.get(1))?)))
        .collect()
    }

    pub fn usage(&self, user: &str, now: u64) -> Result<UserUsage, StorageError> {
        let rows = self.query(
            "reading a user's usage",
            "SELECT stored_bytes, day, day_bytes FROM satchel_usage WHERE uploader = $1",
            &[&user],
        )?;
        let mut usage = match rows.first() {
            Some(row) => usage_of(row)?,
            None => UserUsage::default(),
        };
        usage.roll_to(utc_day(now));
        Ok(usage)
    }

    pub fn user_files_by_expiry(&self, user: &str) -> Result<Vec<(u64, u64)>, StorageError> {
        self.query(
            "listing a user's files",
            "SELECT expires, size FROM satchel_files WHERE uploader = $1 ORDER BY expires, id",
            &[&user],
        )?
        .iter()
        .map(expiry_and_size)
        .collect()
    }

    pub fn user_file_ids(&self, user: &str) -> Result<Vec<FileId>, StorageError> {
        self.query(
            "listing a user's files",
            "SELECT id FROM satchel_files WHERE uploader = $1 ORDER BY expires, id",
            &[&user],
        )?
        .iter()
        .map(|row| file_id(row.get(0)))
        .collect()
    }

    /// Calls `each` with every completed file's record, fetched in batches
    /// so that memory stays bounded whatever the number of files (no
    /// transaction stays open while `each` runs).
    pub fn for_each_file(
        &self,
        mut each: impl FnMut(&FileRecord) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut after: Vec<u8> = Vec::new();
        loop {
            let rows = self.query(
                "walking the file records",
                "SELECT id, record FROM satchel_files WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &WALK_BATCH],
            )?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = last.get(0);
            for row in &rows {
                let id = file_id(row.get(0))?;
                each(&decode_record(row.get(1), &id)?)?;
            }
        }
    }

    pub fn forget_usage(&self, user: &str) -> Result<(), StorageError> {
        self.query(
            "forgetting a user's usage",
            "DELETE FROM satchel_usage WHERE uploader = $1",
            &[&user],
        )?;
        Ok(())
    }

    pub fn files_by_expiry(&self, limit: usize) -> Result<Vec<(u64, u64)>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "listing files by expiry",
            "SELECT expires, size FROM satchel_files ORDER BY expires, id LIMIT $1",
            &[&limit],
        )?
        .iter()
        .map(expiry_and_size)
        .collect()
    }

    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.load(Ordering::Relaxed)
    }

    pub fn stored_files(&self) -> u64 {
        self.stored_files.load(Ordering::Relaxed)
    }

    /// Claims `id` for this process, unless a live claim holds it.
    pub fn claim(&self, id: &FileId) -> Result<bool, StorageError> {
        let rows = self.query(
            "claiming a file",
            TAKE_CLAIM,
            &[
                &id.0.as_slice(),
                &&*self.owner,
                &self.lease.as_secs_f64(),
                &None::<&str>,
                &0i64,
            ],
        )?;
        Ok(!rows.is_empty())
    }

    /// Claims `id` for an upload of `size` bytes by `uploader`, in one
    /// transaction with the checks that it was not uploaded already and,
    /// with `quota`, that it fits the quota with every other upload of the
    /// same user in progress counted; see the module documentation.
    pub fn claim_upload(
        &self,
        id: &FileId,
        uploader: &str,
        size: u64,
        quota: Option<QuotaCheck>,
    ) -> Result<UploadClaim, StorageError> {
        let context = "claiming an upload";
        let key = id.0.as_slice();
        let reserved = signed(size)?;
        self.wait(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(failed(context))?;
            transaction
                .execute(
                    "INSERT INTO satchel_usage (uploader) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&uploader],
                )
                .await
                .map_err(failed(context))?;
            let row = transaction
                .query_one(
                    "SELECT stored_bytes, day, day_bytes FROM satchel_usage
                     WHERE uploader = $1 FOR UPDATE",
                    &[&uploader],
                )
                .await
                .map_err(failed(context))?;
            let mut usage = usage_of(&row)?;
            let taken = transaction
                .query_opt(
                    TAKE_CLAIM,
                    &[
                        &key,
                        &&*self.owner,
                        &self.lease.as_secs_f64(),
                        &Some(uploader),
                        &reserved,
                    ],
                )
                .await
                .map_err(failed(context))?;
            if taken.is_none() {
                return Ok(UploadClaim::InProgress);
            }
            let uploaded = transaction
                .query_opt("SELECT 1 FROM satchel_files WHERE id = $1", &[&key])
                .await
                .map_err(failed(context))?;
            if uploaded.is_some() {
                return Ok(UploadClaim::AlreadyUploaded);
            }
            if let Some(QuotaCheck { limits, now }) = quota {
                let others: i64 = transaction
                    .query_one(
                        "SELECT coalesce(sum(reserved), 0)::bigint FROM satchel_claims
                         WHERE uploader = $1 AND id <> $2 AND lease_until >= now()",
                        &[&uploader, &key],
                    )
                    .await
                    .map_err(failed(context))?
                    .get(0);
                usage.roll_to(utc_day(now));
                let usage = usage.with_reserved(unsigned(others, "reserved bytes")?);
                if let Some(over) = exceeded(limits, usage, size) {
                    return Ok(UploadClaim::OverQuota(over));
                }
            }
            transaction.commit().await.map_err(failed(context))?;
            Ok(UploadClaim::Taken)
        })
    }

    /// How long a claim lasts unless renewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Extends this process's claim on `id` by a lease from now; false if
    /// the claim is no longer this process's.
    pub fn renew_claim(&self, id: &FileId) -> Result<bool, StorageError> {
        let rows = self.query(
            "renewing a claim",
            "UPDATE satchel_claims SET lease_until = now() + make_interval(secs => $3)
             WHERE id = $1 AND owner = $2 RETURNING id",
            &[&id.0.as_slice(), &&*self.owner, &self.lease.as_secs_f64()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Takes the leadership for a lease from now, or renews it; false while
    /// another instance holds an unexpired lease.
    pub fn lead(&self) -> Result<bool, StorageError> {
        let rows = self.query(
            "taking the leadership",
            LEAD,
            &[&&*self.owner, &self.lease.as_secs_f64()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Gives the leadership up at once, if this process holds it, so that
    /// another instance need not wait for the lease to run out.
    pub fn resign(&self) -> Result<(), StorageError> {
        self.query(
            "giving the leadership up",
            "DELETE FROM satchel_leader WHERE role = 'component' AND owner = $1",
            &[&&*self.owner],
        )?;
        Ok(())
    }

    /// Sets each key of side tree `tree` to its value, in one transaction.
    pub fn tree_insert(&self, tree: &str, entries: &[(&[u8], &[u8])]) -> Result<(), StorageError> {
        let context = "writing a side tree";
        self.wait(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(failed(context))?;
            let statement = transaction
                .prepare_cached(
                    "INSERT INTO satchel_trees (tree, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                )
                .await
                .map_err(failed(context))?;
            for (key, value) in entries {
                transaction
                    .execute(&statement, &[&tree, key, value])
                    .await
                    .map_err(failed(context))?;
            }
            transaction.commit().await.map_err(failed(context))
        })
    }

    pub fn tree_get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let rows = self.query(
            "reading a side tree",
            "SELECT value FROM satchel_trees WHERE tree = $1 AND key = $2",
            &[&tree, &key],
        )?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    /// Removes `key` from side tree `tree`; whether it was there.
    pub fn tree_remove(&self, tree: &str, key: &[u8]) -> Result<bool, StorageError> {
        let rows = self.query(
            "removing from a side tree",
            "DELETE FROM satchel_trees WHERE tree = $1 AND key = $2 RETURNING key",
            &[&tree, &key],
        )?;
        Ok(!rows.is_empty())
    }

    /// Whether a key of side tree `tree` starts with `prefix`: the first
    /// key at or after it, in the primary key's order, tells.
    pub fn tree_has_prefix(&self, tree: &str, prefix: &[u8]) -> Result<bool, StorageError> {
        let rows = self.query(
            "reading a side tree",
            "SELECT key FROM satchel_trees WHERE tree = $1 AND key >= $2 ORDER BY key LIMIT 1",
            &[&tree, &prefix],
        )?;
        Ok(rows
            .first()
            .is_some_and(|row| row.get::<_, &[u8]>(0).starts_with(prefix)))
    }

    /// Every entry of side tree `tree`, in key order.
    pub fn tree_entries(&self, tree: &str) -> Result<Vec<Entry>, StorageError> {
        let rows = self.query(
            "reading a side tree",
            "SELECT key, value FROM satchel_trees WHERE tree = $1 ORDER BY key",
            &[&tree],
        )?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Ends this process's claim on `id`, if it still holds it.
    pub fn release_claim(&self, id: &FileId) -> Result<(), StorageError> {
        self.query(
            "releasing a claim",
            "DELETE FROM satchel_claims WHERE id = $1 AND owner = $2",
            &[&id.0.as_slice(), &&*self.owner],
        )?;
        Ok(())
    }
}

/// A pool of connections to the cluster's database (none made yet), over
/// TLS if its URL asks for it, and the runtime its futures run on.
fn connect(cluster: &PostgresCluster) -> Result<(Pool, Handle), StorageError> {
    let runtime = Handle::try_current().map_err(|_| {
        StorageError::Options("the PostgreSQL metadata needs a tokio runtime".to_owned())
    })?;
    let mut config: tokio_postgres::Config = cluster
        .url
        .parse()
        .map_err(failed("reading metadata.url"))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let recycling = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match pg_tls::connector(&config, cluster)? {
        Some(tls) => Manager::from_config(config, tls, recycling),
        None => Manager::from_config(config, NoTls, recycling),
    };
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(failed("configuring the connection pool"))?;
    Ok((pool, runtime))
}

/// Whether the cluster's database takes a connection and a query, as
/// start-up would need; changes nothing. Must run inside a runtime, on a
/// thread that may block.
pub fn probe_database(cluster: &PostgresCluster) -> Result<(), StorageError> {
    let (pool, runtime) = connect(cluster)?;
    tokio::task::block_in_place(|| {
        runtime.block_on(async {
            let client = checkout(&pool).await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(failed("querying"))?;
            Ok(())
        })
    })
}

/// A connection from `pool`, made if none is idle.
async fn checkout(pool: &Pool) -> Result<deadpool_postgres::Client, StorageError> {
    pool.get().await.map_err(|error| match error {
        // The database's own words, without deadpool's "Error occurred
        // while creating a new object" before them.
        PoolError::Backend(error) => failed("connecting")(error),
        error => failed("connecting")(error),
    })
}

/// The error of a failed database call, with what was being done.
fn failed<E: std::error::Error + Send + Sync + 'static>(
    context: &str,
) -> impl FnOnce(E) -> StorageError + '_ {
    move |source| StorageError::Postgres {
        context: context.to_owned(),
        source: Box::new(source),
    }
}

/// PostgreSQL has no unsigned integers: sizes and times go in as bigint.
fn signed(value: u64) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| StorageError::Decode(format!("{value} exceeds a bigint")))
}

fn unsigned(value: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(value).map_err(|_| StorageError::Decode(format!("{what} is negative: {value}")))
}

fn file_id(bytes: &[u8]) -> Result<FileId, StorageError> {
    <[u8; 16]>::try_from(bytes)
        .map(FileId)
        .map_err(|_| StorageError::Decode(format!("file id of {} bytes", bytes.len())))
}

fn decode_record(bytes: &[u8], id: &FileId) -> Result<FileRecord, StorageError> {
    FileRecord::decode(bytes)
        .map_err(|err| StorageError::Decode(format!("file record {id}: {err}")))
}

/// A row of (expires, size).
fn expiry_and_size(row: &tokio_postgres::Row) -> Result<(u64, u64), StorageError> {
    Ok((
        unsigned(row.get(0), "expiry")?,
        unsigned(row.get(1), "size")?,
    ))
}

fn usage_of(row: &tokio_postgres::Row) -> Result<UserUsage, StorageError> {
    Ok(UserUsage {
        stored_bytes: unsigned(row.get(0), "stored bytes")?,
        day: unsigned(row.get(1), "usage day")?,
        day_bytes: unsigned(row.get(2), "bytes of the day")?,
    })
}
