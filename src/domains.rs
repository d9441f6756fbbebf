//! Which domains Satchel belongs to and serves.
//!
//! A component `upload.example.org` is attached to the server of
//! `example.org`: that is where its keepalive pings go, whose announcements
//! it believes, and (unless the operator lists others) whose users it serves.

use jid::BareJid;

/// `upload.example.org` sits under `example.org`; a single label stands for itself.
pub fn parent_domain(domain: &str) -> &str {
    match domain.split_once('.') {
        Some((_, parent)) if !parent.is_empty() => parent,
        _ => domain,
    }
}

/// The server a component JID is attached to.
pub fn server_of(component: &BareJid) -> BareJid {
    parent_domain(component.domain().as_str())
        .parse()
        .unwrap_or_else(|_| component.clone())
}

/// Whether `domain` is one of `allowed` (lowercase domains), ignoring case.
pub fn is_allowed(allowed: &[String], domain: &str) -> bool {
    allowed
        .iter()
        .any(|listed| listed.eq_ignore_ascii_case(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_domain_of_single_label_is_itself() {
        assert_eq!(parent_domain("upload.localhost"), "localhost");
        assert_eq!(parent_domain("localhost"), "localhost");
        assert_eq!(parent_domain("trailing."), "trailing.");
    }

    #[test]
    fn a_component_is_served_by_its_parent_domain() {
        let component: BareJid = "upload.example.org".parse().unwrap();
        assert_eq!(server_of(&component).as_str(), "example.org");
        let single: BareJid = "localhost".parse().unwrap();
        assert_eq!(server_of(&single).as_str(), "localhost");
    }

    #[test]
    fn allowed_domains_ignore_case_and_match_whole_names() {
        let allowed = vec!["example.org".to_owned()];
        assert!(is_allowed(&allowed, "Example.ORG"));
        assert!(!is_allowed(&allowed, "evil-example.org"));
        assert!(!is_allowed(&allowed, "example.org.evil"));
        assert!(!is_allowed(&[], "example.org"));
    }
}
