//! Results cross to JS as one JSON text per call (parsed once by `JSON.parse` in index.js).
//! Stored values are already JSON text, so they are spliced in, not re-serialised.

use std::collections::HashMap;
use std::fmt::Write;

use crate::clock::iso8601;
use crate::error::PersistError;
use crate::model::{BlobInfo, Doc, KvEntry, StoredEvent};

/// `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    // Most keys, ids and versions need no escaping: copied as they are, without an allocation.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // serde_json's string escaping cannot fail for a &str.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

pub fn kv_entry(out: &mut String, e: &KvEntry) {
    out.push_str("{\"key\":");
    push_str(out, &e.key);
    out.push_str(",\"value\":");
    out.push_str(&e.value);
    out.push_str(",\"version\":");
    push_str(out, &e.version);
    if let Some(at) = e.expires_at {
        out.push_str(",\"expiresAt\":");
        push_str(out, &iso8601(at));
    }
    out.push('}');
}

pub fn doc(out: &mut String, d: &Doc) {
    out.push_str("{\"id\":");
    push_str(out, &d.id);
    // Writing to a String cannot fail.
    let _ = write!(out, ",\"version\":{},\"createdAt\":", d.version);
    push_str(out, &d.created_at);
    out.push_str(",\"updatedAt\":");
    push_str(out, &d.updated_at);
    out.push_str(",\"data\":");
    out.push_str(&d.data);
    out.push('}');
}

/// A page of documents as one flat array: first the page's distinct times, then five values a
/// document (`[[time, …], id, version, createdAt, updatedAt, data, id, …]`, each time as its
/// index in the first array); index.js builds the objects. Why:
/// - without the four keys a document the text is a quarter shorter: `JSON.parse` of a
///   100-document page plus the objects built in JS took 60 µs against 80 µs as objects;
/// - a document never updated has `updatedAt` equal to `createdAt`, and the documents of a bulk
///   load or of the puts of one tick share their times: each distinct time is parsed once (the
///   bench's indexed query page, 2-3 distinct times for 200: 105-118 µs → 74-79 µs to parse and
///   build on a VM where the flat page took 105-118).
pub fn doc_page(docs: &[Doc]) -> String {
    fn slot<'a>(
        t: &'a str,
        slots: &mut HashMap<&'a str, usize>,
        times: &mut Vec<&'a str>,
    ) -> usize {
        *slots.entry(t).or_insert_with(|| {
            times.push(t);
            times.len() - 1
        })
    }
    let mut slots = HashMap::new();
    let mut times = Vec::new();
    let at: Vec<(usize, usize)> = docs
        .iter()
        .map(|d| {
            let created = slot(&d.created_at, &mut slots, &mut times);
            (created, slot(&d.updated_at, &mut slots, &mut times))
        })
        .collect();
    let mut out = String::with_capacity(
        64 + docs
            .iter()
            .map(|d| d.id.len() + d.data.len() + 24)
            .sum::<usize>(),
    );
    out.push('[');
    array_into(&mut out, &times, |out, t| push_str(out, t));
    for (d, (created, updated)) in docs.iter().zip(at) {
        out.push(',');
        push_str(&mut out, &d.id);
        let _ = write!(out, ",{},{created},{updated},", d.version);
        out.push_str(&d.data);
    }
    out.push(']');
    out
}

pub fn event(out: &mut String, e: &StoredEvent) {
    out.push_str("{\"stream\":");
    push_str(out, &e.stream);
    out.push_str(&format!(",\"seq\":{},\"type\":", e.seq));
    push_str(out, &e.kind);
    out.push_str(",\"data\":");
    out.push_str(&e.data);
    out.push_str(",\"time\":");
    push_str(out, &e.time);
    out.push_str(",\"id\":");
    push_str(out, &e.id);
    out.push('}');
}

pub fn blob_info(out: &mut String, b: &BlobInfo) {
    out.push_str("{\"key\":");
    push_str(out, &b.key);
    out.push_str(&format!(",\"size\":{},\"contentType\":", b.size));
    push_str(out, &b.content_type);
    out.push_str(",\"etag\":");
    push_str(out, &b.etag);
    out.push_str(",\"metadata\":");
    out.push_str(&serde_json::to_string(&b.metadata).unwrap_or_else(|_| "{}".into()));
    out.push_str(",\"updatedAt\":");
    push_str(out, &b.updated_at);
    out.push('}');
}

pub fn array<T>(items: &[T], each: impl FnMut(&mut String, &T)) -> String {
    let mut out = String::with_capacity(64 + items.len() * 128);
    array_into(&mut out, items, each);
    out
}

fn array_into<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
        if i == 0 {
            // Room for the rest, judged by the first item (values are often alike in size).
            out.reserve(out.len() * (items.len() - 1));
        }
    }
    out.push(']');
}

/// A kv list page as `[count,lastKey]` on a first line, then the entries: index.js reads the
/// first line and asks for the next page before it parses this one, so the next page is read
/// (on a reader thread) while this one is parsed and consumed.
pub fn kv_page(page: &[KvEntry]) -> String {
    let mut out = String::with_capacity(64);
    out.push('[');
    out.push_str(&page.len().to_string());
    out.push(',');
    match page.last() {
        Some(last) => push_str(&mut out, &last.key),
        None => out.push_str("null"),
    }
    out.push_str("]\n");
    array_into(&mut out, page, kv_entry);
    out
}

/// An error as the `{code, message, causeRef}` body index.js turns into a PersistError.
pub fn error_body(out: &mut String, e: &PersistError) {
    let body = serde_json::json!({
        "code": e.code.as_str(), "message": e.message, "causeRef": e.cause_ref,
    });
    out.push_str(&body.to_string());
}

pub fn one<T>(item: &T, each: impl FnOnce(&mut String, &T)) -> String {
    let mut out = String::with_capacity(256);
    each(&mut out, item);
    out
}

pub fn strings(items: &[String]) -> String {
    array(items, |out, s| push_str(out, s))
}

#[cfg(test)]
mod tests {
    use super::doc_page;
    use crate::model::Doc;

    fn doc(id: &str, created: &str, updated: &str) -> Doc {
        Doc {
            id: id.into(),
            version: 2,
            created_at: created.into(),
            updated_at: updated.into(),
            data: r#"{"a":1}"#.into(),
        }
    }

    #[test]
    fn a_page_lists_each_time_once() {
        assert_eq!(doc_page(&[]), "[[]]");
        let page = doc_page(&[
            doc("x", "T1", "T1"),
            doc("y\"", "T2", "T1"),
            doc("z", "T1", "T3"),
        ]);
        assert_eq!(
            page,
            r#"[["T1","T2","T3"],"x",2,0,0,{"a":1},"y\"",2,1,0,{"a":1},"z",2,0,2,{"a":1}]"#
        );
    }
}
