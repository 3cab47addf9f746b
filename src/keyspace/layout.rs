//! The key layout every `KeyValue` store sees, and the escaping that keeps user strings inside
//! their segment.
//!
//! ```text
//! kv/<key>                    {"value": <json>, "version": "<ulid>", "expiresAt": <ms>?}
//! records/<collection>/<id>   {"id", "version", "createdAt", "updatedAt", "data"}
//! blobs/<key>                 {"size", "contentType", "etag", "metadata", "updatedAt", "body", "chunks"}
//! chunks/<body>/<index>       the blob's bytes, CHUNK bytes per entry (index zero-padded)
//! events/<stream>/<seq>       {"type", "data", "time", "id"}   (seq zero-padded to 16 digits)
//! streams/<stream>            {"lastSeq": n}
//! ```
//!
//! Each user segment is escaped: `.` becomes `.-` and `/` becomes `.~`. The escape never yields
//! `/`, so a segment cannot reach another; it is prefix-preserving (the escape of a prefix is a
//! prefix of the escape) and order-preserving in byte order, so a store that lists keys in
//! order (S3) lists escaped keys in the users' order; and it never yields a `.` or `..` path
//! segment.

/// Escapes one user segment.
pub fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 4);
    for c in segment.chars() {
        match c {
            '.' => out.push_str(".-"),
            '/' => out.push_str(".~"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`]; None for text that no escape produces.
pub fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => match chars.next()? {
                '-' => out.push('.'),
                '~' => out.push('/'),
                _ => return None,
            },
            '/' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

pub fn kv(key: &str) -> String {
    format!("kv/{}", escape(key))
}

pub fn kv_prefix(prefix: &str) -> String {
    format!("kv/{}", escape(prefix))
}

pub fn record(coll: &str, id: &str) -> String {
    format!("records/{}/{}", escape(coll), escape(id))
}

pub fn records_of(coll: &str) -> String {
    format!("records/{}/", escape(coll))
}

pub fn blob(key: &str) -> String {
    format!("blobs/{}", escape(key))
}

pub fn blob_prefix(prefix: &str) -> String {
    format!("blobs/{}", escape(prefix))
}

pub fn chunk(body: &str, index: u64) -> String {
    format!("chunks/{body}/{index:08}")
}

pub fn event(stream: &str, seq: u64) -> String {
    format!("events/{}/{seq:016}", escape(stream))
}

pub fn stream_head(stream: &str) -> String {
    format!("streams/{}", escape(stream))
}

pub fn stream_prefix(prefix: &str) -> String {
    format!("streams/{}", escape(prefix))
}

/// The user segment after `prefix` in a listed key (None when the key is not one of ours).
pub fn user_part(key: &str, prefix: &str) -> Option<String> {
    key.strip_prefix(prefix).and_then(unescape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_stays_in_its_segment() {
        for s in ["a", "a/b", "../..", "x.y", ".-", ".~", "日本/語", "%2F"] {
            let e = escape(s);
            assert!(!e.contains('/'), "{e}");
            assert_eq!(unescape(&e).as_deref(), Some(s));
            assert!(!e.split('/').any(|seg| seg == "." || seg == ".."));
        }
        assert_eq!(unescape("a/b"), None);
        assert_eq!(unescape("a."), None);
    }

    #[test]
    fn escaping_preserves_order_and_prefixes() {
        let mut keys = vec![
            "a",
            "a.",
            "a/",
            "a-",
            "a~",
            "a0",
            "a/b",
            "a.b",
            "ab",
            "é",
            "a\u{10FFFF}",
            "-",
            ".",
            "/",
        ];
        keys.sort();
        let escaped: Vec<String> = keys.iter().map(|k| escape(k)).collect();
        let mut sorted = escaped.clone();
        sorted.sort();
        assert_eq!(escaped, sorted);
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    b.starts_with(a),
                    escape(b).starts_with(&escape(a)),
                    "{a:?} {b:?}"
                );
            }
        }
    }
}
