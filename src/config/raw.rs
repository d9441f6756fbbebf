//! The file as written: TOML checked against the [table](super::keys), each
//! value kept with where it was written, read key by key into typed values.
//!
//! Every fault names the key; a fault of the text itself (its syntax, a key
//! the table does not know, a value of the wrong type) also quotes the line,
//! so the operator sees what to change without counting lines.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::error::ConfigError;
use super::key::{Key, KeyDefault, Spec};
use super::keys::SECTIONS;
use super::kinds::{Kind, Refusal};

/// The keys of one section, each value with its place in the text.
type Table = BTreeMap<String, Spanned<toml::Value>>;

/// A section as written: its keys, and apart from them the tables inside it
/// that the key table names as sections of their own (`[storage.s3]`).
struct SectionItems {
    keys: Table,
    tables: BTreeMap<String, Spanned<Table>>,
}

impl<'de> Deserialize<'de> for SectionItems {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SectionVisitor)
    }
}

struct SectionVisitor;

impl<'de> serde::de::Visitor<'de> for SectionVisitor {
    type Value = SectionItems;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a table of keys")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SectionItems, A::Error> {
        let mut items = SectionItems {
            keys: Table::new(),
            tables: BTreeMap::new(),
        };
        while let Some(name) = map.next_key::<String>()? {
            // Read with spans inside, so that faults there quote their line.
            if names_an_inner_section(&name) {
                items.tables.insert(name, map.next_value()?);
            } else {
                items.keys.insert(name, map.next_value()?);
            }
        }
        Ok(items)
    }
}

/// Whether some section of the table is `[<any>.<name>]`.
fn names_an_inner_section(name: &str) -> bool {
    SECTIONS.iter().any(|section| {
        section
            .name
            .split_once('.')
            .is_some_and(|(_, inner)| inner == name)
    })
}

/// A configuration file whose sections and keys are all in the table.
pub(super) struct RawConfig<'t> {
    text: &'t str,
    sections: BTreeMap<String, Spanned<Table>>,
}

impl<'t> RawConfig<'t> {
    /// Parses `text`, refusing what is not TOML and any section or key the
    /// table does not list; values are checked when read.
    pub(super) fn parse(text: &'t str) -> Result<RawConfig<'t>, ConfigError> {
        let document: BTreeMap<String, Spanned<SectionItems>> =
            toml::from_str(text).map_err(|e| {
                // Some messages of the toml crate take several lines: keep the
                // error on one.
                let lines: Vec<_> = e
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                let message = lines.join(": ");
                match e.span() {
                    Some(span) => at_line(text, span.start, &message),
                    None => parse_error(message),
                }
            })?;
        let mut sections = BTreeMap::new();
        for (name, section) in document {
            let span = section.span();
            let SectionItems { keys, tables } = section.into_inner();
            for (inner, table) in tables {
                sections.insert(format!("{name}.{inner}"), table);
            }
            sections.insert(name, Spanned::new(span, keys));
        }
        let raw = RawConfig { text, sections };
        match raw.first_stranger() {
            Some((offset, message)) => Err(at_line(text, offset, &message)),
            None => Ok(raw),
        }
    }

    /// The first section or key, in the order of the text, that the table
    /// does not know, and what to say about it.
    fn first_stranger(&self) -> Option<(usize, String)> {
        let mut strangers = Vec::new();
        for (section_name, section) in &self.sections {
            let shown = section_name.escape_debug();
            let Some(known) = SECTIONS.iter().find(|s| s.name == section_name) else {
                let names: Vec<_> = SECTIONS.iter().map(|s| s.name).collect();
                strangers.push((
                    section.span().start,
                    format!(
                        "unknown section [{shown}]; the sections are {}",
                        names.join(", ")
                    ),
                ));
                continue;
            };
            for (name, value) in section.get_ref() {
                if !known.keys.iter().any(|key| key.name == name) {
                    let names: Vec<_> = known.keys.iter().map(|key| key.name).collect();
                    strangers.push((
                        value.span().start,
                        format!(
                            "unknown key `{shown}.{}`; [{shown}] has {}",
                            name.escape_debug(),
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        strangers.into_iter().min_by_key(|(offset, _)| *offset)
    }

    /// The value of `key`: as written, or its default; an error if the file
    /// leaves out a required key. A key with a derived default is read with
    /// [`RawConfig::written`] instead.
    pub(super) fn get<K: Kind>(&self, key: &Key<K>) -> Result<K::Value, ConfigError> {
        let spec = &key.spec;
        if let Some(written) = self.written(key)? {
            return Ok(written);
        }
        match spec.default {
            KeyDefault::Value(toml) => read_default::<K>(spec, toml),
            KeyDefault::Required | KeyDefault::Derived(_) => Err(ConfigError::Invalid {
                key: spec.path,
                reason: format!("missing; it is required ({})", spec.doc.trim()),
            }),
        }
    }

    /// The value of `key` if the file gives one.
    pub(super) fn written<K: Kind>(&self, key: &Key<K>) -> Result<Option<K::Value>, ConfigError> {
        let spec = &key.spec;
        let Some(value) = self
            .sections
            .get(spec.section)
            .and_then(|section| section.get_ref().get(spec.name))
        else {
            return Ok(None);
        };
        K::read(value.get_ref())
            .map(Some)
            .map_err(|refusal| match refusal {
                Refusal::WrongType(expected) => at_line(
                    self.text,
                    value.span().start,
                    &format!("`{}` takes {expected}", spec.path),
                ),
                Refusal::Unusable(reason) => ConfigError::Invalid {
                    key: spec.path,
                    reason,
                },
            })
    }
}

/// A default from the table, read as if the operator had written it. The
/// table's defaults are all tested, so this fails only while one is being
/// written.
fn read_default<K: Kind>(spec: &Spec, toml: &str) -> Result<K::Value, ConfigError> {
    let unusable = |why: String| ConfigError::Invalid {
        key: spec.path,
        reason: format!("the built-in default {toml} is unusable: {why}"),
    };
    let value = toml::Value::deserialize(toml::de::ValueDeserializer::new(toml))
        .map_err(|e| unusable(e.message().to_owned()))?;
    K::read(&value).map_err(|refusal| {
        unusable(match refusal {
            Refusal::WrongType(expected) => format!("takes {expected}"),
            Refusal::Unusable(reason) => reason,
        })
    })
}

fn parse_error(message: String) -> ConfigError {
    ConfigError::Parse {
        path: PathBuf::new(),
        message,
    }
}

/// `message` about the line of `text` that holds byte `offset`, quoted.
fn at_line(text: &str, offset: usize, message: &str) -> ConfigError {
    let (number, line) = line_at(text, offset);
    parse_error(format!("line {number} (`{line}`): {message}"))
}

/// The 1-based number and the trimmed text of the line holding byte `offset`.
fn line_at(text: &str, offset: usize) -> (usize, &str) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line: String = text[start..end].chars().take(80).collect();
    let shown = &text[start..start + line.len()];
    (text[..start].matches('\n').count() + 1, shown.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_at_counts_from_one_and_respects_characters() {
        assert_eq!(line_at("a\nbé\nc", 4), (2, "bé"));
        assert_eq!(line_at("a\nbé\nc", 3), (2, "bé"));
        assert_eq!(line_at("abc", 99), (1, "abc"));
        assert_eq!(line_at(&"é".repeat(100), 7).1.chars().count(), 80);
    }
}
