//! The query language of `store.records` (API.md): parsed from JSON and evaluated in Rust.
//!
//! Adapters without SQL evaluate a [`Query`] with [`Filter::matches`] and sort with
//! [`compare_docs`]; the SQL adapters compile the same [`Filter`] (see `sqlite::query_sql`) and
//! must give identical results. The semantics below are the reference:
//!
//! - Comparisons only match values of the same JSON type. Type ranks: missing(0) < null(1) <
//!   boolean(2) < number(3) < string(4) < array(5) < object(6).
//! - Equality is deep equality: numbers compare numerically (`1 == 1.0`), objects ignore key
//!   order. `{f: null}` matches a present JSON null only; `$ne`/`$nin` also match a missing field.
//! - `$gt/$gte/$lt/$lte` need the field present and of the operand's type rank, then compare
//!   within the type: `false < true`, numbers numerically, strings by UTF-8 byte order, arrays and
//!   objects by their minified JSON text as JSON.stringify writes it (keys in the order written,
//!   numbers as JavaScript writes them: `1e+21`, `0.000005`).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::error::{PersistError, Result};

/// A dot path into a record's data: `"address.city"` is `["address", "city"]`. Paths traverse
/// JSON objects only (no array indexing).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    pub segments: Vec<String>,
}

impl FieldPath {
    /// Parses a dot path. An empty path or an empty segment is `INVALID_ARGUMENT`.
    pub fn parse(path: &str) -> Result<FieldPath> {
        if path.is_empty() {
            return Err(invalid(
                "a field name must be a non-empty string".to_string(),
            ));
        }
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(invalid(format!(
                "field {} has an empty segment",
                quote(path)
            )));
        }
        Ok(FieldPath { segments })
    }

    /// The dot path as written (`"address.city"`).
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.dotted())
    }
}

/// A parsed `where`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All must match; `And(vec![])` matches everything (`{}`).
    And(Vec<Filter>),
    /// Any must match; `Or(vec![])` matches nothing (the parser never builds it).
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cond {
        path: FieldPath,
        op: Op,
    },
}

/// One operator applied to one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Gt(Value),
    Gte(Value),
    Lt(Value),
    Lte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Prefix(String),
}

/// One `orderBy` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub path: FieldPath,
    pub descending: bool,
}

/// A parsed `find` query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub filter: Option<Filter>,
    /// Empty: order by id only. The id (ascending) is always the final tie-break.
    pub order: Vec<SortKey>,
    pub limit: Option<u64>,
    /// Id of the last row of the previous page.
    pub after: Option<String>,
}

fn invalid(detail: String) -> PersistError {
    PersistError::invalid_argument(format!("invalid query: {detail}"))
}

/// JSON-quotes a user string for an error message.
fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Parses a `where` object.
pub fn parse_where(v: &Value) -> Result<Filter> {
    let obj = match v {
        Value::Object(obj) => obj,
        other => {
            return Err(invalid(format!(
                "\"where\" must be an object, got {}",
                type_name(other)
            )))
        }
    };
    let mut parts = Vec::with_capacity(obj.len());
    for (key, val) in obj {
        if let Some(op) = key.strip_prefix('$') {
            parts.push(parse_logical(op, key, val)?);
        } else {
            let path = FieldPath::parse(key)?;
            parts.extend(parse_field(&path, key, val)?);
        }
    }
    Ok(if parts.len() == 1 {
        parts.pop().unwrap()
    } else {
        Filter::And(parts)
    })
}

fn parse_logical(op: &str, key: &str, val: &Value) -> Result<Filter> {
    match op {
        "and" | "or" => {
            let items = match val {
                Value::Array(items) if !items.is_empty() => items,
                _ => {
                    return Err(invalid(format!(
                        "{} needs a non-empty array of objects",
                        quote(key)
                    )))
                }
            };
            let mut subs = Vec::with_capacity(items.len());
            for item in items {
                if !item.is_object() {
                    return Err(invalid(format!(
                        "{} needs a non-empty array of objects, got an element of type {}",
                        quote(key),
                        type_name(item)
                    )));
                }
                subs.push(parse_where(item)?);
            }
            Ok(if op == "and" {
                Filter::And(subs)
            } else {
                Filter::Or(subs)
            })
        }
        "not" => {
            if !val.is_object() {
                return Err(invalid(format!(
                    "\"$not\" needs an object, got {}",
                    type_name(val)
                )));
            }
            Ok(Filter::Not(Box::new(parse_where(val)?)))
        }
        _ => Err(invalid(format!(
            "unknown operator {} (expected a field name, \"$and\", \"$or\" or \"$not\")",
            quote(key)
        ))),
    }
}

fn parse_field(path: &FieldPath, key: &str, val: &Value) -> Result<Vec<Filter>> {
    let cond = |op| Filter::Cond {
        path: path.clone(),
        op,
    };
    let obj = match val {
        Value::Object(obj) if !obj.is_empty() => obj,
        // A scalar, an array or `{}`: equality.
        _ => return Ok(vec![cond(Op::Eq(val.clone()))]),
    };
    let dollars = obj.keys().filter(|k| k.starts_with('$')).count();
    if dollars == 0 {
        return Ok(vec![cond(Op::Eq(val.clone()))]);
    }
    if dollars != obj.len() {
        return Err(invalid(format!(
            "the object at {} mixes operators (\"$...\") and plain keys",
            quote(key)
        )));
    }
    let mut conds = Vec::with_capacity(obj.len());
    for (name, operand) in obj {
        conds.push(cond(parse_op(name, operand, key)?));
    }
    Ok(conds)
}

fn parse_op(name: &str, operand: &Value, key: &str) -> Result<Op> {
    let wrong = |needs: &str| {
        invalid(format!(
            "{} at {} needs {}, got {}",
            quote(name),
            quote(key),
            needs,
            type_name(operand)
        ))
    };
    Ok(match name {
        "$eq" => Op::Eq(operand.clone()),
        "$ne" => Op::Ne(operand.clone()),
        "$gt" => Op::Gt(operand.clone()),
        "$gte" => Op::Gte(operand.clone()),
        "$lt" => Op::Lt(operand.clone()),
        "$lte" => Op::Lte(operand.clone()),
        "$in" | "$nin" => {
            let items = operand.as_array().ok_or_else(|| wrong("an array"))?.clone();
            if name == "$in" {
                Op::In(items)
            } else {
                Op::Nin(items)
            }
        }
        "$exists" => Op::Exists(operand.as_bool().ok_or_else(|| wrong("a boolean"))?),
        "$prefix" => Op::Prefix(
            operand
                .as_str()
                .ok_or_else(|| wrong("a string"))?
                .to_string(),
        ),
        _ => {
            return Err(invalid(format!(
                "unknown operator {} at {}",
                quote(name),
                quote(key)
            )))
        }
    })
}

/// Parses `{where?, orderBy?, limit?, after?}`. `null` (the whole query or a member) means absent.
pub fn parse_query(v: &Value) -> Result<Query> {
    let obj = match v {
        Value::Null => return Ok(Query::default()),
        Value::Object(obj) => obj,
        other => {
            return Err(invalid(format!(
                "the query must be an object, got {}",
                type_name(other)
            )))
        }
    };
    let mut query = Query::default();
    for (key, val) in obj {
        if val.is_null() {
            if !matches!(key.as_str(), "where" | "orderBy" | "limit" | "after") {
                return Err(unknown_member(key));
            }
            continue;
        }
        match key.as_str() {
            "where" => query.filter = Some(parse_where(val)?),
            "orderBy" => query.order = parse_order_by(val)?,
            "limit" => query.limit = Some(parse_limit(val)?),
            "after" => query.after = Some(parse_after(val)?),
            _ => return Err(unknown_member(key)),
        }
    }
    Ok(query)
}

fn unknown_member(key: &str) -> PersistError {
    invalid(format!(
        "unknown member {} (expected \"where\", \"orderBy\", \"limit\" or \"after\")",
        quote(key)
    ))
}

fn parse_order_by(v: &Value) -> Result<Vec<SortKey>> {
    match v {
        Value::Array(items) => items.iter().map(parse_sort_key).collect(),
        Value::Object(_) => Ok(vec![parse_sort_key(v)?]),
        other => Err(invalid(format!(
            "\"orderBy\" must be an object {{field, direction}} or an array of them, got {}",
            type_name(other)
        ))),
    }
}

fn parse_sort_key(v: &Value) -> Result<SortKey> {
    let obj: &Map<String, Value> = v.as_object().ok_or_else(|| {
        invalid(format!(
            "each \"orderBy\" entry must be an object {{field, direction}}, got {}",
            type_name(v)
        ))
    })?;
    let mut path = None;
    let mut descending = false;
    for (key, val) in obj {
        match key.as_str() {
            "field" => match val {
                Value::String(s) => path = Some(FieldPath::parse(s)?),
                other => {
                    return Err(invalid(format!(
                        "\"orderBy\" \"field\" must be a string, got {}",
                        type_name(other)
                    )))
                }
            },
            "direction" => match val {
                Value::Null => {}
                Value::String(s) if s == "asc" => descending = false,
                Value::String(s) if s == "desc" => descending = true,
                other => {
                    return Err(invalid(format!(
                        "\"orderBy\" \"direction\" must be \"asc\" or \"desc\", got {other}"
                    )))
                }
            },
            _ => {
                return Err(invalid(format!(
                    "unknown \"orderBy\" member {} (expected \"field\" or \"direction\")",
                    quote(key)
                )))
            }
        }
    }
    let path = path.ok_or_else(|| invalid("an \"orderBy\" entry needs a \"field\"".to_string()))?;
    Ok(SortKey { path, descending })
}

/// Largest integer a JS number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

fn parse_limit(v: &Value) -> Result<u64> {
    let bad = || invalid(format!("\"limit\" must be a non-negative integer, got {v}"));
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(u)
            } else if let Some(f) = n.as_f64() {
                // A JS number arrives as a float; 10.0 is the integer 10.
                if f >= 0.0 && f.fract() == 0.0 && f <= MAX_SAFE {
                    Ok(f as u64)
                } else {
                    Err(bad())
                }
            } else {
                Err(bad())
            }
        }
        _ => Err(bad()),
    }
}

fn parse_after(v: &Value) -> Result<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= 1024 && !s.contains('\0') => Ok(s.clone()),
        Value::String(_) => Err(invalid(
            "\"after\" must be a non-empty id of at most 1024 UTF-8 bytes with no NUL".to_string(),
        )),
        other => Err(invalid(format!(
            "\"after\" must be a string id, got {}",
            type_name(other)
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ----------------------------------------------------------------------------------------------
// Evaluation
// ----------------------------------------------------------------------------------------------

/// The value at `path` in `data`, if every step is an object holding the key.
pub fn lookup<'a>(data: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut cur = data;
    for seg in &path.segments {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

impl Filter {
    /// Whether a record's data matches.
    pub fn matches(&self, data: &Value) -> bool {
        match self {
            Filter::And(subs) => subs.iter().all(|f| f.matches(data)),
            Filter::Or(subs) => subs.iter().any(|f| f.matches(data)),
            Filter::Not(sub) => !sub.matches(data),
            Filter::Cond { path, op } => op.matches(lookup(data, path)),
        }
    }
}

impl Op {
    /// Whether the value found at the path (`None`: missing) satisfies the operator.
    pub fn matches(&self, field: Option<&Value>) -> bool {
        match self {
            Op::Eq(v) => field.is_some_and(|f| deep_eq(f, v)),
            Op::Ne(v) => !field.is_some_and(|f| deep_eq(f, v)),
            Op::Gt(v) => range(field, v, |o| o == Ordering::Greater),
            Op::Gte(v) => range(field, v, |o| o != Ordering::Less),
            Op::Lt(v) => range(field, v, |o| o == Ordering::Less),
            Op::Lte(v) => range(field, v, |o| o != Ordering::Greater),
            Op::In(vs) => field.is_some_and(|f| vs.iter().any(|v| deep_eq(f, v))),
            Op::Nin(vs) => !field.is_some_and(|f| vs.iter().any(|v| deep_eq(f, v))),
            Op::Exists(want) => field.is_some() == *want,
            Op::Prefix(p) => matches!(field, Some(Value::String(s)) if s.starts_with(p.as_str())),
        }
    }
}

fn range(field: Option<&Value>, operand: &Value, accept: impl Fn(Ordering) -> bool) -> bool {
    match field {
        Some(f) if type_rank(Some(f)) == type_rank(Some(operand)) => {
            accept(compare_json(Some(f), Some(operand)))
        }
        _ => false,
    }
}

/// missing(0) < null(1) < boolean(2) < number(3) < string(4) < array(5) < object(6).
pub fn type_rank(v: Option<&Value>) -> u8 {
    match v {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(_)) => 2,
        Some(Value::Number(_)) => 3,
        Some(Value::String(_)) => 4,
        Some(Value::Array(_)) => 5,
        Some(Value::Object(_)) => 6,
    }
}

/// The one type rank that every document `filter` matches has at `path`, when the filter fixes
/// it (`priority >= 7` admits numbers only): a sort on that path then needs no type-rank term,
/// which lets SQL backends walk an expression index in order and stop at the LIMIT.
pub fn fixed_type_rank(filter: &Filter, path: &FieldPath) -> Option<u8> {
    match filter {
        Filter::And(all) => all.iter().find_map(|f| fixed_type_rank(f, path)),
        Filter::Cond { path: p, op } if p == path => match op {
            Op::Eq(v) | Op::Gt(v) | Op::Gte(v) | Op::Lt(v) | Op::Lte(v) => Some(type_rank(Some(v))),
            Op::Prefix(_) => Some(type_rank(Some(&Value::String(String::new())))),
            Op::In(values) => {
                let first = type_rank(Some(values.first()?));
                values
                    .iter()
                    .all(|v| type_rank(Some(v)) == first)
                    .then_some(first)
            }
            Op::Ne(_) | Op::Nin(_) | Op::Exists(_) => None,
        },
        _ => None,
    }
}

/// Deep equality: numbers numerically, objects regardless of key order.
pub fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y) == Ordering::Equal,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| deep_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| deep_eq(p, q)))
        }
        _ => false,
    }
}

fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Exact when both are integers, else as f64.
fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Ordering {
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let x = a.as_f64().unwrap_or(f64::NAN);
            let y = b.as_f64().unwrap_or(f64::NAN);
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

/// The total order of query results: by type rank, then within the type (see the module docs).
/// Missing (`None`) sorts lowest.
pub fn compare_json(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(Value::Number(x)), Some(Value::Number(y))) => compare_numbers(x, y),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x @ Value::Array(_)), Some(y @ Value::Array(_)))
        | (Some(x @ Value::Object(_)), Some(y @ Value::Object(_))) => {
            stringified(x).cmp(&stringified(y))
        }
        // Both missing or both null.
        _ => Ordering::Equal,
    }
}

/// The JSON text JSON.stringify gives the value, which is what the stores that sort in SQL
/// compare (the text index.js wrote): serde's text differs for some numbers (`1e21` where
/// JavaScript writes `1e+21`, `5e-6` for `0.000005`), and a page sorted in SQL followed by one
/// sorted here would then skip or repeat documents.
pub(crate) fn stringified(v: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, JsNumbers);
    // Writing into a Vec cannot fail, nor can serializing a `Value`.
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8(out).unwrap_or_default()
}

/// serde_json's compact output, with floats written by [`js_number_text`] (integers already
/// come out as JavaScript writes them, and strings are escaped the same way as JSON.stringify's
/// well-formed form).
struct JsNumbers;

impl serde_json::ser::Formatter for JsNumbers {
    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, x: f64) -> std::io::Result<()> {
        w.write_all(js_number_text(x).as_bytes())
    }
}

/// A float as JavaScript's `Number.prototype.toString()` writes it (ECMA-262 Number::toString):
/// the shortest digits that round-trip, as an integer or decimal when the point falls within
/// 21 digits (or up to 6 zeros after it), else with an exponent written `e+N` / `e-N`.
fn js_number_text(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let point = exp.parse::<i32>().unwrap_or(0) + 1; // digits before the decimal point
    let sign = if x < 0.0 { "-" } else { "" };
    let body = if k <= point && point <= 21 {
        format!("{digits}{}", "0".repeat((point - k) as usize))
    } else if 0 < point && point <= 21 {
        format!(
            "{}.{}",
            &digits[..point as usize],
            &digits[point as usize..]
        )
    } else if -6 < point && point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else {
        let e = point - 1;
        let e = if e < 0 {
            format!("-{}", -e)
        } else {
            format!("+{e}")
        };
        match digits.split_at(1) {
            (first, "") => format!("{first}e{e}"),
            (first, rest) => format!("{first}.{rest}e{e}"),
        }
    };
    format!("{sign}{body}")
}

/// Orders two documents: by each sort key (descending flips it), then by id ascending (byte
/// order) as the final tie-break.
pub fn compare_docs(order: &[SortKey], a_id: &str, a: &Value, b_id: &str, b: &Value) -> Ordering {
    for key in order {
        let o = compare_json(lookup(a, &key.path), lookup(b, &key.path));
        let o = if key.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    let ids = a_id.as_bytes().cmp(b_id.as_bytes());
    if ids_descending(order) {
        ids.reverse()
    } else {
        ids
    }
}

/// Ties break by id in the direction of the last sort key (ascending when there is none), so
/// one ascending expression index serves both directions of a single-key order: scanned
/// forwards for `asc`, backwards for `desc`, stopping at the LIMIT without a sort.
pub fn ids_descending(order: &[SortKey]) -> bool {
    order.last().is_some_and(|k| k.descending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    #[test]
    fn numbers_in_sorted_arrays_are_written_as_javascript_writes_them() {
        let cases = [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123.456, "123.456"),
            (0.000005, "0.000005"),
            (5e-7, "5e-7"),
            (1e-7, "1e-7"),
            (0.1, "0.1"),
            (-1.5e-10, "-1.5e-10"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (18446744073709552000.0, "18446744073709552000"),
            (2.5, "2.5"),
            (1.2345678901234568e21, "1.2345678901234568e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (5e-324, "5e-324"),
            (-0.000001234, "-0.000001234"),
            (100.0, "100"),
            (1e-6, "0.000001"),
        ];
        for (x, js) in cases {
            assert_eq!(js_number_text(x), js, "{x:e}");
        }
        let v: Value = serde_json::from_str(r#"[1e21,{"b":0.000005,"a":"x\u0000"},5e-7]"#).unwrap();
        assert_eq!(
            stringified(&v),
            r#"[1e+21,{"b":0.000005,"a":"x\u0000"},5e-7]"#
        );
        // Integers, as serde writes them, are JavaScript's text too.
        assert_eq!(
            stringified(&json!([-42, 9007199254740991u64, 0])),
            "[-42,9007199254740991,0]"
        );
    }

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    fn cond(p: &str, op: Op) -> Filter {
        Filter::Cond { path: path(p), op }
    }

    fn err(v: Value) -> String {
        let e = parse_where(&v).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        e.message
    }

    fn qerr(v: Value) -> String {
        let e = parse_query(&v).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        e.message
    }

    fn m(w: Value, data: Value) -> bool {
        parse_where(&w).unwrap().matches(&data)
    }

    #[test]
    fn field_paths() {
        assert_eq!(path("address.city").segments, vec!["address", "city"]);
        assert_eq!(path("a").segments, vec!["a"]);
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse(".a").is_err());
        assert!(FieldPath::parse("a.").is_err());
        assert_eq!(path("a.b").to_string(), "a.b");
    }

    #[test]
    fn lookup_traverses_objects_only() {
        let d = json!({"a": {"b": {"c": 1}}, "arr": [{"x": 1}], "n": null});
        assert_eq!(lookup(&d, &path("a.b.c")), Some(&json!(1)));
        assert_eq!(lookup(&d, &path("a.b")), Some(&json!({"c": 1})));
        assert_eq!(lookup(&d, &path("a.x")), None);
        assert_eq!(lookup(&d, &path("arr.0")), None);
        assert_eq!(lookup(&d, &path("arr.x")), None);
        assert_eq!(lookup(&d, &path("n")), Some(&Value::Null));
        assert_eq!(lookup(&d, &path("n.x")), None);
    }

    #[test]
    fn parses_shapes() {
        assert_eq!(parse_where(&json!({})).unwrap(), Filter::And(vec![]));
        assert_eq!(
            parse_where(&json!({"a": 1})).unwrap(),
            cond("a", Op::Eq(json!(1)))
        );
        assert_eq!(
            parse_where(&json!({"a": 1, "b.c": "x"})).unwrap(),
            Filter::And(vec![
                cond("a", Op::Eq(json!(1))),
                cond("b.c", Op::Eq(json!("x")))
            ])
        );
        assert_eq!(
            parse_where(&json!({"a": {"$gt": 1, "$lt": 5}})).unwrap(),
            Filter::And(vec![
                cond("a", Op::Gt(json!(1))),
                cond("a", Op::Lt(json!(5)))
            ])
        );
        // Literal object / array / empty object: equality.
        assert_eq!(
            parse_where(&json!({"a": {"x": 1}})).unwrap(),
            cond("a", Op::Eq(json!({"x": 1})))
        );
        assert_eq!(
            parse_where(&json!({"a": [1, 2]})).unwrap(),
            cond("a", Op::Eq(json!([1, 2])))
        );
        assert_eq!(
            parse_where(&json!({"a": {}})).unwrap(),
            cond("a", Op::Eq(json!({})))
        );
        assert_eq!(
            parse_where(&json!({"$or": [{"a": 1}, {"$not": {"b": null}}]})).unwrap(),
            Filter::Or(vec![
                cond("a", Op::Eq(json!(1))),
                Filter::Not(Box::new(cond("b", Op::Eq(Value::Null))))
            ])
        );
        assert_eq!(
            parse_where(&json!({"$and": [{"a": 1}]})).unwrap(),
            Filter::And(vec![cond("a", Op::Eq(json!(1)))])
        );
        let all = json!({"a": {"$eq": 1, "$ne": 2, "$gt": 0, "$gte": 1, "$lt": 9, "$lte": 8,
            "$in": [1], "$nin": [3], "$exists": true, "$prefix": "x"}});
        match parse_where(&all).unwrap() {
            Filter::And(v) => assert_eq!(v.len(), 10),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(
            err(json!({"age": {"$foo": 1}})),
            "invalid query: unknown operator \"$foo\" at \"age\""
        );
        assert!(err(json!({"$foo": []})).contains("unknown operator \"$foo\""));
        assert!(err(json!({"age": {"$in": 1}})).contains("\"$in\" at \"age\" needs an array"));
        assert!(err(json!({"age": {"$nin": "x"}})).contains("\"$nin\" at \"age\" needs an array"));
        assert!(err(json!({"a": {"$exists": 1}})).contains("\"$exists\" at \"a\" needs a boolean"));
        assert!(err(json!({"a": {"$prefix": 1}})).contains("\"$prefix\" at \"a\" needs a string"));
        assert!(err(json!({"$and": []})).contains("\"$and\" needs a non-empty array"));
        assert!(err(json!({"$or": {}})).contains("\"$or\" needs a non-empty array"));
        assert!(err(json!({"$or": [1]})).contains("\"$or\" needs a non-empty array of objects"));
        assert!(err(json!({"$not": [1]})).contains("\"$not\" needs an object"));
        assert!(err(json!({"a": {"$gt": 1, "b": 2}})).contains("mixes operators"));
        assert!(err(json!({"a..b": 1})).contains("empty segment"));
        assert!(err(json!({"": 1})).contains("non-empty"));
        assert!(err(json!([1])).contains("must be an object"));
        assert!(err(json!({"$and": [{"a": {"$bad": 1}}]})).contains("\"$bad\" at \"a\""));
        assert!(err(json!({"$not": {"x.y": {"$in": null}}})).contains("\"$in\" at \"x.y\""));
    }

    #[test]
    fn parses_queries() {
        assert_eq!(parse_query(&json!({})).unwrap(), Query::default());
        assert_eq!(parse_query(&Value::Null).unwrap(), Query::default());
        let q = parse_query(&json!({"where": {"a": 1}, "orderBy": {"field": "b.c"},
            "limit": 10, "after": "id1"}))
        .unwrap();
        assert_eq!(q.filter, Some(cond("a", Op::Eq(json!(1)))));
        assert_eq!(
            q.order,
            vec![SortKey {
                path: path("b.c"),
                descending: false
            }]
        );
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.after.as_deref(), Some("id1"));
        let q = parse_query(&json!({"orderBy": [{"field": "a", "direction": "desc"},
            {"field": "b", "direction": "asc"}, {"field": "c", "direction": null}]}))
        .unwrap();
        assert_eq!(
            q.order,
            vec![
                SortKey {
                    path: path("a"),
                    descending: true
                },
                SortKey {
                    path: path("b"),
                    descending: false
                },
                SortKey {
                    path: path("c"),
                    descending: false
                },
            ]
        );
        let q = parse_query(&json!({"where": null, "orderBy": null, "limit": null, "after": null}))
            .unwrap();
        assert_eq!(q, Query::default());
        assert_eq!(parse_query(&json!({"limit": 0})).unwrap().limit, Some(0));
        assert_eq!(parse_query(&json!({"limit": 5.0})).unwrap().limit, Some(5));
        assert_eq!(parse_query(&json!({"orderBy": []})).unwrap().order, vec![]);
    }

    #[test]
    fn query_errors() {
        assert!(qerr(json!({"wher": {}})).contains("unknown member \"wher\""));
        assert!(qerr(json!({"skip": null})).contains("unknown member \"skip\""));
        assert!(qerr(json!({"limit": -1})).contains("\"limit\" must be a non-negative integer"));
        assert!(qerr(json!({"limit": 1.5})).contains("\"limit\""));
        assert!(qerr(json!({"limit": "5"})).contains("\"limit\""));
        assert!(qerr(json!({"after": ""})).contains("\"after\""));
        assert!(qerr(json!({"after": 5})).contains("\"after\""));
        assert!(qerr(json!({"orderBy": "a"})).contains("\"orderBy\""));
        assert!(qerr(json!({"orderBy": {"direction": "asc"}})).contains("needs a \"field\""));
        assert!(qerr(json!({"orderBy": {"field": "a", "direction": "up"}})).contains("direction"));
        assert!(qerr(json!({"orderBy": [{"field": "a", "dir": "asc"}]})).contains("\"dir\""));
        assert!(qerr(json!({"orderBy": {"field": ""}})).contains("non-empty"));
        assert!(qerr(json!({"orderBy": {"field": 3}})).contains("\"field\" must be a string"));
        assert!(qerr(json!({"where": {"a": {"$x": 1}}})).contains("\"$x\""));
        assert!(qerr(json!({"where": 1})).contains("\"where\" must be an object"));
        assert!(qerr(json!([])).contains("must be an object"));
    }

    #[test]
    fn equality_is_deep_and_type_strict() {
        assert!(m(json!({"a": 1}), json!({"a": 1.0})));
        assert!(m(json!({"a": 1.0}), json!({"a": 1})));
        assert!(!m(json!({"a": 1}), json!({"a": "1"})));
        assert!(!m(json!({"a": 1}), json!({"a": true})));
        assert!(!m(json!({"a": false}), json!({"a": 0})));
        assert!(m(
            json!({"a": {"x": 1, "y": [1, {"z": 2}]}}),
            json!({"a": {"y": [1.0, {"z": 2}], "x": 1}})
        ));
        assert!(!m(json!({"a": {"x": 1}}), json!({"a": {"x": 1, "y": 2}})));
        assert!(!m(json!({"a": [1, 2]}), json!({"a": [2, 1]})));
        assert!(m(json!({"a": []}), json!({"a": []})));
        assert!(m(json!({"a": {}}), json!({"a": {}})));
        assert!(!m(json!({"a": {}}), json!({"a": []})));
        assert!(m(json!({"a.b": "é"}), json!({"a": {"b": "é"}})));
        assert!(m(json!({"a": {"$eq": {"$x": 1}}}), json!({"a": {"$x": 1}})));
        // null matches a present null only.
        assert!(m(json!({"a": null}), json!({"a": null})));
        assert!(!m(json!({"a": null}), json!({})));
        assert!(!m(json!({"a": null}), json!({"a": 0})));
        assert!(m(json!({}), json!({})));
        assert!(m(json!({}), json!({"a": 1})));
    }

    #[test]
    fn ne_in_nin() {
        assert!(m(json!({"a": {"$ne": 1}}), json!({})));
        assert!(m(json!({"a": {"$ne": 1}}), json!({"a": "1"})));
        assert!(!m(json!({"a": {"$ne": 1}}), json!({"a": 1.0})));
        assert!(m(json!({"a": {"$ne": null}}), json!({})));
        assert!(!m(json!({"a": {"$ne": null}}), json!({"a": null})));
        assert!(m(json!({"a": {"$in": [1, "x", null]}}), json!({"a": "x"})));
        assert!(m(json!({"a": {"$in": [1, "x", null]}}), json!({"a": null})));
        assert!(!m(json!({"a": {"$in": [1, "x", null]}}), json!({})));
        assert!(!m(json!({"a": {"$in": []}}), json!({"a": 1})));
        assert!(m(
            json!({"a": {"$in": [[1], {"b": 2}]}}),
            json!({"a": {"b": 2.0}})
        ));
        assert!(m(json!({"a": {"$nin": [1, 2]}}), json!({})));
        assert!(m(json!({"a": {"$nin": [1, 2]}}), json!({"a": 3})));
        assert!(!m(json!({"a": {"$nin": [1, 2]}}), json!({"a": 2.0})));
        assert!(m(json!({"a": {"$nin": []}}), json!({"a": 2})));
    }

    #[test]
    fn ranges_are_type_strict() {
        assert!(m(json!({"a": {"$gt": 1}}), json!({"a": 1.5})));
        assert!(!m(json!({"a": {"$gt": 1}}), json!({"a": "2"})));
        assert!(!m(json!({"a": {"$gt": 1}}), json!({})));
        assert!(!m(json!({"a": {"$lt": 1}}), json!({})));
        assert!(!m(json!({"a": {"$lt": 1}}), json!({"a": null})));
        assert!(!m(json!({"a": {"$lt": 1}}), json!({"a": false})));
        assert!(m(json!({"a": {"$gte": 1}}), json!({"a": 1.0})));
        assert!(m(json!({"a": {"$lte": 1}}), json!({"a": -5})));
        assert!(!m(json!({"a": {"$lte": 1}}), json!({"a": 1.5})));
        assert!(m(json!({"a": {"$gte": null}}), json!({"a": null})));
        assert!(m(json!({"a": {"$lte": null}}), json!({"a": null})));
        assert!(!m(json!({"a": {"$gt": null}}), json!({"a": null})));
        assert!(!m(json!({"a": {"$lt": null}}), json!({"a": null})));
        assert!(!m(json!({"a": {"$gte": null}}), json!({})));
        assert!(m(json!({"a": {"$gt": false}}), json!({"a": true})));
        assert!(!m(json!({"a": {"$gt": true}}), json!({"a": true})));
        assert!(m(json!({"a": {"$lt": true}}), json!({"a": false})));
        assert!(m(json!({"a": {"$gt": "Z"}}), json!({"a": "a"})));
        assert!(m(json!({"a": {"$gt": "z"}}), json!({"a": "é"})));
        assert!(m(json!({"a": {"$lt": "b"}}), json!({"a": "abc"})));
        assert!(m(json!({"a": {"$gt": [1]}}), json!({"a": [2]})));
        // By minified text: "[1,0]" < "[1]" (',' < ']').
        assert!(m(json!({"a": {"$lt": [1]}}), json!({"a": [1, 0]})));
        assert!(!m(json!({"a": {"$gt": [1]}}), json!({"a": {"x": 1}})));
        assert!(m(json!({"a": {"$lt": {"b": 1}}}), json!({"a": {"a": 9}})));
    }

    #[test]
    fn exists_prefix_not() {
        assert!(m(json!({"a": {"$exists": true}}), json!({"a": null})));
        assert!(!m(json!({"a": {"$exists": true}}), json!({})));
        assert!(m(json!({"a": {"$exists": false}}), json!({})));
        assert!(m(json!({"a.b": {"$exists": false}}), json!({"a": [1]})));
        assert!(m(json!({"a": {"$prefix": "ab"}}), json!({"a": "abc"})));
        assert!(m(json!({"a": {"$prefix": ""}}), json!({"a": ""})));
        assert!(!m(json!({"a": {"$prefix": ""}}), json!({"a": 1})));
        assert!(!m(json!({"a": {"$prefix": "ab"}}), json!({"a": "a"})));
        assert!(m(json!({"a": {"$prefix": "日"}}), json!({"a": "日本"})));
        assert!(m(json!({"$not": {"a": 1}}), json!({})));
        assert!(!m(json!({"$not": {"a": 1}}), json!({"a": 1})));
        assert!(m(json!({"$or": [{"a": 1}, {"b": 1}]}), json!({"b": 1})));
        assert!(!m(json!({"$and": [{"a": 1}, {"b": 1}]}), json!({"b": 1})));
        assert!(!Filter::Or(vec![]).matches(&json!({})));
    }

    #[test]
    fn total_order() {
        let vals = [
            None,
            Some(json!(null)),
            Some(json!(false)),
            Some(json!(true)),
            Some(json!(-2.5)),
            Some(json!(1)),
            Some(json!(1.5)),
            Some(json!(u64::MAX)),
            Some(json!("")),
            Some(json!("B")),
            Some(json!("a")),
            Some(json!("é")),
            // Arrays and objects by minified text: "[1]" < "[]", "{\"a\":1}" < "{}".
            Some(json!([1])),
            Some(json!([])),
            Some(json!({"a": 1})),
            Some(json!({})),
        ];
        for (i, a) in vals.iter().enumerate() {
            for (j, b) in vals.iter().enumerate() {
                assert_eq!(
                    compare_json(a.as_ref(), b.as_ref()),
                    i.cmp(&j),
                    "{a:?} vs {b:?}"
                );
            }
        }
        assert_eq!(
            compare_json(Some(&json!(1)), Some(&json!(1.0))),
            Ordering::Equal
        );
        assert_eq!(
            compare_json(Some(&json!(i64::MIN)), Some(&json!(u64::MAX))),
            Ordering::Less
        );
    }

    #[test]
    fn doc_order() {
        let order = vec![
            SortKey {
                path: path("a"),
                descending: true,
            },
            SortKey {
                path: path("b"),
                descending: false,
            },
        ];
        let (x, y) = (json!({"a": 1, "b": 2}), json!({"a": 1, "b": 1}));
        assert_eq!(compare_docs(&order, "1", &x, "2", &y), Ordering::Greater);
        assert_eq!(compare_docs(&order, "1", &x, "2", &x), Ordering::Less);
        assert_eq!(compare_docs(&order, "b", &x, "a", &x), Ordering::Greater);
        // Missing sorts last in descending order.
        assert_eq!(
            compare_docs(&order, "1", &json!({}), "2", &x),
            Ordering::Greater
        );
        assert_eq!(compare_docs(&[], "a", &x, "b", &y), Ordering::Less);
    }
}
