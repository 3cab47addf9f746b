//! Compiles the query language of `crate::query` to SQLite SQL over
//! `records(store_id, coll, id, data /* JSON object */, ...)`.
//!
//! The SQL gives exactly the results of [`Filter::matches`] and [`compare_docs`]; what cannot be
//! expressed exactly (equality or ranges on arrays and objects, numbers of magnitude 2^53 or
//! more) compiles to `None` and the caller evaluates that part in Rust.
//!
//! How the type strictness is kept: `json_type(data, P)` is `'null'`, `'true'`, `'false'`,
//! `'integer'`, `'real'`, `'text'`, `'array'`, `'object'`, or NULL when the path is missing, and
//! every comparison of `json_extract(data, P)` is paired with a `json_type` check of the
//! operand's type. The value expression of a path is always the text [`value_expr`] returns, so
//! expression indexes made from it are usable by the range and equality conditions.
//!
//! Every fragment may evaluate to NULL where the Rust side says "false"; that is harmless under
//! AND/OR in a WHERE clause, and negations are written `(...) IS NOT TRUE` so NULL negates to
//! true.

use rusqlite::types::Value as SqlValue;
use serde_json::{Number, Value};

use crate::query::{
    fixed_type_rank, ids_descending, lookup, type_rank, FieldPath, Filter, Op, SortKey,
};

/// A piece of SQL and its positional (`?`) parameters, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFragment {
    pub sql: String,
    pub params: Vec<SqlValue>,
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

    fn param(&mut self, v: SqlValue) -> &mut Self {
        self.sql.push('?');
        self.params.push(v);
        self
    }

    fn append(&mut self, other: SqlFragment) -> &mut Self {
        self.sql.push_str(&other.sql);
        self.params.extend(other.params);
        self
    }

    /// `json_extract(data, P)`.
    fn value(&mut self, path: &FieldPath) -> &mut Self {
        let (sql, params) = value_expr(path);
        self.sql.push_str(&sql);
        self.params.extend(params);
        self
    }

    /// `json_type(data, P)`.
    fn json_type(&mut self, path: &FieldPath) -> &mut Self {
        self.s("json_type(data, ");
        self.path_arg(path);
        self.s(")")
    }

    fn path_arg(&mut self, path: &FieldPath) -> &mut Self {
        match json_path_literal(path) {
            Some(lit) => self.s(&lit),
            None => self.param(SqlValue::Text(json_path(path))),
        }
    }

    /// A condition that the type rank of the value at `path` is in `ranks`
    /// (0 = missing ... 6 = object); `0` when none is allowed, `1` when all are.
    fn rank_in(&mut self, path: &FieldPath, ranks: impl Iterator<Item = u8>) -> &mut Self {
        let ranks: Vec<u8> = ranks.collect();
        let names: Vec<&str> = ranks.iter().flat_map(|r| type_names(*r)).copied().collect();
        if ranks.len() == 7 {
            return self.s("1");
        }
        if ranks.is_empty() {
            return self.s("0");
        }
        if ranks.contains(&0) {
            self.s("IFNULL(").json_type(path).s(", '') IN (''");
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

/// The `json_type` names of a type rank (0 = missing has none).
fn type_names(rank: u8) -> &'static [&'static str] {
    match rank {
        1 => &["null"],
        2 => &["true", "false"],
        3 => &["integer", "real"],
        4 => &["text"],
        5 => &["array"],
        6 => &["object"],
        _ => &[],
    }
}

const RANK_CASE_WHENS: &str = " WHEN 'null' THEN 1 WHEN 'true' THEN 2 WHEN 'false' THEN 2 \
     WHEN 'integer' THEN 3 WHEN 'real' THEN 3 WHEN 'text' THEN 4 WHEN 'array' THEN 5 \
     WHEN 'object' THEN 6 ELSE 0 END";

fn inlinable(seg: &str) -> bool {
    !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The SQLite JSON path of a field: `$."address"."city"`, each label JSON-quoted (SQLite
/// 3.45+ decodes JSON escapes in quoted labels).
fn json_path(path: &FieldPath) -> String {
    let mut out = String::from("$");
    for seg in &path.segments {
        out.push('.');
        out.push_str(&Value::String(seg.clone()).to_string());
    }
    out
}

/// `'$."address"."city"'` as a quoted SQL string literal, only when every segment matches
/// `[A-Za-z0-9_]+` (safe to inline); `None` otherwise.
pub fn json_path_literal(path: &FieldPath) -> Option<String> {
    if path.segments.is_empty() || !path.segments.iter().all(|s| inlinable(s)) {
        return None;
    }
    Some(format!("'{}'", json_path(path)))
}

/// `json_extract(data, '<path>')`, or `json_extract(data, ?)` with the path as a bound
/// parameter when it cannot be inlined. Expression indexes must be created from this text.
pub fn value_expr(path: &FieldPath) -> (String, Vec<SqlValue>) {
    match json_path_literal(path) {
        Some(lit) => (format!("json_extract(data, {lit})"), Vec::new()),
        None => (
            "json_extract(data, ?)".to_string(),
            vec![SqlValue::Text(json_path(path))],
        ),
    }
}

/// 2^53: below it every integer is an exact f64, so SQLite's exact int/real comparison and the
/// Rust side's f64 comparison agree.
const EXACT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The bound parameter of a number operand, `None` when its magnitude is 2^53 or more.
fn number_param(n: &Number) -> Option<SqlValue> {
    if let Some(i) = n.as_i64() {
        return ((i.unsigned_abs() as f64) < EXACT_LIMIT).then_some(SqlValue::Integer(i));
    }
    let f = n.as_f64()?;
    (f.abs() < EXACT_LIMIT).then_some(SqlValue::Real(f))
}

/// Type check and bound value of a scalar number or string operand.
fn typed_param(v: &Value) -> Option<(u8, SqlValue)> {
    match v {
        Value::Number(n) => Some((3, number_param(n)?)),
        Value::String(s) => Some((4, SqlValue::Text(s.clone()))),
        _ => None,
    }
}

/// `(<type check> AND json_extract(...) <cmp> ?)` for a number or string operand.
fn compare(path: &FieldPath, cmp: &str, v: &Value) -> Option<SqlFragment> {
    let (rank, param) = typed_param(v)?;
    let mut f = SqlFragment::new();
    f.s("(")
        .rank_in(path, std::iter::once(rank))
        .s(" AND ")
        .value(path)
        .s(" ")
        .s(cmp)
        .s(" ")
        .param(param)
        .s(")");
    Some(f)
}

/// The value at `path` equals `v` (same type, same value); `None` for arrays, objects and
/// huge numbers.
fn eq_sql(path: &FieldPath, v: &Value) -> Option<SqlFragment> {
    let mut f = SqlFragment::new();
    match v {
        Value::Null => {
            f.json_type(path).s(" = 'null'");
        }
        Value::Bool(b) => {
            f.json_type(path)
                .s(if *b { " = 'true'" } else { " = 'false'" });
        }
        Value::Number(_) | Value::String(_) => return compare(path, "=", v),
        Value::Array(_) | Value::Object(_) => return None,
    }
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
    let mut parts: Vec<SqlFragment> = Vec::new();
    let mut types: Vec<&str> = Vec::new();
    let mut numbers: Vec<SqlValue> = Vec::new();
    let mut strings: Vec<SqlValue> = Vec::new();
    for v in vs {
        match v {
            Value::Null => types.push("null"),
            Value::Bool(true) => types.push("true"),
            Value::Bool(false) => types.push("false"),
            Value::Number(n) => numbers.push(number_param(n)?),
            Value::String(s) => strings.push(SqlValue::Text(s.clone())),
            Value::Array(_) | Value::Object(_) => return None,
        }
    }
    types.sort_unstable();
    types.dedup();
    if !types.is_empty() {
        let mut f = SqlFragment::new();
        f.json_type(path).s(" IN (");
        for (i, t) in types.iter().enumerate() {
            f.s(if i > 0 { ", '" } else { "'" }).s(t).s("'");
        }
        f.s(")");
        parts.push(f);
    }
    for (rank, params) in [(3u8, numbers), (4u8, strings)] {
        if params.is_empty() {
            continue;
        }
        let mut f = SqlFragment::new();
        f.s("(")
            .rank_in(path, std::iter::once(rank))
            .s(" AND ")
            .value(path)
            .s(" IN (");
        for (i, p) in params.into_iter().enumerate() {
            if i > 0 {
                f.s(", ");
            }
            f.param(p);
        }
        f.s("))");
        parts.push(f);
    }
    Some(join(parts, " OR ", "0"))
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
    let names: Vec<&str> = [false, true]
        .into_iter()
        .filter(|c| accept(*c))
        .map(|c| if c { "true" } else { "false" })
        .collect();
    let mut f = SqlFragment::new();
    match names.as_slice() {
        [] => f.s("0"),
        [one] => f.json_type(path).s(" = '").s(one).s("'"),
        _ => f.json_type(path).s(" IN ('false', 'true')"),
    };
    f
}

fn range_sql(path: &FieldPath, op: &Op) -> Option<SqlFragment> {
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
            f.json_type(path).s(" = 'null'");
            f
        } else {
            literal("0")
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
        Value::Number(_) | Value::String(_) => compare(path, cmp, v),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn prefix_sql(path: &FieldPath, prefix: &str) -> SqlFragment {
    let mut f = SqlFragment::new();
    if prefix.is_empty() {
        f.json_type(path).s(" = 'text'");
        return f;
    }
    f.s("(")
        .json_type(path)
        .s(" = 'text' AND ")
        .value(path)
        .s(" >= ");
    f.param(SqlValue::Text(prefix.to_string()));
    if let Some(upper) = crate::validate::prefix_successor(prefix) {
        f.s(" AND ")
            .value(path)
            .s(" < ")
            .param(SqlValue::Text(upper));
    }
    f.s(")");
    f
}

fn cond_sql(path: &FieldPath, op: &Op) -> Option<SqlFragment> {
    Some(match op {
        Op::Eq(v) => eq_sql(path, v)?,
        Op::Ne(v) => not(eq_sql(path, v)?),
        Op::Gt(_) | Op::Gte(_) | Op::Lt(_) | Op::Lte(_) => range_sql(path, op)?,
        Op::In(vs) => in_sql(path, vs)?,
        Op::Nin(vs) if vs.is_empty() => literal("1"),
        Op::Nin(vs) => not(in_sql(path, vs)?),
        Op::Exists(true) => {
            let mut f = SqlFragment::new();
            f.json_type(path).s(" IS NOT NULL");
            f
        }
        Op::Exists(false) => {
            let mut f = SqlFragment::new();
            f.json_type(path).s(" IS NULL");
            f
        }
        Op::Prefix(p) => prefix_sql(path, p),
    })
}

/// A WHERE condition equivalent to [`Filter::matches`]; `None` when some part cannot be
/// expressed exactly (equality or ranges on arrays/objects, numbers of magnitude >= 2^53) and
/// the caller must evaluate the filter in Rust.
pub fn where_sql(filter: &Filter) -> Option<SqlFragment> {
    match filter {
        Filter::And(subs) => Some(join(
            subs.iter().map(where_sql).collect::<Option<Vec<_>>>()?,
            " AND ",
            "1",
        )),
        Filter::Or(subs) => Some(join(
            subs.iter().map(where_sql).collect::<Option<Vec<_>>>()?,
            " OR ",
            "0",
        )),
        Filter::Not(sub) => Some(not(where_sql(sub)?)),
        Filter::Cond { path, op } => cond_sql(path, op),
    }
}

/// The path argument for ORDER BY, which has no parameters: the validated literal, or (for
/// other labels) the path as a hex blob literal cast to text, which no input can break out of.
fn order_path_arg(path: &FieldPath) -> String {
    match json_path_literal(path) {
        Some(lit) => lit,
        None => {
            let hex: String = json_path(path)
                .bytes()
                .map(|b| format!("{b:02X}"))
                .collect();
            format!("CAST(X'{hex}' AS TEXT)")
        }
    }
}

/// The body of an ORDER BY clause implementing [`compare_docs`]: per key the type rank (a CASE
/// on `json_type`) then the `json_extract` value, both in the key's direction; then `id ASC`.
pub fn order_by_sql(order: &[SortKey]) -> String {
    order_by_sql_for(order, None)
}

/// [`order_by_sql`] for a query with `filter`: a sort key whose JSON type the filter already
/// fixes (`priority >= 7` admits numbers only) needs no type-rank term, which lets SQLite walk
/// an expression index in order and stop at the LIMIT instead of sorting every match.
pub fn order_by_sql_for(order: &[SortKey], filter: Option<&Filter>) -> String {
    let mut out = String::new();
    for key in order {
        let dir = if key.descending { "DESC" } else { "ASC" };
        let p = order_path_arg(&key.path);
        if filter.and_then(|f| fixed_type_rank(f, &key.path)).is_none() {
            out.push_str(&format!(
                "CASE json_type(data, {p}){RANK_CASE_WHENS} {dir}, "
            ));
        }
        out.push_str(&format!("json_extract(data, {p}) {dir}, "));
    }
    out.push_str(if ids_descending(order) {
        "id DESC"
    } else {
        "id ASC"
    });
    out
}

/// The value at the key's path equals the after doc's value `v` in the sort order.
fn key_eq(path: &FieldPath, v: Option<&Value>) -> Option<SqlFragment> {
    match v {
        None => {
            let mut f = SqlFragment::new();
            f.json_type(path).s(" IS NULL");
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
                f.json_type(path)
                    .s(if desc { " = 'false'" } else { " = 'true'" });
                parts.push(f);
            }
        }
        Some(v @ (Value::Number(_) | Value::String(_))) => {
            parts.push(compare(path, if desc { "<" } else { ">" }, v).ok_or(())?);
        }
        Some(Value::Array(_) | Value::Object(_)) => return Err(()),
    }
    Ok(match parts.len() {
        0 => None,
        _ => Some(join(parts, " OR ", "0")),
    })
}

/// A keyset condition selecting the rows strictly after the document (`after_id`, `after_data`)
/// in the order of `order` (then id ascending), as an expanded OR chain:
/// `A1 OR (E1 AND A2) OR ... OR (E1 AND ... AND En AND id > ?)`. `None` when a sort key value of
/// that document is an array, an object or a number of magnitude >= 2^53.
pub fn after_sql(order: &[SortKey], after_id: &str, after_data: &Value) -> Option<SqlFragment> {
    let mut terms: Vec<SqlFragment> = Vec::new();
    let mut equal_prefix: Vec<SqlFragment> = Vec::new();
    for key in order {
        let v = lookup(after_data, &key.path);
        let after = key_after(&key.path, v, key.descending).ok()?;
        if let Some(a) = after {
            let mut conj = equal_prefix.clone();
            conj.push(a);
            terms.push(join(conj, " AND ", "1"));
        }
        equal_prefix.push(key_eq(&key.path, v)?);
    }
    let mut id = SqlFragment::new();
    id.s(if ids_descending(order) {
        "id < "
    } else {
        "id > "
    })
    .param(SqlValue::Text(after_id.to_string()));
    equal_prefix.push(id);
    terms.push(join(equal_prefix, " AND ", "1"));
    Some(join(terms, " OR ", "0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{compare_docs, parse_query, parse_where, Query};
    use rusqlite::{params_from_iter, Connection};
    use serde_json::json;
    use std::cmp::Ordering;

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    /// A tiny deterministic generator (Knuth's MMIX LCG).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }
    }

    const FIELDS: &[&str] = &["a", "b", "s", "t", "n.x", "n.y.z", "we ird\"k'); --", "é.ß"];

    fn scalars() -> Vec<Value> {
        vec![
            json!(null),
            json!(true),
            json!(false),
            json!(-3),
            json!(-1),
            json!(0),
            json!(1),
            json!(2),
            json!(3),
            json!(7),
            json!(-1.5),
            json!(0.5),
            json!(1.0),
            json!(2.0),
            json!(2.5),
            json!(-0.0),
            json!(1e-3),
            json!(9007199254740991i64),
            json!(-4.5e15),
            json!(""),
            json!("a"),
            json!("ab"),
            json!("abc"),
            json!("abd"),
            json!("B"),
            json!("b"),
            json!("é"),
            json!("éa"),
            json!("日"),
            json!("日本"),
            json!("😀"),
            json!("a b"),
            json!("a\"q'"),
            json!("back\\slash"),
            json!("line\nbreak\t"),
            json!("ab\u{7f}"),
            json!("\u{D7FF}x"),
            json!("\u{E000}"),
            json!("\u{FFFF}"),
            json!("\u{10FFFF}"),
            json!("1"),
        ]
    }

    fn composites() -> Vec<Value> {
        vec![
            json!([]),
            json!([1]),
            json!([1.0]),
            json!([1, 2]),
            json!(["a"]),
            json!([null]),
            json!([{"x": 1}]),
            json!(["é", "\"q\\"]),
            json!({}),
            json!({"x": 1}),
            json!({"x": "a"}),
            json!({"x": 1, "y": 2}),
            json!({"y": 2, "x": 1}),
            json!({"y": {"z": 1.5}}),
            json!({"k": "line\n"}),
        ]
    }

    fn random_value(rng: &mut Lcg) -> Value {
        if rng.chance(85) {
            rng.pick(&scalars()).clone()
        } else {
            rng.pick(&composites()).clone()
        }
    }

    /// Sets `value` at a dot path, creating objects on the way (replacing non-objects).
    fn set_path(doc: &mut Value, dotted: &str, value: Value) {
        let segs: Vec<&str> = dotted.split('.').collect();
        let mut cur = doc;
        for seg in &segs[..segs.len() - 1] {
            let obj = cur.as_object_mut().unwrap();
            let entry = obj.entry(seg.to_string()).or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            cur = entry;
        }
        cur.as_object_mut()
            .unwrap()
            .insert(segs[segs.len() - 1].to_string(), value);
    }

    fn generate_docs(rng: &mut Lcg, count: usize) -> Vec<(String, Value)> {
        let prefixes = ["A", "a", "é", "z", "Z", "0", "日"];
        let mut docs = Vec::new();
        for i in 0..count {
            let mut doc = json!({});
            for field in FIELDS {
                if rng.chance(20) {
                    continue; // missing
                }
                let v = match *field {
                    "b" if rng.chance(70) => json!(rng.below(8) as i64 - 2),
                    "s" if rng.chance(70) => {
                        let strings: Vec<Value> =
                            scalars().into_iter().filter(Value::is_string).collect();
                        rng.pick(&strings).clone()
                    }
                    "t" if rng.chance(80) => {
                        rng.pick(&[json!(true), json!(false), json!(null)]).clone()
                    }
                    _ => random_value(rng),
                };
                set_path(&mut doc, field, v);
            }
            // Sometimes a non-object where a path expects one.
            if rng.chance(10) {
                doc["n"] = random_value(rng);
            }
            let id = format!("{}{}", rng.pick(&prefixes), (i * 7919) % 1000);
            docs.push((id, doc));
        }
        docs
    }

    fn setup(docs: &[(String, Value)]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE records(store_id INTEGER, coll TEXT, id TEXT, data TEXT, version INTEGER,
               created_at TEXT, updated_at TEXT, PRIMARY KEY(store_id, coll, id));",
        )
        .unwrap();
        let mut insert = conn
            .prepare("INSERT INTO records VALUES (?1, ?2, ?3, ?4, 1, '', '')")
            .unwrap();
        for (id, doc) in docs {
            // As index.js stores it: JSON.stringify's text.
            let text = crate::query::stringified(doc);
            insert.execute(rusqlite::params![1, "c", id, text]).unwrap();
            // Noise in another store and collection.
            insert.execute(rusqlite::params![2, "c", id, text]).unwrap();
            insert.execute(rusqlite::params![1, "d", id, text]).unwrap();
        }
        drop(insert);
        conn
    }

    fn run_sql(
        conn: &Connection,
        filter: Option<&SqlFragment>,
        after: Option<&SqlFragment>,
        order: &str,
        limit: Option<usize>,
    ) -> Vec<String> {
        let mut sql =
            String::from("SELECT id, data FROM records WHERE store_id = 1 AND coll = 'c'");
        let mut params: Vec<SqlValue> = Vec::new();
        for f in [filter, after].into_iter().flatten() {
            sql.push_str(&format!(" AND ({})", f.sql));
            params.extend(f.params.iter().cloned());
        }
        sql.push_str(&format!(" ORDER BY {order}"));
        if let Some(l) = limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
        let rows = stmt
            .query_map(params_from_iter(params), |r| r.get::<_, String>(0))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    fn rust_ids(
        docs: &[(String, Value)],
        filter: Option<&Filter>,
        order: &[SortKey],
    ) -> Vec<String> {
        let mut hits: Vec<&(String, Value)> = docs
            .iter()
            .filter(|(_, d)| filter.is_none_or(|f| f.matches(d)))
            .collect();
        hits.sort_by(|(ai, a), (bi, b)| compare_docs(order, ai, a, bi, b));
        hits.into_iter().map(|(id, _)| id.clone()).collect()
    }

    fn not_exact(v: &Value) -> bool {
        match v {
            Value::Array(_) | Value::Object(_) => true,
            Value::Number(n) => n.as_f64().unwrap().abs() >= EXACT_LIMIT,
            _ => false,
        }
    }

    /// Independent statement of when `where_sql` must give up.
    fn should_compile(f: &Filter) -> bool {
        match f {
            Filter::And(s) | Filter::Or(s) => s.iter().all(should_compile),
            Filter::Not(s) => should_compile(s),
            Filter::Cond { op, .. } => match op {
                Op::Eq(v) | Op::Ne(v) | Op::Gt(v) | Op::Gte(v) | Op::Lt(v) | Op::Lte(v) => {
                    !not_exact(v)
                }
                Op::In(vs) | Op::Nin(vs) => !vs.iter().any(not_exact),
                Op::Exists(_) | Op::Prefix(_) => true,
            },
        }
    }

    fn random_operand(rng: &mut Lcg) -> Value {
        if rng.chance(3) {
            return rng
                .pick(&[json!(9007199254740992i64), json!(1e300), json!(u64::MAX)])
                .clone();
        }
        random_value(rng)
    }

    fn random_cond(rng: &mut Lcg) -> Value {
        let field = *rng.pick(FIELDS);
        let ops = [
            "eq", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$prefix",
        ];
        let op = *rng.pick(&ops);
        let operand = match op {
            "$in" | "$nin" => {
                let n = rng.below(4);
                Value::Array((0..n).map(|_| random_operand(rng)).collect())
            }
            "$exists" => json!(rng.chance(50)),
            "$prefix" => {
                let p = [
                    "",
                    "a",
                    "ab",
                    "é",
                    "日",
                    "\u{D7FF}",
                    "\u{10FFFF}",
                    "b",
                    "line",
                    "1",
                ];
                json!(rng.pick(&p))
            }
            _ => random_operand(rng),
        };
        let mut w = serde_json::Map::new();
        if op == "eq" {
            w.insert(field.to_string(), operand);
        } else {
            let mut ops = serde_json::Map::new();
            ops.insert(op.to_string(), operand);
            if rng.chance(15) {
                ops.insert("$exists".to_string(), json!(true));
            }
            w.insert(field.to_string(), Value::Object(ops));
        }
        Value::Object(w)
    }

    fn random_where(rng: &mut Lcg, depth: usize) -> Value {
        if depth == 0 || rng.chance(45) {
            return random_cond(rng);
        }
        match rng.below(4) {
            0 => {
                json!({"$and": (0..1 + rng.below(3)).map(|_| random_where(rng, depth - 1)).collect::<Vec<_>>()})
            }
            1 => {
                json!({"$or": (0..1 + rng.below(3)).map(|_| random_where(rng, depth - 1)).collect::<Vec<_>>()})
            }
            2 => json!({"$not": random_where(rng, depth - 1)}),
            _ => {
                // Several top-level keys: AND.
                let mut a = random_cond(rng);
                let b = random_cond(rng);
                for (k, v) in b.as_object().unwrap() {
                    a.as_object_mut()
                        .unwrap()
                        .entry(k.clone())
                        .or_insert(v.clone());
                }
                a
            }
        }
    }

    fn random_order(rng: &mut Lcg) -> Vec<SortKey> {
        (0..rng.below(4))
            .map(|_| SortKey {
                path: path(rng.pick::<&str>(FIELDS)),
                descending: rng.chance(50),
            })
            .collect()
    }

    #[test]
    fn differential_filters() {
        let mut rng = Lcg(42);
        let docs = generate_docs(&mut rng, 300);
        let conn = setup(&docs);
        let (mut compiled, mut total, mut nonempty) = (0, 0, 0);
        for _ in 0..1500 {
            let w = random_where(&mut rng, 3);
            let filter = parse_where(&w).unwrap();
            let expected = rust_ids(&docs, Some(&filter), &[]);
            total += 1;
            match where_sql(&filter) {
                Some(frag) => {
                    assert!(should_compile(&filter), "compiled but should not: {w}");
                    compiled += 1;
                    if !expected.is_empty() && expected.len() < docs.len() {
                        nonempty += 1;
                    }
                    let got = run_sql(&conn, Some(&frag), None, "id ASC", None);
                    assert_eq!(got, expected, "where {w}\nsql {}", frag.sql);
                }
                None => assert!(!should_compile(&filter), "did not compile: {w}"),
            }
        }
        assert!(compiled * 10 > total * 6, "{compiled} of {total} compiled");
        assert!(
            nonempty * 2 > compiled,
            "{nonempty} of {compiled} selective"
        );
    }

    #[test]
    fn differential_orders_and_paging() {
        let mut rng = Lcg(7);
        let docs = generate_docs(&mut rng, 300);
        let conn = setup(&docs);
        let (mut sql_pages, mut rust_pages) = (0, 0);
        for round in 0..80 {
            let order = random_order(&mut rng);
            let mut w = if round % 3 == 0 {
                json!({})
            } else {
                random_where(&mut rng, 2)
            };
            if round % 4 == 1 && !order.is_empty() {
                // A range on the first sort key: its type is fixed, so the rank term is dropped.
                let field = order[0].path.dotted();
                w = json!({"$and": [w, {field: {"$gte": -5}}]});
            }
            let filter = parse_where(&w).unwrap();
            let order_sql = order_by_sql_for(&order, Some(&filter));
            let Some(frag) = where_sql(&filter) else {
                continue;
            };
            let expected = rust_ids(&docs, Some(&filter), &order);
            assert_eq!(
                run_sql(&conn, Some(&frag), None, &order_sql, None),
                expected,
                "where {w} order {order:?}"
            );

            // Page through with `after` cursors.
            let page = 1 + rng.below(25);
            let mut paged: Vec<String> = Vec::new();
            loop {
                let next: Vec<String> = match paged.last() {
                    None => run_sql(&conn, Some(&frag), None, &order_sql, Some(page)),
                    Some(last) => {
                        let after_doc = &docs.iter().find(|(id, _)| id == last).unwrap().1;
                        match after_sql(&order, last, after_doc) {
                            Some(a) => {
                                sql_pages += 1;
                                run_sql(&conn, Some(&frag), Some(&a), &order_sql, Some(page))
                            }
                            None => {
                                assert!(
                                    order
                                        .iter()
                                        .any(|k| lookup(after_doc, &k.path).is_some_and(not_exact)),
                                    "after_sql gave up on {after_doc} for {order:?}"
                                );
                                rust_pages += 1;
                                let pos = expected.iter().position(|id| id == last).unwrap();
                                expected[pos + 1..].iter().take(page).cloned().collect()
                            }
                        }
                    }
                };
                if next.is_empty() {
                    break;
                }
                paged.extend(next);
                assert!(
                    paged.len() <= expected.len(),
                    "paging overran: {w} {order:?}"
                );
            }
            assert_eq!(
                paged, expected,
                "paged where {w} order {order:?} page {page}"
            );
        }
        assert!(
            sql_pages > 500,
            "{sql_pages} SQL pages, {rust_pages} Rust pages"
        );
    }

    #[test]
    fn differential_after_any_doc() {
        let mut rng = Lcg(99);
        let docs = generate_docs(&mut rng, 250);
        let conn = setup(&docs);
        let mut checked = 0;
        for _ in 0..60 {
            let order = random_order(&mut rng);
            let order_sql = order_by_sql(&order);
            for _ in 0..8 {
                let (aid, adoc) = rng.pick(&docs);
                let Some(a) = after_sql(&order, aid, adoc) else {
                    assert!(order
                        .iter()
                        .any(|k| lookup(adoc, &k.path).is_some_and(not_exact)));
                    continue;
                };
                let expected: Vec<String> = rust_ids(&docs, None, &order)
                    .into_iter()
                    .filter(|id| {
                        let d = &docs.iter().find(|(i, _)| i == id).unwrap().1;
                        compare_docs(&order, id, d, aid, adoc) == Ordering::Greater
                    })
                    .collect();
                assert_eq!(
                    run_sql(&conn, None, Some(&a), &order_sql, None),
                    expected,
                    "after {aid} {adoc} order {order:?}\nsql {}",
                    a.sql
                );
                checked += 1;
            }
        }
        // Also a cursor doc that is not in the table (deleted / filtered out).
        let order = vec![SortKey {
            path: path("b"),
            descending: true,
        }];
        let ghost = json!({"b": 2.5});
        let a = after_sql(&order, "m", &ghost).unwrap();
        let expected: Vec<String> = rust_ids(&docs, None, &order)
            .into_iter()
            .filter(|id| {
                let d = &docs.iter().find(|(i, _)| i == id).unwrap().1;
                compare_docs(&order, id, d, "m", &ghost) == Ordering::Greater
            })
            .collect();
        assert_eq!(
            run_sql(&conn, None, Some(&a), &order_by_sql(&order), None),
            expected
        );
        assert!(checked > 300, "{checked}");
    }

    #[test]
    fn path_literals() {
        assert_eq!(
            json_path_literal(&path("address.city")).unwrap(),
            "'$.\"address\".\"city\"'"
        );
        assert_eq!(
            json_path_literal(&path("a_1.B2")).unwrap(),
            "'$.\"a_1\".\"B2\"'"
        );
        assert_eq!(json_path_literal(&path("a b")), None);
        assert_eq!(json_path_literal(&path("a'")), None);
        assert_eq!(json_path_literal(&path("é")), None);
        assert_eq!(json_path_literal(&path("a\"")), None);
        assert_eq!(json_path_literal(&FieldPath { segments: vec![] }), None);
        assert_eq!(
            value_expr(&path("priority")),
            ("json_extract(data, '$.\"priority\"')".into(), vec![])
        );
        assert_eq!(
            value_expr(&path("x.it's")),
            (
                "json_extract(data, ?)".into(),
                vec![SqlValue::Text("$.\"x\".\"it's\"".into())]
            )
        );
        assert_eq!(
            value_expr(&path("q\"\\")).1,
            vec![SqlValue::Text("$.\"q\\\"\\\\\"".into())]
        );
    }

    #[test]
    fn odd_labels_resolve_in_sqlite() {
        let conn = Connection::open_in_memory().unwrap();
        for key in [
            "it's",
            "q\"uote",
            "back\\slash",
            "sp ace",
            "é",
            "[0]",
            "$",
            "nul\0x",
            "tab\t",
        ] {
            let mut doc = serde_json::Map::new();
            doc.insert(key.to_string(), json!({"in": key}));
            let data = serde_json::to_string(&doc).unwrap();
            let p = FieldPath {
                segments: vec![key.to_string(), "in".to_string()],
            };
            let (expr, params) = value_expr(&p);
            let sql = format!("SELECT {expr} FROM (SELECT ? AS data)");
            let mut all = vec![SqlValue::Text(data.clone())];
            all.extend(params);
            // Bind in text order: the path parameter comes before the data.
            all.rotate_left(1);
            let got: String = conn
                .query_row(&sql, params_from_iter(all), |r| r.get(0))
                .unwrap();
            assert_eq!(got, key);
            // ORDER BY's parameter-free form resolves the same label.
            let ord = order_by_sql(&[SortKey {
                path: p.clone(),
                descending: false,
            }]);
            assert!(ord.contains("CAST(X'"), "{ord}");
            assert!(!ord.contains(key) || key == "$", "{ord}");
            let got: String = conn
                .query_row(
                    &format!(
                        "SELECT json_extract(data, {}) FROM (SELECT ? AS data)",
                        order_path_arg(&p)
                    ),
                    [data],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(got, key);
        }
    }

    #[test]
    fn compiled_sql_shapes() {
        let w = |v: Value| where_sql(&parse_where(&v).unwrap());
        let f = w(json!({"priority": {"$gte": 3}})).unwrap();
        assert_eq!(
            f.sql,
            "(json_type(data, '$.\"priority\"') IN ('integer', 'real') AND json_extract(data, '$.\"priority\"') >= ?)"
        );
        assert_eq!(f.params, vec![SqlValue::Integer(3)]);
        let f = w(json!({"s": "x"})).unwrap();
        assert_eq!(
            f.sql,
            "(json_type(data, '$.\"s\"') = 'text' AND json_extract(data, '$.\"s\"') = ?)"
        );
        assert_eq!(w(json!({})).unwrap().sql, "1");
        assert_eq!(
            w(json!({"a": null})).unwrap().sql,
            "json_type(data, '$.\"a\"') = 'null'"
        );
        assert_eq!(w(json!({"a": {"$gt": null}})).unwrap().sql, "0");
        assert_eq!(w(json!({"a": {"$in": []}})).unwrap().sql, "0");
        assert_eq!(w(json!({"a": {"$nin": []}})).unwrap().sql, "1");
        assert_eq!(
            w(json!({"a": {"$exists": false}})).unwrap().sql,
            "json_type(data, '$.\"a\"') IS NULL"
        );
        assert_eq!(
            w(json!({"a": {"$ne": true}})).unwrap().sql,
            "(json_type(data, '$.\"a\"') = 'true') IS NOT TRUE"
        );
        let f = w(json!({"a": {"$prefix": "ab"}})).unwrap();
        assert_eq!(
            f.params,
            vec![SqlValue::Text("ab".into()), SqlValue::Text("ac".into())]
        );
        let f = w(json!({"a": {"$in": [1, "x", null, 2.5, "y", true]}})).unwrap();
        assert_eq!(
            f.params,
            vec![
                SqlValue::Integer(1),
                SqlValue::Real(2.5),
                SqlValue::Text("x".into()),
                SqlValue::Text("y".into())
            ]
        );
        // Not exactly expressible: arrays, objects, huge numbers.
        assert!(w(json!({"a": [1]})).is_none());
        assert!(w(json!({"a": {"x": 1}})).is_none());
        assert!(w(json!({"a": {"$gt": [1]}})).is_none());
        assert!(w(json!({"a": {"$in": [1, {}]}})).is_none());
        assert!(w(json!({"$or": [{"b": 1}, {"$not": {"a": {"$ne": []}}}]})).is_none());
        assert!(w(json!({"a": 9007199254740992i64})).is_none());
        assert!(w(json!({"a": 9007199254740991i64})).is_some());
        assert!(w(json!({"a": {"$lt": -1e20}})).is_none());
        // Injection attempts only ever reach SQL as parameters.
        let f = w(json!({"x') OR 1=1 --": {"$eq": "'; DROP TABLE records; --"}})).unwrap();
        assert!(
            !f.sql.contains("DROP") && !f.sql.contains("OR 1=1"),
            "{}",
            f.sql
        );
        let ord = order_by_sql(&[SortKey {
            path: path("x') OR 1=1 --"),
            descending: true,
        }]);
        assert!(!ord.contains("OR 1=1"), "{ord}");
    }

    #[test]
    fn order_and_after_shapes() {
        assert_eq!(order_by_sql(&[]), "id ASC");
        let o = order_by_sql(&[SortKey {
            path: path("p"),
            descending: true,
        }]);
        assert!(
            o.starts_with("CASE json_type(data, '$.\"p\"') WHEN 'null' THEN 1"),
            "{o}"
        );
        assert!(
            o.ends_with("ELSE 0 END DESC, json_extract(data, '$.\"p\"') DESC, id DESC"),
            "{o}"
        );
        let a = after_sql(&[], "x", &json!({})).unwrap();
        assert_eq!(a.sql, "id > ?");
        assert_eq!(a.params, vec![SqlValue::Text("x".into())]);
        let order = [SortKey {
            path: path("p"),
            descending: false,
        }];
        assert!(after_sql(&order, "x", &json!({"p": [1]})).is_none());
        assert!(after_sql(&order, "x", &json!({"p": {}})).is_none());
        assert!(after_sql(&order, "x", &json!({"p": 1e16})).is_none());
        assert!(after_sql(&order, "x", &json!({"p": 1})).is_some());
        assert!(after_sql(&order, "x", &json!({})).is_some());
    }

    #[test]
    fn indexes_are_used() {
        let conn = setup(&[("a".into(), json!({"priority": 1, "tag": "x"}))]);
        let (expr, params) = value_expr(&path("priority"));
        assert!(params.is_empty());
        conn.execute_batch(&format!(
            "CREATE INDEX ix_prio ON records(store_id, coll, {expr});"
        ))
        .unwrap();
        let (expr, _) = value_expr(&path("tag"));
        conn.execute_batch(&format!(
            "CREATE INDEX ix_tag ON records(store_id, coll, {expr});"
        ))
        .unwrap();
        for (w, index) in [
            (json!({"priority": {"$gte": 3}}), "ix_prio"),
            (json!({"priority": {"$lt": 3, "$gt": 1}}), "ix_prio"),
            (json!({"priority": 3}), "ix_prio"),
            (json!({"tag": "x"}), "ix_tag"),
            (json!({"tag": {"$in": ["x", "y"]}}), "ix_tag"),
            (json!({"tag": {"$prefix": "x"}}), "ix_tag"),
        ] {
            let f = where_sql(&parse_where(&w).unwrap()).unwrap();
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT id, data FROM records WHERE store_id = 1 AND coll = 'c' AND ({})",
                f.sql
            );
            let mut stmt = conn.prepare(&sql).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params_from_iter(f.params), |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(plan.iter().any(|p| p.contains(index)), "{w}: {plan:?}");
        }
    }

    #[test]
    fn parse_query_feeds_the_compiler() {
        let q: Query = parse_query(
            &json!({"where": {"a": {"$gt": 1}}, "orderBy": [{"field": "a",
            "direction": "desc"}], "limit": 2, "after": "x"}),
        )
        .unwrap();
        assert!(where_sql(q.filter.as_ref().unwrap()).is_some());
        assert!(order_by_sql(&q.order).contains("DESC"));
    }
}
