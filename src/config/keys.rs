//! Every configuration key Satchel reads, each said once: its section and
//! name, its [kind](super::kinds) (how it is written, the check it must pass,
//! its unit), its default, and one line for the operator.
//!
//! This table is the whole reference: the parser refuses any key it does not
//! list, reads each value through its kind, fills in its default, and
//! `satchel --help` prints it. A key the file must contain has no default; a
//! default "derived" from other keys is worked out in [`super::Config`]'s
//! builder, and the text here says how.
//!
//! To add a key: write it here, add its field to [`super::Config`], and read
//! it in the builder of its section (`raw.get(&keys::section::name)`). A new
//! section is a new block here and a new struct there.
//!
//! A key written `@reload name: ...` takes effect on SIGHUP, without a
//! restart ([`super::reload`]); the running parts must then read it from
//! the [`LiveConfig`](super::LiveConfig) each time they use it. Any other
//! key needs a restart: a reload that finds it changed refuses it, naming it.

use super::key::{define_keys, Key, KeyDefault, Section};
use super::kinds::{
    BareJids, BlobBackendName, BucketName, Bytes, CipherName, ComponentJid, Count, DatabaseUrl,
    Domains, FilePath, FilePaths, Flag, HostPort, InstanceName, ListenAddress, MetadataBackendName,
    Origin, Percent, Pixels, PublicUrl, Seconds, Secret, Text,
};

define_keys! {
    /// the link to the XMPP server (XEP-0114)
    component {
        /// component JID, e.g. `"upload.example.org"`
        jid: ComponentJid;
        /// XMPP server's component port, `"127.0.0.1:5347"`
        server: HostPort;
        /// XEP-0114 shared secret
        secret: Secret;
        /// ping the server after this much silence
        keepalive_secs: Seconds = 30;
        /// cap of the reconnection backoff
        reconnect_max_delay_secs: Seconds = 2;
    }

    /// uploads and downloads
    http {
        /// address to listen on, `"127.0.0.1:5050"`
        listen: ListenAddress;
        /// base of the URLs handed to clients, `"https://upload.example.org"`
        public_url: PublicUrl;
        /// Access-Control-Allow-Origin
        cors_allow_origin: Origin = "*";
        /// time allowed to send request headers
        header_timeout_secs: Seconds = 10;
        /// longest silence inside an upload body
        body_idle_timeout_secs: Seconds = 30;
        /// uploads in flight at once; more get 503
        max_concurrent_uploads: Count = 64;
        /// open HTTP connections at once; at the cap a newcomer replaces the
        /// oldest connection that has sent no request, or gets 503 if all are busy
        max_connections: Count, derived "(open-file limit - 256) / 2, at most 16384";
        /// Cache-Control max-age of downloads
        cache_max_age_secs: Seconds = 31536000;
        /// PEM certificate chain: with `tls_key`, Satchel speaks HTTPS on `listen`;
        /// reloaded on SIGHUP or when the file changes
        tls_cert: FilePath, derived "unset: plain HTTP, for a proxy in front";
        /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1)
        tls_key: FilePath, derived "unset: plain HTTP";
    }

    /// where files are kept, encrypted
    storage {
        /// directory of the sled database
        path: FilePath;
        /// master key, created on first start, mode 0600
        key_file: FilePath, derived "\"<path>.key\"";
        /// earlier master keys, to read old files after a rotation
        previous_key_files: FilePaths = [];
        /// sled page cache
        cache_capacity_bytes: Bytes = 16777216;
        /// AEAD of new files: `"auto"` (AES-256-GCM if the CPU has AES
        /// instructions, else ChaCha20-Poly1305), `"aes-256-gcm"` or
        /// `"chacha20-poly1305"`; stored files keep theirs
        cipher: CipherName = "auto";
        /// where the sealed bytes of files go: `"local"` (files beside the
        /// database) or `"s3"` (a bucket, see `[storage.s3]`)
        backend: BlobBackendName = "local";
    }

    /// the S3 bucket of `storage.backend = "s3"` (Garage, SeaweedFS, MinIO, AWS)
    storage_s3 as "storage.s3" {
        /// base URL of the S3 API, `"http://127.0.0.1:3900"`
        endpoint: PublicUrl, derived "required with backend \"s3\"";
        /// the store's region name, e.g. `"garage"` or `"us-east-1"`
        region: Text, derived "required with backend \"s3\"";
        /// bucket holding one object per file, under `content/`; it must exist
        bucket: BucketName, derived "required with backend \"s3\"";
        /// access key of a user allowed to read, write, list and delete in it
        access_key_id: Text, derived "required with backend \"s3\"";
        /// its secret key; never logged
        secret_access_key: Secret, derived "required with backend \"s3\"";
    }

    /// where file records, usage and claims are kept
    metadata {
        /// `"sled"` (embedded, in `storage.path`: one instance) or
        /// `"postgres"` (shared by the instances of a cluster, see `[cluster]`)
        backend: MetadataBackendName = "sled";
        /// `"postgres://user:password@127.0.0.1:5432/satchel"`; never logged
        url: DatabaseUrl, derived "required with backend \"postgres\"";
        /// PEM certificates of the authorities that sign the database's
        /// certificate, for a `url` with `?sslmode=require` (TLS, the
        /// certificate and host name always checked)
        ca_file: FilePath, derived "unset: the system's trusted roots";
        /// PEM certificate (chain) Satchel shows the database over TLS, for a
        /// server that authenticates clients by certificate (`hostssl ...
        /// cert` in pg_hba.conf); with `client_key_file`
        client_cert_file: FilePath, derived "unset: no client certificate";
        /// PEM private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1)
        client_key_file: FilePath, derived "unset: no client certificate";
    }

    /// this instance's place in a cluster (`metadata.backend = "postgres"`)
    cluster {
        /// this instance's name, unique in the cluster, e.g. `"a"`
        instance: InstanceName, derived "required with backend \"postgres\"";
        /// how long the leadership (the XMPP link) and an upload's claim last
        /// unless their instance renews them
        lease_secs: Seconds = 10;
    }

    /// who may upload, and how much
    limits {
        /// largest upload
        @reload max_file_size: Bytes;
        /// how long a PUT URL stays valid
        @reload slot_lifetime_secs: Seconds = 300;
        /// per-user bytes of uploads completed per UTC day
        @reload daily_upload_bytes: Bytes, derived "10 x max_file_size";
        /// per-user bytes stored
        @reload user_storage_bytes: Bytes, derived "20 x max_file_size";
        /// refuse slots that would leave less disk free
        @reload min_free_disk_percent: Percent = 5;
        /// domains whose users get slots
        @reload allowed_domains: Domains, derived "parent domain of jid";
        /// slot requests per user and minute
        @reload slot_requests_per_minute: Count = 600;
    }

    /// how long files are kept
    retention {
        /// keep files uploaded for messages
        @reload message_secs: Seconds = 2592000;
        /// keep files with purpose ephemeral
        @reload ephemeral_secs: Seconds, derived "86400, or message_secs if shorter";
        /// keep files with purpose permanent
        @reload permanent_secs: Seconds, derived "message_secs";
        /// how often expired files are deleted
        @reload gc_interval_secs: Seconds = 60;
        /// delete unfinished uploads after this long
        @reload abandoned_upload_secs: Seconds = 3600;
    }

    /// delivery of media messages to their recipients
    relay {
        /// recipients of one relayed message
        max_recipients: Count = 50;
        /// relay requests per sender and minute
        relays_per_minute: Count = 30;
        /// cap of the backoff between delivery attempts
        retry_max_delay_secs: Seconds = 300;
        /// a message not bounced within this counts as delivered
        bounce_window_secs: Seconds = 30;
        /// longest side of server-made thumbnails
        thumbnail_max_side: Pixels<16, 512> = 128;
        /// delete a relayed file once every recipient got it
        delete_after_download: Flag = false;
    }

    /// who may run the admin commands (XEP-0050)
    admin {
        /// bare JIDs of the admins, e.g. `["ops@example.org"]`
        @reload jids: BareJids = [];
    }

    /// Prometheus metrics
    metrics {
        /// address of the `/metrics` listener, e.g. `"127.0.0.1:9353"`;
        /// keep it off the public network
        listen: ListenAddress, derived "unset: no metrics";
    }

    /// what the log shows
    logging {
        /// log users' JIDs; otherwise pseudonyms
        show_jids: Flag = false;
    }
}
