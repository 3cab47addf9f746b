//! A `KeyValue` in process memory: the reference implementation of the four-call contract,
//! used by the core's tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{KeyLister, KeyValue, Stored};
use crate::error::Result;

#[derive(Default)]
pub struct MemoryKeyValue {
    entries: Mutex<BTreeMap<String, Stored>>,
}

impl MemoryKeyValue {
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn keys(&self) -> Vec<String> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

struct Pages(Vec<Vec<(String, Stored)>>);

#[async_trait]
impl KeyLister for Pages {
    async fn next_page(&mut self) -> Result<Option<Vec<(String, Stored)>>> {
        Ok(if self.0.is_empty() {
            None
        } else {
            Some(self.0.remove(0))
        })
    }
}

#[async_trait]
impl KeyValue for MemoryKeyValue {
    fn kind(&self) -> &'static str {
        "custom"
    }
    async fn get(&self, key: &str) -> Result<Option<Stored>> {
        Ok(self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned())
    }
    async fn put(&self, key: &str, value: Stored) -> Result<()> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), value);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Box<dyn KeyLister>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Newest-first pages of 7, so callers cannot lean on order or page size.
        let mut matching: Vec<(String, Stored)> = entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        matching.reverse();
        Ok(Box::new(Pages(
            matching.chunks(7).map(|c| c.to_vec()).collect(),
        )))
    }
}
