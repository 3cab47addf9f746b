//! Compare-and-set (`ifVersion`) for the backends that check it in Rust (SQLite, the keyspace,
//! p2p): one rule and one CONFLICT message per namespace. Postgres checks in SQL.

use crate::error::{PersistError, Result};
use crate::model::{IfVersion, KvEntry};

fn passes<V: PartialEq>(cond: &IfVersion<V>, current: Option<&V>) -> bool {
    match (cond, current) {
        (IfVersion::Any, _) | (IfVersion::Absent, None) => true,
        (IfVersion::Is(v), Some(cur)) => cur == v,
        _ => false,
    }
}

/// `current`: the live entry, None when the key is absent (or expired).
pub fn check_kv(current: Option<&KvEntry>, cond: &IfVersion<String>, key: &str) -> Result<()> {
    if passes(cond, current.map(|c| &c.version)) {
        return Ok(());
    }
    let found = current.map_or("absent".to_string(), |c| format!("version {}", c.version));
    Err(PersistError::conflict(format!(
        "kv key {key:?}: ifVersion does not match (the key is {found})"
    )))
}

/// `current`: the stored record's version, None when it does not exist.
pub fn check_record(
    current: Option<u64>,
    cond: &IfVersion<u64>,
    coll: &str,
    id: &str,
) -> Result<()> {
    if passes(cond, current.as_ref()) {
        return Ok(());
    }
    let message = match cond {
        IfVersion::Absent => format!("record {coll}/{id} already exists"),
        _ => {
            let found = current.map_or("absent".to_string(), |v| format!("at version {v}"));
            format!("record {coll}/{id}: ifVersion does not match (the record is {found})")
        }
    };
    Err(PersistError::conflict(message))
}
