//! Reading the XML stream from the server, one stanza at a time.
//!
//! tokio-xmpp's stream reader uses rxml's default limit of 8 KiB per token:
//! a single attribute value above that (a slot request with a long file name,
//! which any user can send) is a fatal XML error there, and the whole link
//! drops. Here the limit is set to what a server forwards at most, and a
//! stanza over the size cap is skipped rather than fatal: the caller gets its
//! head (name, id, from, type) so that it can still answer with an error.
//!
//! `next` is cancel-safe: a stanza under construction lives in the reader, not
//! in the future, so the reader can sit in a `select!` next to a timer.

use minidom::Element;
use tokio::io::AsyncBufRead;
use xso::{Context, FromEventsBuilder, FromXml};

/// Longest attribute value or name accepted; servers cap stanzas below this
/// (Prosody and ejabberd: 256 KiB from clients, 512 KiB from other servers).
pub const MAX_TOKEN_BYTES: usize = 1024 * 1024;

/// What the server sent.
#[derive(Debug)]
pub enum Incoming {
    Stanza(Element),
    /// A stanza larger than the cap; its children were dropped unread.
    Oversized(Element),
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed stanza: {0}")]
    Element(String),
}

/// The stanza being read.
enum Current {
    /// Under the size cap so far.
    Building {
        builder: <Element as FromXml>::Builder,
        head: Element,
        bytes: usize,
        /// Elements open, the stanza's own included.
        depth: usize,
    },
    /// Over the cap: only its nesting depth is tracked until it ends.
    Skipping { head: Element, depth: usize },
}

/// Reads stanzas from the `jabber:component:accept` stream.
pub struct StanzaReader<R> {
    reader: rxml::AsyncReader<R>,
    max_stanza_bytes: usize,
    /// The `id` of the stream header, once seen.
    stream_id: Option<String>,
    in_stream: bool,
    current: Option<Current>,
}

impl<R: AsyncBufRead + Unpin> StanzaReader<R> {
    pub fn new(input: R, max_stanza_bytes: usize) -> StanzaReader<R> {
        let options = rxml::parser::Options {
            max_token_length: MAX_TOKEN_BYTES,
            ..Default::default()
        };
        StanzaReader {
            reader: rxml::AsyncReader::with_options(input, options),
            max_stanza_bytes,
            stream_id: None,
            in_stream: false,
            current: None,
        }
    }

    /// Reads up to the stream header and returns its `id`.
    pub async fn read_header(&mut self) -> Result<Option<String>, StreamError> {
        while !self.in_stream {
            match self.reader.read().await? {
                None => return Ok(None),
                Some(rxml::Event::StartElement(_, (_, name), attrs)) if name == "stream" => {
                    self.in_stream = true;
                    self.stream_id = attrs
                        .get(rxml::Namespace::none(), "id")
                        .map(|id| id.to_string());
                }
                Some(_) => {}
            }
        }
        Ok(self.stream_id.clone())
    }

    /// The next stanza, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<Incoming>, StreamError> {
        loop {
            let Some(event) = self.reader.read().await? else {
                return Ok(None);
            };
            let size = event.metrics().len();
            match self.current.take() {
                None => match event {
                    rxml::Event::StartElement(_, qname, attrs) => {
                        let head = head_of(&qname, &attrs);
                        let builder = Element::from_events(qname, attrs, &Context::empty())
                            .map_err(|e| StreamError::Element(format!("{e:?}")))?;
                        self.current = Some(Current::Building {
                            builder,
                            head,
                            bytes: size,
                            depth: 1,
                        });
                    }
                    // The stream's own end tag.
                    rxml::Event::EndElement(_) => return Ok(None),
                    // Whitespace keepalives between stanzas.
                    _ => {}
                },
                Some(Current::Building {
                    mut builder,
                    head,
                    bytes,
                    depth,
                }) => {
                    let bytes = bytes + size;
                    let depth = depth_after(&event, depth);
                    if bytes > self.max_stanza_bytes {
                        if depth == 0 {
                            return Ok(Some(Incoming::Oversized(head)));
                        }
                        self.current = Some(Current::Skipping { head, depth });
                        continue;
                    }
                    match builder.feed(event, &Context::empty()) {
                        Ok(Some(element)) => return Ok(Some(Incoming::Stanza(element))),
                        Ok(None) => {
                            self.current = Some(Current::Building {
                                builder,
                                head,
                                bytes,
                                depth,
                            })
                        }
                        Err(e) => return Err(StreamError::Element(e.to_string())),
                    }
                }
                Some(Current::Skipping { head, depth }) => {
                    let depth = depth_after(&event, depth);
                    if depth == 0 {
                        return Ok(Some(Incoming::Oversized(head)));
                    }
                    self.current = Some(Current::Skipping { head, depth });
                }
            }
        }
    }
}

/// Nesting depth once `event` is taken into account.
fn depth_after(event: &rxml::Event, depth: usize) -> usize {
    match event {
        rxml::Event::StartElement(..) => depth + 1,
        rxml::Event::EndElement(..) => depth.saturating_sub(1),
        _ => depth,
    }
}

/// The stanza's element with its attributes and no children.
fn head_of(qname: &rxml::QName, attrs: &rxml::AttrMap) -> Element {
    let (namespace, name) = qname;
    let mut head = Element::bare(name.as_str(), namespace.as_str());
    for ((attr_namespace, attr_name), value) in attrs.iter() {
        if attr_namespace.is_none() {
            head.set_attr(attr_namespace.clone(), attr_name.clone(), value.as_str());
        }
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='upload.localhost' id='abc123'>";

    async fn read_all(input: &str, max: usize) -> (Option<String>, Vec<Incoming>) {
        let mut reader = StanzaReader::new(input.as_bytes(), max);
        let id = reader.read_header().await.unwrap();
        let mut stanzas = Vec::new();
        while let Some(stanza) = reader.next().await.unwrap() {
            stanzas.push(stanza);
        }
        (id, stanzas)
    }

    #[tokio::test]
    async fn reads_the_header_id_and_stanzas() {
        let input = format!(
            "{HEADER}<handshake/> \n<iq type='get' id='1' from='a@b/c'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
        );
        let (id, stanzas) = read_all(&input, 4096).await;
        assert_eq!(id.as_deref(), Some("abc123"));
        assert_eq!(stanzas.len(), 2);
        let Incoming::Stanza(iq) = &stanzas[1] else {
            panic!()
        };
        assert!(iq.is("iq", "jabber:component:accept"));
        assert!(iq.has_child("ping", "urn:xmpp:ping"));
    }

    #[tokio::test]
    async fn attribute_values_beyond_rxml_default_limit_are_read() {
        let name = "a".repeat(100_000);
        let input = format!(
            "{HEADER}<iq type='get' id='big' from='a@b/c'><request xmlns='urn:xmpp:http:upload:0' filename='{name}' size='1'/></iq></stream:stream>"
        );
        let (_, stanzas) = read_all(&input, 1 << 20).await;
        let Incoming::Stanza(iq) = &stanzas[0] else {
            panic!("{stanzas:?}")
        };
        let request = iq.get_child("request", "urn:xmpp:http:upload:0").unwrap();
        assert_eq!(request.attr("filename").map(str::len), Some(100_000));
    }

    #[tokio::test]
    async fn an_oversized_stanza_is_skipped_and_reading_goes_on() {
        let children = "<x xmlns='urn:junk'><y/>text</x>".repeat(1000);
        let input = format!(
            "{HEADER}<iq type='get' id='huge' from='a@b/c'>{children}</iq><iq type='get' id='next' from='a@b/c'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
        );
        let (_, stanzas) = read_all(&input, 4096).await;
        assert_eq!(stanzas.len(), 2);
        let Incoming::Oversized(head) = &stanzas[0] else {
            panic!("{stanzas:?}")
        };
        assert_eq!(head.attr("id"), Some("huge"));
        assert_eq!(head.attr("from"), Some("a@b/c"));
        assert_eq!(head.children().count(), 0);
        let Incoming::Stanza(next) = &stanzas[1] else {
            panic!()
        };
        assert_eq!(next.attr("id"), Some("next"));
    }

    #[tokio::test]
    async fn broken_xml_is_an_error_not_a_panic() {
        for garbage in [
            "<iq><a></b></iq>",
            "<iq a='1' a='2'/>",
            "<\u{0}/>",
            "<iq>&bogus;</iq>",
        ] {
            let input = format!("{HEADER}{garbage}");
            let mut reader = StanzaReader::new(input.as_bytes(), 4096);
            reader.read_header().await.unwrap();
            assert!(reader.next().await.is_err(), "{garbage}");
        }
    }
}
