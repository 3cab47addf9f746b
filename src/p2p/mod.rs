//! The p2p backend: every peer keeps a full local replica (automerge documents, see
//! [`replica`]) under the store's `path`, answers every read from it, and syncs it with the
//! peers it finds (mDNS or Kademlia, see [`net`]).
//!
//! Semantics while peers are apart:
//! - kv and records: compare-and-set (`ifVersion`) checks the local replica only; two peers that
//!   both pass their check converge on one winner per key (kv) or per field (records), the same on
//!   every peer. A record's `version` is the writer's local count and may repeat across peers.
//! - events: `append` adds to this peer's own log; `seq` is the position in the merged order
//!   (ts, peer, index) of the events this peer has. Appends made while apart are ordered by their
//!   Lamport timestamps once the peers meet, so a peer's `seq` numbers are final only for events
//!   every peer has seen; `expectedSeq` compares with the local merged stream. Subscriptions
//!   follow arrival order (`ev_follow_page`), so events merged in behind ones already delivered
//!   are still delivered, once.
//! - blobs: metadata syncs with the documents; chunk bodies are content-addressed files fetched
//!   from peers on first read.

pub mod net;
pub mod replica;
pub mod swarm;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use automerge::transaction::Transactable;
use sha2::{Digest, Sha256};

use crate::backend::{Backend, BlobReader, BlobUpload};
use crate::chunks::Chunker;
use crate::clock::{iso8601, new_version, now_ms};
use crate::config::{file_name_for, P2pConfig};
use crate::error::{PersistError, Result};
use crate::model::*;
use crate::query::{compare_docs, FieldPath, Filter, SortKey};
use crate::versions::{check_kv, check_record};
use replica::{io_err, BlobRec, Rec, Replica, BLOBS_DOC, EVENTS_DOC, KV_DOC, RECORDS_PREFIX};

pub use net::{SyncEvent, SyncHandle};

/// Blob bodies are cut into chunks of at most this many bytes.
const CHUNK: usize = 1 << 20;

pub struct Shared {
    rep: Mutex<Replica>,
    /// Bumped on every change (local or from a peer): wakes `ev_wait` and the network task.
    changed: tokio::sync::watch::Sender<u64>,
    closed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> Result<MutexGuard<'_, Replica>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(PersistError::closed());
        }
        Ok(self.rep.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Runs `f` on the replica, then commits and persists `doc`; on failure the document's
    /// pending operations are rolled back and its view rebuilt.
    fn write<R>(&self, doc: &str, f: impl FnOnce(&mut Replica) -> Result<R>) -> Result<R> {
        let mut rep = self.lock()?;
        match f(&mut rep) {
            Ok(r) => {
                rep.persist(doc)?;
                drop(rep);
                self.bump();
                Ok(r)
            }
            Err(e) => {
                if let Some(d) = rep.docs.get_mut(doc) {
                    if d.pending_ops() > 0 {
                        d.rollback();
                        rep.rebuild(doc)?;
                    }
                }
                Err(e)
            }
        }
    }
}

pub struct P2pBackend {
    shared: Arc<Shared>,
    net: Option<net::Net>,
}

/// The folder of a store's replica: `path` when given, else `./.persist/<name>.p2p/`.
pub fn replica_dir(name: &str, cfg: &P2pConfig, cwd: &std::path::Path) -> PathBuf {
    match &cfg.path {
        Some(p) => cwd.join(p),
        None => cwd
            .join(".persist")
            .join(format!("{}.p2p", file_name_for(name))),
    }
}

impl P2pBackend {
    /// Opens (or creates) the replica and starts the network.
    pub async fn open(name: &str, cfg: P2pConfig) -> Result<P2pBackend> {
        let cwd = std::env::current_dir().map_err(|e| io_err("reading the cwd", e))?;
        let dir = replica_dir(name, &cfg, &cwd);
        let (keypair, rep) = tokio::task::spawn_blocking(move || -> Result<_> {
            std::fs::create_dir_all(&dir).map_err(|e| io_err("creating the replica folder", e))?;
            let keypair = net::load_identity(&dir)?;
            let rep = Replica::open(&dir, keypair.public().to_peer_id().to_string())?;
            gc_chunks(&rep);
            Ok((keypair, rep))
        })
        .await
        .map_err(|e| PersistError::internal(format!("opening the replica failed: {e}")))??;
        let shared = Arc::new(Shared {
            rep: Mutex::new(rep),
            changed: tokio::sync::watch::channel(0).0,
            closed: AtomicBool::new(false),
        });
        let net = net::Net::start(shared.clone(), keypair, name, &cfg).await?;
        Ok(P2pBackend {
            shared,
            net: Some(net),
        })
    }

    pub fn sync_handle(&self) -> Option<Arc<dyn SyncHandle>> {
        self.net.as_ref().map(|n| n.handle() as Arc<dyn SyncHandle>)
    }
}

/// Removes chunk files no blob refers to (left by aborted uploads or deleted blobs).
fn gc_chunks(rep: &Replica) {
    let keep = rep.referenced_chunks();
    if let Ok(dir) = std::fs::read_dir(rep.chunks_dir()) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn parse_data(json: &str) -> Result<serde_json::Value> {
    serde_json::from_str(json)
        .map_err(|e| PersistError::invalid_value(format!("record data is not valid JSON: {e}")))
}

fn new_entry(set: &KvSet, now: i64) -> KvEntry {
    KvEntry {
        key: set.key.clone(),
        value: set.value.clone(),
        version: new_version(),
        expires_at: set.ttl_ms.map(|t| now.saturating_add(t as i64)),
    }
}

/// Keys of `map` in `range`, strictly after `after` in the direction of the range.
fn kv_range<'a, V>(
    map: &'a BTreeMap<String, V>,
    range: &'a KvRange,
    after: Option<&'a str>,
) -> Box<dyn Iterator<Item = (&'a String, &'a V)> + 'a> {
    let mut lo: Bound<String> = Bound::Included(
        range
            .start
            .clone()
            .filter(|s| s.as_str() > range.prefix.as_str())
            .unwrap_or_else(|| range.prefix.clone()),
    );
    let mut hi: Bound<String> = Bound::Unbounded;
    let mut tighten_hi = |b: String| {
        hi = match &hi {
            Bound::Excluded(h) if h.as_str() <= b.as_str() => hi.clone(),
            _ => Bound::Excluded(b),
        };
    };
    if let Some(end) = &range.end {
        tighten_hi(end.clone());
    }
    if let Some(succ) = crate::validate::prefix_successor(&range.prefix) {
        tighten_hi(succ);
    }
    if let Some(a) = after {
        if range.reverse {
            tighten_hi(a.to_string());
        } else if let Bound::Included(l) = &lo {
            if a >= l.as_str() {
                lo = Bound::Excluded(a.to_string());
            }
        }
    }
    let empty = match (&lo, &hi) {
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(h)) => l >= h,
        _ => false,
    };
    if empty {
        return Box::new(std::iter::empty());
    }
    let iter = map.range((lo, hi)).filter(move |(k, _)| range.contains(k));
    if range.reverse {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    }
}

#[async_trait]
impl Backend for P2pBackend {
    fn kind(&self) -> &'static str {
        "p2p"
    }

    fn kv_get_many_now(&self, keys: &[String]) -> Option<Result<Vec<Option<KvEntry>>>> {
        let rep = match self.shared.lock() {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let now = now_ms();
        Some(Ok(keys
            .iter()
            .map(|k| rep.kv_live(k, now).cloned())
            .collect()))
    }

    async fn kv_get_many(&self, keys: Vec<String>) -> Result<Vec<Option<KvEntry>>> {
        self.kv_get_many_now(&keys)
            .unwrap_or_else(|| Err(PersistError::internal("unreachable")))
    }

    async fn kv_set(&self, set: KvSet) -> Result<KvEntry> {
        self.shared.write(KV_DOC, |rep| {
            let now = now_ms();
            check_kv(rep.kv_live(&set.key, now), &set.if_version, &set.key)?;
            let entry = new_entry(&set, now);
            rep.kv_write(entry.clone())?;
            Ok(entry)
        })
    }

    async fn kv_set_each(&self, sets: Vec<KvSet>) -> Vec<Result<KvEntry>> {
        let res = self.shared.write(KV_DOC, |rep| {
            let now = now_ms();
            let mut out = Vec::with_capacity(sets.len());
            for set in &sets {
                let r = check_kv(rep.kv_live(&set.key, now), &set.if_version, &set.key).and_then(
                    |()| {
                        let entry = new_entry(set, now);
                        rep.kv_write(entry.clone())?;
                        Ok(entry)
                    },
                );
                out.push(r);
            }
            Ok(out)
        });
        match res {
            Ok(out) => out,
            Err(e) => sets.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn kv_set_many(&self, sets: Vec<KvSet>) -> Result<()> {
        self.shared.write(KV_DOC, |rep| {
            let now = now_ms();
            for set in &sets {
                rep.kv_write(new_entry(set, now))?;
            }
            Ok(())
        })
    }

    async fn kv_delete(&self, key: String, if_version: Option<String>) -> Result<bool> {
        self.shared.write(KV_DOC, |rep| {
            let now = now_ms();
            let live = rep.kv_live(&key, now).is_some();
            if let Some(v) = if_version {
                check_kv(rep.kv_live(&key, now), &IfVersion::Is(v), &key)?;
            }
            rep.kv_remove(&key)?;
            Ok(live)
        })
    }

    async fn kv_list_page(
        &self,
        range: KvRange,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<KvEntry>> {
        let rep = self.shared.lock()?;
        let now = now_ms();
        Ok(kv_range(&rep.kv, &range, after.as_deref())
            .map(|(_, e)| e)
            .filter(|e| e.expires_at.is_none_or(|exp| exp > now))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn rec_insert(&self, coll: String, id: String, data: String) -> Result<Doc> {
        self.rec_put(coll, id, data, IfVersion::Absent).await
    }

    async fn rec_put(
        &self,
        coll: String,
        id: String,
        data: String,
        if_version: IfVersion<u64>,
    ) -> Result<Doc> {
        let value = parse_data(&data)?;
        let doc_name = format!("{RECORDS_PREFIX}{coll}");
        self.shared.write(&doc_name, |rep| {
            let current = rep.recs.get(&coll).and_then(|m| m.get(&id));
            check_record(current.map(|r| r.version), &if_version, &coll, &id)?;
            let now = iso8601(now_ms());
            let rec = match current {
                Some(old) => Rec {
                    version: old.version + 1,
                    created: old.created.clone(),
                    updated: now,
                    data: value,
                    json: data,
                },
                None => Rec {
                    version: 1,
                    created: now.clone(),
                    updated: now,
                    data: value,
                    json: data,
                },
            };
            let doc = rec.doc(&id);
            rep.rec_write(&coll, &id, rec)?;
            Ok(doc)
        })
    }

    async fn rec_get(&self, coll: String, id: String) -> Result<Option<Doc>> {
        self.rec_get_now(&coll, &id)
            .unwrap_or_else(|| Err(PersistError::internal("unreachable")))
    }

    fn rec_get_now(&self, coll: &str, id: &str) -> Option<Result<Option<Doc>>> {
        let rep = match self.shared.lock() {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(rep
            .recs
            .get(coll)
            .and_then(|m| m.get(id))
            .map(|r| r.doc(id))))
    }

    async fn rec_update(
        &self,
        coll: String,
        id: String,
        patch: String,
        if_version: Option<u64>,
    ) -> Result<Doc> {
        let patch: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&patch)
            .map_err(|_| PersistError::invalid_value("an update patch must be a JSON object"))?;
        let doc_name = format!("{RECORDS_PREFIX}{coll}");
        self.shared.write(&doc_name, |rep| {
            let current = rep
                .recs
                .get(&coll)
                .and_then(|m| m.get(&id))
                .ok_or_else(|| {
                    PersistError::not_found(format!("record {coll}/{id} does not exist"))
                })?;
            if let Some(v) = if_version {
                check_record(Some(current.version), &IfVersion::Is(v), &coll, &id)?;
            }
            let mut data = current.data.clone();
            if let Some(obj) = data.as_object_mut() {
                for (k, v) in patch {
                    obj.insert(k, v);
                }
            }
            let json =
                serde_json::to_string(&data).map_err(|e| PersistError::internal(e.to_string()))?;
            let rec = Rec {
                version: current.version + 1,
                created: current.created.clone(),
                updated: iso8601(now_ms()),
                data,
                json,
            };
            let doc = rec.doc(&id);
            rep.rec_write(&coll, &id, rec)?;
            Ok(doc)
        })
    }

    async fn rec_delete(&self, coll: String, id: String, if_version: Option<u64>) -> Result<bool> {
        let doc_name = format!("{RECORDS_PREFIX}{coll}");
        self.shared.write(&doc_name, |rep| {
            if let Some(v) = if_version {
                let current = rep.recs.get(&coll).and_then(|m| m.get(&id));
                check_record(current.map(|r| r.version), &IfVersion::Is(v), &coll, &id)?;
            }
            rep.rec_remove(&coll, &id)
        })
    }

    async fn rec_find_page(
        &self,
        coll: String,
        filter: Option<Filter>,
        order: Vec<SortKey>,
        after: Option<FindCursor>,
        limit: usize,
    ) -> Result<Vec<Doc>> {
        let rep = self.shared.lock()?;
        let Some(map) = rep.recs.get(&coll) else {
            return Ok(Vec::new());
        };
        let matching = map
            .iter()
            .filter(|(_, r)| filter.as_ref().is_none_or(|f| f.matches(&r.data)))
            .filter(|(id, r)| {
                after.as_ref().is_none_or(|c| {
                    compare_docs(&order, id, &r.data, &c.id, &c.data) == std::cmp::Ordering::Greater
                })
            });
        if order.is_empty() {
            return Ok(matching.take(limit).map(|(id, r)| r.doc(id)).collect());
        }
        let mut all: Vec<_> = matching.collect();
        all.sort_by(|(a_id, a), (b_id, b)| compare_docs(&order, a_id, &a.data, b_id, &b.data));
        Ok(all
            .into_iter()
            .take(limit)
            .map(|(id, r)| r.doc(id))
            .collect())
    }

    async fn rec_count(&self, coll: String, filter: Option<Filter>) -> Result<u64> {
        let rep = self.shared.lock()?;
        Ok(rep.recs.get(&coll).map_or(0, |m| {
            m.values()
                .filter(|r| filter.as_ref().is_none_or(|f| f.matches(&r.data)))
                .count() as u64
        }))
    }

    async fn rec_ensure_index(&self, _coll: String, _path: FieldPath) -> Result<()> {
        // Queries are evaluated in memory over the replica's view: nothing to build.
        drop(self.shared.lock()?);
        Ok(())
    }

    async fn blob_put(&self, key: String, meta: BlobMeta) -> Result<Box<dyn BlobUpload>> {
        let chunks_dir = self.shared.lock()?.chunks_dir();
        Ok(Box::new(Upload {
            shared: self.shared.clone(),
            chunks_dir,
            key,
            meta,
            chunker: Chunker::new(CHUNK),
            chunks: Vec::new(),
            size: 0,
            created: Vec::new(),
            done: false,
        }))
    }

    async fn blob_head(&self, key: String) -> Result<Option<BlobInfo>> {
        let rep = self.shared.lock()?;
        Ok(rep.blobs.get(&key).map(|b| b.info(&key)))
    }

    async fn blob_read(
        &self,
        key: String,
        range: ByteRange,
    ) -> Result<Option<Box<dyn BlobReader>>> {
        let (rec, dir) = {
            let rep = self.shared.lock()?;
            match rep.blobs.get(&key) {
                Some(b) => (b.clone(), rep.chunks_dir()),
                None => return Ok(None),
            }
        };
        if let Some(net) = &self.net {
            net.fetch_chunks(&dir, &rec.chunks).await?;
        }
        let end = range.end.unwrap_or(rec.size).min(rec.size);
        let start = range.start.min(end);
        Ok(Some(Box::new(Reader {
            info: rec.info(&key),
            dir,
            chunks: rec.chunks,
            pos: start,
            end,
        })))
    }

    async fn blob_delete(&self, key: String) -> Result<bool> {
        self.shared.write(BLOBS_DOC, |rep| rep.blob_remove(&key))
    }

    async fn blob_list_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<BlobInfo>> {
        let rep = self.shared.lock()?;
        let range = KvRange {
            prefix,
            ..Default::default()
        };
        Ok(kv_range(&rep.blobs, &range, after.as_deref())
            .take(limit)
            .map(|(k, b)| b.info(k))
            .collect())
    }

    async fn ev_append(
        &self,
        stream: String,
        events: Vec<NewEvent>,
        expected_seq: Option<u64>,
    ) -> Result<u64> {
        self.shared.write(EVENTS_DOC, |rep| {
            let last = rep.events.get(&stream).map_or(0, |l| l.len() as u64);
            if let Some(expected) = expected_seq {
                if expected != last {
                    return Err(PersistError::conflict(format!(
                        "stream {stream:?}: expectedSeq {expected} but the stream is at {last}"
                    )));
                }
            }
            rep.ev_append(&stream, events, now_ms())
        })
    }

    async fn ev_read_page(
        &self,
        stream: String,
        from: u64,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let rep = self.shared.lock()?;
        let Some(list) = rep.events.get(&stream) else {
            return Ok(Vec::new());
        };
        let to_stored = |i: usize| stored_event(&stream, list, i);
        let n = list.len() as u64;
        if reverse {
            if from == 0 {
                return Ok(Vec::new());
            }
            let top = from.min(n);
            Ok((1..=top)
                .rev()
                .take(limit)
                .map(|s| to_stored(s as usize - 1))
                .collect())
        } else {
            let first = from.max(1);
            Ok((first..=n)
                .take(limit)
                .map(|s| to_stored(s as usize - 1))
                .collect())
        }
    }

    async fn ev_streams_page(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let rep = self.shared.lock()?;
        let mut names: Vec<&String> = rep
            .events
            .iter()
            .filter(|(k, v)| !v.is_empty() && k.starts_with(&prefix))
            .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a))
            .map(|(k, _)| k)
            .collect();
        names.sort();
        Ok(names.into_iter().take(limit).cloned().collect())
    }

    /// Subscriptions follow arrival order, not seq: events merged in from a peer may sort
    /// before events already delivered (an earlier Lamport position), and are still delivered,
    /// once. Two phases: the events present when the subscription started, from seq `from` in
    /// merged order; then every event in the order it reached this replica.
    async fn ev_follow_page(
        &self,
        stream: String,
        from: Option<u64>,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<FollowPage> {
        let rep = self.shared.lock()?;
        let empty = Vec::new();
        let list = rep.events.get(&stream).unwrap_or(&empty);
        let arrived = rep.arrivals.get(&stream).map_or(0, |a| a.len() as u64);
        let mut next = match cursor {
            Some(c) => Follow::parse(&c)?,
            None => match from.map(|f| f.max(1) as usize - 1) {
                Some(start) if start < list.len() => Follow::CatchUp {
                    upto: arrived,
                    after: start.checked_sub(1).map(|i| list[i].owned_key()),
                },
                _ => Follow::Live { done: arrived },
            },
        };
        let mut events = Vec::new();
        if let Follow::CatchUp { upto, after } = next {
            let start = after.as_ref().map_or(0, |(ts, peer, idx)| {
                list.partition_point(|e| {
                    (e.ts, e.peer.as_str(), e.idx) <= (*ts, peer.as_str(), *idx)
                })
            });
            // Events that arrived after the subscription started wait for the live phase.
            let mut more = false;
            let mut last = after;
            for (i, ev) in list.iter().enumerate().skip(start) {
                if ev.arr > upto {
                    continue;
                }
                if events.len() == limit {
                    more = true;
                    break;
                }
                events.push(stored_event(&stream, list, i));
                last = Some(ev.owned_key());
            }
            next = if more {
                Follow::CatchUp { upto, after: last }
            } else {
                Follow::Live { done: upto }
            };
        }
        if let Follow::Live { done } = next {
            let keys = rep.arrivals.get(&stream).map_or(&[][..], |a| a.as_slice());
            let mut done = done;
            for key in keys.iter().skip(done as usize) {
                if events.len() == limit {
                    break;
                }
                done += 1;
                let at = list.binary_search_by(|e| {
                    (e.ts, e.peer.as_str(), e.idx).cmp(&(key.0, key.1.as_str(), key.2))
                });
                if let Ok(i) = at {
                    events.push(stored_event(&stream, list, i));
                }
            }
            next = Follow::Live { done };
        }
        Ok(FollowPage {
            events,
            cursor: next.encode(),
            wait_after: list.len() as u64,
        })
    }

    async fn ev_wait(&self, stream: String, after_seq: u64, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.shared.changed.subscribe();
        loop {
            let last = {
                let rep = self.shared.lock()?;
                rep.events.get(&stream).map_or(0, |l| l.len() as u64)
            };
            if last > after_seq {
                return Ok(());
            }
            tokio::select! {
                res = changed.changed() => { if res.is_err() { return Err(PersistError::closed()); } }
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
            }
        }
    }

    async fn close(&self) -> Result<()> {
        if let Some(net) = &self.net {
            net.stop().await;
        }
        let mut rep = self.shared.lock()?;
        let names: Vec<String> = rep.docs.keys().cloned().collect();
        for name in names {
            rep.persist(&name)?;
        }
        drop(rep);
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.bump();
        Ok(())
    }
}

fn stored_event(stream: &str, list: &[replica::Ev], i: usize) -> StoredEvent {
    let e = &list[i];
    StoredEvent {
        stream: stream.to_string(),
        seq: i as u64 + 1,
        kind: e.kind.clone(),
        data: e.data.clone(),
        time: e.time.clone(),
        id: e.id.clone(),
    }
}

/// Where a p2p subscription stands (its cursor, encoded as text for the caller to hand back).
#[derive(Clone, Debug, PartialEq)]
enum Follow {
    /// Catching up, in merged order, on the events that had arrived when it started
    /// (`arr <= upto`): those after the event `after` (None: from the stream's start).
    CatchUp {
        upto: u64,
        after: Option<replica::EvKey>,
    },
    /// Live: the first `done` arrivals are delivered.
    Live { done: u64 },
}

impl Follow {
    fn encode(&self) -> String {
        match self {
            Follow::CatchUp { upto, after: None } => format!("c {upto}"),
            Follow::CatchUp {
                upto,
                after: Some((ts, peer, idx)),
            } => format!("c {upto} {ts} {idx} {peer}"),
            Follow::Live { done } => format!("l {done}"),
        }
    }

    fn parse(text: &str) -> Result<Follow> {
        let bad = || PersistError::invalid_argument(format!("not a subscription cursor: {text:?}"));
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
        let parts: Vec<&str> = text.splitn(5, ' ').collect();
        match parts.as_slice() {
            ["l", done] => Ok(Follow::Live { done: num(done)? }),
            ["c", upto] => Ok(Follow::CatchUp {
                upto: num(upto)?,
                after: None,
            }),
            ["c", upto, ts, idx, peer] => Ok(Follow::CatchUp {
                upto: num(upto)?,
                after: Some((ts.parse().map_err(|_| bad())?, peer.to_string(), num(idx)?)),
            }),
            _ => Err(bad()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Upload {
    shared: Arc<Shared>,
    chunks_dir: PathBuf,
    key: String,
    meta: BlobMeta,
    chunker: Chunker,
    chunks: Vec<(String, u64)>,
    size: u64,
    /// Chunk files this upload created (removed again if it does not commit).
    created: Vec<String>,
    done: bool,
}

impl Upload {
    async fn flush_chunk(&mut self, chunk: Vec<u8>) -> Result<()> {
        let hash = hex(&Sha256::digest(&chunk));
        let path = self.chunks_dir.join(&hash);
        let len = chunk.len() as u64;
        let name = hash.clone();
        let created = tokio::task::spawn_blocking(move || -> Result<bool> {
            if path.exists() {
                return Ok(false);
            }
            let tmp = path.with_extension(format!("tmp{}", crate::clock::new_id()));
            std::fs::write(&tmp, &chunk).map_err(|e| io_err("writing a blob chunk", e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io_err("writing a blob chunk", e))?;
            Ok(true)
        })
        .await
        .map_err(|e| PersistError::internal(e.to_string()))??;
        if created {
            self.created.push(name);
        }
        self.chunks.push((hash, len));
        self.size += len;
        Ok(())
    }

    fn discard(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let keep = self
            .shared
            .rep
            .lock()
            .map(|r| r.referenced_chunks())
            .unwrap_or_default();
        for h in self.created.drain(..) {
            if !keep.contains(&h) {
                let _ = std::fs::remove_file(self.chunks_dir.join(h));
            }
        }
    }
}

#[async_trait]
impl BlobUpload for Upload {
    async fn write(&mut self, chunk: Vec<u8>) -> Result<()> {
        for full in self.chunker.push(chunk) {
            self.flush_chunk(full).await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<BlobInfo> {
        if let Some(last) = self.chunker.finish() {
            self.flush_chunk(last).await?;
        }
        let rec = BlobRec {
            size: self.size,
            ct: self.meta.content_type_or_default(),
            etag: new_version(),
            meta: self.meta.metadata.clone(),
            upd: iso8601(now_ms()),
            chunks: std::mem::take(&mut self.chunks),
        };
        let info = rec.info(&self.key);
        let key = self.key.clone();
        let res = self
            .shared
            .write(BLOBS_DOC, move |rep| rep.blob_write(&key, rec));
        match res {
            Ok(()) => {
                self.done = true;
                Ok(info)
            }
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.discard();
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.discard();
    }
}

struct Reader {
    info: BlobInfo,
    dir: PathBuf,
    chunks: Vec<(String, u64)>,
    pos: u64,
    end: u64,
}

#[async_trait]
impl BlobReader for Reader {
    fn info(&self) -> &BlobInfo {
        &self.info
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        // Find the chunk holding `pos`.
        let mut offset = 0u64;
        let mut found = None;
        for (hash, len) in &self.chunks {
            if self.pos < offset + len {
                found = Some((
                    hash.clone(),
                    self.pos - offset,
                    (*len).min(self.end - offset),
                ));
                break;
            }
            offset += len;
        }
        let Some((hash, from, to)) = found else {
            return Ok(None);
        };
        let path = self.dir.join(&hash);
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let mut f =
                std::fs::File::open(&path).map_err(|e| io_err("reading a blob chunk", e))?;
            f.seek(SeekFrom::Start(from))
                .map_err(|e| io_err("reading a blob chunk", e))?;
            let mut buf = vec![0; (to - from) as usize];
            f.read_exact(&mut buf)
                .map_err(|e| io_err("reading a blob chunk", e))?;
            Ok(buf)
        })
        .await
        .map_err(|e| PersistError::internal(e.to_string()))??;
        self.pos += bytes.len() as u64;
        Ok(Some(bytes))
    }
}
