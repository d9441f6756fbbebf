//! A relay request: one XEP-0033 message naming the recipients and the file.
//!
//! Everything a stranger controls is checked here, before anything is
//! stored: the addresses (only `to`, `cc` and `bcc` to plain JIDs; no
//! `noreply`, `ofrom` or already-`delivered` tricks; duplicates collapsed),
//! how many recipients, the URL (a file of this Satchel), and an optional
//! thumbnail the sender made (its cid must be the SHA-1 of its bytes). The
//! checks that need the store or the configuration ([`crate::relay::Relay`]'s
//! domains, the file's uploader) come after, when the relay is accepted.

use jid::{BareJid, Jid};
use minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::oob::Oob;

use crate::storage::FileId;
use crate::xmpp::addresses::{Address, AddressType, Addresses};
use crate::xmpp::bob::Data as BobData;
use crate::xmpp::sfs::FileSharing;

/// A relay request that passed the checks that need no state.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayRequest {
    /// The request's `id`, for the receipt and error reports.
    pub id: String,
    pub from: Jid,
    /// Bare JIDs, in the order given, without duplicates.
    pub recipients: Vec<BareJid>,
    pub caption: Option<String>,
    /// The URL exactly as the sender wrote it (an `aesgcm://` link keeps its key).
    pub url: String,
    pub file: FileId,
    /// Whether the URL carries a client-side key, so the stored bytes are ciphertext.
    pub client_encrypted: bool,
    pub wants_receipt: bool,
    /// A thumbnail the sender attached, already checked against its cid.
    pub sender_thumbnail: Option<SenderThumbnail>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SenderThumbnail {
    pub data: BobData,
    pub width: Option<u16>,
    pub height: Option<u16>,
}

/// Why a relay request is refused, as the stanza error the sender gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("The URL is not a completed upload on this service")]
    ItemNotFound,
    #[error("Only the uploader of a file may relay it")]
    Forbidden,
    #[error("Too many recipients: at most {0}")]
    TooManyRecipients(usize),
    #[error("Recipient {0} is not in a domain this service relays to")]
    RecipientNotAllowed(String),
    #[error("The sender is not in a domain this service serves")]
    SenderNotAllowed,
    #[error("Too many relays; wait a minute")]
    RateLimited,
    #[error("The relay cannot be stored right now")]
    Internal,
}

impl Refusal {
    /// The RFC 6120 condition and error type for the reply.
    pub fn condition(&self) -> (&'static str, &'static str) {
        match self {
            Refusal::BadRequest(_) => ("bad-request", "modify"),
            Refusal::ItemNotFound => ("item-not-found", "cancel"),
            Refusal::Forbidden => ("forbidden", "auth"),
            Refusal::TooManyRecipients(_) => ("not-acceptable", "modify"),
            Refusal::RecipientNotAllowed(_) | Refusal::SenderNotAllowed => {
                ("not-allowed", "cancel")
            }
            Refusal::RateLimited => ("policy-violation", "wait"),
            Refusal::Internal => ("internal-server-error", "wait"),
        }
    }
}

/// Whether `message` asks for a relay (it carries XEP-0033 addresses).
pub fn is_relay_request(message: &Element) -> bool {
    message.has_child("addresses", crate::xmpp::addresses::NS)
}

/// Parses a relay request sent to the component.
///
/// `file_url_prefix` is the part after the scheme of the service's GET URLs
/// (`upload.example.org/file/`).
pub fn parse(
    message: &Element,
    from: Jid,
    max_recipients: usize,
    file_url_prefix: &str,
) -> Result<RelayRequest, Refusal> {
    let recipients = recipients(message, max_recipients)?;
    let url = the_url(message)?;
    let (file, client_encrypted) =
        file_of_url(&url, file_url_prefix).ok_or(Refusal::ItemNotFound)?;
    let caption = caption(message, &url)?;
    Ok(RelayRequest {
        id: message.attr("id").unwrap_or_default().to_owned(),
        from,
        recipients,
        caption,
        url,
        file,
        client_encrypted,
        wants_receipt: message.has_child("request", ns::RECEIPTS),
        sender_thumbnail: sender_thumbnail(message)?,
    })
}

/// The recipients named by the request's one `<addresses/>`: bare JIDs of
/// users, in the order given, without duplicates.
fn recipients(message: &Element, max_recipients: usize) -> Result<Vec<BareJid>, Refusal> {
    let mut address_headers = message
        .children()
        .filter(|child| child.is("addresses", crate::xmpp::addresses::NS));
    let header = match (address_headers.next(), address_headers.next()) {
        (Some(only), None) => only.clone(),
        _ => {
            return Err(Refusal::BadRequest(
                "Exactly one <addresses/> element is needed",
            ))
        }
    };
    // Counted before parsing: ten thousand addresses are refused cheaply.
    if header.children().count() > max_recipients {
        return Err(Refusal::TooManyRecipients(max_recipients));
    }
    let addresses =
        Addresses::try_from(header).map_err(|_| Refusal::BadRequest("Malformed <addresses/>"))?;
    let mut recipients: Vec<BareJid> = Vec::with_capacity(addresses.addresses.len());
    for address in addresses.addresses {
        let bare = recipient(address)?;
        if !recipients.contains(&bare) {
            recipients.push(bare);
        }
    }
    if recipients.is_empty() {
        return Err(Refusal::BadRequest("No recipient"));
    }
    Ok(recipients)
}

/// The user one address names: only `to`, `cc` and `bcc` to a plain JID,
/// not yet delivered.
fn recipient(address: Address) -> Result<BareJid, Refusal> {
    match address.type_ {
        AddressType::To | AddressType::Cc | AddressType::Bcc => {}
        _ => {
            return Err(Refusal::BadRequest(
                "Only to, cc and bcc addresses are relayed",
            ))
        }
    }
    if address.delivered {
        return Err(Refusal::BadRequest(
            "An address is already marked delivered",
        ));
    }
    let (Some(jid), None, None) = (address.jid, address.uri, address.node) else {
        return Err(Refusal::BadRequest("Every address must be a plain JID"));
    };
    if jid.node().is_none() {
        return Err(Refusal::BadRequest(
            "Recipients are users, not servers or services",
        ));
    }
    Ok(jid.into_bare())
}

/// The URL of the request's one OOB element.
fn the_url(message: &Element) -> Result<String, Refusal> {
    let mut oobs = message.children().filter(|c| c.is("x", ns::OOB));
    match (oobs.next(), oobs.next()) {
        (Some(only), None) => Oob::try_from(only.clone())
            .map(|oob| oob.url)
            .map_err(|_| Refusal::BadRequest("Malformed <x xmlns='jabber:x:oob'/>")),
        _ => Err(Refusal::BadRequest("Exactly one OOB URL is needed")),
    }
}

/// The body, unless it is empty or just the URL again.
fn caption(message: &Element, url: &str) -> Result<Option<String>, Refusal> {
    let caption = message
        .children()
        .find(|c| c.name() == "body" && c.ns() == ns::DEFAULT_NS)
        .map(|body| body.text())
        .filter(|text| !text.trim().is_empty() && text != url);
    if caption.as_ref().is_some_and(|c| c.len() > 4096) {
        return Err(Refusal::BadRequest("The caption is longer than 4096 bytes"));
    }
    Ok(caption)
}

/// The file id in a GET URL of this service, and whether the URL is an
/// `aesgcm://` link (XEP-0454), whose key stays with the clients.
pub fn file_of_url(url: &str, file_url_prefix: &str) -> Option<(FileId, bool)> {
    let (scheme, rest) = url.split_once("://")?;
    let client_encrypted = match scheme {
        "https" | "http" => false,
        "aesgcm" => true,
        _ => return None,
    };
    let rest = rest.strip_prefix(file_url_prefix)?;
    let id = rest.split(['/', '#', '?']).next()?;
    Some((id.parse().ok()?, client_encrypted))
}

/// A thumbnail the sender attached (XEP-0264 in the XEP-0446 metadata, bytes
/// in XEP-0231 data): refused if its cid does not name its bytes.
fn sender_thumbnail(message: &Element) -> Result<Option<SenderThumbnail>, Refusal> {
    let Some(sharing) = message.get_child("file-sharing", crate::xmpp::sfs::NS) else {
        return Ok(None);
    };
    let sharing = FileSharing::try_from(sharing.clone())
        .map_err(|_| Refusal::BadRequest("Malformed <file-sharing/>"))?;
    let Some(thumbnail) = sharing
        .file
        .thumbnails
        .into_iter()
        .find(|t| t.uri.starts_with("cid:"))
    else {
        return Ok(None);
    };
    let cid = &thumbnail.uri["cid:".len()..];
    let data = message
        .children()
        .filter(|c| c.is("data", crate::xmpp::bob::NS))
        .find(|c| c.attr("cid") == Some(cid))
        .ok_or(Refusal::BadRequest("The thumbnail's data is missing"))?;
    let data = BobData::try_from(data.clone())
        .map_err(|_| Refusal::BadRequest("Malformed thumbnail data"))?;
    if !data.verify() {
        return Err(Refusal::BadRequest(
            "The thumbnail's cid does not match its bytes",
        ));
    }
    if super::thumbnail::image_info(&data.data).is_err() {
        return Err(Refusal::BadRequest("The thumbnail is not an image"));
    }
    Ok(Some(SenderThumbnail {
        data,
        width: thumbnail.width.map(|w| w.get()),
        height: thumbnail.height.map(|h| h.get()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "upload.example.org/file/";
    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn url() -> String {
        format!("https://{PREFIX}{ID}/photo.jpg")
    }

    fn request(addresses: &str, extra: &str) -> Result<RelayRequest, Refusal> {
        let xml = format!(
            "<message xmlns='jabber:component:accept' to='upload.example.org' id='m1'>\
               <addresses xmlns='http://jabber.org/protocol/address'>{addresses}</addresses>\
               <body>optional caption</body>\
               <x xmlns='jabber:x:oob'><url>{}</url></x>\
               <request xmlns='urn:xmpp:receipts'/>{extra}</message>",
            url()
        );
        parse(
            &xml.parse().unwrap(),
            "alice@example.org/phone".parse().unwrap(),
            50,
            PREFIX,
        )
    }

    /// The request of the relay issue.
    #[test]
    fn parses_the_documented_request() {
        let parsed = request(
            "<address type='to' jid='bob@example.org'/><address type='cc' jid='carol@example.org'/>",
            "",
        )
        .unwrap();
        assert_eq!(parsed.id, "m1");
        assert_eq!(
            parsed.recipients,
            vec![
                "bob@example.org".parse::<BareJid>().unwrap(),
                "carol@example.org".parse().unwrap()
            ]
        );
        assert_eq!(parsed.caption.as_deref(), Some("optional caption"));
        assert_eq!(parsed.url, url());
        assert_eq!(parsed.file.to_string(), ID);
        assert!(parsed.wants_receipt);
        assert!(!parsed.client_encrypted);
        assert_eq!(parsed.sender_thumbnail, None);
    }

    #[test]
    fn duplicates_and_resources_collapse_to_one_bare_jid() {
        let parsed = request(
            "<address type='to' jid='bob@example.org'/><address type='bcc' jid='bob@example.org/phone'/><address type='cc' jid='BOB@example.org'/>",
            "",
        )
        .unwrap();
        assert_eq!(parsed.recipients.len(), 1);
    }

    #[test]
    fn address_tricks_are_refused() {
        for addresses in [
            "<address type='noreply'/>",
            "<address type='ofrom' jid='mallory@example.org'/>",
            "<address type='replyto' jid='mallory@example.org'/>",
            "<address type='to' jid='bob@example.org' delivered='true'/>",
            "<address type='to' uri='mailto:bob@example.org'/>",
            "<address type='to' jid='example.org'/>",
            "<address type='to' jid='bob@example.org' node='x'/>",
            "<address type='bogus' jid='bob@example.org'/>",
            "<address type='to' jid='@@@'/>",
        ] {
            assert!(
                matches!(request(addresses, ""), Err(Refusal::BadRequest(_))),
                "{addresses}"
            );
        }
    }

    #[test]
    fn too_many_recipients_are_not_acceptable() {
        let many: String = (0..51)
            .map(|i| format!("<address type='to' jid='u{i}@example.org'/>"))
            .collect();
        assert_eq!(request(&many, ""), Err(Refusal::TooManyRecipients(50)));
        let huge: String = (0..10_000)
            .map(|i| format!("<address type='to' jid='u{i}@example.org'/>"))
            .collect();
        assert_eq!(request(&huge, ""), Err(Refusal::TooManyRecipients(50)));
    }

    #[test]
    fn urls_of_other_hosts_or_shapes_are_not_found() {
        for bad in [
            format!("https://evil.example/file/{ID}/x"),
            format!("https://{PREFIX}{}/x", &ID[..31]),
            format!("ftp://{PREFIX}{ID}/x"),
            format!("https://upload.example.org/upload/{ID}/x"),
            "not a url".to_owned(),
        ] {
            assert_eq!(file_of_url(&bad, PREFIX), None, "{bad}");
        }
        let (id, encrypted) =
            file_of_url(&format!("aesgcm://{PREFIX}{ID}/x.jpg#00112233"), PREFIX).unwrap();
        assert_eq!(id.to_string(), ID);
        assert!(encrypted);
    }

    #[test]
    fn a_forged_thumbnail_cid_is_refused() {
        let png = {
            let mut bytes = Vec::new();
            image::RgbImage::new(4, 4)
                .write_to(
                    &mut std::io::Cursor::new(&mut bytes),
                    image::ImageFormat::Png,
                )
                .unwrap();
            bytes
        };
        let real = BobData::new("image/png".into(), None, png.clone()).unwrap();
        let real_cid = real.cid.to_string();
        let forged_cid = crate::xmpp::bob::ContentId::of(b"something else").to_string();
        let data = |cid: &str| {
            use base64::Engine;
            format!(
                "<data xmlns='urn:xmpp:bob' cid='{cid}' type='image/png'>{}</data>",
                base64::engine::general_purpose::STANDARD.encode(&png)
            )
        };
        let sharing = |cid: &str| {
            format!(
                "<file-sharing xmlns='urn:xmpp:sfs:0' disposition='inline'><file xmlns='urn:xmpp:file:metadata:0'>\
                 <thumbnail xmlns='urn:xmpp:thumbs:1' uri='cid:{cid}' media-type='image/png' width='4' height='4'/>\
                 </file></file-sharing>"
            )
        };
        let to = "<address type='to' jid='bob@example.org'/>";
        let good = request(to, &(sharing(&real_cid) + &data(&real_cid))).unwrap();
        assert_eq!(good.sender_thumbnail.unwrap().data.data, png);
        assert!(matches!(
            request(to, &(sharing(&forged_cid) + &data(&forged_cid))),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            request(to, &sharing(&real_cid)),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn a_request_needs_one_url() {
        let xml = "<message xmlns='jabber:component:accept' id='x'><addresses xmlns='http://jabber.org/protocol/address'><address type='to' jid='bob@example.org'/></addresses><body>hi</body></message>";
        let refused = parse(
            &xml.parse().unwrap(),
            "alice@example.org/a".parse().unwrap(),
            50,
            PREFIX,
        );
        assert!(matches!(refused, Err(Refusal::BadRequest(_))));
    }
}
