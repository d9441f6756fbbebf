//! XEP-0231 Bits of Binary 1.1: the `<data/>` element.
//!
//! XEP-0264 thumbnails point at `cid:` URIs whose bytes travel in-band as
//! Bits of Binary. Satchel parses the `<data/>` it receives with relayed
//! media, checks that the bytes are those the cid names, and builds `<data/>`
//! for the thumbnails it sends on.
//!
//! `xmpp_parsers::bob` is not used for parsing because its cid parser panics
//! on some remote input (unknown algorithms, odd-length or non-ASCII hex).
//! Here every malformed input is an error: the cid must be exactly
//! `sha1+` 40 lowercase hex digits `@bob.xmpp.org`, the payload standard
//! Base64 of at most [`MAX_DATA_SIZE`] bytes.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};
use xso::error::Error;
use xso::text::TextCodec;
use xso::{AsXml, AsXmlText, FromXml, FromXmlText};

use xmpp_parsers::message::MessagePayload;

/// Namespace of the `<data/>` element.
pub const NS: &str = "urn:xmpp:bob";

/// The most bytes a `<data/>` may carry; larger payloads are refused.
pub const MAX_DATA_SIZE: usize = 64 * 1024;

const CID_PREFIX: &str = "sha1+";
const CID_SUFFIX: &str = "@bob.xmpp.org";
const SHA1_LEN: usize = 20;

/// A Bits of Binary Content-ID, `sha1+HEX@bob.xmpp.org`: the SHA-1 of the
/// data it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentId {
    sha1: [u8; SHA1_LEN],
}

impl ContentId {
    /// The cid of `data`.
    pub fn of(data: &[u8]) -> Self {
        ContentId {
            sha1: Sha1::digest(data).into(),
        }
    }
}

impl FromStr for ContentId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        // The length check comes first, so a long input costs nothing more.
        if text.len() != CID_PREFIX.len() + 2 * SHA1_LEN + CID_SUFFIX.len() {
            return Err(Error::Other(
                "A cid must be sha1+<40 hex digits>@bob.xmpp.org.",
            ));
        }
        let hex_digits = text
            .strip_prefix(CID_PREFIX)
            .and_then(|rest| rest.strip_suffix(CID_SUFFIX))
            .ok_or(Error::Other(
                "A cid must be sha1+<40 hex digits>@bob.xmpp.org.",
            ))?;
        if !hex_digits
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(Error::Other("A cid hash must be lowercase hexadecimal."));
        }
        let mut sha1 = [0; SHA1_LEN];
        hex::decode_to_slice(hex_digits, &mut sha1).map_err(Error::text_parse_error)?;
        Ok(ContentId { sha1 })
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{CID_PREFIX}{}{CID_SUFFIX}", hex::encode(self.sha1))
    }
}

impl FromXmlText for ContentId {
    fn from_xml_text(text: String) -> Result<Self, Error> {
        text.parse()
    }
}

impl AsXmlText for ContentId {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, Error> {
        Ok(Cow::Owned(self.to_string()))
    }
}

/// Standard Base64 of at most [`MAX_DATA_SIZE`] bytes.
///
/// The XEP forbids whitespace in the Base64 text, yet its own examples break
/// it into lines; XML whitespace is therefore skipped on reading, and never
/// written.
struct BoundedBase64;

impl TextCodec<Vec<u8>> for BoundedBase64 {
    fn decode(&self, text: String) -> Result<Vec<u8>, Error> {
        let max_encoded_len = MAX_DATA_SIZE.div_ceil(3) * 4;
        let encoded: Vec<u8> = text
            .bytes()
            .filter(|byte| !matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
            .take(max_encoded_len + 1)
            .collect();
        if encoded.len() > max_encoded_len {
            return Err(Error::Other("BoB data is larger than allowed."));
        }
        let data = Engine::decode(&STANDARD, &encoded).map_err(Error::text_parse_error)?;
        if data.len() > MAX_DATA_SIZE {
            return Err(Error::Other("BoB data is larger than allowed."));
        }
        Ok(data)
    }

    fn encode<'x>(&self, data: &'x Vec<u8>) -> Result<Option<Cow<'x, str>>, Error> {
        Ok(Some(Cow::Owned(Engine::encode(&STANDARD, data))))
    }
}

/// Data too large for a `<data/>` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} bytes is more than the {MAX_DATA_SIZE} bytes Bits of Binary may carry")]
pub struct DataTooLarge(pub usize);

/// A `<data cid=.. type=.. max-age=..>BASE64</data>` element.
///
/// Parsing checks the form of every part but not that `cid` matches the
/// bytes: call [`Data::verify`] before trusting them.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS, name = "data")]
pub struct Data {
    /// The name of the data.
    #[xml(attribute)]
    pub cid: ContentId,

    /// The MIME type of the data.
    #[xml(attribute = "type")]
    pub media_type: String,

    /// How long the data may be cached, in seconds.
    #[xml(attribute(default, name = "max-age"))]
    pub max_age: Option<u32>,

    /// The bytes.
    #[xml(text(codec = BoundedBase64))]
    pub data: Vec<u8>,
}

impl Data {
    /// A `<data/>` for `data`, named by its SHA-1.
    pub fn new(
        media_type: String,
        max_age: Option<u32>,
        data: Vec<u8>,
    ) -> Result<Self, DataTooLarge> {
        if data.len() > MAX_DATA_SIZE {
            return Err(DataTooLarge(data.len()));
        }
        Ok(Data {
            cid: ContentId::of(&data),
            media_type,
            max_age,
            data,
        })
    }

    /// Whether `cid` is the SHA-1 of the bytes.
    #[must_use]
    pub fn verify(&self) -> bool {
        ContentId::of(&self.data) == self.cid
    }
}

impl MessagePayload for Data {}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;
    use xso::error::FromElementError;

    /// The 1x1-ish PNG of the XEP-0231 examples, as the XEP lays it out.
    const XEP_PNG_BASE64: &str = "
    iVBORw0KGgoAAAANSUhEUgAAAAoAAAAKCAYAAACNMs+9AAAABGdBTUEAALGP
    C/xhBQAAAAlwSFlzAAALEwAACxMBAJqcGAAAAAd0SU1FB9YGARc5KB0XV+IA
    AAAddEVYdENvbW1lbnQAQ3JlYXRlZCB3aXRoIFRoZSBHSU1Q72QlbgAAAF1J
    REFUGNO9zL0NglAAxPEfdLTs4BZM4DIO4C7OwQg2JoQ9LE1exdlYvBBeZ7jq
    ch9//q1uH4TLzw4d6+ErXMMcXuHWxId3KOETnnXXV6MJpcq2MLaI97CER3N0
    vr4MkhoXe0rZigAAAABJRU5ErkJggg==
  ";

    const XEP_CID: &str = "sha1+8f35fef110ffc5df08d579a50083ff9308fb6242@bob.xmpp.org";

    fn data_element(cid: &str, text: &str) -> String {
        format!(
            "<data xmlns='urn:xmpp:bob' cid='{cid}' max-age='86400' type='image/png'>{text}</data>"
        )
    }

    fn parse(xml: &str) -> Result<Data, FromElementError> {
        Data::try_from(xml.parse::<Element>().unwrap())
    }

    /// XEP-0231: the `<data/>` of the XEP's examples, lines and all.
    #[test]
    fn parses_the_xep_example() {
        let data = parse(&data_element(XEP_CID, XEP_PNG_BASE64)).unwrap();
        assert_eq!(data.cid.to_string(), XEP_CID);
        assert_eq!(data.media_type, "image/png");
        assert_eq!(data.max_age, Some(86400));
        assert!(data.data.starts_with(b"\x89PNG\r\n\x1a\n"));
        // The XEP's cid is illustrative: the PNG's SHA-1 is 4b97ce7f….
        assert!(!data.verify());
        assert_eq!(
            ContentId::of(&data.data).to_string(),
            "sha1+4b97ce7f0f06a0e05999f3c719cd5b4f3da992a7@bob.xmpp.org"
        );
    }

    #[test]
    fn verify_checks_the_cid_against_the_bytes() {
        let bytes = b"\x89PNG not really".to_vec();
        let data = Data::new("image/png".to_owned(), Some(86400), bytes).unwrap();
        assert!(data.verify());

        let mut tampered = data.clone();
        tampered.data.push(0);
        assert!(!tampered.verify());
    }

    #[test]
    fn builds_and_round_trips() {
        let data = Data::new("image/jpeg".to_owned(), Some(86400), b"hello".to_vec()).unwrap();
        let expected: Element = "<data xmlns='urn:xmpp:bob' \
               cid='sha1+aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d@bob.xmpp.org' \
               type='image/jpeg' max-age='86400'>aGVsbG8=</data>"
            .parse()
            .unwrap();
        let built = Element::from(data.clone());
        assert_eq!(built, expected);
        let parsed = Data::try_from(built).unwrap();
        assert_eq!(parsed, data);
        assert!(parsed.verify());
    }

    #[test]
    fn new_refuses_too_much_data() {
        assert_eq!(
            Data::new("image/png".to_owned(), None, vec![0; MAX_DATA_SIZE + 1]),
            Err(DataTooLarge(MAX_DATA_SIZE + 1))
        );
        assert!(Data::new("image/png".to_owned(), None, vec![0; MAX_DATA_SIZE]).is_ok());
    }

    #[test]
    fn rejects_malformed_cids_without_panicking() {
        let long = format!("sha1+{}@bob.xmpp.org", "a".repeat(100_000));
        let non_ascii = format!("sha1+{}é@bob.xmpp.org", "a".repeat(38));
        for cid in [
            "",
            "Hello world!",
            "sha1+8f35fef110ffc5df08d579a50083ff9308fb6242",
            "sha1+8f35fef110ffc5df08d579a50083ff9308fb6242@bob.xmpp.net",
            "sha256+8f35fef110ffc5df08d579a50083ff9308fb@bob.xmpp.org",
            "md5+8f35fef110ffc5df08d579a50083ff9308fb6242@bob.xmpp.org",
            "sha1+8F35FEF110FFC5DF08D579A50083FF9308FB6242@bob.xmpp.org",
            "sha1+8f35fef110ffc5df08d579a50083ff9308fb624@bob.xmpp.org",
            "sha1+8f35fef110ffc5df08d579a50083ff9308fb62422@bob.xmpp.org",
            "sha1+8f35fef110ffc5df08d579a50083ff9308fb624g@bob.xmpp.org",
            "sha1+ 8f35fef110ffc5df08d579a50083ff9308fb624@bob.xmpp.org",
            "sha1+-f35fef110ffc5df08d579a50083ff9308fb6242@bob.xmpp.org",
            "cid:sha1+8f35fef110ffc5df08d579a50083ff9308fb6242@bob.xmpp.org",
            &long,
            &non_ascii,
            "ééééééééééééééééééééééééééééé",
        ] {
            assert!(cid.parse::<ContentId>().is_err(), "accepted cid {cid:?}");
            if cid.len() > 1000 {
                continue; // beyond what the XML parser takes in an attribute
            }
            let xml = data_element(&cid.replace('\'', ""), "aGVsbG8=");
            assert!(parse(&xml).is_err(), "accepted element with cid {cid:?}");
        }
    }

    #[test]
    fn rejects_invalid_base64() {
        for text in [
            "aGVsbG8",      // missing padding
            "aGVsbG9=",     // non-zero pad bits
            "aGVs*G8=",     // outside the alphabet
            "aGVsbG8-",     // URL-safe alphabet
            "aGVsbG8=aGVs", // data after padding
        ] {
            assert!(
                parse(&data_element(XEP_CID, text)).is_err(),
                "accepted {text:?}"
            );
        }
    }

    #[test]
    fn rejects_too_much_data() {
        let exactly_max = Engine::encode(&STANDARD, vec![0; MAX_DATA_SIZE]);
        assert!(parse(&data_element(XEP_CID, &exactly_max)).is_ok());
        let over_max = Engine::encode(&STANDARD, vec![0; MAX_DATA_SIZE + 1]);
        assert!(parse(&data_element(XEP_CID, &over_max)).is_err());
        let huge = "A".repeat(10 * MAX_DATA_SIZE);
        assert!(parse(&data_element(XEP_CID, &huge)).is_err());
    }

    #[test]
    fn rejects_missing_or_malformed_attributes() {
        assert!(parse("<data xmlns='urn:xmpp:bob' type='image/png'>aGVsbG8=</data>").is_err());
        assert!(parse(&format!(
            "<data xmlns='urn:xmpp:bob' cid='{XEP_CID}'>aGVsbG8=</data>"
        ))
        .is_err());
        assert!(parse(&format!(
            "<data xmlns='urn:xmpp:bob' cid='{XEP_CID}' type='image/png' max-age='-1'>aGVsbG8=</data>"
        ))
        .is_err());
    }
}
