//! Which file names a slot may carry.
//!
//! The name travels into URLs and `Content-Disposition` headers and is shown
//! by the recipient's client, but never reaches a filesystem path (files are
//! stored under random ids). The rules keep it a single, printable path
//! segment so that no client is tricked by it either.

/// Longest accepted name, in bytes of UTF-8.
pub const MAX_FILENAME_BYTES: usize = 255;

/// Why a file name was refused; the text goes back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FilenameError {
    #[error("the filename is empty")]
    Empty,
    #[error("the filename is longer than 255 bytes")]
    TooLong,
    #[error("the filename contains a path separator")]
    PathSeparator,
    #[error("the filename contains a control character")]
    ControlCharacter,
    #[error("the filename is a dot path segment")]
    DotSegment,
}

pub fn check_filename(name: &str) -> Result<(), FilenameError> {
    if name.is_empty() {
        return Err(FilenameError::Empty);
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(FilenameError::TooLong);
    }
    if name.contains(['/', '\\']) {
        return Err(FilenameError::PathSeparator);
    }
    // `char::is_control` covers C0, DEL and C1, which includes NUL.
    if name
        .chars()
        .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Err(FilenameError::ControlCharacter);
    }
    if name == "." || name == ".." {
        return Err(FilenameError::DotSegment);
    }
    Ok(())
}

/// Bidirectional overrides and similar format characters let a name like
/// `invoice\u{202e}fdp.exe` display as `invoiceexe.pdf`.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200e}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "my-juliet.jpg",
            "très cool.jpg",
            "a",
            "photo (1).jpeg",
            "日本語.png",
            ".hidden",
        ] {
            assert_eq!(check_filename(name), Ok(()), "{name}");
        }
        assert_eq!(check_filename(&"a".repeat(255)), Ok(()));
    }

    #[test]
    fn hostile_names_are_refused() {
        assert_eq!(check_filename(""), Err(FilenameError::Empty));
        assert_eq!(
            check_filename(&"a".repeat(256)),
            Err(FilenameError::TooLong)
        );
        // 128 two-byte characters: 256 bytes although only 128 characters.
        assert_eq!(
            check_filename(&"é".repeat(128)),
            Err(FilenameError::TooLong)
        );
        for name in ["../etc/passwd", "a/b", "a\\b", "/", "C:\\x"] {
            assert_eq!(
                check_filename(name),
                Err(FilenameError::PathSeparator),
                "{name}"
            );
        }
        for name in [
            "a\0b",
            "a\nb",
            "a\rb",
            "tab\there",
            "\u{7f}",
            "\u{85}",
            "x\u{202e}gpj.exe",
        ] {
            assert_eq!(
                check_filename(name),
                Err(FilenameError::ControlCharacter),
                "{name:?}"
            );
        }
        assert_eq!(check_filename(".."), Err(FilenameError::DotSegment));
        assert_eq!(check_filename("."), Err(FilenameError::DotSegment));
    }
}
