//! XEP-0030 Service Discovery, with the XEP-0128 extension form.
//!
//! Clients find the upload service through the server's disco#items, then ask
//! it for disco#info: the `store/file` identity, the upload feature and the
//! `max-file-size` field, so that they can refuse a large file before asking
//! for a slot.

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity};
use xmpp_parsers::ns;

/// XEP-0363 1.2 purpose features: each purpose Satchel keeps files for.
pub const PURPOSE_FEATURES: [&str; 3] = [
    "urn:xmpp:http:upload:purpose:0#message",
    "urn:xmpp:http:upload:purpose:0#ephemeral",
    "urn:xmpp:http:upload:purpose:0#permanent",
];

/// Satchel's disco#info answer.
pub fn info(max_file_size: u64) -> DiscoInfoResult {
    let features = [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::HTTP_UPLOAD,
        // XEP-0033: relay requests name their recipients with addresses.
        crate::xmpp::addresses::NS,
        // XEP-0050: commands for users and admins.
        crate::xmpp::adhoc::NS,
    ]
    .into_iter()
    .chain(PURPOSE_FEATURES)
    .map(str::to_owned)
    .collect();
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("store", "file", "en", "HTTP File Upload")],
        features,
        extensions: vec![DataForm::new(
            DataFormType::Result_,
            ns::HTTP_UPLOAD,
            vec![Field::text_single(
                "max-file-size",
                &max_file_size.to_string(),
            )],
        )],
    }
}

/// Satchel has no items of its own.
pub fn items() -> DiscoItemsResult {
    DiscoItemsResult {
        node: None,
        items: Vec::new(),
        rsm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    /// XEP-0363 example 4: the answer carries identity, feature and max-file-size.
    #[test]
    fn info_matches_the_xep_example() {
        let element = Element::from(info(5_242_880));
        let identity = element.get_child("identity", ns::DISCO_INFO).unwrap();
        assert_eq!(identity.attr("category"), Some("store"));
        assert_eq!(identity.attr("type"), Some("file"));
        assert!(element
            .children()
            .any(|c| c.name() == "feature" && c.attr("var") == Some(ns::HTTP_UPLOAD)));
        let form = element.get_child("x", ns::DATA_FORMS).unwrap();
        assert_eq!(form.attr("type"), Some("result"));
        let fields: Vec<(Option<&str>, String)> = form
            .children()
            .map(|f| {
                (
                    f.attr("var"),
                    f.get_child("value", ns::DATA_FORMS).unwrap().text(),
                )
            })
            .collect();
        assert!(fields.contains(&(Some("FORM_TYPE"), ns::HTTP_UPLOAD.to_owned())));
        assert!(fields.contains(&(Some("max-file-size"), "5242880".to_owned())));
    }

    #[test]
    fn items_are_empty() {
        let element = Element::from(items());
        assert!(element.is("query", ns::DISCO_ITEMS));
        assert_eq!(element.children().count(), 0);
    }
}
