//! Record rules shared by every backend.

use crate::error::{PersistError, Result};

/// `update`'s shallow merge: the patch's top-level members replace the document's. The text is
/// what JSON.stringify would write (see [`crate::query::stringified`]), as for a put: stores
/// that sort arrays and objects by their stored text must find numbers written as JavaScript
/// writes them, in the members the patch did not touch too.
pub fn merge_patch(data: &str, patch: &str) -> Result<String> {
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_str(data)
        .map_err(|e| PersistError::internal(format!("stored record is not an object: {e}")))?;
    let patch: serde_json::Map<String, serde_json::Value> = serde_json::from_str(patch)
        .map_err(|_| PersistError::invalid_value("an update patch must be a JSON object"))?;
    for (k, v) in patch {
        doc.insert(k, v);
    }
    Ok(crate::query::stringified(&serde_json::Value::Object(doc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_shallowly_keeping_order() {
        let merged = merge_patch(r#"{"a":1,"b":{"x":1},"c":3}"#, r#"{"b":{"y":2},"d":4}"#).unwrap();
        assert_eq!(merged, r#"{"a":1,"b":{"y":2},"c":3,"d":4}"#);
        assert!(merge_patch("{}", "[1]").is_err());
        let merged = merge_patch(
            r#"{"v":[0.000005,1e+21,1e-7],"s":"\u0000é"}"#,
            r#"{"t":2.5}"#,
        )
        .unwrap();
        assert_eq!(
            merged,
            r#"{"v":[0.000005,1e+21,1e-7],"s":"\u0000é","t":2.5}"#
        );
    }
}
