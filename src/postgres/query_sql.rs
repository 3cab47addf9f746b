//! Compiles the query language of `crate::query` to Postgres SQL over
//! `persist_records(store_id, coll, id /* COLLATE "C" */, doc jsonb, raw text, ...)`.
//!
//! The SQL gives exactly the results of [`Filter::matches`] and [`compare_docs`]; what cannot be
//! expressed exactly (equality or ranges on arrays and objects, numbers of magnitude 2^53 or
//! more, a path whose label holds U+0000 or U+0001) compiles to `None` and the caller evaluates
//! that part in Rust. Strings holding U+0000, which `jsonb` cannot store, are compared in the
//! encoding the `jsonb` copy stores them in ([`stored_string`]).
//!
//! How the type strictness is kept: a path's value is `doc -> 'a' -> 'b'` (the text form of `->`
//! reads object members only, never array elements, as [`lookup`] does), SQL NULL when missing;
//! `jsonb_typeof` of it gives the type, and every comparison is paired with a type check.
//! Within a type: numbers and booleans compare as `jsonb` (numeric, exact; false < true);
//! strings as `text COLLATE "C"` (byte order = code point order); arrays and objects sort by
//! their JSON text as stored (the `raw` column cast to `json`, which keeps the original text).
//!
//! Fragments use `?` placeholders (each a [`SqlParam`]: text, or JSON bound as `jsonb`);
//! [`number_placeholders`] turns them into `$n`. Only `[A-Za-z0-9_]` labels are inlined, so no
//! other `?` can appear.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use serde_json::{Number, Value};
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

use crate::query::{
    fixed_type_rank, ids_descending, lookup, type_rank, FieldPath, Filter, Op, SortKey,
};

/// A piece of SQL and its parameters, in order of their `?`.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFragment {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

/// A query parameter. JSON goes to the server as `jsonb` (`?::jsonb` declares the parameter's
/// type) rather than as text cast there (`?::text::jsonb`). The planner costs the cast as one
/// more function per row and orders a scan's conditions by cost, so in a generic plan
/// `priority >= 7` ran after its own type guard and after `done = false`, on every row: 40 ms
/// instead of 29-31 ms for an unindexed query over 100,000 records (`EXPLAIN ANALYZE`).
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    Text(String),
    /// JSON text (one scalar).
    Json(String),
    /// A jsonpath predicate (see [`where_sql`]).
    JsonPath(String),
    /// A number's JSON text, bound as `numeric` (sent in numeric's text format, which reads
    /// JSON's number syntax exactly).
    Numeric(String),
}

impl ToSql for SqlParam {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            SqlParam::Text(s) => s.to_sql(ty, out),
            SqlParam::Json(s) if *ty == Type::JSONB => {
                // jsonb's binary format: version 1, then the JSON text.
                out.put_u8(1);
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
            SqlParam::Json(_) => Err(format!("a JSON parameter bound to a {ty} column").into()),
            SqlParam::JsonPath(p) if *ty == Type::JSONPATH => {
                // jsonpath's binary format: version 1, then the path's text.
                out.put_u8(1);
                out.put_slice(p.as_bytes());
                Ok(IsNull::No)
            }
            SqlParam::JsonPath(_) => {
                Err(format!("a jsonpath parameter bound to a {ty} column").into())
            }
            SqlParam::Numeric(n) if *ty == Type::NUMERIC => {
                out.put_slice(n.as_bytes());
                Ok(IsNull::No)
            }
            SqlParam::Numeric(_) => {
                Err(format!("a numeric parameter bound to a {ty} column").into())
            }
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
            || *ty == Type::JSONPATH
            || *ty == Type::NUMERIC
            || <String as ToSql>::accepts(ty)
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            SqlParam::Numeric(_) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

impl SqlFragment {
    fn new() -> Self {
        SqlFragment {
            sql: String::new(),
            params: Vec::new(),
        }
    }

    fn s(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// A text parameter.
    fn param(&mut self, v: String) -> &mut Self {
        self.sql.push_str("?::text");
        self.params.push(SqlParam::Text(v));
        self
    }

    /// A JSON parameter (its JSON text, bound as jsonb).
    fn json_param(&mut self, v: String) -> &mut Self {
        self.sql.push_str("?::jsonb");
        self.params.push(SqlParam::Json(v));
        self
    }

    fn append(&mut self, other: SqlFragment) -> &mut Self {
        self.sql.push_str(&other.sql);
        self.params.extend(other.params);
        self
    }

    /// `(doc -> 'a' -> 'b')`.
    fn value(&mut self, path: &FieldPath) -> &mut Self {
        let f = value_expr(path);
        self.append(f)
    }

    /// `((doc -> 'a' ->> 'b') COLLATE "C")`.
    fn text(&mut self, path: &FieldPath) -> &mut Self {
        let f = text_expr(path);
        self.append(f)
    }

    fn json_type(&mut self, path: &FieldPath) -> &mut Self {
        self.s("jsonb_typeof").value(path)
    }

    /// The type rank of the value at `path` is in `ranks` (0 = missing ... 6 = object).
    fn rank_in(&mut self, path: &FieldPath, ranks: impl Iterator<Item = u8>) -> &mut Self {
        let ranks: Vec<u8> = ranks.collect();
        if ranks.len() == 7 {
            return self.s("TRUE");
        }
        if ranks.is_empty() {
            return self.s("FALSE");
        }
        let names: Vec<&str> = ranks.iter().filter_map(|r| type_name(*r)).collect();
        if ranks.contains(&0) {
            self.s("COALESCE(").json_type(path).s(", '') IN (''");
            for n in names {
                self.s(", '").s(n).s("'");
            }
            return self.s(")");
        }
        self.json_type(path);
        if names.len() == 1 {
            return self.s(" = '").s(names[0]).s("'");
        }
        self.s(" IN (");
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                self.s(", ");
            }
            self.s("'").s(n).s("'");
        }
        self.s(")")
    }
}

/// The `jsonb_typeof` name of a type rank (0 = missing has none).
fn type_name(rank: u8) -> Option<&'static str> {
    Some(match rank {
        1 => "null",
        2 => "boolean",
        3 => "number",
        4 => "string",
        5 => "array",
        6 => "object",
        _ => return None,
    })
}

fn inlinable(seg: &str) -> bool {
    !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether every label of the path can be inlined (what expression indexes need).
pub fn path_inlinable(path: &FieldPath) -> bool {
    !path.segments.is_empty() && path.segments.iter().all(|s| inlinable(s))
}

/// Whether a label can be looked up in SQL: one holding U+0000 or U+0001 is stored in the
/// encoding of [`stored_string`], and one holding U+10FFFF could meet the stand-in of a U+0000
/// in [`raw_text_expr`]; such a path is left to the Rust evaluator.
fn path_representable(path: &FieldPath) -> bool {
    path.segments
        .iter()
        .all(|s| !s.contains(['\u{0}', '\u{1}', '\u{10FFFF}']))
}

/// A string as the `jsonb` copy of a document holds it (`records::doc_text`): `jsonb` and
/// `text` cannot hold U+0000, so U+0000 becomes U+0001 U+0001 and U+0001 becomes U+0001 U+0002.
/// Every other character stays. The encoding keeps what queries compare: two strings are equal,
/// one is a prefix of the other, or one sorts before the other in byte order exactly when the
/// same holds for their encodings (both codes start with U+0001, below every character left as
/// it is, and their second characters keep the order of U+0000 and U+0001; no code is a prefix
/// of another). So a string operand is encoded and compared in SQL.
pub fn stored_string(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\u{0}', '\u{1}']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            '\u{0}' => out.push_str("\u{1}\u{1}"),
            '\u{1}' => out.push_str("\u{1}\u{2}"),
            _ => out.push(ch),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn label(f: &mut SqlFragment, seg: &str) {
    if inlinable(seg) {
        f.s("'").s(seg).s("'");
    } else {
        f.param(seg.to_string());
    }
}

/// `(doc -> 'a' -> 'b')`: the jsonb value at the path, NULL when missing. Expression indexes
/// are created from this text.
pub fn value_expr(path: &FieldPath) -> SqlFragment {
    let mut f = SqlFragment::new();
    f.s("(doc");
    for seg in &path.segments {
        f.s(" -> ");
        label(&mut f, seg);
    }
    f.s(")");
    f
}

/// `(CASE WHEN jsonb_typeof(doc -> 'a') = 'number' THEN (doc -> 'a')::numeric END)`: the value
/// at the path as `numeric` when it is a number, else NULL; `ensureIndex` builds an index on it
/// (see [`Form::Index`]).
pub fn numeric_expr(path: &FieldPath) -> SqlFragment {
    let mut f = SqlFragment::new();
    f.s("(CASE WHEN ")
        .json_type(path)
        .s(" = 'number' THEN ")
        .value(path)
        .s("::numeric END)");
    f
}

/// `((doc -> 'a' ->> 'b') COLLATE "C")`: the text of the value at the path (for strings: the
/// string itself), compared in byte order.
pub fn text_expr(path: &FieldPath) -> SqlFragment {
    let mut f = SqlFragment::new();
    f.s("((doc");
    let last = path.segments.len().saturating_sub(1);
    for (i, seg) in path.segments.iter().enumerate() {
        f.s(if i == last { " ->> " } else { " -> " });
        label(&mut f, seg);
    }
    f.s(") COLLATE \"C\")");
    f
}

/// `(raw::json -> 'a' -> 'b')::text`: the value's JSON text as the user wrote it.
///
/// `json`'s `->` decodes every string of the document and fails on a `\u0000` escape anywhere
/// in it, so in a text holding one each such escape (one not itself escaped: preceded by an
/// even number of backslashes) is swapped for `\uDBFF\uDFFF` before the cast and back in the
/// text taken out. JSON.stringify, which wrote the text, never writes that pair as escapes (it
/// writes U+10FFFF itself, and lower-case hex), so the swap back restores the text exactly; a
/// key that became U+10FFFF could shadow a real one, so paths naming U+10FFFF are not compiled
/// ([`path_representable`]).
fn raw_text_expr(path: &FieldPath) -> SqlFragment {
    let at = |f: &mut SqlFragment| {
        for seg in &path.segments {
            f.s(" -> ");
            label(f, seg);
        }
    };
    let mut f = SqlFragment::new();
    f.s("(CASE WHEN strpos(raw, E'\\\\u0000') = 0 THEN (raw::json");
    at(&mut f);
    f.s(")::text ELSE regexp_replace((regexp_replace(raw, ")
        .s(ESCAPED_NUL)
        .s(", E'\\\\1\\\\\\\\uDBFF\\\\\\\\uDFFF', 'g')::json");
    at(&mut f);
    f.s(")::text, ")
        .s(ESCAPED_STAND_IN)
        .s(", E'\\\\1\\\\\\\\u0000', 'g') END)");
    f
}

/// Regular expressions (as SQL literals) of a `\u0000` escape and of its stand-in in
/// [`raw_text_expr`], the backslashes before them in the first group.
/// Their `?` is written `\x3F`: a `?` in the SQL text is a placeholder ([`number_placeholders`]).
const ESCAPED_NUL: &str = r"E'(\x3F<!\\\\)((\x3F:\\\\\\\\)*)\\\\u0000'";
const ESCAPED_STAND_IN: &str = r"E'(\x3F<!\\\\)((\x3F:\\\\\\\\)*)\\\\uDBFF\\\\uDFFF'";

/// 2^53: below it every integer is an exact f64, so Postgres's exact numeric comparison and the
/// Rust side's f64 comparison agree.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The JSON text of a number operand, `None` when its magnitude is 2^53 or more.
fn number_text(n: &Number) -> Option<String> {
    if let Some(i) = n.as_i64() {
        return ((i.unsigned_abs() as f64) < EXACT_LIMIT).then(|| i.to_string());
    }
    let f = n.as_f64()?;
    (f.is_finite() && f.abs() < EXACT_LIMIT).then(|| n.to_string())
}

/// `(<type check> AND <value> <cmp> ?)` for a number or string operand; with `numeric` (the
/// path has a numeric index), `<numeric value> <cmp> ?` for a number.
fn compare(path: &FieldPath, cmp: &str, v: &Value, numeric: bool) -> Option<SqlFragment> {
    let mut f = SqlFragment::new();
    match v {
        // NULL unless the value is a number, so this is its own type check; one `numeric`
        // comparison per index entry where the jsonb range below costs two jsonb comparisons
        // (the bench's indexed query: 0.213 ms on the server against 0.170).
        Value::Number(n) if numeric => {
            let text = number_text(n)?;
            f.append(numeric_expr(path)).s(" ").s(cmp).s(" ?::numeric");
            f.params.push(SqlParam::Numeric(text));
        }
        // A lower bound on a number is a jsonb range closed by `'false'` (in jsonb order every
        // number sorts below every boolean, array and object, and above every string and
        // null): one range on an expression index, which the planner estimates from the
        // index's statistics. A `jsonb_typeof` check instead counts as an unknown 0.5 %
        // filter, which made the planner drop the ordered index scan for a sort of every
        // match (28 queries/s instead of about 1,500 on the bench's indexed query).
        Value::Number(n) if cmp.starts_with('>') => {
            let text = number_text(n)?;
            f.s("(")
                .value(path)
                .s(" ")
                .s(cmp)
                .s(" ")
                .json_param(text)
                .s(" AND ")
                .value(path)
                .s(" < 'false'::jsonb)");
        }
        // Below an upper bound lie strings and null too, and no jsonb value separates them
        // from the numbers: the type is checked.
        Value::Number(n) => {
            let text = number_text(n)?;
            f.s("(")
                .json_type(path)
                .s(" = 'number' AND ")
                .value(path)
                .s(" ")
                .s(cmp)
                .s(" ")
                .json_param(text)
                .s(")");
        }
        Value::String(s) => {
            f.s("(")
                .json_type(path)
                .s(" = 'string' AND ")
                .text(path)
                .s(" ")
                .s(cmp)
                .s(" ")
                .param(stored_string(s).into_owned())
                .s(")");
        }
        _ => return None,
    }
    Some(f)
}

/// The JSON text of a scalar operand that jsonb equality compares exactly.
fn scalar_json(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => number_text(n),
        Value::String(s) => Some(Value::String(stored_string(s).into_owned()).to_string()),
        _ => None,
    }
}

/// The value at `path` equals `v`: jsonb equality is type-strict and numeric for numbers.
fn eq_sql(path: &FieldPath, v: &Value) -> Option<SqlFragment> {
    let mut f = SqlFragment::new();
    match v {
        Value::Null => f.value(path).s(" = 'null'::jsonb"),
        Value::Bool(true) => f.value(path).s(" = 'true'::jsonb"),
        Value::Bool(false) => f.value(path).s(" = 'false'::jsonb"),
        _ => f.value(path).s(" = ").json_param(scalar_json(v)?),
    };
    Some(f)
}

fn not(inner: SqlFragment) -> SqlFragment {
    let mut f = SqlFragment::new();
    f.s("(").append(inner).s(") IS NOT TRUE");
    f
}

fn literal(sql: &str) -> SqlFragment {
    let mut f = SqlFragment::new();
    f.s(sql);
    f
}

fn in_sql(path: &FieldPath, vs: &[Value]) -> Option<SqlFragment> {
    if vs.is_empty() {
        return Some(literal("FALSE"));
    }
    let texts = vs.iter().map(scalar_json).collect::<Option<Vec<_>>>()?;
    let mut f = SqlFragment::new();
    f.value(path).s(" IN (");
    for (i, t) in texts.into_iter().enumerate() {
        if i > 0 {
            f.s(", ");
        }
        f.json_param(t);
    }
    f.s(")");
    Some(f)
}

fn join(parts: Vec<SqlFragment>, sep: &str, empty: &str) -> SqlFragment {
    match parts.len() {
        0 => literal(empty),
        1 => parts.into_iter().next().unwrap(),
        _ => {
            let mut f = SqlFragment::new();
            f.s("(");
            for (i, p) in parts.into_iter().enumerate() {
                if i > 0 {
                    f.s(sep);
                }
                f.append(p);
            }
            f.s(")");
            f
        }
    }
}

/// A range operator with a boolean operand: the booleans `accept` keeps.
fn bool_range(path: &FieldPath, accept: impl Fn(bool) -> bool) -> SqlFragment {
    let keep: Vec<bool> = [false, true].into_iter().filter(|c| accept(*c)).collect();
    let mut f = SqlFragment::new();
    match keep.as_slice() {
        [] => f.s("FALSE"),
        [true] => f.value(path).s(" = 'true'::jsonb"),
        [false] => f.value(path).s(" = 'false'::jsonb"),
        _ => f.json_type(path).s(" = 'boolean'"),
    };
    f
}

fn range_sql(path: &FieldPath, op: &Op, numeric: bool) -> Option<SqlFragment> {
    let (v, cmp) = match op {
        Op::Gt(v) => (v, ">"),
        Op::Gte(v) => (v, ">="),
        Op::Lt(v) => (v, "<"),
        Op::Lte(v) => (v, "<="),
        _ => unreachable!("range_sql takes range operators only"),
    };
    let inclusive = cmp.ends_with('=');
    match v {
        Value::Null => Some(if inclusive {
            let mut f = SqlFragment::new();
            f.value(path).s(" = 'null'::jsonb");
            f
        } else {
            literal("FALSE")
        }),
        Value::Bool(b) => {
            let b = *b;
            Some(bool_range(path, |c| match cmp {
                ">" => c & !b,
                ">=" => c >= b,
                "<" => !c & b,
                _ => c <= b,
            }))
        }
        Value::Number(_) | Value::String(_) => compare(path, cmp, v, numeric),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn prefix_sql(path: &FieldPath, prefix: &str) -> Option<SqlFragment> {
    let mut f = SqlFragment::new();
    if prefix.is_empty() {
        f.json_type(path).s(" = 'string'");
        return Some(f);
    }
    let prefix = stored_string(prefix);
    f.s("(")
        .json_type(path)
        .s(" = 'string' AND ")
        .text(path)
        .s(" >= ")
        .param(prefix.to_string());
    if let Some(upper) = crate::validate::prefix_successor(&prefix) {
        f.s(" AND ").text(path).s(" < ").param(upper);
    }
    f.s(")");
    Some(f)
}

fn cond_sql(path: &FieldPath, op: &Op, form: &Form) -> Option<SqlFragment> {
    if !path_representable(path) {
        return None;
    }
    Some(match op {
        Op::Eq(v) => eq_sql(path, v)?,
        Op::Ne(v) => not(eq_sql(path, v)?),
        Op::Gt(_) | Op::Gte(_) | Op::Lt(_) | Op::Lte(_) => range_sql(path, op, form.numeric(path))?,
        Op::In(vs) => in_sql(path, vs)?,
        Op::Nin(vs) if vs.is_empty() => literal("TRUE"),
        Op::Nin(vs) => not(in_sql(path, vs)?),
        Op::Exists(true) => {
            let mut f = SqlFragment::new();
            f.value(path).s(" IS NOT NULL");
            f
        }
        Op::Exists(false) => {
            let mut f = SqlFragment::new();
            f.value(path).s(" IS NULL");
            f
        }
        Op::Prefix(p) => prefix_sql(path, p)?,
    })
}

/// What a query is compiled for.
///
/// `Index` when a field it filters or sorts on has our expression indexes (`ensureIndex`):
/// conditions and sort keys in the expression form those indexes are built on, so the
/// planner can seek and walk them. `Scan` otherwise: the conditions become one jsonpath
/// predicate (`doc @@ ...`), evaluated in one pass over each document where the expression
/// form extracts the field once per comparison, and estimated from the column's statistics
/// instead of a default 0.5 %; a number sort key sorts as `numeric`, which compares in a
/// fraction of the time `jsonb` does. On the bench's 100,000 records, serially: 39 ms a query
/// against 55. The jsonpath is not used when an index could serve: the planner kept custom
/// plans for it, estimating it again at every execution from the column's statistics, and
/// the expression form has served indexed queries well (about 3 % faster, 0.5 ms a query).
///
/// In the `Index` form, a number range or a number sort key on a field that also has the
/// numeric index (`numeric`: [`numeric_expr`]) uses that index's expression: its entries
/// compare as `numeric`, and non-numbers are NULL, outside any range, so no type guard is
/// compared on each entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    Index { numeric: Vec<FieldPath> },
    Scan,
}

impl Form {
    /// The `Index` form, no field with a numeric index.
    pub fn index() -> Form {
        Form::Index {
            numeric: Vec::new(),
        }
    }

    fn numeric(&self, path: &FieldPath) -> bool {
        matches!(self, Form::Index { numeric } if numeric.contains(path))
    }
}

/// The form for a query on `filter` and `order`, `indexed` telling which fields have indexes
/// and `numeric` which have the numeric one too.
pub fn form_for(
    filter: Option<&Filter>,
    order: &[SortKey],
    indexed: impl Fn(&FieldPath) -> bool,
    numeric: impl Fn(&FieldPath) -> bool,
) -> Form {
    /// Every path the filter's conditions name, in order.
    fn cond_paths<'a>(f: &'a Filter, out: &mut Vec<&'a FieldPath>) {
        match f {
            Filter::And(subs) | Filter::Or(subs) => subs.iter().for_each(|s| cond_paths(s, out)),
            Filter::Not(sub) => cond_paths(sub, out),
            Filter::Cond { path, .. } => out.push(path),
        }
    }
    let mut paths = Vec::new();
    if let Some(f) = filter {
        cond_paths(f, &mut paths);
    }
    paths.extend(order.iter().map(|k| &k.path));
    if !paths.iter().any(|p| indexed(p)) {
        return Form::Scan;
    }
    let mut numeric_paths: Vec<FieldPath> = Vec::new();
    for p in paths {
        if numeric(p) && !numeric_paths.contains(p) {
            numeric_paths.push(p.clone());
        }
    }
    Form::Index {
        numeric: numeric_paths,
    }
}

/// `$."a"."b"`: the path in jsonpath, each label a JSON string literal (jsonpath reads the same
/// escapes), so any label is safe; the whole path is a bound parameter besides.
fn jsonpath_accessor(path: &FieldPath) -> String {
    let mut s = String::from("$");
    for seg in &path.segments {
        s.push('.');
        s.push_str(&Value::String(seg.clone()).to_string());
    }
    s
}

/// The jsonpath predicate of a condition, for the conditions whose jsonpath meaning (strict
/// mode, inside `@@`) is exactly [`Filter::matches`]: equality with a scalar, membership in a
/// list of scalars, a range with a number, `$exists: true`, and `$and`/`$or` of those. Strict
/// mode reads object members only (as [`lookup`] does); a comparison of two different types,
/// a missing member or a step into a non-object is "unknown", which `@@` answers with NULL: a
/// non-match, as the API's type-strict comparisons want. Negations are left to SQL, where
/// `IS NOT TRUE` turns unknown into a match.
fn jsonpath_pred(filter: &Filter) -> Option<String> {
    let all = |subs: &[Filter], sep: &str| -> Option<String> {
        if subs.is_empty() {
            return None;
        }
        let preds = subs.iter().map(jsonpath_pred).collect::<Option<Vec<_>>>()?;
        Some(format!("({})", preds.join(sep)))
    };
    match filter {
        Filter::And(subs) => all(subs, " && "),
        Filter::Or(subs) => all(subs, " || "),
        Filter::Not(_) => None,
        Filter::Cond { path, op } => {
            if !path_representable(path) {
                return None;
            }
            let at = jsonpath_accessor(path);
            match op {
                Op::Eq(v) => Some(format!("{at} == {}", scalar_json(v)?)),
                Op::In(vs) if !vs.is_empty() => {
                    let eqs = vs
                        .iter()
                        .map(|v| Some(format!("{at} == {}", scalar_json(v)?)))
                        .collect::<Option<Vec<_>>>()?;
                    Some(format!("({})", eqs.join(" || ")))
                }
                Op::Gt(Value::Number(n))
                | Op::Gte(Value::Number(n))
                | Op::Lt(Value::Number(n))
                | Op::Lte(Value::Number(n)) => {
                    let cmp = match op {
                        Op::Gt(_) => ">",
                        Op::Gte(_) => ">=",
                        Op::Lt(_) => "<",
                        _ => "<=",
                    };
                    Some(format!("{at} {cmp} {}", number_text(n)?))
                }
                Op::Exists(true) => Some(format!("exists({at})")),
                _ => None,
            }
        }
    }
}

/// `doc @@ 'strict <pred>'`, the predicate a parameter.
fn jsonpath_match(pred: String) -> SqlFragment {
    let mut f = SqlFragment::new();
    f.s("doc @@ ?::jsonpath");
    f.params.push(SqlParam::JsonPath(format!("strict {pred}")));
    f
}

/// A WHERE condition equivalent to [`Filter::matches`], in the given [`Form`]; `None` when
/// some part cannot be expressed exactly and the caller must evaluate the filter in Rust.
pub fn where_sql(filter: &Filter, form: &Form) -> Option<SqlFragment> {
    if *form == Form::Scan {
        if let Some(pred) = jsonpath_pred(filter) {
            return Some(jsonpath_match(pred));
        }
    }
    match filter {
        // In a scan, the conditions jsonpath can take become one predicate beside the rest.
        Filter::And(subs) if *form == Form::Scan => {
            let mut preds = Vec::new();
            let mut parts = Vec::new();
            for sub in subs {
                match jsonpath_pred(sub) {
                    Some(p) => preds.push(p),
                    None => parts.push(where_sql(sub, form)?),
                }
            }
            if !preds.is_empty() {
                parts.insert(0, jsonpath_match(preds.join(" && ")));
            }
            Some(join(parts, " AND ", "TRUE"))
        }
        Filter::And(subs) => Some(join(
            subs.iter()
                .map(|s| where_sql(s, form))
                .collect::<Option<Vec<_>>>()?,
            " AND ",
            "TRUE",
        )),
        Filter::Or(subs) => Some(join(
            subs.iter()
                .map(|s| where_sql(s, form))
                .collect::<Option<Vec<_>>>()?,
            " OR ",
            "FALSE",
        )),
        Filter::Not(sub) => Some(not(where_sql(sub, form)?)),
        Filter::Cond { path, op } => cond_sql(path, op, form),
    }
}

const RANK_CASE_WHENS: &str = " WHEN 'null' THEN 1 WHEN 'boolean' THEN 2 WHEN 'number' THEN 3 \
     WHEN 'string' THEN 4 WHEN 'array' THEN 5 WHEN 'object' THEN 6 ELSE 0 END";

/// The body of an ORDER BY clause implementing [`compare_docs`]: per key the type rank, then
/// the value within its type (numbers/booleans as jsonb, strings in byte order, arrays and
/// objects by their JSON text), all in the key's direction; then the id in the direction of the
/// last key. `None` when a label cannot be represented.
pub fn order_by_sql(order: &[SortKey]) -> Option<SqlFragment> {
    order_by_sql_for(order, None, &Form::index())
}

/// [`order_by_sql`] for a query with `filter`: where the filter fixes a sort key's JSON type
/// (`priority >= 7` admits numbers only), that key sorts by the one term of its type, so an
/// expression index on `(store_id, coll, value, id)` gives the order and the scan stops at the
/// LIMIT. In the [`Form::Scan`] form a number key sorts as `numeric` instead: the same order
/// (jsonb compares numbers as numeric), at a fraction of the cost of comparing jsonb values
/// (a top-100 of the bench's 15,000 matches: 10 ms against 16, serially).
pub fn order_by_sql_for(
    order: &[SortKey],
    filter: Option<&Filter>,
    form: &Form,
) -> Option<SqlFragment> {
    let mut f = SqlFragment::new();
    for key in order {
        if !path_representable(&key.path) {
            return None;
        }
        let dir = if key.descending { " DESC" } else { " ASC" };
        let p = &key.path;
        match filter.and_then(|flt| fixed_type_rank(flt, p)) {
            // Missing or null everywhere: every document ties on this key.
            Some(0 | 1) => {}
            // The filter admits numbers only, so the cast cannot fail on a row that reaches
            // the sort.
            Some(3) if *form == Form::Scan => {
                f.value(p).s("::numeric").s(dir).s(", ");
            }
            // The numeric index's expression, so that index gives the order.
            Some(3) if form.numeric(p) => {
                f.append(numeric_expr(p)).s(dir).s(", ");
            }
            Some(2 | 3) => {
                f.value(p).s(dir).s(", ");
            }
            Some(4) => {
                f.text(p).s(dir).s(", ");
            }
            Some(_) => {
                f.append(raw_text_expr(p))
                    .s(" COLLATE \"C\"")
                    .s(dir)
                    .s(", ");
            }
            None => {
                f.s("CASE ").json_type(p).s(RANK_CASE_WHENS).s(dir).s(", ");
                f.s("(CASE WHEN ")
                    .json_type(p)
                    .s(" IN ('number', 'boolean') THEN ")
                    .value(p)
                    .s(" END)")
                    .s(dir)
                    .s(", ");
                f.s("(CASE WHEN ")
                    .json_type(p)
                    .s(" = 'string' THEN ")
                    .text(p)
                    .s(" END)")
                    .s(dir)
                    .s(", ");
                f.s("(CASE WHEN ")
                    .json_type(p)
                    .s(" IN ('array', 'object') THEN ")
                    .append(raw_text_expr(p))
                    .s(" END) COLLATE \"C\"")
                    .s(dir)
                    .s(", ");
            }
        }
    }
    f.s(if ids_descending(order) {
        "id DESC"
    } else {
        "id ASC"
    });
    Some(f)
}

/// The value at the key's path equals the after doc's value `v` in the sort order.
fn key_eq(path: &FieldPath, v: Option<&Value>) -> Option<SqlFragment> {
    match v {
        None => {
            let mut f = SqlFragment::new();
            f.value(path).s(" IS NULL");
            Some(f)
        }
        Some(v) => eq_sql(path, v),
    }
}

/// The value at the key's path sorts strictly after `v` in the key's direction; `Ok(None)` when
/// nothing can (false), `Err(())` when not expressible.
fn key_after(path: &FieldPath, v: Option<&Value>, desc: bool) -> Result<Option<SqlFragment>, ()> {
    let rank = type_rank(v);
    let mut parts = Vec::new();
    let other_ranks: Vec<u8> = if desc {
        (0..rank).collect()
    } else {
        (rank + 1..=6).collect()
    };
    if !other_ranks.is_empty() {
        let mut f = SqlFragment::new();
        f.rank_in(path, other_ranks.into_iter());
        parts.push(f);
    }
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => {
            // Within booleans: asc after false is true; desc after true is false.
            if *b == desc {
                let mut f = SqlFragment::new();
                f.value(path).s(if desc {
                    " = 'false'::jsonb"
                } else {
                    " = 'true'::jsonb"
                });
                parts.push(f);
            }
        }
        Some(v @ (Value::Number(_) | Value::String(_))) => {
            parts.push(compare(path, if desc { "<" } else { ">" }, v, false).ok_or(())?);
        }
        Some(Value::Array(_) | Value::Object(_)) => return Err(()),
    }
    Ok(match parts.len() {
        0 => None,
        _ => Some(join(parts, " OR ", "FALSE")),
    })
}

/// A keyset condition selecting the rows strictly after the document (`after_id`,
/// `after_data`) in the order of `order` (then id ascending). `None` when a sort key value of
/// that document is an array, an object or a number of magnitude >= 2^53.
pub fn after_sql(order: &[SortKey], after_id: &str, after_data: &Value) -> Option<SqlFragment> {
    let mut terms: Vec<SqlFragment> = Vec::new();
    let mut equal_prefix: Vec<SqlFragment> = Vec::new();
    for key in order {
        if !path_representable(&key.path) {
            return None;
        }
        let v = lookup(after_data, &key.path);
        let after = key_after(&key.path, v, key.descending).ok()?;
        if let Some(a) = after {
            let mut conj = equal_prefix.clone();
            conj.push(a);
            terms.push(join(conj, " AND ", "TRUE"));
        }
        equal_prefix.push(key_eq(&key.path, v)?);
    }
    let mut id = SqlFragment::new();
    id.s(if ids_descending(order) {
        "id < "
    } else {
        "id > "
    })
    .param(after_id.to_string());
    equal_prefix.push(id);
    terms.push(join(equal_prefix, " AND ", "TRUE"));
    Some(join(terms, " OR ", "FALSE"))
}

/// Replaces each `?` placeholder with `$first`, `$first+1`, ...; returns the next free number.
pub fn number_placeholders(sql: &str, first: usize) -> (String, usize) {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = first;
    for ch in sql.chars() {
        if ch == '?' {
            out.push('$');
            out.push_str(&n.to_string());
            n += 1;
        } else {
            out.push(ch);
        }
    }
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_where;
    use serde_json::json;

    /// The expression forms (as for a query an index can serve).
    fn w(v: Value) -> Option<SqlFragment> {
        where_sql(&parse_where(&v).unwrap(), &Form::index())
    }

    /// The encoding keeps equality, prefixes, byte order and prefix ranges, and never holds
    /// U+0000: every pair of strings of up to three characters from an alphabet around it.
    #[test]
    fn stored_strings_compare_as_the_strings_do() {
        let alphabet = ['\u{0}', '\u{1}', '\u{2}', 'a', '\u{e9}', '\u{fffd}'];
        let mut all = vec![String::new()];
        for len in 1..=3 {
            let shorter: Vec<String> = all
                .iter()
                .filter(|s| s.chars().count() == len - 1)
                .cloned()
                .collect();
            for s in shorter {
                for c in alphabet {
                    all.push(format!("{s}{c}"));
                }
            }
        }
        for x in &all {
            let ex = stored_string(x);
            assert!(!ex.contains('\u{0}'));
            for y in &all {
                let ey = stored_string(y);
                assert_eq!(x.cmp(y), ex.cmp(&ey), "{x:?} {y:?}");
                assert_eq!(
                    x.starts_with(y.as_str()),
                    ex.starts_with(ey.as_ref()),
                    "{x:?} {y:?}"
                );
                if !y.is_empty() {
                    let upper = crate::validate::prefix_successor(&ey);
                    let in_range = *ex >= *ey && upper.as_deref().is_none_or(|u| ex.as_ref() < u);
                    assert_eq!(in_range, x.starts_with(y.as_str()), "{x:?} {y:?}");
                }
            }
        }
    }

    #[test]
    fn shapes() {
        let f = w(json!({"priority": {"$gte": 3}})).unwrap();
        assert_eq!(
            f.sql,
            "((doc -> 'priority') >= ?::jsonb AND (doc -> 'priority') < 'false'::jsonb)"
        );
        assert_eq!(f.params, vec![SqlParam::Json("3".to_string())]);
        let f = w(json!({"priority": {"$lt": 3}})).unwrap();
        assert_eq!(
            f.sql,
            "(jsonb_typeof(doc -> 'priority') = 'number' AND (doc -> 'priority') < ?::jsonb)"
        );
        // A label that is not inlined is a parameter of each of the two value expressions.
        let f = w(json!({"a b": {"$gt": 1}})).unwrap();
        assert_eq!(
            f.sql,
            "((doc -> ?::text) > ?::jsonb AND (doc -> ?::text) < 'false'::jsonb)"
        );
        assert_eq!(
            f.params,
            vec![
                SqlParam::Text("a b".to_string()),
                SqlParam::Json("1".to_string()),
                SqlParam::Text("a b".to_string())
            ]
        );
        let f = w(json!({"a.b c": "x"})).unwrap();
        assert_eq!(f.sql, "(doc -> 'a' -> ?::text) = ?::jsonb");
        assert_eq!(
            f.params,
            vec![
                SqlParam::Text("b c".to_string()),
                SqlParam::Json("\"x\"".to_string())
            ]
        );
        assert_eq!(w(json!({})).unwrap().sql, "TRUE");
        assert!(w(json!({"a": [1]})).is_none());
        assert!(w(json!({"a": 9007199254740992i64})).is_none());
        // A string with U+0000 is compared in its stored form; a label with it is left to Rust.
        assert_eq!(
            w(json!({"a": "x\u{0}\u{1}"})).unwrap().params,
            vec![SqlParam::Json(
                "\"x\\u0001\\u0001\\u0001\\u0002\"".to_string()
            )]
        );
        assert!(w(json!({"a\u{0}": "x"})).is_none());
        assert!(w(json!({"a\u{1}": "x"})).is_none());
        assert!(w(json!({"a\u{10FFFF}": "x"})).is_none());
        let f = w(json!({"x') OR 1=1 --": {"$eq": "'; DROP TABLE records; --"}})).unwrap();
        assert!(!f.sql.contains("DROP") && !f.sql.contains("OR 1=1"));
        let (sql, next) = number_placeholders("a = ?::text AND b = ?::text", 3);
        assert_eq!(sql, "a = $3::text AND b = $4::text");
        assert_eq!(next, 5);
    }

    #[test]
    fn scans_compile_conditions_to_one_jsonpath() {
        let q = parse_where(&json!({"done": false, "priority": {"$gte": 7}})).unwrap();
        let f = where_sql(&q, &Form::Scan).unwrap();
        assert_eq!(f.sql, "doc @@ ?::jsonpath");
        assert_eq!(
            f.params,
            vec![SqlParam::JsonPath(
                r#"strict ($."done" == false && $."priority" >= 7)"#.to_string()
            )]
        );
        // Labels are JSON string literals; negations, string ranges and prefixes stay SQL.
        let q = parse_where(&json!({"$or": [{"a\"b.c d": {"$in": ["x", null]}}, {"n": {"$exists": true}}], "s": {"$prefix": "a"}, "$not": {"t": 1}})).unwrap();
        let f = where_sql(&q, &Form::Scan).unwrap();
        assert!(
            f.sql.starts_with("(doc @@ ?::jsonpath AND (jsonb_typeof"),
            "{}",
            f.sql
        );
        assert!(f.sql.ends_with(") IS NOT TRUE)"), "{}", f.sql);
        assert_eq!(
            f.params[0],
            SqlParam::JsonPath(
                r#"strict (($."a\"b"."c d" == "x" || $."a\"b"."c d" == null) || exists($."n"))"#
                    .to_string()
            )
        );
        let f = where_sql(
            &parse_where(&json!({"$not": {"t": {"$gt": 1}}})).unwrap(),
            &Form::Scan,
        )
        .unwrap();
        assert_eq!(f.sql, "(doc @@ ?::jsonpath) IS NOT TRUE");
        // Numbers beyond 2^53 and arrays are not compiled at all (Rust evaluates them).
        assert!(where_sql(
            &parse_where(&json!({"a": 9007199254740992i64})).unwrap(),
            &Form::Scan
        )
        .is_none());
        assert!(where_sql(&parse_where(&json!({"a": [1]})).unwrap(), &Form::Scan).is_none());
    }

    #[test]
    fn the_form_follows_the_indexes() {
        let q = parse_where(&json!({"done": false, "$or": [{"priority": {"$gte": 7}}, {"x": 1}]}))
            .unwrap();
        let order = [SortKey {
            path: FieldPath::parse("priority").unwrap(),
            descending: true,
        }];
        let priority = |p: &FieldPath| p.dotted() == "priority";
        let none = |_: &FieldPath| false;
        assert_eq!(form_for(Some(&q), &[], priority, none), Form::index());
        assert_eq!(form_for(None, &order, priority, none), Form::index());
        assert_eq!(
            form_for(Some(&q), &[], |p: &FieldPath| p.dotted() == "y", none),
            Form::Scan
        );
        // Numeric indexes count for the fields the query filters or sorts on.
        let numeric = form_for(Some(&q), &order, priority, |_: &FieldPath| true);
        let Form::Index { numeric: paths } = &numeric else {
            panic!("{numeric:?}")
        };
        let dotted: Vec<String> = paths.iter().map(|p| p.dotted()).collect();
        assert_eq!(dotted, ["done", "priority", "x"]);
        let q = parse_where(&json!({"priority": {"$gte": 7}})).unwrap();
        let f = order_by_sql_for(&order, Some(&q), &Form::Scan).unwrap();
        assert_eq!(f.sql, "(doc -> 'priority')::numeric DESC, id DESC");
        let f = order_by_sql_for(&order, Some(&q), &Form::index()).unwrap();
        assert_eq!(f.sql, "(doc -> 'priority') DESC, id DESC");
        let f = order_by_sql_for(&order, Some(&q), &numeric).unwrap();
        let expr =
            "(CASE WHEN jsonb_typeof(doc -> 'priority') = 'number' THEN (doc -> 'priority')::numeric END)";
        assert_eq!(f.sql, format!("{expr} DESC, id DESC"));
        // Number ranges on the numeric expression, no type guard; other operands as before.
        let f = where_sql(&q, &numeric).unwrap();
        assert_eq!(f.sql, format!("{expr} >= ?::numeric"));
        assert_eq!(f.params, vec![SqlParam::Numeric("7".to_string())]);
        let q = parse_where(&json!({"priority": {"$lt": 2.5}, "done": {"$gt": "a"}})).unwrap();
        let f = where_sql(&q, &numeric).unwrap();
        assert!(
            f.sql
                .starts_with(&format!("({expr} < ?::numeric AND (jsonb_typeof")),
            "{}",
            f.sql
        );
        assert_eq!(f.params[0], SqlParam::Numeric("2.5".to_string()));
        // A sort key the filter does not fix to numbers keeps the full type order.
        let f = order_by_sql_for(&order, None, &numeric).unwrap();
        assert!(f.sql.starts_with("CASE jsonb_typeof"), "{}", f.sql);
    }
}
