//! The configuration reference `satchel --help` prints, made from the
//! [table](super::keys): every section and key, its default and unit.

use super::key::{KeyDefault, Spec};
use super::keys::SECTIONS;
use super::kinds::Unit;

/// Where a key's description starts, and where lines are wrapped.
const DOC_COLUMN: usize = 30;
const WIDTH: usize = 100;

/// The text `satchel --help` prints after its options: every key, with its default.
pub fn keys_help() -> String {
    let mut help = String::from(
        "CONFIGURATION (TOML; keys marked * are required; those marked ~ take effect\n\
         on SIGHUP (systemctl reload), the others at the next start)\n",
    );
    for section in SECTIONS {
        push_entry(&mut help, 2, &format!("[{}]", section.name), section.doc);
        for key in section.keys {
            push_entry(&mut help, 4, &marked_name(key), &describe(key));
        }
    }
    help
}

/// The key's name, then `*` if required and `~` if a reload changes it.
fn marked_name(key: &Spec) -> String {
    let mut name = key.name.to_owned();
    if key.default == KeyDefault::Required {
        name.push_str(" *");
    }
    if key.reloadable {
        name.push_str(" ~");
    }
    name
}

/// A key's doc line, then its default (or, for a required key, its unit).
/// The doc is rustdoc too: its `code spans` lose their backticks here.
fn describe(key: &Spec) -> String {
    let doc = key.doc.trim().replace('`', "");
    match key.default {
        KeyDefault::Required => match unit_name(key.unit) {
            Some(unit) => format!("{doc}, in {unit}"),
            None => doc.to_owned(),
        },
        KeyDefault::Value(toml) => format!("{doc} ({})", show_value(toml, key.unit)),
        KeyDefault::Derived(how) => format!("{doc} ({how})"),
    }
}

fn unit_name(unit: Unit) -> Option<&'static str> {
    match unit {
        Unit::None => None,
        Unit::Seconds => Some("seconds"),
        Unit::Bytes => Some("bytes"),
        Unit::Percent => Some("percent"),
        Unit::Pixels => Some("pixels"),
    }
}

/// A default as written in TOML, with its unit, and large numbers also in
/// the unit an operator thinks in: `2592000 = 30 days`, `16777216 = 16 MiB`.
fn show_value(toml: &str, unit: Unit) -> String {
    let Ok(number) = toml.parse::<u64>() else {
        return toml.to_owned();
    };
    let larger = |steps: &[(u64, &str)]| {
        steps
            .iter()
            .find(|(size, _)| number >= *size && number % size == 0)
            .map(|(size, name)| {
                let count = number / size;
                let plural = if count == 1 || name.ends_with('B') {
                    ""
                } else {
                    "s"
                };
                format!("{number} = {count} {name}{plural}")
            })
    };
    let shown = match unit {
        Unit::Seconds => larger(&[(86400, "day"), (3600, "hour"), (60, "minute")]),
        Unit::Bytes => larger(&[(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]),
        Unit::Percent => Some(format!("{number}%")),
        Unit::Pixels => Some(format!("{number} px")),
        Unit::None => None,
    };
    shown.unwrap_or_else(|| toml.to_owned())
}

/// One line of the reference: `name` indented, `text` from [`DOC_COLUMN`],
/// wrapped at [`WIDTH`] with its continuation lines aligned.
fn push_entry(help: &mut String, indent: usize, name: &str, text: &str) {
    let mut line = format!("{:indent$}{name}", "");
    let mut column_filled = false;
    for word in text.split_whitespace() {
        if !column_filled {
            let pad = DOC_COLUMN.saturating_sub(line.len()).max(2);
            line.push_str(&" ".repeat(pad));
            column_filled = true;
        } else if line.len() + 1 + word.len() > WIDTH {
            help.push_str(&line);
            help.push('\n');
            line = " ".repeat(DOC_COLUMN);
        } else {
            line.push(' ');
        }
        line.push_str(word);
    }
    help.push_str(line.trim_end());
    help.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(help: &str, name: &str) -> String {
        help.lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name} in\n{help}"))
            .to_owned()
    }

    #[test]
    fn every_key_is_listed_with_its_default_or_marked_required() {
        let flat = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let help = flat(&keys_help());
        for section in SECTIONS {
            assert!(help.contains(&flat(&format!("[{}] {}", section.name, section.doc))));
            for key in section.keys {
                let entry = format!("{} {}", marked_name(key), describe(key));
                assert!(help.contains(&flat(&entry)), "{entry}");
                if let KeyDefault::Value(toml) = key.default {
                    assert!(entry.contains(&format!("({toml}")), "{entry}");
                }
            }
        }
    }

    #[test]
    fn reads_as_an_operator_reference() {
        let help = keys_help();
        assert!(help.lines().all(|line| line.len() <= WIDTH), "{help}");
        assert_eq!(
            line_of(&help, "message_secs"),
            "    message_secs ~            keep files uploaded for messages (2592000 = 30 days)"
        );
        assert_eq!(
            line_of(&help, "max_file_size"),
            "    max_file_size * ~         largest upload, in bytes"
        );
        assert!(line_of(&help, "listen").starts_with("    listen *   "));
        assert!(line_of(&help, "allowed_domains").starts_with("    allowed_domains ~   "));
        assert!(help.starts_with("CONFIGURATION (TOML; keys marked * are required; those marked ~"));
        assert!(line_of(&help, "daily_upload_bytes")
            .contains("per-user bytes of uploads completed per UTC day (10 x max_file_size)"));
        assert!(line_of(&help, "cache_capacity_bytes").contains("(16777216 = 16 MiB)"));
        assert!(line_of(&help, "slot_lifetime_secs").contains("(300 = 5 minutes)"));
        assert!(line_of(&help, "keepalive_secs").ends_with("silence (30)"));
        assert!(line_of(&help, "cors_allow_origin").ends_with("(\"*\")"));
        assert!(line_of(&help, "key_file").ends_with("(\"<path>.key\")"));
        assert!(line_of(&help, "min_free_disk_percent").ends_with("(5%)"));
        // A description too long for one line goes on under its own column.
        let after = help.split_once("    max_connections ").unwrap().1;
        let continued: Vec<_> = after
            .lines()
            .skip(1)
            .take_while(|line| line.starts_with(&" ".repeat(DOC_COLUMN)))
            .collect();
        assert!(!continued.is_empty(), "{help}");
        assert!(
            continued.last().unwrap().ends_with("at most 16384)"),
            "{help}"
        );
    }
}
