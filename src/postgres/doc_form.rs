//! Whether a record's JSON text can be given back from its `jsonb` copy, so the row need not
//! carry the text twice.
//!
//! `jsonb` keeps an object's members sorted (shorter keys first, then by bytes), drops
//! duplicate keys, writes `", "` and `": "`, and prints numbers without exponents. A document
//! is kept as `jsonb` alone ([`Form::Jsonb`]) when its text differs from `doc::text` in nothing
//! a reader can tell once the top-level members are put back in their order, and when the
//! text of every nested array and object, which queries compare as minified text, is what the
//! schema's `persist_compact(doc -> …)` prints: nested objects already in `jsonb`'s order,
//! every number printed back as written by serde_json (the Rust side's order), no exponents.
//! Anything else keeps its text in `raw` ([`Form::Raw`]), as every row did before migration 3.
//! The documents apps write (flat objects of strings, integers, booleans and arrays of them)
//! take the first form, and a scan of the collection reads about a third fewer bytes.

use std::borrow::Cow;

/// How a document is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// `doc::text` gives the document back once the top-level members are put back in this
    /// order ([`restore`]); `None` when `jsonb`'s order is already the document's.
    Jsonb(Option<Vec<u8>>),
    /// Only the text itself gives the document back.
    Raw,
}

/// The form `text` (valid JSON) is stored in.
pub fn form_of(text: &str) -> Form {
    let mut scan = Scan {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    scan.ws();
    let order = if scan.b.get(scan.i) == Some(&b'{') {
        match scan.object(false) {
            Some(keys) => top_level_order(keys),
            None => return Form::Raw,
        }
    } else {
        if scan.value().is_none() {
            return Form::Raw;
        }
        None
    };
    scan.ws();
    if scan.i != scan.b.len() {
        return Form::Raw;
    }
    match order {
        Some(Ordering::Duplicates) => Form::Raw,
        Some(Ordering::Positions(p)) => Form::Jsonb(Some(p)),
        Some(Ordering::Identity) | None => Form::Jsonb(None),
    }
}

/// `jsonb_text` (the output of `doc::text`) with its top-level members in the order
/// [`form_of`] recorded. An order that does not fit the text (which only a hand-edited row
/// can give) leaves `jsonb`'s order: the values are all there either way.
pub fn restore(jsonb_text: &str, order: &[u8]) -> String {
    let Some(members) = top_level_members(jsonb_text) else {
        return jsonb_text.to_string();
    };
    let Some(positions) = decode_positions(order, members.len()) else {
        return jsonb_text.to_string();
    };
    let mut out = String::with_capacity(jsonb_text.len());
    out.push('{');
    for (n, p) in positions.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let (start, end) = members[p];
        out.push_str(&jsonb_text[start..end]);
    }
    out.push('}');
    out
}

enum Ordering {
    Identity,
    /// For each member in document order, its position in `jsonb`'s order, as LEB128.
    Positions(Vec<u8>),
    Duplicates,
}

/// `jsonb`'s order of object keys: by byte length, then bytes.
fn jsonb_key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn top_level_order(keys: Vec<Cow<'_, [u8]>>) -> Option<Ordering> {
    let mut sorted: Vec<usize> = (0..keys.len()).collect();
    sorted.sort_by(|&x, &y| jsonb_key_cmp(&keys[x], &keys[y]));
    if sorted.windows(2).any(|w| keys[w[0]] == keys[w[1]]) {
        return Some(Ordering::Duplicates);
    }
    if sorted.iter().enumerate().all(|(j, &x)| j == x) {
        return Some(Ordering::Identity);
    }
    let mut position = vec![0usize; keys.len()];
    for (j, &x) in sorted.iter().enumerate() {
        position[x] = j;
    }
    let mut out = Vec::with_capacity(keys.len());
    for p in position {
        let mut v = p;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    Some(Ordering::Positions(out))
}

/// The LEB128 positions, when they are a permutation of `0..n`.
fn decode_positions(order: &[u8], n: usize) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    let mut i = 0;
    while i < order.len() {
        let mut v: usize = 0;
        let mut shift = 0;
        loop {
            let byte = *order.get(i)?;
            i += 1;
            v |= ((byte & 0x7f) as usize).checked_shl(shift)?;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if v >= n || std::mem::replace(&mut seen[v], true) {
            return None;
        }
        out.push(v);
    }
    (out.len() == n).then_some(out)
}

/// The byte spans of the top-level object's members (`"key": value`) in `text`.
fn top_level_members(text: &str) -> Option<Vec<(usize, usize)>> {
    let mut scan = Scan {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    scan.ws();
    scan.eat(b'{')?;
    let mut members = Vec::new();
    scan.ws();
    if scan.eat(b'}').is_some() {
        return Some(members);
    }
    loop {
        scan.ws();
        let start = scan.i;
        scan.string()?;
        scan.ws();
        scan.eat(b':')?;
        scan.skip_value()?;
        members.push((start, scan.i));
        scan.ws();
        match scan.next()? {
            b',' => continue,
            b'}' => return Some(members),
            _ => return None,
        }
    }
}

/// A cursor over JSON text. Every method returns `None` on text it does not expect, which
/// callers take as "keep the text".
struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    /// Past `c` if it is next; else stays.
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string; returns the span of its contents and whether it holds an escape.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.next()? {
                b'"' => return Some((start, self.i - 1, escaped)),
                b'\\' => {
                    escaped = true;
                    self.next()?;
                }
                _ => {}
            }
        }
    }

    /// A string's value as bytes.
    fn string_value(&mut self) -> Option<Cow<'a, [u8]>> {
        let (start, end, escaped) = self.string()?;
        if !escaped {
            return Some(Cow::Borrowed(&self.b[start..end]));
        }
        let quoted = &self.text[start - 1..end + 1];
        let s: String = serde_json::from_str(quoted).ok()?;
        Some(Cow::Owned(s.into_bytes()))
    }

    /// A value anywhere but the top level: its text must be what `persist_compact` prints.
    fn value(&mut self) -> Option<()> {
        self.ws();
        match *self.b.get(self.i)? {
            b'{' => self.object(true).map(drop),
            b'[' => {
                self.i += 1;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.value()?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// A number that `jsonb` and serde_json both print as written.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        while matches!(
            self.b.get(self.i),
            Some(b'-' | b'+' | b'.' | b'0'..=b'9' | b'e' | b'E')
        ) {
            self.i += 1;
        }
        let token = &self.text[start..self.i];
        if token.is_empty() || token.contains(['e', 'E']) {
            return None;
        }
        let n: serde_json::Number = serde_json::from_str(token).ok()?;
        (n.to_string() == token).then_some(())
    }

    /// An object; returns its keys in document order. A nested one must already be in
    /// `jsonb`'s order (which also rules out a duplicate key).
    fn object(&mut self, nested: bool) -> Option<Vec<Cow<'a, [u8]>>> {
        self.eat(b'{')?;
        let mut keys: Vec<Cow<'a, [u8]>> = Vec::new();
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(keys);
        }
        loop {
            self.ws();
            let key = self.string_value()?;
            if nested {
                if let Some(last) = keys.last() {
                    if jsonb_key_cmp(last, &key) != std::cmp::Ordering::Less {
                        return None;
                    }
                }
            }
            keys.push(key);
            self.ws();
            self.eat(b':')?;
            self.value()?;
            self.ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(keys),
                _ => return None,
            }
        }
    }

    /// Past one value of any kind (text from `jsonb`, so well formed).
    fn skip_value(&mut self) -> Option<()> {
        self.ws();
        let mut depth = 0usize;
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    self.string()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.i += 1;
                }
                _ => {
                    // A scalar or separator: up to the next structural byte.
                    while let Some(&c) = self.b.get(self.i) {
                        if matches!(c, b'"' | b'{' | b'[' | b'}' | b']')
                            || (depth == 0 && c == b',')
                        {
                            break;
                        }
                        self.i += 1;
                    }
                    if depth == 0 {
                        return Some(());
                    }
                    continue;
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `jsonb`'s text of a document: members sorted, `", "` and `": "`.
    fn jsonb_text(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = m.iter().collect();
                entries.sort_by(|a, b| jsonb_key_cmp(a.0.as_bytes(), b.0.as_bytes()));
                let inner: Vec<String> = entries
                    .into_iter()
                    .map(|(k, v)| {
                        format!("{}: {}", serde_json::to_string(k).unwrap(), jsonb_text(v))
                    })
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
            serde_json::Value::Array(a) => {
                let inner: Vec<String> = a.iter().map(jsonb_text).collect();
                format!("[{}]", inner.join(", "))
            }
            other => other.to_string(),
        }
    }

    fn round_trip(text: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        match form_of(text) {
            Form::Jsonb(None) => jsonb_text(&v),
            Form::Jsonb(Some(order)) => restore(&jsonb_text(&v), &order),
            Form::Raw => panic!("{text} is kept raw"),
        }
    }

    #[test]
    fn flat_documents_come_back_in_their_key_order() {
        for text in [
            r#"{"title":"Task 1","done":false,"priority":7,"tags":["work","home"]}"#,
            r#"{"a":1,"bb":2,"c":3}"#,
            r#"{"zz":{"a":1,"bb":[1,2.5,"x"]},"a":null,"é":"\u0001\"q\""}"#,
            r#"{}"#,
            r#"{"only":[]}"#,
        ] {
            let back = round_trip(text);
            let (a, b): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(text).unwrap(),
                serde_json::from_str(&back).unwrap(),
            );
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                serde_json::to_string(&b).unwrap(),
                "{text} -> {back}"
            );
        }
    }

    #[test]
    fn jsonb_order_needs_no_key_order() {
        assert_eq!(form_of(r#"{"a":1,"b":2,"aa":3}"#), Form::Jsonb(None));
        assert_eq!(form_of(r#"{"b":1,"a":2}"#), Form::Jsonb(Some(vec![1, 0])));
    }

    #[test]
    fn what_jsonb_cannot_give_back_stays_raw() {
        for text in [
            r#"{"a":1,"a":2}"#,          // duplicate key
            r#"{"x":{"b":1,"a":2}}"#,    // nested object out of jsonb's order
            r#"{"x":[{"bb":1,"a":2}]}"#, // the same inside an array
            r#"{"x":1e21}"#,             // exponent
            r#"{"x":[1.50]}"#,           // printed back as 1.5
            r#"{"x":-0}"#,               // printed back as 0
            r#"{"x":{"a":1,"a":2}}"#,    // nested duplicate
            r#"{"x":1} trailing"#,       // not one value
        ] {
            assert_eq!(form_of(text), Form::Raw, "{text}");
        }
    }

    #[test]
    fn many_members_use_multi_byte_positions() {
        let members: Vec<String> = (0..300).rev().map(|i| format!("\"k{i:03}\":{i}")).collect();
        let text = format!("{{{}}}", members.join(","));
        let back = round_trip(&text);
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&back)
                .unwrap()
                .keys()
                .cloned()
                .collect();
        assert_eq!(keys.first().map(String::as_str), Some("k299"));
        assert_eq!(keys.last().map(String::as_str), Some("k000"));
    }

    #[test]
    fn an_order_that_does_not_fit_leaves_jsonb_order() {
        let text = r#"{"a": 1, "b": 2}"#;
        assert_eq!(restore(text, &[1]), text);
        assert_eq!(restore(text, &[0, 0]), text);
        assert_eq!(restore(text, &[1, 0]), r#"{"b": 2,"a": 1}"#);
    }
}
