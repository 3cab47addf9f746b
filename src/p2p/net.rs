//! The network side of a p2p store: the peer identity, and `store.sync`.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use libp2p::identity::Keypair;

pub use super::swarm::Net;

use super::replica::io_err;
use crate::error::{PersistError, Result};

/// Loads the peer identity kept in `<dir>/identity.key`, creating it on first use.
pub fn load_identity(dir: &Path) -> Result<Keypair> {
    let path = dir.join("identity.key");
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            PersistError::internal(format!(
                "p2p: the peer identity {} is unreadable: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| PersistError::internal(format!("p2p: encoding the identity: {e}")))?;
            let tmp = path.with_extension("key.tmp");
            std::fs::write(&tmp, bytes).map_err(|e| io_err("writing the peer identity", e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io_err("writing the peer identity", e))?;
            Ok(key)
        }
        Err(e) => Err(io_err("reading the peer identity", e)),
    }
}

/// What `store.sync.on(...)` listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// A peer of the same topic connected.
    Peer(String),
    /// A peer and this one hold the same documents.
    Synced(String),
}

#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub connected: bool,
    /// Bytes of the sync protocol (document sync messages and blob chunks, with the codec's
    /// framing; not noise/yamux/TCP overhead) sent to and received from this peer since the
    /// store opened.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// `store.sync`: the network state of a p2p store.
#[async_trait]
pub trait SyncHandle: Send + Sync {
    fn peer_id(&self) -> String;
    /// The addresses this peer listens on.
    fn listen_addresses(&self) -> Vec<String>;
    fn peers(&self) -> Vec<PeerInfo>;
    /// Resolves once `peers` peers are connected and caught up; TIMEOUT after `timeout`.
    async fn wait_for(&self, peers: usize, timeout: Duration) -> Result<()>;
    /// The next sync event, or None after `timeout` (or once the store is closed).
    async fn next_event(&self, timeout: Duration) -> Option<SyncEvent>;
}

pub struct NetState {
    pub(super) closed: std::sync::atomic::AtomicBool,
    pub(super) peer_id: String,
    pub(super) listen: Mutex<Vec<String>>,
    pub(super) peers: Mutex<Vec<PeerInfo>>,
    pub(super) synced: Mutex<std::collections::HashSet<String>>,
    pub(super) events: Mutex<VecDeque<SyncEvent>>,
    /// Sync protocol bytes per peer id: (sent, received).
    pub(super) traffic: Mutex<HashMap<String, (u64, u64)>>,
    pub(super) wake: tokio::sync::watch::Sender<u64>,
}

impl NetState {
    pub(super) fn bump(&self) {
        self.wake.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(super) fn count_traffic(&self, peer: String, sent: u64, received: u64) {
        let mut t = self.traffic.lock().unwrap_or_else(|e| e.into_inner());
        let entry = t.entry(peer).or_default();
        entry.0 += sent;
        entry.1 += received;
    }

    pub(super) fn push(&self, ev: SyncEvent) {
        let mut q = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= 1024 {
            q.pop_front();
        }
        q.push_back(ev);
        drop(q);
        self.bump();
    }
}

#[async_trait]
impl SyncHandle for NetState {
    fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    fn listen_addresses(&self) -> Vec<String> {
        self.listen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let mut list = self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let traffic = self.traffic.lock().unwrap_or_else(|e| e.into_inner());
        for p in &mut list {
            if let Some((sent, received)) = traffic.get(&p.peer_id) {
                p.bytes_sent = *sent;
                p.bytes_received = *received;
            }
        }
        list
    }

    async fn wait_for(&self, peers: usize, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.wake.subscribe();
        loop {
            let ready = {
                let list = self.peers.lock().unwrap_or_else(|e| e.into_inner());
                let synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
                list.iter()
                    .filter(|p| p.connected && synced.contains(&p.peer_id))
                    .count()
            };
            if ready >= peers {
                return Ok(());
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(PersistError::closed()); },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(PersistError::new(crate::error::ErrorCode::Timeout, format!(
                        "sync.waitFor: {ready} of {peers} peers connected and caught up after {} ms",
                        timeout.as_millis()
                    )));
                }
            }
        }
    }

    async fn next_event(&self, timeout: Duration) -> Option<SyncEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.wake.subscribe();
        loop {
            if let Some(ev) = self
                .events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front()
            {
                return Some(ev);
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return None; },
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }
}
