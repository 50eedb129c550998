//! The peer-to-peer layer: one event loop owns the libp2p `Swarm`; everything else
//! talks to it through a cloneable [`Client`] (commands with reply channels) and
//! receives [`NetEvent`]s and inbound job requests on bounded channels.
//!
//! The loop never does CPU-heavy work: inbound job requests are handed to the
//! executor task (or refused at once with `busy` when its queue is full), and
//! WebAssembly runs on the worker pool.

pub mod beat;
pub mod behaviour;
pub mod bootstrap;
pub mod event_loop;
pub mod executor;
pub mod profile;
pub mod protocol;
pub mod reach;
pub mod records;
pub mod remote;
pub mod replay;
pub mod steal;
pub mod traffic;

use behaviour::{Behaviour, WireLimits};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId, Swarm, identity::Keypair, kad};
use protocol::{JobRequest, JobResponse};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Capacity of the command channel into the event loop.
const COMMAND_QUEUE: usize = 256;

/// How long a provider lookup goes on after its first provider is found: long enough
/// for the closest peers asked in the same round to answer (a loopback or LAN round
/// trip is well under it), short enough that a peer that never answers costs no one.
pub const PROVIDER_SETTLE: Duration = Duration::from_millis(300);
/// Capacity of the inbound job-request channel to the executor.
pub const INBOUND_QUEUE: usize = 64;
/// Capacity of the domain-event broadcast.
const EVENT_QUEUE: usize = 256;

/// Errors of the network layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// Building the transport or behaviour failed.
    #[error("cannot build the swarm: {0}")]
    Build(String),
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Dialing a peer failed.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address or peer.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A DHT operation needs at least one known peer.
    #[error("no known peers: give a bootstrap address")]
    NoKnownPeers,
    /// A records request failed (wire, refusal, bounds).
    #[error("records request failed: {0}")]
    Records(String),
    /// Storing a provider record failed.
    #[error("cannot publish provider record: {0}")]
    Store(String),
    /// A job request failed on the wire (dial failure, timeout, connection closed, I/O, unsupported).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The event loop has stopped.
    #[error("the network event loop has stopped")]
    Closed,
}

/// How the node reaches others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// QUIC, TCP + Noise + Yamux, with DNS resolution.
    Network,
    /// libp2p's in-memory transport (tests: `/memory/<n>` addresses).
    Memory,
}

/// Domain events of the network, broadcast to whoever subscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A new listen address.
    Listening(Multiaddr),
    /// First connection to a peer.
    PeerConnected(PeerId),
    /// Last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// The set of confirmed external (direct or relayed) addresses changed.
    ExternalAddrsChanged,
    /// DCUtR made a direct connection to this peer.
    HolePunched(PeerId),
    /// DCUtR gave up on this peer: the connection stays relayed.
    HolePunchFailed(PeerId),
    /// A watched peer missed two beats; it is being probed.
    PeerSuspect(PeerId),
    /// A watched peer missed two beats and its probe (decision 0050).
    PeerFailed(PeerId),
}

/// Which way a job's bytes went to its executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// A connection dialed directly.
    Direct,
    /// A direct connection made by DCUtR from a relayed one.
    HolePunched,
    /// Through a relay's circuit.
    Relayed,
}

impl PathKind {
    /// `direct`, `hole-punched` or `relayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::HolePunched => "hole-punched",
            Self::Relayed => "relayed",
        }
    }
}

/// The path of one exchange with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// How.
    pub kind: PathKind,
    /// The relay, when relayed.
    pub relay: Option<PeerId>,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.relay {
            Some(r) => write!(f, "{} via {r}", self.kind.as_str()),
            None => f.write_str(self.kind.as_str()),
        }
    }
}

/// A job request from a peer, with the channel its answer goes back on.
#[derive(Debug)]
pub struct InboundJob {
    /// The requester.
    pub peer: PeerId,
    /// The request.
    pub request: JobRequest,
    /// The way the request's connection carries bytes (the receipt records it).
    pub path: Path,
    /// Where the response goes (hand it back with [`Client::respond`]).
    pub channel: ResponseChannel<JobResponse>,
}

/// A snapshot of the node's network state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetInfo {
    /// This node.
    pub peer_id: PeerId,
    /// Addresses the node listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with at least one connection.
    pub connected: Vec<PeerId>,
    /// Entries in the Kademlia routing table.
    pub routing_table_size: usize,
    /// Addresses confirmed (or declared) reachable from outside.
    pub external_addrs: Vec<Multiaddr>,
    /// Whether Kademlia answers queries (server mode) or only asks (client mode).
    pub dht_server: bool,
    /// `public`, `private` or `unknown`.
    pub reachability: &'static str,
    /// Relays holding a reservation for this node.
    pub relays: Vec<PeerId>,
    /// Peers found on the LAN by mDNS.
    pub lan_peers: Vec<PeerId>,
    /// Reachability counters.
    pub stats: reach::ReachStats,
    /// The connection profile (`lan`, `wan`, `mobile`, `hostile`).
    pub profile: &'static str,
    /// Never a DHT server, relay or advertised executor.
    pub hidden: bool,
}

/// Commands to the event loop. Every `reply` carries the answer back to the caller.
#[derive(Debug)]
#[allow(missing_docs)] // the fields are named for what they are
pub enum Command {
    /// Listen on an address; replies with the first address actually bound.
    Listen {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<Multiaddr, NetError>>,
    },
    /// Dial an address (with `/p2p/<id>`), add it to Kademlia; replies when connected.
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
    },
    /// Connect to a peer whose addresses the swarm knows (routing table, running query).
    Connect {
        peer: PeerId,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
    },
    /// Run a Kademlia bootstrap.
    Bootstrap {
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    /// Publish a provider record.
    StartProviding {
        key: kad::RecordKey,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    /// Find providers of a key; answer once `want` are known, `settle` after the
    /// first is known, or when the query ends.
    GetProviders {
        key: kad::RecordKey,
        want: usize,
        settle: Duration,
        reply: oneshot::Sender<ProviderLookup>,
    },
    /// The peers in the Kademlia routing table.
    RoutingPeers { reply: oneshot::Sender<Vec<PeerId>> },
    /// Put an address ending in `/p2p/<id>` in the routing table without dialing.
    Remember {
        addr: Multiaddr,
        reply: oneshot::Sender<bool>,
    },
    /// Send a job request and wait for its response (and the path it took).
    Request {
        peer: PeerId,
        request: JobRequest,
        reply: oneshot::Sender<Result<(JobResponse, Path), NetError>>,
    },
    /// Peers found on the LAN.
    LanPeers { reply: oneshot::Sender<Vec<PeerId>> },
    /// Whether some connection to the peer is direct (not through a relay).
    HasDirect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    /// Answer an inbound request.
    Respond {
        channel: ResponseChannel<JobResponse>,
        response: JobResponse,
    },
    /// Last measured ping round trip to a peer.
    Rtt {
        peer: PeerId,
        reply: oneshot::Sender<Option<Duration>>,
    },
    /// A snapshot of the network state.
    Info { reply: oneshot::Sender<NetInfo> },
    /// Peers this node dialed and is connected to directly, with the addresses it
    /// reached them at (what the peer cache keeps).
    Seen {
        reply: oneshot::Sender<Vec<(PeerId, Multiaddr)>>,
    },
    /// Starts (`on`) or ends one watch of a peer: beats go to watched peers.
    Watch { peer: PeerId, on: bool },
    /// Sends a beat to a peer now; replies with its load and the round trip.
    Probe {
        peer: PeerId,
        reply: beat::ProbeReply,
    },
    /// What is known of each peer for placement.
    Views {
        peers: Vec<PeerId>,
        reply: oneshot::Sender<Vec<crate::sched::View>>,
    },
    /// Placement could not reach the peer: skip it without a dial for a while.
    MarkFailed { peer: PeerId },
    /// Where this node's load comes from (executors).
    SetLoadSource { source: beat::LoadSource },
    /// Announces overflow to a peer (swarm mode); replies with its answer.
    Steal {
        peer: PeerId,
        overflow: steal::Overflow,
        reply: steal::StealReply,
    },
    /// The `n` peers closest to a key (Kademlia), this node excluded.
    ClosestPeers {
        key: Vec<u8>,
        n: usize,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// Sends a records request; replies with the answer.
    Records {
        peer: PeerId,
        request: records::RecordsRequest,
        reply: records::RecordsReply,
    },
    /// Answers an inbound records request.
    RespondRecords {
        channel: ResponseChannel<records::RecordsResponse>,
        response: records::RecordsResponse,
    },
    /// From now on, inbound records requests go to `tx` (the replica service).
    ServeRecords {
        tx: mpsc::Sender<records::InboundRecords>,
    },
    /// Stop the event loop.
    Shutdown,
}

/// Cloneable handle to the event loop.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<NetEvent>,
    peer_id: PeerId,
    beat_stats: std::sync::Arc<beat::BeatStats>,
    detector: crate::sched::detector::DetectorConfig,
    steal: std::sync::Arc<steal::StealGate>,
    records: std::sync::Arc<records::RecordStats>,
}

/// A watch of a peer, ended on drop (see [`Client::watching`]).
#[derive(Debug)]
pub struct Watching {
    tx: mpsc::Sender<Command>,
    peer: PeerId,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let end = Command::Watch {
            peer: self.peer,
            on: false,
        };
        // The command queue is bounded: when it is full, a task waits for room.
        if let Err(mpsc::error::TrySendError::Full(end)) = self.tx.try_send(end)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let tx = self.tx.clone();
            rt.spawn(async move {
                let _ = tx.send(end).await;
            });
        }
    }
}

impl Client {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| NetError::Closed)?;
        rx.await.map_err(|_| NetError::Closed)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Subscribes to domain events.
    pub fn events(&self) -> broadcast::Receiver<NetEvent> {
        self.events.subscribe()
    }

    /// Starts listening; returns the bound address.
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr, NetError> {
        self.ask(|reply| Command::Listen { addr, reply }).await?
    }

    /// Dials `addr` (which must end in `/p2p/<peer id>`) and waits for the connection.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Connects to a known peer (no-op when connected) and waits for the connection.
    pub async fn connect(&self, peer: PeerId) -> Result<PeerId, NetError> {
        self.ask(|reply| Command::Connect { peer, reply }).await?
    }

    /// Runs a Kademlia bootstrap.
    pub async fn bootstrap(&self) -> Result<(), NetError> {
        self.ask(|reply| Command::Bootstrap { reply }).await?
    }

    /// Publishes a provider record for `key`.
    pub async fn start_providing(&self, key: kad::RecordKey) -> Result<(), NetError> {
        self.ask(|reply| Command::StartProviding { key, reply })
            .await?
    }

    /// Finds providers of `key`, answering as soon as `want` are known, [`PROVIDER_SETTLE`]
    /// after the first one is known, or when the query ends.
    pub async fn get_providers(
        &self,
        key: kad::RecordKey,
        want: usize,
    ) -> Result<HashSet<PeerId>, NetError> {
        Ok(self.lookup_providers(key, want).await?.providers)
    }

    /// Like [`Self::get_providers`], with how far the query went to find the first
    /// provider.
    pub async fn lookup_providers(
        &self,
        key: kad::RecordKey,
        want: usize,
    ) -> Result<ProviderLookup, NetError> {
        self.ask(|reply| Command::GetProviders {
            key,
            want,
            settle: PROVIDER_SETTLE,
            reply,
        })
        .await
    }

    /// Puts a DHT server's address (ending in `/p2p/<id>`) in the routing table
    /// without dialing it; false when the address names no peer.
    pub async fn remember(&self, addr: Multiaddr) -> Result<bool, NetError> {
        self.ask(|reply| Command::Remember { addr, reply }).await
    }

    /// The peers in this node's Kademlia routing table.
    pub async fn routing_peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.ask(|reply| Command::RoutingPeers { reply }).await
    }

    /// Sends a job request and waits for the response.
    pub async fn request(
        &self,
        peer: PeerId,
        request: JobRequest,
    ) -> Result<JobResponse, NetError> {
        Ok(self.request_traced(peer, request).await?.0)
    }

    /// Sends a job request; returns the response and the path it came back on.
    pub async fn request_traced(
        &self,
        peer: PeerId,
        request: JobRequest,
    ) -> Result<(JobResponse, Path), NetError> {
        self.ask(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Whether some connection to `peer` is direct (dialed, or hole-punched).
    pub async fn has_direct(&self, peer: PeerId) -> Result<bool, NetError> {
        self.ask(|reply| Command::HasDirect { peer, reply }).await
    }

    /// Peers this node dialed and is connected to directly, with the address
    /// each was reached at.
    pub async fn seen(&self) -> Result<Vec<(PeerId, Multiaddr)>, NetError> {
        self.ask(|reply| Command::Seen { reply }).await
    }

    /// Peers found on the LAN by mDNS.
    pub async fn lan_peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.ask(|reply| Command::LanPeers { reply }).await
    }

    /// Answers an inbound request.
    pub async fn respond(
        &self,
        channel: ResponseChannel<JobResponse>,
        response: JobResponse,
    ) -> Result<(), NetError> {
        self.tx
            .send(Command::Respond { channel, response })
            .await
            .map_err(|_| NetError::Closed)
    }

    /// Last ping round trip to `peer`.
    pub async fn rtt(&self, peer: PeerId) -> Result<Option<Duration>, NetError> {
        self.ask(|reply| Command::Rtt { peer, reply }).await
    }

    /// A snapshot of the network state.
    pub async fn info(&self) -> Result<NetInfo, NetError> {
        self.ask(|reply| Command::Info { reply }).await
    }

    /// Starts (`on`) or ends one watch of `peer` (beats every interval while watched).
    pub async fn watch(&self, peer: PeerId, on: bool) {
        let _ = self.tx.send(Command::Watch { peer, on }).await;
    }

    /// Watches `peer` until the returned guard is dropped (however the caller
    /// ends: a cancelled job's future is dropped, and its watch with it).
    pub async fn watching(&self, peer: PeerId) -> Watching {
        self.watch(peer, true).await;
        Watching {
            tx: self.tx.clone(),
            peer,
        }
    }

    /// The beat and detector settings.
    pub fn detector(&self) -> crate::sched::detector::DetectorConfig {
        self.detector
    }

    /// Sends a beat to `peer` now: its advertised load and the round trip.
    pub async fn probe(
        &self,
        peer: PeerId,
    ) -> Result<(Option<crate::sched::Load>, Duration), NetError> {
        self.ask(|reply| Command::Probe { peer, reply })
            .await?
            .map_err(|reason| NetError::Request {
                peer: peer.to_string(),
                reason,
            })
    }

    /// What is known of each of `peers` for placement (in the same order).
    pub async fn views(&self, peers: Vec<PeerId>) -> Result<Vec<crate::sched::View>, NetError> {
        self.ask(|reply| Command::Views { peers, reply }).await
    }

    /// Placement could not reach `peer`.
    pub async fn mark_failed(&self, peer: PeerId) {
        let _ = self.tx.send(Command::MarkFailed { peer }).await;
    }

    /// Sets where this node's load comes from.
    pub async fn set_load_source(&self, source: beat::LoadSource) {
        let _ = self.tx.send(Command::SetLoadSource { source }).await;
    }

    /// Announces overflow to `peer`; its answer (swarm mode, decision 0053).
    pub async fn ask_steal(
        &self,
        peer: PeerId,
        overflow: steal::Overflow,
    ) -> Result<steal::StealAnswer, NetError> {
        self.ask(|reply| Command::Steal {
            peer,
            overflow,
            reply,
        })
        .await?
        .map_err(|reason| NetError::Request {
            peer: peer.to_string(),
            reason,
        })
    }

    /// The `n` (at most 20) peers closest to `key` in the DHT (this node
    /// excluded), closest first: the query ends once that many have answered.
    pub async fn closest_peers(&self, key: Vec<u8>, n: usize) -> Result<Vec<PeerId>, NetError> {
        self.ask(|reply| Command::ClosestPeers { key, n, reply })
            .await
    }

    /// Sends a records request to `peer` and waits for its answer.
    pub async fn records_request(
        &self,
        peer: PeerId,
        request: records::RecordsRequest,
    ) -> Result<records::RecordsResponse, NetError> {
        self.ask(|reply| Command::Records {
            peer,
            request,
            reply,
        })
        .await?
        .map_err(NetError::Records)
    }

    /// Answers an inbound records request.
    pub async fn respond_records(
        &self,
        channel: ResponseChannel<records::RecordsResponse>,
        response: records::RecordsResponse,
    ) {
        let _ = self
            .tx
            .send(Command::RespondRecords { channel, response })
            .await;
    }

    /// Hands inbound records requests to `tx` from now on.
    pub async fn serve_records(&self, tx: mpsc::Sender<records::InboundRecords>) {
        let _ = self.tx.send(Command::ServeRecords { tx }).await;
    }

    /// Counters of the records protocol.
    pub fn records_stats(&self) -> std::sync::Arc<records::RecordStats> {
        self.records.clone()
    }

    /// This node's steal policy, the stolen jobs it runs, and swarm counters.
    pub fn steal_gate(&self) -> std::sync::Arc<steal::StealGate> {
        self.steal.clone()
    }

    /// Beat counters.
    pub fn beat_stats(&self) -> std::sync::Arc<beat::BeatStats> {
        self.beat_stats.clone()
    }

    /// Stops the event loop.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}

/// What a provider lookup found, and how far it went to find the first provider.
#[derive(Debug, Clone, Default)]
pub struct ProviderLookup {
    /// The providers found (never this node).
    pub providers: HashSet<PeerId>,
    /// Requests answered (successes and failures) when the first provider was
    /// known: an upper bound of the lookup's hops, since Kademlia's parallel
    /// requests count too; 0 when this node's own store held the record.
    pub requests_to_first: Option<u32>,
    /// Time from the start of the query to the first provider.
    pub first_after: Option<Duration>,
    /// Requests the query had sent when it answered.
    pub requests: u32,
}

/// Network settings of a node.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Transport family.
    pub transport: TransportKind,
    /// Size, time and connection limits.
    pub limits: WireLimits,
    /// Reachability: declared addresses, relays, AutoNAT, mDNS, hidden.
    pub reach: reach::ReachConfig,
    /// The beat and its failure detector.
    pub detector: crate::sched::detector::DetectorConfig,
    /// Whether and how much this node takes other nodes' queued work (swarm mode).
    pub steal: steal::StealPolicy,
    /// Kademlia's timers and record policy.
    pub kad: KadSettings,
}

/// Kademlia's timers and record policy. Not configuration-file keys: the
/// simulation scales them (`plasm sim --time-scale`), nodes keep the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KadSettings {
    /// A query gives up after this long.
    pub query_timeout: Duration,
    /// A provider record expires this long after it was stored.
    pub provider_ttl: Duration,
    /// A provider republishes its records this often (Kademlia's own timer; plasm's
    /// advertisement also republishes on its profile's interval).
    pub provider_republish: Duration,
    /// Store provider records peers send. Off only in the simulation's negative
    /// control, where the DHT keeps nothing and lookups must fail.
    pub store_provider_records: bool,
}

impl Default for KadSettings {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(20),
            provider_ttl: Duration::from_secs(3600),
            provider_republish: Duration::from_secs(1200),
            store_provider_records: true,
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            transport: TransportKind::Network,
            limits: WireLimits::default(),
            reach: reach::ReachConfig::default(),
            detector: Default::default(),
            steal: steal::StealPolicy::default(),
            kad: KadSettings::default(),
        }
    }
}

fn build_swarm(key: &Keypair, config: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    use libp2p::{SwarmBuilder, noise, tcp, yamux};
    let err = |e: &dyn std::fmt::Display| NetError::Build(e.to_string());
    let limits = config.limits;
    let reach = config.reach.clone();
    let kad = config.kad;
    let behaviour = move |key: &Keypair, relay| {
        Behaviour::new(key, limits, &reach, kad, relay)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    };
    let keep_alive = config.reach.settings.keep_alive;
    let idle = move |c: libp2p::swarm::Config| c.with_idle_connection_timeout(keep_alive);
    match config.transport {
        TransportKind::Network => Ok(SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| err(&e))?
            .with_quic()
            .with_dns()
            .map_err(|e| err(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| err(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| err(&e))?
            .with_swarm_config(idle)
            .build()),
        TransportKind::Memory => Ok(SwarmBuilder::with_existing_identity(key.clone())
            .with_tokio()
            .with_other_transport(|key| {
                use libp2p::Transport;
                use libp2p::core::{transport::MemoryTransport, upgrade::Version};
                // Bytes are counted below Noise and Yamux (the simulation's figures).
                Ok(MemoryTransport::default()
                    .map(|c, _| traffic::Counted::new(c))
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .boxed())
            })
            .map_err(|e| err(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| err(&e))?
            .with_behaviour(behaviour)
            .map_err(|e| err(&e))?
            .with_swarm_config(idle)
            .build()),
    }
}

/// Builds the swarm and spawns its event loop. Inbound job requests arrive on the
/// returned receiver; when nobody reads it (a client-only node) pass `accept_jobs = false`
/// and every inbound request is declined by the loop itself.
pub fn spawn(
    key: &Keypair,
    config: &NetConfig,
    accept_jobs: bool,
) -> Result<
    (
        Client,
        mpsc::Receiver<InboundJob>,
        tokio::task::JoinHandle<()>,
    ),
    NetError,
> {
    let swarm = build_swarm(key, config)?;
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (events, _) = broadcast::channel(EVENT_QUEUE);
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let peer_id = *swarm.local_peer_id();
    let beat_stats = std::sync::Arc::new(beat::BeatStats::default());
    let gate = std::sync::Arc::new(steal::StealGate::new(config.steal.clone()));
    let record_stats = std::sync::Arc::new(records::RecordStats::default());
    let client = Client {
        records: record_stats.clone(),
        steal: gate.clone(),
        tx,
        events: events.clone(),
        peer_id,
        beat_stats: beat_stats.clone(),
        detector: config.detector,
    };
    let event_loop = event_loop::EventLoop::new(
        swarm,
        rx,
        events,
        accept_jobs.then_some(inbound_tx),
        reach::Reach::new(config.reach.clone()),
        beat::Beats::new(config.detector, beat_stats),
        steal::StealDesk::new(gate),
    )
    .with_records(records::RecordsDesk::new(record_stats));
    let handle = tokio::spawn(event_loop.run());
    Ok((client, inbound_rx, handle))
}
