//! Rules for the strings users pass as keys, ids, collection and stream names. They exist once,
//! here, so every backend accepts and rejects exactly the same input.

use crate::error::{PersistError, Result};

/// The longest key, id or name accepted, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// Checks a key, id, collection or stream name: non-empty, at most 1024 UTF-8 bytes, no NUL.
/// `what` names the argument in the message (`kv key`, `collection name`, ...).
pub fn name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(PersistError::invalid_argument(format!(
            "{what} must be a non-empty string"
        )));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(PersistError::invalid_argument(format!(
            "{what} is {} bytes long; the limit is {MAX_NAME_BYTES} UTF-8 bytes",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(PersistError::invalid_argument(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// A prefix or range bound: like [`name`] but may be empty.
pub fn bound(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    name(what, value)
}

/// Checks a time-to-live in milliseconds: a finite, positive number.
pub fn ttl(value: f64) -> Result<u64> {
    if !value.is_finite() || value <= 0.0 || value > 1e15 {
        return Err(PersistError::invalid_argument(format!(
            "ttl must be a positive number of milliseconds, got {value}"
        )));
    }
    Ok(value.ceil() as u64)
}

/// Checks a `limit`: a non-negative integer.
pub fn limit(value: f64) -> Result<u64> {
    if !value.is_finite() || value < 0.0 || value.fract() != 0.0 || value > 9.0e15 {
        return Err(PersistError::invalid_argument(format!(
            "limit must be a non-negative integer, got {value}"
        )));
    }
    Ok(value as u64)
}

/// Checks a JSON text the binding produced (`JSON.stringify`) for a records document:
/// it must be an object.
pub fn document(json: &str) -> Result<()> {
    if json.as_bytes().first() != Some(&b'{') {
        return Err(PersistError::invalid_value(
            "a record must be a JSON object",
        ));
    }
    Ok(())
}

/// Undoes `%XX` escapes (any other byte stands for itself); None when an escape is malformed
/// or the result is not UTF-8. Used for names escaped into file names and S3 metadata.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn names_are_checked() {
        assert!(name("key", "a").is_ok());
        assert!(name("key", "ключ/🙂").is_ok());
        assert_eq!(
            name("key", "").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            name("key", "a\0b").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert!(name("key", &"x".repeat(1024)).is_ok());
        let err = name("kv key", &"é".repeat(513)).unwrap_err();
        assert!(err.message.contains("1026 bytes"), "{}", err.message);
        assert!(bound("prefix", "").is_ok());
    }

    #[test]
    fn numbers_are_checked() {
        assert_eq!(ttl(1.5).unwrap(), 2);
        assert!(ttl(0.0).is_err());
        assert!(ttl(f64::NAN).is_err());
        assert_eq!(limit(0.0).unwrap(), 0);
        assert!(limit(1.5).is_err());
        assert!(limit(-1.0).is_err());
    }

    #[test]
    fn documents_are_objects() {
        assert!(document("{}").is_ok());
        assert!(document("[1]").is_err());
        assert!(document("\"s\"").is_err());
    }
}

/// The smallest string greater than every string that starts with `prefix`, in UTF-8 byte
/// order (which is code point order), or None when there is none (empty prefix, or a prefix of
/// only U+10FFFF). Lets a prefix scan be an index range `[prefix, successor)`.
pub fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod prefix_tests {
    use super::prefix_successor;

    #[test]
    fn successor_bounds_every_extension() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        for prefix in ["user:00", "é", "a\u{10FFFF}", "日本"] {
            let succ = prefix_successor(prefix).unwrap();
            for tail in ["", "\u{10FFFF}\u{10FFFF}", "zzz", "\u{0}"] {
                let key = format!("{prefix}{tail}");
                assert!(key.as_str() >= prefix && key < succ, "{key:?}");
            }
        }
    }
}
