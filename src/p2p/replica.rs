//! The local replica of a p2p store: automerge documents (the truth, synced with peers) plus
//! in-memory views of them (what reads and queries use), persisted under the store's folder.
//!
//! Documents and their layout (every leaf is a JSON string, so a field is the unit of merge):
//! - `kv`: root map, key -> `{"v": value, "ver": version, "exp": expiresAt|null}`. When peers
//!   set a key concurrently, the last writer wins: the cell with the greatest version (a ULID,
//!   so wall-clock ms first), the same pick on every peer.
//! - `r:<collection>` (one per collection): root map, id -> map `{ "m": [version, createdAt,
//!   updatedAt], "d": map field -> JSON }`. Updates touch only the fields they change, so
//!   concurrent updates to different fields both survive.
//! - `blobs`: root map, key -> blob metadata with the list of its chunks `[sha256, length]`;
//!   chunk bodies are files under `chunks/`, named by their hash.
//! - `events`: root map, `"<stream>\0<peer>"` -> list of events. Each peer appends only to its own
//!   lists, so appends never conflict. A stream reads in the order (ts, peer, index): `ts` is a
//!   Lamport-style clock (larger than every ts the peer had seen in that stream, and at least the
//!   wall-clock ms), so every peer derives the same order once it has the same events.
//!
//! Each document is kept as `docs/<escaped name>.am`: a full save compacted at open, then the
//! incremental changes of every commit appended to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjType, ReadDoc, ScalarValueRef, Value as AmValue, ValueRef, ROOT};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::file_name_for;
use crate::error::{PersistError, Result};
use crate::model::*;

pub const KV_DOC: &str = "kv";
pub const BLOBS_DOC: &str = "blobs";
pub const EVENTS_DOC: &str = "events";
pub const RECORDS_PREFIX: &str = "r:";

pub fn am_err(e: impl std::fmt::Display) -> PersistError {
    PersistError::internal(format!("p2p replica: {e}"))
}

pub fn io_err(what: &str, e: std::io::Error) -> PersistError {
    let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
        crate::error::ErrorCode::Permission
    } else {
        crate::error::ErrorCode::Internal
    };
    PersistError::new(code, format!("p2p replica: {what}: {e}"))
}

#[derive(Serialize, Deserialize)]
struct KvCell {
    v: Box<serde_json::value::RawValue>,
    ver: String,
    exp: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct BlobRec {
    pub size: u64,
    pub ct: String,
    pub etag: String,
    pub meta: BTreeMap<String, String>,
    pub upd: String,
    pub chunks: Vec<(String, u64)>,
}

impl BlobRec {
    pub fn info(&self, key: &str) -> BlobInfo {
        BlobInfo {
            key: key.to_string(),
            size: self.size,
            content_type: self.ct.clone(),
            etag: self.etag.clone(),
            metadata: self.meta.clone(),
            updated_at: self.upd.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct EvCell {
    ts: i64,
    id: String,
    t: String,
    d: Box<serde_json::value::RawValue>,
    time: String,
}

#[derive(Clone, Debug)]
pub struct Ev {
    pub ts: i64,
    pub peer: String,
    pub idx: u64,
    /// When this event reached this replica: its 1-based position in `Replica::arrivals`.
    pub arr: u64,
    pub id: String,
    pub kind: String,
    pub data: String,
    pub time: String,
}

/// An event's place in the merged order of its stream: (Lamport ts, peer, index in the peer's
/// log). It never changes, unlike `seq`, which moves when earlier events merge in.
pub type EvKey = (i64, String, u64);

impl Ev {
    fn key(&self) -> (i64, &str, u64) {
        (self.ts, &self.peer, self.idx)
    }

    pub fn owned_key(&self) -> EvKey {
        (self.ts, self.peer.clone(), self.idx)
    }
}

#[derive(Clone, Debug)]
pub struct Rec {
    pub version: u64,
    pub created: String,
    pub updated: String,
    pub data: Value,
    pub json: String,
}

impl Rec {
    pub fn doc(&self, id: &str) -> Doc {
        Doc {
            id: id.to_string(),
            version: self.version,
            created_at: self.created.clone(),
            updated_at: self.updated.clone(),
            data: self.json.clone(),
        }
    }
}

pub struct Replica {
    dir: PathBuf,
    /// This peer's id: the name of its event logs.
    pub peer: String,
    pub docs: BTreeMap<String, AutoCommit>,
    pub kv: BTreeMap<String, KvEntry>,
    pub recs: HashMap<String, BTreeMap<String, Rec>>,
    pub blobs: BTreeMap<String, BlobRec>,
    pub events: HashMap<String, Vec<Ev>>,
    /// Per stream, the keys of its events in the order they reached this replica (own appends
    /// and merges from peers; at open, the merged order). Subscriptions follow it, so an event
    /// merged in behind a subscriber's position is still delivered, once.
    pub arrivals: HashMap<String, Vec<EvKey>>,
    /// Documents changed since the network layer last looked.
    pub changed: HashSet<String>,
}

fn str_of(v: Option<(AmValue<'_>, automerge::ObjId)>) -> Option<String> {
    match v {
        Some((AmValue::Scalar(s), _)) => s.as_str().map(str::to_string),
        _ => None,
    }
}

/// The text of a string leaf met while iterating a map (`map_range`).
fn item_str<'a>(v: &'a ValueRef<'_>) -> Option<&'a str> {
    match v {
        ValueRef::Scalar(ScalarValueRef::Str(s)) => Some(s),
        _ => None,
    }
}

fn obj_of(v: Option<(AmValue<'_>, automerge::ObjId)>) -> Option<automerge::ObjId> {
    match v {
        Some((AmValue::Object(_), id)) => Some(id),
        _ => None,
    }
}

impl Replica {
    /// Loads every document under `dir` (compacting each file) and builds the views.
    pub fn open(dir: &Path, peer: String) -> Result<Replica> {
        let docs_dir = dir.join("docs");
        fs::create_dir_all(&docs_dir).map_err(|e| io_err("creating the replica folder", e))?;
        fs::create_dir_all(dir.join("chunks"))
            .map_err(|e| io_err("creating the replica folder", e))?;
        let mut rep = Replica {
            dir: dir.to_path_buf(),
            peer,
            docs: BTreeMap::new(),
            kv: BTreeMap::new(),
            recs: HashMap::new(),
            blobs: BTreeMap::new(),
            events: HashMap::new(),
            arrivals: HashMap::new(),
            changed: HashSet::new(),
        };
        for entry in fs::read_dir(&docs_dir).map_err(|e| io_err("reading the replica", e))? {
            let entry = entry.map_err(|e| io_err("reading the replica", e))?;
            let file = entry.file_name().to_string_lossy().to_string();
            let Some(stem) = file.strip_suffix(".am") else {
                continue;
            };
            let name = if stem.starts_with("%h") {
                match fs::read_to_string(docs_dir.join(format!("{stem}.name"))) {
                    Ok(n) => n,
                    Err(_) => continue,
                }
            } else {
                match crate::validate::percent_decode(stem) {
                    Some(n) => n,
                    None => continue,
                }
            };
            let bytes = fs::read(entry.path()).map_err(|e| io_err("reading the replica", e))?;
            let mut doc = AutoCommit::load(&bytes).map_err(am_err)?;
            // A fresh actor per session: a restarted peer never reuses (actor, seq) pairs.
            doc.set_actor(automerge::ActorId::random());
            let compact = doc.save();
            rep.write_file(&name, &compact, false)?;
            rep.docs.insert(name.clone(), doc);
            rep.rebuild(&name)?;
        }
        rep.changed.clear();
        Ok(rep)
    }

    pub fn chunk_path(&self, hash: &str) -> PathBuf {
        self.dir.join("chunks").join(hash)
    }

    pub fn chunks_dir(&self) -> PathBuf {
        self.dir.join("chunks")
    }

    /// `docs/<escaped name>.am`; names too long for a file name become `%h<sha256>.am` with the
    /// name kept beside it in `%h<sha256>.name`.
    fn doc_file(&self, name: &str) -> PathBuf {
        let escaped = file_name_for(name);
        if escaped.len() <= 200 {
            return self.dir.join("docs").join(format!("{escaped}.am"));
        }
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(name.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let stem = format!("%h{hash}");
        let side = self.dir.join("docs").join(format!("{stem}.name"));
        if !side.exists() {
            let _ = fs::write(&side, name);
        }
        self.dir.join("docs").join(format!("{stem}.am"))
    }

    fn write_file(&self, name: &str, bytes: &[u8], append: bool) -> Result<()> {
        let path = self.doc_file(name);
        if append {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_err("writing the replica", e))?;
            f.write_all(bytes)
                .map_err(|e| io_err("writing the replica", e))?;
        } else {
            let tmp = path.with_extension("am.tmp");
            fs::write(&tmp, bytes).map_err(|e| io_err("writing the replica", e))?;
            fs::rename(&tmp, &path).map_err(|e| io_err("writing the replica", e))?;
        }
        Ok(())
    }

    pub fn doc_mut(&mut self, name: &str) -> &mut AutoCommit {
        self.docs.entry(name.to_string()).or_default()
    }

    /// Commits the pending changes of `name` and appends them to its file.
    pub fn persist(&mut self, name: &str) -> Result<()> {
        let Some(doc) = self.docs.get_mut(name) else {
            return Ok(());
        };
        doc.commit();
        let bytes = doc.save_incremental();
        if !bytes.is_empty() {
            self.write_file(name, &bytes, true)?;
            self.changed.insert(name.to_string());
        }
        Ok(())
    }

    /// Rebuilds the view of one document from the document (after changes from a peer).
    pub fn rebuild(&mut self, name: &str) -> Result<()> {
        let Some(doc) = self.docs.get(name) else {
            return Ok(());
        };
        // One pass over each map (`map_range`) rather than a lookup per key: a rebuild follows
        // every sync message that changed the document, and lookups dominated initial syncs.
        if name == KV_DOC {
            let mut kv = BTreeMap::new();
            for item in doc.map_range(ROOT, ..) {
                let cell = if item.conflict {
                    // Concurrent sets from several peers: last writer wins by the version, a
                    // ULID (wall-clock ms first), rather than by automerge's pick, which follows
                    // op counters and actor ids. Every peer holds the same candidates, so every
                    // peer picks the same one; the next set anywhere replaces them all.
                    let candidates = doc.get_all(ROOT, item.key.as_ref()).map_err(am_err)?;
                    candidates
                        .iter()
                        .filter_map(|(v, _)| match v {
                            AmValue::Scalar(s) => s.as_str(),
                            _ => None,
                        })
                        .filter_map(|s| serde_json::from_str::<KvCell>(s).ok())
                        .max_by(|x, y| x.ver.cmp(&y.ver))
                } else {
                    item_str(&item.value).and_then(|s| serde_json::from_str::<KvCell>(s).ok())
                };
                let Some(cell) = cell else {
                    continue;
                };
                let key = item.key.into_owned();
                kv.insert(
                    key.clone(),
                    KvEntry {
                        key,
                        value: cell.v.get().to_string(),
                        version: cell.ver,
                        expires_at: cell.exp,
                    },
                );
            }
            self.kv = kv;
        } else if name == BLOBS_DOC {
            let mut blobs = BTreeMap::new();
            for key in doc.keys(ROOT) {
                let Some(s) = str_of(doc.get(ROOT, key.as_str()).map_err(am_err)?) else {
                    continue;
                };
                if let Ok(rec) = serde_json::from_str::<BlobRec>(&s) {
                    blobs.insert(key, rec);
                }
            }
            self.blobs = blobs;
        } else if name == EVENTS_DOC {
            let mut events: HashMap<String, Vec<Ev>> = HashMap::new();
            for key in doc.keys(ROOT) {
                let Some((stream, peer)) = key.split_once('\0') else {
                    continue;
                };
                let Some(list) = obj_of(doc.get(ROOT, key.as_str()).map_err(am_err)?) else {
                    continue;
                };
                let out = events.entry(stream.to_string()).or_default();
                for idx in 0..doc.length(&list) {
                    let Some(s) = str_of(doc.get(&list, idx).map_err(am_err)?) else {
                        continue;
                    };
                    let Ok(cell) = serde_json::from_str::<EvCell>(&s) else {
                        continue;
                    };
                    out.push(Ev {
                        ts: cell.ts,
                        peer: peer.to_string(),
                        idx: idx as u64,
                        arr: 0,
                        id: cell.id,
                        kind: cell.t,
                        data: cell.d.get().to_string(),
                        time: cell.time,
                    });
                }
            }
            for (stream, list) in events.iter_mut() {
                list.sort_by(|a, b| a.key().cmp(&b.key()));
                // Events seen before keep their arrival; new ones arrive now, in merged order.
                let arrivals = self.arrivals.entry(stream.clone()).or_default();
                let known: HashMap<&EvKey, u64> = arrivals
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (k, i as u64 + 1))
                    .collect();
                let mut fresh = Vec::new();
                for ev in list.iter_mut() {
                    match known.get(&ev.owned_key()) {
                        Some(&arr) => ev.arr = arr,
                        None => fresh.push(ev),
                    }
                }
                let mut next = arrivals.len() as u64;
                let fresh: Vec<EvKey> = fresh
                    .into_iter()
                    .map(|ev| {
                        next += 1;
                        ev.arr = next;
                        ev.owned_key()
                    })
                    .collect();
                arrivals.extend(fresh);
            }
            self.events = events;
        } else if let Some(coll) = name.strip_prefix(RECORDS_PREFIX) {
            let mut recs = BTreeMap::new();
            for item in doc.map_range(ROOT, ..) {
                if !matches!(item.value, ValueRef::Object(ObjType::Map)) {
                    continue;
                }
                let obj = item.id();
                let (mut meta, mut fields) = (None, None);
                for part in doc.map_range(&obj, ..) {
                    match (part.key.as_ref(), &part.value) {
                        ("m", v) => meta = item_str(v).map(str::to_string),
                        ("d", ValueRef::Object(ObjType::Map)) => fields = Some(part.id()),
                        _ => {}
                    }
                }
                let Some(meta) = meta else {
                    continue;
                };
                let Ok((version, created, updated)) =
                    serde_json::from_str::<(u64, String, String)>(&meta)
                else {
                    continue;
                };
                let mut data = serde_json::Map::new();
                if let Some(d) = fields {
                    for field in doc.map_range(&d, ..) {
                        if let Some(s) = item_str(&field.value) {
                            if let Ok(v) = serde_json::from_str::<Value>(s) {
                                data.insert(field.key.into_owned(), v);
                            }
                        }
                    }
                }
                let data = Value::Object(data);
                let json = serde_json::to_string(&data).map_err(am_err)?;
                recs.insert(
                    item.key.into_owned(),
                    Rec {
                        version,
                        created,
                        updated,
                        data,
                        json,
                    },
                );
            }
            self.recs.insert(coll.to_string(), recs);
        }
        Ok(())
    }

    // ---- kv ----

    pub fn kv_live(&self, key: &str, now: i64) -> Option<&KvEntry> {
        self.kv
            .get(key)
            .filter(|e| e.expires_at.is_none_or(|exp| exp > now))
    }

    pub fn kv_write(&mut self, entry: KvEntry) -> Result<()> {
        let cell = format!(
            "{{\"v\":{},\"ver\":{},\"exp\":{}}}",
            entry.value,
            serde_json::to_string(&entry.version).map_err(am_err)?,
            entry
                .expires_at
                .map_or("null".to_string(), |e| e.to_string())
        );
        self.doc_mut(KV_DOC)
            .put(ROOT, entry.key.as_str(), cell)
            .map_err(am_err)?;
        self.kv.insert(entry.key.clone(), entry);
        Ok(())
    }

    pub fn kv_remove(&mut self, key: &str) -> Result<bool> {
        if self.kv.remove(key).is_some() {
            self.doc_mut(KV_DOC).delete(ROOT, key).map_err(am_err)?;
            return Ok(true);
        }
        Ok(false)
    }

    // ---- records ----

    pub fn rec_write(&mut self, coll: &str, id: &str, rec: Rec) -> Result<()> {
        let name = format!("{RECORDS_PREFIX}{coll}");
        let old = self.recs.get(coll).and_then(|m| m.get(id)).cloned();
        let doc = self.docs.entry(name.clone()).or_default();
        let meta =
            serde_json::to_string(&(rec.version, &rec.created, &rec.updated)).map_err(am_err)?;
        let existing = match &old {
            Some(_) => obj_of(doc.get(ROOT, id).map_err(am_err)?),
            None => None,
        };
        let empty = serde_json::Map::new();
        let new_fields = rec.data.as_object().unwrap_or(&empty);
        match existing {
            Some(obj) => {
                doc.put(&obj, "m", meta).map_err(am_err)?;
                let d = match obj_of(doc.get(&obj, "d").map_err(am_err)?) {
                    Some(d) => d,
                    None => doc.put_object(&obj, "d", ObjType::Map).map_err(am_err)?,
                };
                let old_data = old.as_ref().map(|o| &o.data);
                let old_fields = old_data.and_then(Value::as_object).unwrap_or(&empty);
                for (k, v) in new_fields {
                    if old_fields.get(k) != Some(v) {
                        let json = serde_json::to_string(v).map_err(am_err)?;
                        doc.put(&d, k.as_str(), json).map_err(am_err)?;
                    }
                }
                for k in old_fields.keys() {
                    if !new_fields.contains_key(k) {
                        doc.delete(&d, k.as_str()).map_err(am_err)?;
                    }
                }
            }
            None => {
                let obj = doc.put_object(ROOT, id, ObjType::Map).map_err(am_err)?;
                doc.put(&obj, "m", meta).map_err(am_err)?;
                let d = doc.put_object(&obj, "d", ObjType::Map).map_err(am_err)?;
                for (k, v) in new_fields {
                    let json = serde_json::to_string(v).map_err(am_err)?;
                    doc.put(&d, k.as_str(), json).map_err(am_err)?;
                }
            }
        }
        self.recs
            .entry(coll.to_string())
            .or_default()
            .insert(id.to_string(), rec);
        Ok(())
    }

    pub fn rec_remove(&mut self, coll: &str, id: &str) -> Result<bool> {
        let Some(map) = self.recs.get_mut(coll) else {
            return Ok(false);
        };
        if map.remove(id).is_none() {
            return Ok(false);
        }
        let name = format!("{RECORDS_PREFIX}{coll}");
        self.doc_mut(&name).delete(ROOT, id).map_err(am_err)?;
        Ok(true)
    }

    // ---- blobs ----

    pub fn blob_write(&mut self, key: &str, rec: BlobRec) -> Result<()> {
        let json = serde_json::to_string(&rec).map_err(am_err)?;
        self.doc_mut(BLOBS_DOC)
            .put(ROOT, key, json)
            .map_err(am_err)?;
        self.blobs.insert(key.to_string(), rec);
        Ok(())
    }

    pub fn blob_remove(&mut self, key: &str) -> Result<bool> {
        if self.blobs.remove(key).is_none() {
            return Ok(false);
        }
        self.doc_mut(BLOBS_DOC).delete(ROOT, key).map_err(am_err)?;
        Ok(true)
    }

    /// Every chunk some blob refers to.
    pub fn referenced_chunks(&self) -> HashSet<String> {
        self.blobs
            .values()
            .flat_map(|b| b.chunks.iter().map(|(h, _)| h.clone()))
            .collect()
    }

    // ---- events ----

    /// Appends to this peer's log of `stream`; returns the merged stream's new last seq.
    pub fn ev_append(&mut self, stream: &str, events: Vec<NewEvent>, now: i64) -> Result<u64> {
        let list = self.events.entry(stream.to_string()).or_default();
        let ts0 = list.last().map_or(now, |e| e.ts.saturating_add(1)).max(now);
        let key = format!("{stream}\0{}", self.peer);
        let doc = self.docs.entry(EVENTS_DOC.to_string()).or_default();
        let obj = match obj_of(doc.get(ROOT, key.as_str()).map_err(am_err)?) {
            Some(o) => o,
            None => doc
                .put_object(ROOT, key.as_str(), ObjType::List)
                .map_err(am_err)?,
        };
        let idx0 = doc.length(&obj);
        let time = crate::clock::iso8601(now);
        let mut added = Vec::with_capacity(events.len());
        for (i, ev) in events.into_iter().enumerate() {
            let (idx, ts) = (idx0 + i, ts0 + i as i64);
            let id = crate::clock::new_id();
            let cell = format!(
                "{{\"ts\":{ts},\"id\":\"{id}\",\"t\":{},\"d\":{},\"time\":\"{time}\"}}",
                serde_json::to_string(&ev.kind).map_err(am_err)?,
                ev.data
            );
            doc.insert(&obj, idx, cell).map_err(am_err)?;
            added.push(Ev {
                ts,
                peer: self.peer.clone(),
                idx: idx as u64,
                arr: 0,
                id,
                kind: ev.kind,
                data: ev.data,
                time: time.clone(),
            });
        }
        // Only once every insert succeeded: a failed append leaves no arrival behind.
        let arrivals = self.arrivals.entry(stream.to_string()).or_default();
        for mut ev in added {
            arrivals.push(ev.owned_key());
            ev.arr = arrivals.len() as u64;
            list.push(ev);
        }
        Ok(list.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str) -> NewEvent {
        NewEvent {
            kind: kind.to_string(),
            data: "null".to_string(),
        }
    }

    fn kinds_and_arrivals(rep: &Replica) -> Vec<(String, u64)> {
        rep.events["s"]
            .iter()
            .map(|e| (e.kind.clone(), e.arr))
            .collect()
    }

    #[test]
    fn events_merged_in_behind_arrive_after_the_ones_already_here() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut a = Replica::open(dir_a.path(), "peer-a".to_string()).unwrap();
        let mut b = Replica::open(dir_b.path(), "peer-b".to_string()).unwrap();
        // a's events carry earlier timestamps: once merged they sort before b's.
        a.ev_append("s", vec![event("a1"), event("a2")], 1_000)
            .unwrap();
        b.ev_append("s", vec![event("b1")], 2_000).unwrap();
        a.persist(EVENTS_DOC).unwrap();
        b.persist(EVENTS_DOC).unwrap();
        let mut from_a = a.docs[EVENTS_DOC].clone();
        b.doc_mut(EVENTS_DOC).merge(&mut from_a).unwrap();
        b.rebuild(EVENTS_DOC).unwrap();
        let expected = vec![
            ("a1".to_string(), 2),
            ("a2".to_string(), 3),
            ("b1".to_string(), 1),
        ];
        assert_eq!(kinds_and_arrivals(&b), expected);
        // A rebuild with nothing new keeps every arrival.
        b.rebuild(EVENTS_DOC).unwrap();
        assert_eq!(kinds_and_arrivals(&b), expected);
        assert_eq!(b.arrivals["s"].len(), 3);
        // Reopened, a replica's arrivals start over in merged order.
        b.persist(EVENTS_DOC).unwrap();
        drop(b);
        let b = Replica::open(dir_b.path(), "peer-b".to_string()).unwrap();
        let reopened: Vec<u64> = b.events["s"].iter().map(|e| e.arr).collect();
        assert_eq!(reopened, vec![1, 2, 3]);
    }

    fn kv_entry(key: &str, value: &str, version: &str) -> KvEntry {
        KvEntry {
            key: key.to_string(),
            value: value.to_string(),
            version: version.to_string(),
            expires_at: None,
        }
    }

    #[test]
    fn concurrent_kv_sets_resolve_to_the_last_writer_on_both_peers() {
        // Actors are random per session, so automerge's own pick would go either way across
        // these pairs; the later version must win on both sides every time.
        for round in 0..8 {
            let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let mut a = Replica::open(dir_a.path(), "peer-a".to_string()).unwrap();
            let mut b = Replica::open(dir_b.path(), "peer-b".to_string()).unwrap();
            let (early, late) = ("01AAAAAAAAAAAAAAAAAAAAAAAA", "01BBBBBBBBBBBBBBBBBBBBBBBB");
            let (a_ver, b_ver) = if round % 2 == 0 {
                (early, late)
            } else {
                (late, early)
            };
            a.kv_write(kv_entry("k", "\"a\"", a_ver)).unwrap();
            b.kv_write(kv_entry("k", "\"b\"", b_ver)).unwrap();
            a.persist(KV_DOC).unwrap();
            b.persist(KV_DOC).unwrap();
            let (mut from_a, mut from_b) = (a.docs[KV_DOC].clone(), b.docs[KV_DOC].clone());
            a.doc_mut(KV_DOC).merge(&mut from_b).unwrap();
            b.doc_mut(KV_DOC).merge(&mut from_a).unwrap();
            a.rebuild(KV_DOC).unwrap();
            b.rebuild(KV_DOC).unwrap();
            let winner = if a_ver == late { "\"a\"" } else { "\"b\"" };
            assert_eq!(a.kv["k"].value, winner, "round {round}, peer a");
            assert_eq!(b.kv["k"].value, winner, "round {round}, peer b");
            assert_eq!(a.kv["k"].version, late);
        }
    }
}
