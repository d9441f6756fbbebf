//! XEP-0446 File metadata element 0.2.0.
//!
//! The `<file/>` element describes a shared file: its media type, name,
//! size, dimensions, hashes and thumbnails. The relay writes it, from its own
//! records of the upload, into the share each recipient gets, so that the
//! recipient's client can show the file before fetching it; it reads only the
//! thumbnail reference from a sender's request.
//!
//! Version 0.2.0 replaced `<dimensions>WxH</dimensions>` with `<width/>` and
//! `<height/>`; a `<dimensions/>` from an older sender (such as the example
//! in XEP-0447 0.2.0) is ignored like any other unknown child.

use std::collections::BTreeMap;

use xso::{AsXml, FromXml};

use xmpp_parsers::date::DateTime;
use xmpp_parsers::hashes::Hash;
use xmpp_parsers::jingle_thumbnails::Thumbnail;
use xmpp_parsers::message::Lang;

/// Namespace of the `<file/>` element.
pub const NS: &str = "urn:xmpp:file:metadata:0";

/// A `<file/>` metadata element; every child is optional.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq, Default)]
#[xml(namespace = NS, name = "file", on_unknown_child = Discard)]
pub struct File {
    /// The media type; `application/octet-stream` when absent.
    #[xml(extract(default, name = "media-type", fields(text(type_ = String))))]
    pub media_type: Option<String>,

    /// The file name, as the sender gave it: never a safe path as is.
    #[xml(extract(default, fields(text(type_ = String))))]
    pub name: Option<String>,

    /// Human-readable descriptions, by `xml:lang` (empty for none).
    #[xml(extract(n = .., name = "desc", fields(
        lang(type_ = Lang, default),
        text(type_ = String),
    )))]
    pub descs: BTreeMap<Lang, String>,

    /// Last modification time (XEP-0082 DateTime).
    #[xml(extract(default, fields(text(type_ = DateTime))))]
    pub date: Option<DateTime>,

    /// Size of the content, in bytes.
    #[xml(extract(default, fields(text(type_ = u64))))]
    pub size: Option<u64>,

    /// Width of an image or video, in pixels.
    #[xml(extract(default, fields(text(type_ = u32))))]
    pub width: Option<u32>,

    /// Height of an image or video, in pixels.
    #[xml(extract(default, fields(text(type_ = u32))))]
    pub height: Option<u32>,

    /// Duration of an audio or video file, in milliseconds.
    #[xml(extract(default, fields(text(type_ = u64))))]
    pub length: Option<u64>,

    /// Hashes of the content (XEP-0300), several for hash agility.
    #[xml(child(n = ..))]
    pub hashes: Vec<Hash>,

    /// Thumbnails (XEP-0264), several for media type and size agility.
    #[xml(child(n = ..))]
    pub thumbnails: Vec<Thumbnail>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::num::NonZeroU16;
    use minidom::Element;
    use xmpp_parsers::hashes::Algo;
    use xso::error::FromElementError;

    fn parse(xml: &str) -> Result<File, FromElementError> {
        File::try_from(xml.parse::<Element>().unwrap())
    }

    /// XEP-0446 §2: the element format example.
    #[test]
    fn parses_the_xep_example() {
        let file = parse(
            "<file xmlns='urn:xmpp:file:metadata:0'>
                <media-type>text/plain</media-type>
                <name>test.txt</name>
                <date>2015-07-26T21:46:00+01:00</date>
                <size>6144</size>
                <hash xmlns='urn:xmpp:hashes:2'
                      algo='sha-1'>w0mcJylzCn+AfvuGdqkty2+KP48=</hash>
            </file>",
        )
        .unwrap();
        assert_eq!(file.media_type.as_deref(), Some("text/plain"));
        assert_eq!(file.name.as_deref(), Some("test.txt"));
        assert_eq!(
            file.date.unwrap().0.to_rfc3339(),
            "2015-07-26T21:46:00+01:00"
        );
        assert_eq!(file.size, Some(6144));
        assert_eq!(file.hashes.len(), 1);
        assert_eq!(file.hashes[0].algo, Algo::Sha_1);
        assert_eq!(file.hashes[0].to_base64(), "w0mcJylzCn+AfvuGdqkty2+KP48=");
        assert!(file.descs.is_empty());
        assert!(file.thumbnails.is_empty());
    }

    /// The 0.2.0 children, the XEP-0264 thumbnail and localised descriptions.
    #[test]
    fn parses_dimensions_length_descriptions_and_thumbnails() {
        let file = parse(
            "<file xmlns='urn:xmpp:file:metadata:0'>\
               <media-type>video/mp4</media-type>\
               <width>1920</width><height>1080</height><length>63000</length>\
               <desc>Picture of 24th XSF Summit</desc>\
               <desc xml:lang='de'>Bild vom 24. XSF-Gipfel</desc>\
               <thumbnail xmlns='urn:xmpp:thumbs:1' \
                 uri='cid:sha1+ffd7c8d28e9c5e82afea41f97108c6b4@bob.xmpp.org' \
                 media-type='image/png' width='128' height='96'/>\
             </file>",
        )
        .unwrap();
        assert_eq!(
            (file.width, file.height, file.length),
            (Some(1920), Some(1080), Some(63000))
        );
        assert_eq!(file.descs[""], "Picture of 24th XSF Summit");
        assert_eq!(file.descs["de"], "Bild vom 24. XSF-Gipfel");
        let thumbnail = &file.thumbnails[0];
        assert_eq!(
            thumbnail.uri,
            "cid:sha1+ffd7c8d28e9c5e82afea41f97108c6b4@bob.xmpp.org"
        );
        assert_eq!(thumbnail.media_type.as_deref(), Some("image/png"));
        assert_eq!(thumbnail.width, NonZeroU16::new(128));
        assert_eq!(thumbnail.height, NonZeroU16::new(96));
    }

    #[test]
    fn ignores_the_legacy_dimensions_child() {
        let file = parse(
            "<file xmlns='urn:xmpp:file:metadata:0'><dimensions>4096x2160</dimensions></file>",
        )
        .unwrap();
        assert_eq!(file, File::default());
    }

    #[test]
    fn round_trips() {
        let file = parse(
            "<file xmlns='urn:xmpp:file:metadata:0'>\
               <media-type>image/jpeg</media-type><name>summit.jpg</name>\
               <desc>Photo from the summit.</desc>\
               <size>3032449</size><width>4096</width><height>2160</height>\
               <hash xmlns='urn:xmpp:hashes:2' algo='sha3-256'>2XarmwTlNxDAMkvymloX3S5+VbylNrJt/l5QyPa+YoU=</hash>\
             </file>",
        )
        .unwrap();
        assert_eq!(File::try_from(Element::from(file.clone())).unwrap(), file);
    }

    #[test]
    fn rejects_malformed_numbers() {
        for child in [
            "<size>-1</size>",
            "<size>lots</size>",
            "<size>99999999999999999999999</size>",
            "<width>1.5</width>",
            "<height></height>",
            "<length>ten</length>",
        ] {
            let xml = format!("<file xmlns='urn:xmpp:file:metadata:0'>{child}</file>");
            assert!(parse(&xml).is_err(), "accepted {child}");
        }
    }

    #[test]
    fn rejects_a_malformed_date_or_hash() {
        assert!(
            parse("<file xmlns='urn:xmpp:file:metadata:0'><date>yesterday</date></file>").is_err()
        );
        assert!(parse(
            "<file xmlns='urn:xmpp:file:metadata:0'>\
               <hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>not base64!</hash>\
             </file>"
        )
        .is_err());
    }

    #[test]
    fn rejects_a_repeated_single_child() {
        assert!(parse(
            "<file xmlns='urn:xmpp:file:metadata:0'><size>1</size><size>2</size></file>"
        )
        .is_err());
    }
}
