//! A small durable key-value tree: the registry's certificates and blacklist, and the gateway's
//! own state (SMS codes and outbox, idempotency keys).
//!
//! Writes apply to sled in memory at once, so reads, compare-and-swap and `update` keep sled's
//! atomic semantics; then the caller waits until the write is durable.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::{Store, StoreError};

/// What every `Kv` of one [`Store`] shares to make its writes durable.
#[derive(Debug, Default)]
pub struct KvSync {}

/// A plain durable key-value tree.
#[derive(Clone, Debug)]
pub struct Kv {
    store: Store,
    #[allow(dead_code)]
    sync: Arc<KvSync>,
    tree: sled::Tree,
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Values are plain data (strings, numbers, enums): serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Kv {
    pub(crate) fn new(store: Store, sync: Arc<KvSync>, tree: sled::Tree) -> Kv {
        Kv { store, sync, tree }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// Values under a key prefix, in key order.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            out.push((k.to_vec(), decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Values under a key prefix, from `start` (inclusive), at most `limit`.
    pub fn scan_from<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.range(start.to_vec()..) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), decode(&k, &v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Applies puts (`Some`) and removes (`None`) atomically and makes them durable.
    pub fn commit<T: Serialize>(&self, changes: &[(Vec<u8>, Option<T>)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in changes {
            match v {
                Some(v) => batch.insert(k.clone(), encode(v)),
                None => batch.remove(k.clone()),
            }
        }
        self.tree.apply_batch(batch)?;
        self.store.sync()
    }

    /// Writes raw bytes (already encoded) atomically and durably.
    pub fn commit_raw(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in changes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch)?;
        self.store.sync()
    }

    pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
        encode(value)
    }

    /// Atomically replaces the value at `key` with `f(current)` (`None` removes it), makes it
    /// durable, and returns the new value. `f` may run more than once under contention.
    pub fn update<T: Serialize + DeserializeOwned>(
        &self,
        key: &[u8],
        mut f: impl FnMut(Option<T>) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        let mut decode_error = None;
        let new = self.tree.update_and_fetch(key, |old| {
            let current = match old.map(|v| serde_json::from_slice::<T>(v)) {
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    decode_error = Some(e.to_string());
                    None
                }
                None => None,
            };
            f(current).map(|v| encode(&v))
        })?;
        if let Some(message) = decode_error {
            return Err(StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                message,
            });
        }
        self.store.sync()?;
        match new {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` at `key` only if nothing is there; true when stored. Not made durable.
    pub fn insert_if_absent<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
    ) -> Result<bool, StoreError> {
        Ok(self
            .tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(encode(value)))?
            .is_ok())
    }

    /// Stores `value` at `key` and makes it durable.
    pub fn put<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        self.tree.insert(key, encode(value))?;
        self.store.sync()
    }

    /// Removes `key` (durably).
    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key)?;
        self.store.sync()
    }

    /// A fresh id, ascending across restarts.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        self.store.generate_id()
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}
