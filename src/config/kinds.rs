//! What a configuration value may be: how the operator writes it, the check
//! it must pass, and what the code receives once it has.
//!
//! A kind is the type of a key in the [table](super::keys):
//! `keepalive_secs: Seconds` says the value is written as a whole number of
//! seconds, between 1 and 100 years, and reaches the code as a [`Duration`].
//! Every key of a kind is checked the same way, so the rule for "a duration"
//! or "a size in bytes" is written once, here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jid::BareJid;

use crate::clock::SECONDS_PER_DAY;
use crate::storage::cipher::CipherChoice;

/// The type of a configuration key.
pub(crate) trait Kind {
    /// What the code receives.
    type Value;
    /// What the number counts, for the help.
    const UNIT: Unit;
    /// Reads a written value, or says why it cannot be used.
    fn read(value: &toml::Value) -> Result<Self::Value, Refusal>;
}

/// What a number counts; the help shows it next to defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Not a number, or a plain count whose key or doc says of what.
    None,
    Seconds,
    Bytes,
    Percent,
    Pixels,
}

/// Why a written value cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not the TOML type the key takes; names the one it takes ("an integer").
    WrongType(&'static str),
    /// The right type, but not a value Satchel can use; says why.
    Unusable(String),
}

/// Longest duration a [`Seconds`] key accepts: deadlines are computed as
/// now + duration, and must stay far from where clock arithmetic overflows.
const MAX_DURATION_SECS: u64 = 100 * 365 * SECONDS_PER_DAY;

/// A duration in whole seconds, from 1 second to 100 years.
pub(crate) struct Seconds;

impl Kind for Seconds {
    type Value = Duration;
    const UNIT: Unit = Unit::Seconds;
    fn read(value: &toml::Value) -> Result<Duration, Refusal> {
        let seconds = positive(value)?;
        if seconds > MAX_DURATION_SECS {
            return Err(unusable(format!(
                "must be at most {MAX_DURATION_SECS} (100 years)"
            )));
        }
        Ok(Duration::from_secs(seconds))
    }
}

/// A size in bytes, at least 1.
pub(crate) struct Bytes;

impl Kind for Bytes {
    type Value = u64;
    const UNIT: Unit = Unit::Bytes;
    fn read(value: &toml::Value) -> Result<u64, Refusal> {
        positive(value)
    }
}

/// How many of something (connections, recipients, requests per minute), at
/// least 1. At most 2^32 - 1: the counts become semaphore permits, which
/// tokio caps, and no deployment needs more.
pub(crate) struct Count;

impl Kind for Count {
    type Value = usize;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<usize, Refusal> {
        let count = positive(value)?;
        if count > u64::from(u32::MAX) {
            return Err(unusable(format!("must be at most {}", u32::MAX)));
        }
        Ok(count as usize)
    }
}

/// A share of the disk in percent, from 0 to 99 (100 would refuse everything).
pub(crate) struct Percent;

impl Kind for Percent {
    type Value = u8;
    const UNIT: Unit = Unit::Percent;
    fn read(value: &toml::Value) -> Result<u8, Refusal> {
        Ok(between(value, 0, 99)? as u8)
    }
}

/// A length in pixels, from `MIN` to `MAX`.
pub(crate) struct Pixels<const MIN: u32, const MAX: u32>;

impl<const MIN: u32, const MAX: u32> Kind for Pixels<MIN, MAX> {
    type Value = u32;
    const UNIT: Unit = Unit::Pixels;
    fn read(value: &toml::Value) -> Result<u32, Refusal> {
        Ok(between(value, MIN.into(), MAX.into())? as u32)
    }
}

/// `true` or `false`.
pub(crate) struct Flag;

impl Kind for Flag {
    type Value = bool;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<bool, Refusal> {
        value.as_bool().ok_or(Refusal::WrongType("true or false"))
    }
}

/// The AEAD of new files: `auto` or a cipher's name.
pub(crate) struct CipherName;

impl Kind for CipherName {
    type Value = CipherChoice;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<CipherChoice, Refusal> {
        string(value)?
            .parse()
            .map_err(|err: crate::storage::cipher::UnknownCipher| unusable(err.to_string()))
    }
}

/// A file or directory path, not empty.
pub(crate) struct FilePath;

impl Kind for FilePath {
    type Value = PathBuf;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<PathBuf, Refusal> {
        let path = string(value)?;
        if path.is_empty() {
            return Err(unusable("must not be empty"));
        }
        Ok(PathBuf::from(path))
    }
}

/// A list of [`FilePath`]s.
pub(crate) struct FilePaths;

impl Kind for FilePaths {
    type Value = Vec<PathBuf>;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<Vec<PathBuf>, Refusal> {
        strings(value)?
            .into_iter()
            .map(|path| match path.is_empty() {
                true => Err(unusable("a path in the list is empty")),
                false => Ok(PathBuf::from(path)),
            })
            .collect()
    }
}

/// Text that must not be empty, like a region's name.
pub(crate) struct Text;

impl Kind for Text {
    type Value = String;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<String, Refusal> {
        match string(value)? {
            "" => Err(unusable("must not be empty")),
            text => Ok(text.to_owned()),
        }
    }
}

/// A [`Text`] that is a secret: the code keeps it out of logs and `Debug`.
pub(crate) type Secret = Text;

/// Where the sealed bytes of files go: `local` or `s3`.
pub(crate) struct BlobBackendName;

impl Kind for BlobBackendName {
    type Value = BlobBackendKind;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<BlobBackendKind, Refusal> {
        match string(value)? {
            "local" => Ok(BlobBackendKind::Local),
            "s3" => Ok(BlobBackendKind::S3),
            _ => Err(unusable("expected \"local\" or \"s3\"")),
        }
    }
}

/// Which blob backend `storage.backend` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobBackendKind {
    Local,
    S3,
}

/// Where the metadata goes: `sled` or `postgres`.
pub(crate) struct MetadataBackendName;

impl Kind for MetadataBackendName {
    type Value = MetadataBackendKind;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<MetadataBackendKind, Refusal> {
        match string(value)? {
            "sled" => Ok(MetadataBackendKind::Sled),
            "postgres" => Ok(MetadataBackendKind::Postgres),
            _ => Err(unusable("expected \"sled\" or \"postgres\"")),
        }
    }
}

/// Which metadata backend `metadata.backend` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataBackendKind {
    Sled,
    Postgres,
}

/// A PostgreSQL connection URL (`postgres://` or `postgresql://`). It may
/// hold a password: no refusal quotes it.
pub(crate) struct DatabaseUrl;

impl Kind for DatabaseUrl {
    type Value = String;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<String, Refusal> {
        let url = string(value)?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(unusable("expected a postgres:// URL"));
        }
        url.parse::<tokio_postgres::Config>()
            .map_err(|_| unusable("not a PostgreSQL connection URL"))?;
        Ok(url.to_owned())
    }
}

/// A cluster instance's name: 1 to 64 letters, digits, `.`, `_` or `-`,
/// so that it reads plainly in logs and in the database.
pub(crate) struct InstanceName;

impl Kind for InstanceName {
    type Value = String;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<String, Refusal> {
        let name = string(value)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
            return Err(unusable(
                "expected 1 to 64 letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(name.to_owned())
    }
}

/// An S3 bucket name as every S3 accepts it: 3 to 63 lowercase letters,
/// digits, dots and hyphens, starting and ending with a letter or digit.
pub(crate) struct BucketName;

impl Kind for BucketName {
    type Value = String;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<String, Refusal> {
        let name = string(value)?;
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
        let edge =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if (3..=63).contains(&name.len())
            && name.chars().all(allowed)
            && edge(name.chars().next())
            && edge(name.chars().last())
        {
            Ok(name.to_owned())
        } else {
            Err(unusable(
                "expected 3 to 63 lowercase letters, digits, dots or hyphens, like \"satchel\"",
            ))
        }
    }
}

/// The component's own address: a bare domain like `upload.example.org`.
pub(crate) struct ComponentJid;

impl Kind for ComponentJid {
    type Value = BareJid;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<BareJid, Refusal> {
        let jid: BareJid = string(value)?
            .parse()
            .map_err(|e| unusable(format!("not a JID: {e}")))?;
        if jid.node().is_some() {
            return Err(unusable(
                "a component JID is a bare domain, like upload.example.org",
            ));
        }
        Ok(jid)
    }
}

/// Where to reach a server, `HOST:PORT`; resolved when Satchel connects.
pub(crate) struct HostPort;

impl Kind for HostPort {
    type Value = String;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<String, Refusal> {
        let address = string(value)?;
        let port = match address.rsplit_once(':') {
            Some((host, port)) if !host.trim().is_empty() => port,
            _ => return Err(unusable("expected HOST:PORT")),
        };
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(address.to_owned()),
            _ => Err(unusable(format!(
                "expected HOST:PORT, and `{port}` is not a port (1-65535)"
            ))),
        }
    }
}

/// A local address to listen on, `IP:PORT`.
pub(crate) struct ListenAddress;

impl Kind for ListenAddress {
    type Value = SocketAddr;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<SocketAddr, Refusal> {
        string(value)?
            .parse()
            .map_err(|e| unusable(format!("expected IP:PORT like 127.0.0.1:5050 ({e})")))
    }
}

/// The base of the URLs handed to clients: `http://` or `https://`, a host,
/// maybe a path, no query; kept without its trailing slashes.
pub(crate) struct PublicUrl;

impl Kind for PublicUrl {
    type Value = String;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<String, Refusal> {
        let url = string(value)?.trim_end_matches('/');
        let after_scheme = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match after_scheme {
            Some(rest) if !rest.is_empty() && !rest.contains(['?', '#', ' ']) => {
                Ok(url.to_owned())
            }
            _ => Err(unusable(
                "expected an http:// or https:// URL without query, like https://upload.example.org",
            )),
        }
    }
}

/// A value the `Access-Control-Allow-Origin` header can carry.
pub(crate) struct Origin;

impl Kind for Origin {
    type Value = String;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<String, Refusal> {
        let origin = string(value)?;
        match http::HeaderValue::from_str(origin) {
            Ok(_) => Ok(origin.to_owned()),
            Err(_) => Err(unusable("not a valid header value")),
        }
    }
}

/// XMPP domains, like `example.org`; kept in lowercase.
pub(crate) struct Domains;

impl Kind for Domains {
    type Value = Vec<String>;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<Vec<String>, Refusal> {
        strings(value)?
            .into_iter()
            .map(|domain| {
                let parsed: BareJid = domain
                    .parse()
                    .map_err(|e| unusable(format!("{domain:?} is not a domain: {e}")))?;
                if parsed.node().is_some() {
                    return Err(unusable(format!("{domain:?} is a user JID, not a domain")));
                }
                Ok(parsed.domain().as_str().to_owned())
            })
            .collect()
    }
}

/// Users' bare JIDs, like `ops@example.org`: a resource or a lone domain is refused.
pub(crate) struct BareJids;

impl Kind for BareJids {
    type Value = Vec<BareJid>;
    const UNIT: Unit = Unit::None;
    fn read(value: &toml::Value) -> Result<Vec<BareJid>, Refusal> {
        strings(value)?
            .into_iter()
            .map(|text| {
                let parsed: BareJid = text
                    .parse()
                    .map_err(|e| unusable(format!("{text:?} is not a bare JID: {e}")))?;
                if parsed.node().is_none() {
                    return Err(unusable(format!("{text:?} is a domain, not a user's JID")));
                }
                Ok(parsed)
            })
            .collect()
    }
}

fn unusable(reason: impl Into<String>) -> Refusal {
    Refusal::Unusable(reason.into())
}

fn string(value: &toml::Value) -> Result<&str, Refusal> {
    value.as_str().ok_or(Refusal::WrongType("a string"))
}

fn strings(value: &toml::Value) -> Result<Vec<&str>, Refusal> {
    const LIST: Refusal = Refusal::WrongType("a list of strings");
    value
        .as_array()
        .ok_or(LIST)?
        .iter()
        .map(|item| item.as_str().ok_or(LIST))
        .collect()
}

fn integer(value: &toml::Value) -> Result<i64, Refusal> {
    value.as_integer().ok_or(Refusal::WrongType("an integer"))
}

fn positive(value: &toml::Value) -> Result<u64, Refusal> {
    match integer(value)? {
        n if n > 0 => Ok(n as u64),
        _ => Err(unusable("must be greater than 0")),
    }
}

fn between(value: &toml::Value, min: i64, max: i64) -> Result<i64, Refusal> {
    match integer(value)? {
        n if (min..=max).contains(&n) => Ok(n),
        _ => Err(unusable(format!("must be between {min} and {max}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<K: Kind>(toml: &str) -> Result<K::Value, Refusal> {
        let value: toml::Value =
            serde::Deserialize::deserialize(toml::de::ValueDeserializer::new(toml)).unwrap();
        K::read(&value)
    }

    fn reason<K: Kind>(toml: &str) -> String
    where
        K::Value: std::fmt::Debug,
    {
        match read::<K>(toml).unwrap_err() {
            Refusal::Unusable(reason) => reason,
            other => panic!("{toml}: {other:?}"),
        }
    }

    #[test]
    fn numbers_are_integers_within_their_bounds() {
        assert_eq!(read::<Seconds>("30"), Ok(Duration::from_secs(30)));
        assert_eq!(reason::<Seconds>("0"), "must be greater than 0");
        assert_eq!(reason::<Seconds>("-5"), "must be greater than 0");
        assert!(reason::<Seconds>("3153600001").contains("100 years"));
        assert_eq!(
            read::<Seconds>("3153600000"),
            Ok(Duration::from_secs(MAX_DURATION_SECS))
        );
        assert_eq!(
            reason::<Bytes>("-9223372036854775808"),
            "must be greater than 0"
        );
        assert_eq!(read::<Count>("4294967295"), Ok(4294967295));
        assert_eq!(reason::<Count>("4294967296"), "must be at most 4294967295");
        assert_eq!(read::<Percent>("0"), Ok(0));
        assert_eq!(reason::<Percent>("100"), "must be between 0 and 99");
        assert_eq!(
            reason::<Pixels<16, 512>>("15"),
            "must be between 16 and 512"
        );
        assert_eq!(read::<Pixels<16, 512>>("512"), Ok(512));
        for not_an_integer in [
            "1.5",
            "nan",
            "inf",
            "\"30\"",
            "true",
            "[30]",
            "{}",
            "1979-05-27",
        ] {
            assert_eq!(
                read::<Seconds>(not_an_integer),
                Err(Refusal::WrongType("an integer")),
                "{not_an_integer}"
            );
        }
    }

    #[test]
    fn text_is_checked_for_what_it_names() {
        assert_eq!(
            read::<Flag>("\"true\""),
            Err(Refusal::WrongType("true or false"))
        );
        assert_eq!(reason::<Secret>("\"\""), "must not be empty");
        assert_eq!(reason::<FilePath>("\"\""), "must not be empty");
        assert_eq!(
            reason::<FilePaths>("[\"a\", \"\"]"),
            "a path in the list is empty"
        );
        assert_eq!(
            read::<FilePaths>("[\"a\", 1]"),
            Err(Refusal::WrongType("a list of strings"))
        );
        assert_eq!(reason::<HostPort>("\"  \""), "expected HOST:PORT");
        assert_eq!(reason::<HostPort>("\":5347\""), "expected HOST:PORT");
        for bad in [
            "\"localhost:\"",
            "\"localhost:0\"",
            "\"localhost:70000\"",
            "\"h:p\"",
        ] {
            assert!(reason::<HostPort>(bad).contains("is not a port"), "{bad}");
        }
        assert_eq!(
            read::<HostPort>("\"[::1]:5347\""),
            Ok("[::1]:5347".to_owned())
        );
        assert!(reason::<ListenAddress>("\"localhost:80\"").contains("IP:PORT"));
        assert!(reason::<ComponentJid>("\"a@b\"").contains("bare domain"));
        assert!(reason::<ComponentJid>("\"\"").contains("not a JID"));
        assert_eq!(
            read::<PublicUrl>("\"https://up.example.org/base//\""),
            Ok("https://up.example.org/base".to_owned())
        );
        for bad in [
            "\"https://\"",
            "\"ftp://x\"",
            "\"https://x/?q\"",
            "\"https://a b\"",
        ] {
            assert!(reason::<PublicUrl>(bad).contains("http://"), "{bad}");
        }
        assert_eq!(reason::<Origin>("\"a\\nb\""), "not a valid header value");
        assert_eq!(
            read::<Domains>("[\"Example.ORG\"]"),
            Ok(vec!["example.org".to_owned()])
        );
        assert!(reason::<Domains>("[\"a@b\"]").contains("user JID"));
        assert_eq!(
            read::<BareJids>("[\"Ops@Example.ORG\"]").unwrap(),
            vec!["Ops@example.org".parse::<BareJid>().unwrap()]
        );
        assert!(reason::<BareJids>("[\"example.org\"]").contains("not a user's JID"));
        assert!(reason::<BareJids>("[\"a@b/phone\"]").contains("not a bare JID"));
        assert!(reason::<BareJids>("[\"@@\"]").contains("not a bare JID"));
    }
}
