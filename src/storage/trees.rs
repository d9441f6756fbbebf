//! The names of the sled trees in the store's database, in one table.
//!
//! One database holds the file metadata and the few trees other parts of
//! Satchel keep beside it (side trees, see `metadata`), so that one flush
//! covers everything and one directory holds it; in a cluster they are
//! rows of PostgreSQL's `satchel_trees`, under the same names. A tree's
//! name is its name on disk: renaming one here would make existing stores
//! lose its contents.
//!
//! | name                | holds                                    | kept by                         |
//! |---------------------|------------------------------------------|---------------------------------|
//! | `files`             | the record of every completed file       | `metadata`                      |
//! | `uploads`           | ids that may own a blob without a record | `metadata`                      |
//! | `inline`            | the sealed bytes of small files          | `metadata`                      |
//! | `usage`             | per-user usage, for quotas               | `metadata`                      |
//! | `expiry`            | files by expiry                          | `metadata`                      |
//! | `by_user`           | files by uploader and expiry             | `metadata`                      |
//! | `awaited_downloads` | downloads that delete a file once done   | [`downloads`](super::downloads) |
//! | `relays`            | the relay's outbox                       | [`crate::relay`]                |

/// A tree that a part of Satchel outside the store keeps in the store's
/// database; see [`Store::open_tree`](super::Store::open_tree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    /// The relay's outbox: media messages not yet delivered to everyone.
    Relays,
}

impl Tree {
    pub(super) fn name(self) -> &'static str {
        match self {
            Tree::Relays => "relays",
        }
    }
}

/// The store's own trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StoreTree {
    Files,
    Uploads,
    /// Named `inline` on disk (the bytes kept in line with the record), and
    /// existing stores depend on that name. Elsewhere in Satchel "inline"
    /// means what a browser may show ([`crate::media`]); not this.
    SmallFiles,
    Usage,
    Expiry,
    ByUser,
    AwaitedDownloads,
}

impl StoreTree {
    pub(super) fn name(self) -> &'static str {
        match self {
            StoreTree::Files => "files",
            StoreTree::Uploads => "uploads",
            StoreTree::SmallFiles => "inline",
            StoreTree::Usage => "usage",
            StoreTree::Expiry => "expiry",
            StoreTree::ByUser => "by_user",
            StoreTree::AwaitedDownloads => "awaited_downloads",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_tree_has_a_name_of_its_own() {
        let store = [
            StoreTree::Files,
            StoreTree::Uploads,
            StoreTree::SmallFiles,
            StoreTree::Usage,
            StoreTree::Expiry,
            StoreTree::ByUser,
            StoreTree::AwaitedDownloads,
        ]
        .map(StoreTree::name);
        let names: HashSet<&str> = store
            .into_iter()
            .chain([Tree::Relays].map(Tree::name))
            .collect();
        assert_eq!(names.len(), store.len() + 1);
        // sled's own default tree; opening it by name would alias it.
        assert!(!names.contains("__sled__default"));
    }
}
