//! The libp2p swarm of a p2p store: tcp + noise + yamux; identify (its `protocol_version` is
//! `/cuitty/persist/<topic>/<store name>`, and peers of another topic or store name are
//! disconnected); mDNS or Kademlia for discovery; request-response carrying automerge sync
//! messages and blob chunks.
//!
//! Sync rounds: the dialer of a connection opens the first round once the peer's topic is
//! verified; each request carries the sync messages of every document that has something to say,
//! and the response carries the answering side's messages, so one round trip serves all
//! documents. Local commits wake the task, which waits a few ms to coalesce them, then sends one
//! request per peer (never two in flight to one peer). A peer is "synced" when a round ends with
//! nothing left to send either way.
//!
//! Dead peers: every connection is pinged every second and closed when libp2p's ping handler
//! reports a failure. It lets the first failure pass (a 3 s pong timeout) and reports the
//! second (opening the next ping stream times out after 10 s), so a peer whose process or link
//! died without closing its TCP connections drops out of `peers()` about 15 s later (measured:
//! 15 s). A peer that exits, even by SIGKILL, closes its sockets: it drops out at once. mDNS
//! peers not connected are dialed again every 2 s, so a healed partition reconnects by itself.
//!
//! Wide-area use: Kademlia needs `bootstrap` peers reachable from every peer (public addresses);
//! peers behind NAT need relays/hole punching (autonat, relay, dcutr), which this build does not
//! include: peers must be able to dial each other directly.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::sync::{Message as SyncMessage, State as SyncState, SyncDoc};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{behaviour::toggle::Toggle, dial_opts::DialOpts, NetworkBehaviour, SwarmEvent};
use libp2p::{
    identify, kad, mdns, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::net::{NetState, PeerInfo, SyncEvent};
use super::Shared;
use crate::config::{file_name_for, P2pConfig};
use crate::error::{ErrorCode, PersistError, Result};

const SYNC_PROTOCOL: &str = "/cuitty/persist/sync/1.0.0";
const KAD_PROTOCOL: &str = "/cuitty/kad/1.0.0";
/// How long local commits are collected before one round goes out.
const COALESCE: Duration = Duration::from_millis(15);
/// The largest frame the codec accepts.
const MAX_FRAME: usize = 256 << 20;
/// Bytes the codec adds to each message (its length prefix).
const FRAME_HEADER: u64 = 4;
/// Ping every connection this often; an unanswered ping fails after `PING_TIMEOUT`.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Default)]
pub struct Codec;

async fn read_frame<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut buf = vec![0; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(
    io: &mut T,
    data: Vec<u8>,
) -> std::io::Result<()> {
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(&data).await?;
    io.close().await
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        write_frame(io, res).await
    }
}

// Wire format. Sync: tag 1, then (u32 len, doc name, u32 len, sync message)*.
// Chunk request: tag 2 + hash; chunk response: tag 2 + body, or tag 3 (not here).
const TAG_SYNC: u8 = 1;
const TAG_CHUNK: u8 = 2;
const TAG_MISSING: u8 = 3;

fn encode_sync(msgs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![TAG_SYNC];
    for (name, msg) in msgs {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
    }
    out
}

fn decode_sync(mut data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let take = |data: &mut &[u8]| -> Option<Vec<u8>> {
        if data.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes(data[..4].try_into().ok()?) as usize;
        let rest = &data[4..];
        if rest.len() < len {
            return None;
        }
        let v = rest[..len].to_vec();
        *data = &rest[len..];
        Some(v)
    };
    while !data.is_empty() {
        let name = String::from_utf8(take(&mut data)?).ok()?;
        let msg = take(&mut data)?;
        out.push((name, msg));
    }
    Some(out)
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    rr: request_response::Behaviour<Codec>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
}

enum Command {
    FetchChunk {
        hash: String,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    Stop(oneshot::Sender<()>),
}

pub struct Net {
    state: Arc<NetState>,
    commands: mpsc::UnboundedSender<Command>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn net_err(what: &str, e: impl std::fmt::Display) -> PersistError {
    PersistError::new(ErrorCode::Connection, format!("p2p: {what}: {e}"))
}

impl Net {
    pub async fn start(
        shared: Arc<Shared>,
        keypair: Keypair,
        name: &str,
        cfg: &P2pConfig,
    ) -> Result<Net> {
        let me = keypair.public().to_peer_id();
        let state = Arc::new(NetState {
            closed: Default::default(),
            peer_id: me.to_string(),
            listen: Mutex::new(Vec::new()),
            peers: Mutex::new(Vec::new()),
            synced: Mutex::new(Default::default()),
            events: Mutex::new(Default::default()),
            traffic: Mutex::new(Default::default()),
            wake: tokio::sync::watch::channel(0).0,
        });
        // Peers sync only with the same topic *and* store name (two stores of different names
        // never see each other's data, as on every adapter); both are percent-encoded, so no
        // topic or name can spell another pair.
        let topic_version = format!(
            "/cuitty/persist/{}/{}",
            file_name_for(&cfg.topic),
            file_name_for(name)
        );
        let use_mdns = cfg.method == "mdns";
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| net_err("setting up tcp", e))?
            .with_behaviour(|key| {
                let identify = identify::Behaviour::new(identify::Config::new(
                    topic_version.clone(),
                    key.public(),
                ));
                let rr = request_response::Behaviour::new(
                    [(StreamProtocol::new(SYNC_PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                );
                let mdns = if use_mdns {
                    let c = mdns::Config {
                        query_interval: Duration::from_secs(1),
                        ..Default::default()
                    };
                    Some(mdns::tokio::Behaviour::new(c, key.public().to_peer_id())?)
                } else {
                    None
                };
                let kad = if use_mdns {
                    None
                } else {
                    let mut c = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
                    c.set_provider_record_ttl(Some(Duration::from_secs(120)));
                    c.set_provider_publication_interval(Some(Duration::from_secs(30)));
                    let me = key.public().to_peer_id();
                    let mut k =
                        kad::Behaviour::with_config(me, kad::store::MemoryStore::new(me), c);
                    k.set_mode(Some(kad::Mode::Server));
                    Some(k)
                };
                let ping = ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(PING_INTERVAL)
                        .with_timeout(PING_TIMEOUT),
                );
                Ok(Behaviour {
                    identify,
                    ping,
                    rr,
                    mdns: Toggle::from(mdns),
                    kad: Toggle::from(kad),
                })
            })
            .map_err(|e| net_err("setting up the network", e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(365 * 86400)))
            .build();
        let listen = if cfg.listen.is_empty() {
            vec!["/ip4/0.0.0.0/tcp/0".to_string()]
        } else {
            cfg.listen.clone()
        };
        for addr in &listen {
            let ma: Multiaddr = addr.parse().map_err(|e| {
                PersistError::invalid_config(format!(
                    "p2p adapter: \"listen\": {addr:?} is not a multiaddr: {e}"
                ))
            })?;
            swarm
                .listen_on(ma)
                .map_err(|e| net_err(&format!("listening on {addr}"), e))?;
        }
        let mut bootstrap = Vec::new();
        for addr in &cfg.bootstrap {
            let ma: Multiaddr = addr.parse().map_err(|e| {
                PersistError::invalid_config(format!(
                    "p2p adapter: \"discovery.bootstrap\": {addr:?} is not a multiaddr: {e}"
                ))
            })?;
            let Some(Protocol::P2p(peer)) = ma.iter().last() else {
                return Err(PersistError::invalid_config(format!(
                    "p2p adapter: \"discovery.bootstrap\": {addr:?} must end with /p2p/<peer id>"
                )));
            };
            bootstrap.push((peer, ma));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut task = Task {
            me,
            swarm,
            shared,
            state: state.clone(),
            topic_version,
            use_mdns,
            topic_key: kad::RecordKey::new(&Sha256::digest(cfg.topic.as_bytes()).to_vec()),
            verified: HashSet::new(),
            dialer: HashSet::new(),
            states: HashMap::new(),
            inflight: HashMap::new(),
            again: HashSet::new(),
            queued: HashMap::new(),
            addresses: HashMap::new(),
            foreign: HashSet::new(),
            chunk_waits: HashMap::new(),
        };
        for (peer, ma) in bootstrap {
            task.addresses.entry(peer).or_default().insert(ma.clone());
            if let Some(k) = task.swarm.behaviour_mut().kad.as_mut() {
                k.add_address(&peer, ma.clone());
            }
            let _ = task.swarm.dial(ma);
        }
        let handle = tokio::spawn(task.run(rx));
        Ok(Net {
            state,
            commands: tx,
            task: Mutex::new(Some(handle)),
        })
    }

    pub fn handle(&self) -> Arc<NetState> {
        self.state.clone()
    }

    /// Makes sure every chunk is on disk, fetching missing ones from peers.
    pub async fn fetch_chunks(&self, dir: &Path, chunks: &[(String, u64)]) -> Result<()> {
        for (hash, _) in chunks {
            let path = dir.join(hash);
            if path.exists() {
                continue;
            }
            let (reply, rx) = oneshot::channel();
            let _ = self.commands.send(Command::FetchChunk {
                hash: hash.clone(),
                reply,
            });
            let body = rx.await.ok().flatten().ok_or_else(|| {
                PersistError::new(
                    ErrorCode::Connection,
                    format!(
                        "p2p: blob chunk {hash} is not on this peer and no connected peer sent it"
                    ),
                )
            })?;
            if hex(&Sha256::digest(&body)) != *hash {
                return Err(PersistError::new(
                    ErrorCode::Connection,
                    format!("p2p: a peer sent a corrupt blob chunk {hash}"),
                ));
            }
            let tmp = path.with_extension(format!("tmp{}", crate::clock::new_id()));
            std::fs::write(&tmp, &body)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| super::replica::io_err("writing a fetched chunk", e))?;
        }
        Ok(())
    }

    pub async fn stop(&self) {
        self.state.closed.store(true, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Stop(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            t.abort();
        }
        self.state.bump();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Task {
    me: PeerId,
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    state: Arc<NetState>,
    topic_version: String,
    use_mdns: bool,
    topic_key: kad::RecordKey,
    /// Connected peers of our topic.
    verified: HashSet<PeerId>,
    /// Peers we dialed (we open their first round).
    dialer: HashSet<PeerId>,
    states: HashMap<(PeerId, String), SyncState>,
    /// The request in flight to a peer, and whether it carried anything.
    inflight: HashMap<PeerId, (OutboundRequestId, bool)>,
    /// Peers that need another round once the one in flight ends.
    again: HashSet<PeerId>,
    /// Requests from peers whose topic is not verified yet.
    queued: HashMap<PeerId, Vec<Queued>>,
    addresses: HashMap<PeerId, HashSet<Multiaddr>>,
    /// Peers of another topic: never dialed again.
    foreign: HashSet<PeerId>,
    chunk_waits: HashMap<OutboundRequestId, ChunkWait>,
}

/// A request held until its peer's topic is verified.
type Queued = (Vec<u8>, ResponseChannel<Vec<u8>>);
/// A chunk fetch: the hash, the peers still to ask, and who waits for the body.
type ChunkWait = (String, Vec<PeerId>, oneshot::Sender<Option<Vec<u8>>>);

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut changed = self.shared.changed.subscribe();
        let mut lookup = tokio::time::interval(Duration::from_secs(2));
        let mut lookups = 0u32;
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = commands.recv() => match cmd {
                    Some(Command::FetchChunk { hash, reply }) => {
                        let peers: Vec<PeerId> = self.verified.iter().copied().collect();
                        self.fetch(hash, peers, reply);
                    }
                    Some(Command::Stop(done)) => { let _ = done.send(()); return; }
                    None => return,
                },
                r = changed.changed() => {
                    if r.is_err() { return; }
                    tokio::time::sleep(COALESCE).await;
                    changed.borrow_and_update();
                    let peers: Vec<PeerId> = self.verified.iter().copied().collect();
                    for p in peers { self.round(p, false); }
                }
                _ = lookup.tick() => {
                    if self.use_mdns {
                        self.redial_mdns_peers();
                    } else {
                        lookups += 1;
                        // Every 2 s for the first half minute, then every 20 s.
                        if lookups <= 15 || lookups.is_multiple_of(10) {
                            if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
                                if lookups == 1 {
                                    let _ = k.start_providing(self.topic_key.clone());
                                    let _ = k.bootstrap();
                                }
                                k.get_providers(self.topic_key.clone());
                            }
                        }
                    }
                }
            }
        }
    }

    fn set_peer(&self, peer: PeerId, connected: bool) {
        let id = peer.to_string();
        let addrs: Vec<String> = self
            .addresses
            .get(&peer)
            .map(|s| s.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default();
        let mut list = self.state.peers.lock().unwrap_or_else(|e| e.into_inner());
        match list.iter_mut().find(|p| p.peer_id == id) {
            Some(p) => {
                p.connected = connected;
                if !addrs.is_empty() {
                    p.addresses = addrs;
                }
            }
            None => list.push(PeerInfo {
                peer_id: id,
                addresses: addrs,
                connected,
                bytes_sent: 0,
                bytes_received: 0,
            }),
        }
        drop(list);
        if !connected {
            self.state
                .synced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&peer.to_string());
        }
        self.state.bump();
    }

    /// Forgets a peer's connection state (its connection closed or stopped answering).
    fn drop_peer(&mut self, peer: PeerId) {
        self.dialer.remove(&peer);
        self.queued.remove(&peer);
        self.inflight.remove(&peer);
        self.again.remove(&peer);
        self.states.retain(|(p, _), _| *p != peer);
        if self.verified.remove(&peer) {
            self.set_peer(peer, false);
        }
    }

    /// Dials the mDNS peers (of unknown or our topic) that are not connected. One side dials:
    /// the smaller peer id. mDNS reports a peer once while its record lives, so this also runs
    /// on a timer to reconnect after a partition heals.
    fn redial_mdns_peers(&mut self) {
        let Some(mdns) = self.swarm.behaviour().mdns.as_ref() else {
            return;
        };
        let peers: HashSet<PeerId> = mdns.discovered_nodes().copied().collect();
        for peer in peers {
            if self.me < peer && !self.foreign.contains(&peer) {
                self.dial(peer);
            }
        }
    }

    fn dial(&mut self, peer: PeerId) {
        if peer == self.me || self.swarm.is_connected(&peer) {
            return;
        }
        let addrs: Vec<Multiaddr> = self
            .addresses
            .get(&peer)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let _ = self
            .swarm
            .dial(DialOpts::peer_id(peer).addresses(addrs).build());
    }

    fn on_swarm(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.swarm.add_external_address(address.clone());
                self.state
                    .listen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{address}/p2p/{}", self.me));
                self.state.bump();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if endpoint.is_dialer() {
                    self.dialer.insert(peer_id);
                }
                self.addresses
                    .entry(peer_id)
                    .or_default()
                    .insert(endpoint.get_remote_address().clone());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => self.drop_peer(peer_id),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != self.topic_version {
                    self.foreign.insert(peer_id);
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                for a in &info.listen_addrs {
                    if let Some(k) = self.swarm.behaviour_mut().kad.as_mut() {
                        k.add_address(&peer_id, a.clone());
                    }
                }
                if self.verified.insert(peer_id) {
                    self.set_peer(peer_id, true);
                    self.state.push(SyncEvent::Peer(peer_id.to_string()));
                    if let Some(q) = self.queued.remove(&peer_id) {
                        for (req, ch) in q {
                            self.on_request(peer_id, req, ch);
                        }
                    }
                    if self.dialer.contains(&peer_id) {
                        self.round(peer_id, true);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(list))) => {
                for (peer, addr) in list {
                    self.addresses.entry(peer).or_default().insert(addr);
                }
                self.redial_mdns_peers();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                connection,
                result: Err(_),
                ..
            })) => {
                // The connection stopped answering (a dead process or link, no FIN seen): its
                // ConnectionClosed then drops the peer.
                let _ = self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Rr(ev)) => self.on_rr(ev),
            _ => {}
        }
    }

    fn on_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                let set = self.addresses.entry(peer).or_default();
                for a in addresses.iter() {
                    set.insert(a.clone());
                }
            }
            kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            } => {
                for p in providers {
                    self.dial(p);
                }
            }
            _ => {}
        }
    }

    /// Sends the sync messages of every document that has one for `peer` (one request).
    /// `force`: send even an empty request (the first round, so the peer sends the documents
    /// this peer does not have yet).
    fn round(&mut self, peer: PeerId, force: bool) {
        if !self.verified.contains(&peer) {
            return;
        }
        if self.inflight.contains_key(&peer) {
            self.again.insert(peer);
            return;
        }
        let msgs = self.generate(peer);
        let carried = !msgs.is_empty();
        if !carried && !force {
            return;
        }
        self.state
            .synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&peer.to_string());
        let id = self.send_request(peer, encode_sync(&msgs));
        self.inflight.insert(peer, (id, carried));
    }

    fn generate(&mut self, peer: PeerId) -> Vec<(String, Vec<u8>)> {
        let mut rep = self.shared.rep.lock().unwrap_or_else(|e| e.into_inner());
        let names: Vec<String> = rep.docs.keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            let state = self.states.entry((peer, name.clone())).or_default();
            let doc = rep.doc_mut(&name);
            if let Some(m) = doc.sync().generate_sync_message(state) {
                out.push((name, m.encode()));
            }
        }
        out
    }

    /// Applies a peer's sync messages; returns whether anything changed here.
    fn receive(&mut self, peer: PeerId, msgs: Vec<(String, Vec<u8>)>) -> bool {
        let mut rep = self.shared.rep.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for (name, bytes) in msgs {
            let Ok(msg) = SyncMessage::decode(&bytes) else {
                continue;
            };
            let state = self.states.entry((peer, name.clone())).or_default();
            let doc = rep.doc_mut(&name);
            let before = doc.get_heads();
            if doc.sync().receive_sync_message(state, msg).is_err() {
                continue;
            }
            if doc.get_heads() != before {
                changed = true;
                let _ = rep.persist(&name);
                let _ = rep.rebuild(&name);
            }
        }
        rep.changed.clear();
        drop(rep);
        if changed {
            // Wakes ev_wait (and our own loop, which then relays to the other peers).
            self.shared.bump();
        }
        changed
    }

    fn on_request(&mut self, peer: PeerId, req: Vec<u8>, ch: ResponseChannel<Vec<u8>>) {
        match req.first() {
            Some(&TAG_SYNC) => {
                let msgs = decode_sync(&req[1..]).unwrap_or_default();
                self.receive(peer, msgs);
                let reply = self.generate(peer);
                if reply.is_empty() && !self.inflight.contains_key(&peer) {
                    self.mark_synced(peer);
                }
                self.send_response(peer, ch, encode_sync(&reply));
            }
            Some(&TAG_CHUNK) => {
                let hash = String::from_utf8_lossy(&req[1..]).to_string();
                let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
                let body = if ok {
                    let path = self
                        .shared
                        .rep
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .chunk_path(&hash);
                    std::fs::read(path).ok()
                } else {
                    None
                };
                let res = match body {
                    Some(mut b) => {
                        b.insert(0, TAG_CHUNK);
                        b
                    }
                    None => vec![TAG_MISSING],
                };
                self.send_response(peer, ch, res);
            }
            _ => {}
        }
    }

    fn mark_synced(&self, peer: PeerId) {
        let fresh = self
            .state
            .synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer.to_string());
        if fresh {
            self.state.push(SyncEvent::Synced(peer.to_string()));
        }
        self.state.bump();
    }

    fn fetch(
        &mut self,
        hash: String,
        mut peers: Vec<PeerId>,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    ) {
        let Some(peer) = peers.pop() else {
            let _ = reply.send(None);
            return;
        };
        let mut req = vec![TAG_CHUNK];
        req.extend_from_slice(hash.as_bytes());
        let id = self.send_request(peer, req);
        self.chunk_waits.insert(id, (hash, peers, reply));
    }

    fn send_request(&mut self, peer: PeerId, req: Vec<u8>) -> OutboundRequestId {
        self.state
            .count_traffic(peer.to_string(), req.len() as u64 + FRAME_HEADER, 0);
        self.swarm.behaviour_mut().rr.send_request(&peer, req)
    }

    fn send_response(&mut self, peer: PeerId, ch: ResponseChannel<Vec<u8>>, res: Vec<u8>) {
        self.state
            .count_traffic(peer.to_string(), res.len() as u64 + FRAME_HEADER, 0);
        let _ = self.swarm.behaviour_mut().rr.send_response(ch, res);
    }

    fn on_rr(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let len = request.len() as u64 + FRAME_HEADER;
                self.state.count_traffic(peer.to_string(), 0, len);
                if self.verified.contains(&peer) {
                    self.on_request(peer, request, channel);
                } else {
                    self.queued
                        .entry(peer)
                        .or_default()
                        .push((request, channel));
                }
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let len = response.len() as u64 + FRAME_HEADER;
                self.state.count_traffic(peer.to_string(), 0, len);
                if let Some((hash, peers, reply)) = self.chunk_waits.remove(&request_id) {
                    if response.first() == Some(&TAG_CHUNK) {
                        let _ = reply.send(Some(response[1..].to_vec()));
                    } else {
                        self.fetch(hash, peers, reply);
                    }
                    return;
                }
                if self.inflight.get(&peer).map(|(id, _)| *id) == Some(request_id) {
                    self.inflight.remove(&peer);
                }
                let msgs = if response.first() == Some(&TAG_SYNC) {
                    decode_sync(&response[1..]).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let answered_something = !msgs.is_empty();
                self.receive(peer, msgs);
                self.again.remove(&peer);
                self.round(peer, false);
                if !self.inflight.contains_key(&peer) {
                    if answered_something {
                        // Nothing left to say after an answer that said something: one more,
                        // empty, round, so the answering side too sees a round end with
                        // nothing left either way (it cannot tell otherwise, and would never
                        // count us as caught up: `waitFor` on it would time out).
                        self.round(peer, true);
                    } else {
                        // Nothing left to say after their empty answer: caught up.
                        self.mark_synced(peer);
                    }
                }
            }
            Event::OutboundFailure {
                peer, request_id, ..
            } => {
                if let Some((hash, peers, reply)) = self.chunk_waits.remove(&request_id) {
                    self.fetch(hash, peers, reply);
                    return;
                }
                if self.inflight.get(&peer).map(|(id, _)| *id) == Some(request_id) {
                    self.inflight.remove(&peer);
                    self.states.retain(|(p, _), _| *p != peer);
                }
            }
            _ => {}
        }
    }
}
