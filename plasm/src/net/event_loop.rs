//! The event loop: sole owner of the `Swarm`.
//!
//! It turns commands into swarm calls, remembers which reply channel waits for
//! which query, request or dial, and turns swarm events into replies, domain
//! events and inbound job requests. Everything it does is bookkeeping; nothing
//! here blocks or computes.

use super::beat::{Beat, Beats};
use super::behaviour::{Behaviour, BehaviourEvent};
use super::protocol::{DeclineReason, FailureReason, JobRequest, JobResponse, KAD_PROTOCOL};
use super::reach::{self, HOP_PROTOCOL, NatStatus, Reach};
use super::{Command, InboundJob, NetError, NetEvent, NetInfo, Path, PathKind};
use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::ConnectionId;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, identify, ping};
use libp2p::{autonat, dcutr, mdns, relay};
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

type Reply<T> = oneshot::Sender<T>;
/// A provider lookup in flight: what it has found, when to answer, and who waits.
struct ProviderQuery {
    found: HashSet<PeerId>,
    /// Answer once this many are known.
    want: usize,
    /// Answer this long after the first provider is found, however many are known:
    /// the rest of the query may wait on peers that never answer (Kademlia's own
    /// timeout is 20 s), and a requester needs candidates, not all of them.
    settle: Duration,
    /// The settle timer is running.
    settling: bool,
    /// When the query started, and how far it had gone when the first provider
    /// answered (the simulation's hop figure).
    started: std::time::Instant,
    requests_to_first: Option<u32>,
    first_after: Option<Duration>,
    requests: u32,
    reply: Reply<super::ProviderLookup>,
}

/// A settle timer: fires with the query it belongs to.
type SettleTimer = std::pin::Pin<Box<dyn std::future::Future<Output = QueryId> + Send>>;

/// A job response and the path it came back on.
type Traced = Result<(JobResponse, Path), NetError>;

/// A request held back, with its deadline.
type Held = (PeerId, JobRequest, Reply<Traced>, std::time::Instant);

/// Longest a request waits for a closing circuit to its peer to be gone.
const DEFER_LIMIT: Duration = Duration::from_secs(5);

/// Peers found on the LAN that are remembered (mDNS answers come from anyone).
const MAX_LAN_PEERS: usize = 64;

/// A direct connection this soon after a relayed one to the same peer came from a hole punch.
const PUNCH_WINDOW: Duration = Duration::from_secs(30);

/// Peers whose last relayed connection is remembered for [`PUNCH_WINDOW`].
const MAX_RELAYED_SEEN: usize = 4096;

/// How often watched peers' beats and verdicts are checked.
const BEAT_TICK: Duration = Duration::from_millis(100);

/// How often relay reservations are checked and made up.
const REACH_TICK: Duration = Duration::from_secs(2);

/// What the loop remembers of an open connection.
#[derive(Debug, Clone)]
struct Conn {
    peer: PeerId,
    /// The dialed address, or for an accepted connection the address it came in on
    /// when that is a relay circuit (else the remote's address).
    remote: Multiaddr,
    dialer: bool,
}

/// The loop's state.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NetEvent>,
    inbound: Option<mpsc::Sender<InboundJob>>,
    pending_listen:
        HashMap<libp2p::core::transport::ListenerId, Reply<Result<Multiaddr, NetError>>>,
    pending_dial: HashMap<PeerId, Vec<Reply<Result<PeerId, NetError>>>>,
    pending_bootstrap: HashMap<QueryId, Reply<Result<(), NetError>>>,
    pending_provide: HashMap<QueryId, Reply<Result<(), NetError>>>,
    pending_providers: HashMap<QueryId, ProviderQuery>,
    settle_timers: futures::stream::FuturesUnordered<SettleTimer>,
    pending_requests: HashMap<OutboundRequestId, (PeerId, Reply<Traced>)>,
    rtts: HashMap<PeerId, Duration>,
    reach: Reach,
    connections: HashMap<ConnectionId, Conn>,
    /// Direct connections DCUtR made.
    punched: HashSet<ConnectionId>,
    /// Peers reached by a hole punch: every direct connection to them while any
    /// connection stays open came from the punch (with QUIC both sides dial at once,
    /// and the job may travel on the other side's connection).
    punched_peers: HashSet<PeerId>,
    /// When a relayed connection to a peer last came up: a direct one within
    /// [`PUNCH_WINDOW`] is the punch's, even when the circuit closed first (the
    /// requester closes it as soon as its side of the punch is up).
    relayed_seen: HashMap<PeerId, std::time::Instant>,
    /// Peers whose relayed connections close once no request to them is pending.
    drop_relayed: HashSet<PeerId>,
    /// Relayed connections asked to close, not closed yet.
    closing: HashMap<ConnectionId, PeerId>,
    /// Requests held until the closing connections to their peer are gone (or
    /// until their deadline: a circuit whose far end stops reading may take long to close).
    deferred: Vec<Held>,
    /// Peers found on the LAN, with their addresses.
    lan_peers: BTreeMap<PeerId, Vec<Multiaddr>>,
    /// Every listen address asked for is on loopback (or in memory).
    listen_local: bool,
    /// Beats: watched peers, advertisements, the failure detector.
    beats: Beats,
    /// Swarm mode's consent messages: the policy, per-peer buckets, asks in flight.
    steal: super::steal::StealDesk,
    /// Records: where inbound requests go, buckets, requests and lookups in flight.
    records: super::records::RecordsDesk,
}

impl EventLoop {
    /// Wraps a built swarm.
    pub fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<NetEvent>,
        inbound: Option<mpsc::Sender<InboundJob>>,
        reach: Reach,
        beats: Beats,
        steal: super::steal::StealDesk,
    ) -> Self {
        let mut swarm = swarm;
        for addr in reach.config().external_addresses.clone() {
            swarm.add_external_address(addr);
        }
        Self {
            swarm,
            commands,
            events,
            inbound,
            pending_listen: HashMap::new(),
            pending_dial: HashMap::new(),
            pending_bootstrap: HashMap::new(),
            pending_provide: HashMap::new(),
            pending_providers: HashMap::new(),
            settle_timers: futures::stream::FuturesUnordered::new(),
            pending_requests: HashMap::new(),
            rtts: HashMap::new(),
            reach,
            connections: HashMap::new(),
            punched: HashSet::new(),
            punched_peers: HashSet::new(),
            relayed_seen: HashMap::new(),
            drop_relayed: HashSet::new(),
            closing: HashMap::new(),
            deferred: Vec::new(),
            lan_peers: BTreeMap::new(),
            listen_local: true,
            beats,
            steal,
            records: super::records::RecordsDesk::new(Default::default()),
        }
    }

    /// Counts records traffic into `desk` (shared with the client's stats).
    pub fn with_records(mut self, desk: super::records::RecordsDesk) -> Self {
        self.records = desk;
        self
    }

    /// Runs until a `Shutdown` command or until every client is dropped.
    pub async fn run(mut self) {
        self.apply_mode();
        let mut tick = tokio::time::interval(REACH_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat_tick = tokio::time::interval(BEAT_TICK);
        beat_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(id) = self.settle_timers.next(), if !self.settle_timers.is_empty() => {
                    self.answer_providers(id);
                }
                _ = tick.tick() => {
                    self.maintain_relays();
                    self.release_overdue();
                }
                _ = beat_tick.tick() => self.on_beat_tick(),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn on_command(&mut self, command: Command) {
        let swarm = &mut self.swarm;
        match command {
            Command::Listen { addr, reply } => match swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.listen_local &= reach::is_local(&addr);
                    self.pending_listen.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(NetError::Listen {
                        addr: addr.to_string(),
                        reason: listen_reason(&e),
                    }));
                }
            },
            Command::Dial { addr, reply } => {
                let Some(peer) = peer_of(&addr) else {
                    let _ = reply.send(Err(NetError::Dial {
                        addr: addr.to_string(),
                        reason: "the address must end in /p2p/<peer id>".into(),
                    }));
                    return;
                };
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                if swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                match swarm.dial(addr.clone()) {
                    Ok(()) => self.pending_dial.entry(peer).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            addr: addr.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Connect { peer, reply } => {
                if swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                // Already dialing is fine: the reply waits for that dial's outcome.
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match swarm.dial(opts) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                        self.pending_dial.entry(peer).or_default().push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            addr: peer.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Bootstrap { reply } => match swarm.behaviour_mut().kad.bootstrap() {
                Ok(id) => {
                    self.pending_bootstrap.insert(id, reply);
                }
                Err(_) => {
                    let _ = reply.send(Err(NetError::NoKnownPeers));
                }
            },
            Command::StartProviding { key, reply } => {
                match swarm.behaviour_mut().kad.start_providing(key) {
                    Ok(id) => {
                        self.pending_provide.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Store(e.to_string())));
                    }
                }
            }
            Command::GetProviders {
                key,
                want,
                settle,
                reply,
            } => {
                let id = swarm.behaviour_mut().kad.get_providers(key);
                self.pending_providers.insert(
                    id,
                    ProviderQuery {
                        found: HashSet::new(),
                        want: want.max(1),
                        settle,
                        settling: false,
                        started: std::time::Instant::now(),
                        requests_to_first: None,
                        first_after: None,
                        requests: 0,
                        reply,
                    },
                );
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                // A request must not land on a circuit that is being closed (the
                // request-response behaviour picks among open connections): it waits
                // until those are gone.
                if self.closing.values().any(|p| *p == peer) {
                    tracing::debug!(%peer, "request held until the relayed circuit closes");
                    let deadline = std::time::Instant::now() + DEFER_LIMIT;
                    self.deferred.push((peer, request, reply, deadline));
                } else {
                    let id = swarm.behaviour_mut().job.send_request(&peer, request);
                    self.pending_requests.insert(id, (peer, reply));
                }
            }
            Command::Respond { channel, response } => {
                // Fails only when the requester is gone; nothing to tell anyone.
                let _ = swarm.behaviour_mut().job.send_response(channel, response);
            }
            Command::Watch { peer, on } => {
                self.beats.watch(peer, on, std::time::Instant::now());
            }
            Command::Probe { peer, reply } => {
                // Probes of a peer share the beat in flight to it.
                if let Some(reply) = self.beats.join(peer, reply) {
                    let id = swarm
                        .behaviour_mut()
                        .beat
                        .send_request(&peer, self.beats.own());
                    self.beats
                        .sent(id, peer, Some(reply), std::time::Instant::now());
                }
            }
            Command::Views { peers, reply } => {
                let now = std::time::Instant::now();
                let views = peers
                    .iter()
                    .map(|p| self.beats.view(*p, self.rtts.get(p).copied(), now))
                    .collect();
                let _ = reply.send(views);
            }
            Command::MarkFailed { peer } => {
                self.beats.mark_failed(peer, std::time::Instant::now());
            }
            Command::SetLoadSource { source } => self.beats.set_source(source),
            Command::Steal {
                peer,
                overflow,
                reply,
            } => {
                if self.steal.pending.len() >= super::steal::MAX_STEAL_PEERS {
                    let _ = reply.send(Err("too many overflow announcements in flight".into()));
                } else {
                    let id = swarm.behaviour_mut().steal.send_request(&peer, overflow);
                    self.steal
                        .gate
                        .stats
                        .asked
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.steal.pending.insert(id, reply);
                }
            }
            Command::ClosestPeers { key, n, reply } => {
                if self.records.closest.len() >= super::records::MAX_RECORDS_PENDING {
                    let _ = reply.send(Vec::new());
                } else {
                    let n = std::num::NonZeroUsize::new(n.clamp(1, 20))
                        .unwrap_or(std::num::NonZeroUsize::MIN);
                    let id = swarm.behaviour_mut().kad.get_n_closest_peers(key, n);
                    self.records.closest.insert(id, reply);
                }
            }
            Command::Records {
                peer,
                request,
                reply,
            } => {
                if self.records.pending.len() >= super::records::MAX_RECORDS_PENDING {
                    let _ = reply.send(Err("too many records requests in flight".into()));
                } else {
                    use std::sync::atomic::Ordering;
                    let stats = &self.records.stats;
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    stats
                        .bytes_out
                        .fetch_add(super::records::request_bytes(&request), Ordering::Relaxed);
                    let id = swarm.behaviour_mut().records.send_request(&peer, request);
                    self.records.pending.insert(id, reply);
                }
            }
            Command::RespondRecords { channel, response } => {
                self.records.stats.bytes_out.fetch_add(
                    super::records::response_bytes(&response),
                    std::sync::atomic::Ordering::Relaxed,
                );
                let _ = swarm
                    .behaviour_mut()
                    .records
                    .send_response(channel, response);
            }
            Command::ServeRecords { tx } => self.records.inbound = Some(tx),
            Command::Rtt { peer, reply } => {
                let _ = reply.send(self.rtts.get(&peer).copied());
            }
            Command::HasDirect { peer, reply } => {
                let direct = self
                    .connections
                    .values()
                    .any(|c| c.peer == peer && !reach::is_relayed(&c.remote));
                let _ = reply.send(direct);
            }
            Command::Seen { reply } => {
                let seen = self
                    .connections
                    .values()
                    .filter(|c| c.dialer && !reach::is_relayed(&c.remote))
                    .map(|c| (c.peer, c.remote.clone()))
                    .collect();
                let _ = reply.send(seen);
            }
            Command::LanPeers { reply } => {
                let _ = reply.send(self.lan_peers.keys().copied().collect());
            }
            Command::Remember { addr, reply } => {
                let peer = peer_of(&addr);
                if let Some(peer) = peer {
                    swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
                let _ = reply.send(peer.is_some());
            }
            Command::RoutingPeers { reply } => {
                let mut peers = Vec::new();
                for bucket in swarm.behaviour_mut().kad.kbuckets() {
                    peers.extend(bucket.iter().map(|e| *e.node.key.preimage()));
                }
                let _ = reply.send(peers);
            }
            Command::Info { reply } => {
                let mut routing_table_size = 0;
                for bucket in swarm.behaviour_mut().kad.kbuckets() {
                    routing_table_size += bucket.num_entries();
                }
                let _ = reply.send(NetInfo {
                    peer_id: *swarm.local_peer_id(),
                    listen_addrs: swarm.listeners().cloned().collect(),
                    connected: swarm.connected_peers().copied().collect(),
                    routing_table_size,
                    external_addrs: swarm.external_addresses().cloned().collect(),
                    dht_server: swarm.behaviour_mut().kad.mode() == libp2p::kad::Mode::Server,
                    reachability: self.reach.reachability(),
                    relays: self.reach.relays().copied().collect(),
                    lan_peers: self.lan_peers.keys().copied().collect(),
                    stats: self.reach.stats,
                    profile: self.reach.config().profile.as_str(),
                    hidden: self.reach.config().hidden,
                });
            }
            Command::Shutdown => {}
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                if let Some(reply) = self.pending_listen.remove(&listener_id) {
                    let _ = reply.send(Ok(address.clone()));
                }
                // `--public`: the operator says this address is reachable. (The swarm
                // reports no event for addresses added here, so the state is updated too.)
                if self.reach.declares(&address, self.listen_local) {
                    self.swarm.add_external_address(address.clone());
                    self.reach.on_external_confirmed(address.clone());
                    self.apply_mode();
                    let _ = self.events.send(NetEvent::ExternalAddrsChanged);
                }
                let _ = self.events.send(NetEvent::Listening(address));
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                // From a behaviour: the relay client (relayed) or AutoNAT (direct).
                tracing::info!(%address, "external address confirmed");
                if reach::is_relayed(&address) {
                    self.reach.on_external_confirmed(address);
                } else {
                    self.reach.on_probe_confirmed(address);
                }
                self.apply_mode();
                let _ = self.events.send(NetEvent::ExternalAddrsChanged);
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address expired");
                self.reach.on_external_expired(&address);
                self.apply_mode();
                let _ = self.events.send(NetEvent::ExternalAddrsChanged);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(relay) = self
                    .reach
                    .on_listener_closed(listener_id, std::time::Instant::now())
                {
                    tracing::info!(%relay, ?reason, "relay reservation closed; choosing another");
                    self.maintain_relays();
                }
                if let Some(reply) = self.pending_listen.remove(&listener_id) {
                    let reason = reason
                        .err()
                        .map_or_else(|| "closed".to_owned(), |e| e.to_string());
                    let _ = reply.send(Err(NetError::Listen {
                        addr: String::new(),
                        reason,
                    }));
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                connection_id,
                endpoint,
                ..
            } => {
                // A circuit accepted through a relay has the relay in its local
                // address (`…/p2p/<relay>/p2p-circuit`) and only `/p2p/<peer>` as
                // its remote one: the local one says which way its bytes go.
                let remote = match &endpoint {
                    libp2p::core::ConnectedPoint::Listener { local_addr, .. }
                        if reach::is_relayed(local_addr) =>
                    {
                        local_addr
                    }
                    _ => endpoint.get_remote_address(),
                };
                // A direct connection that appears while a relayed one is open was
                // punched (DCUtR reports it on one side only, by its own connection id).
                let now = std::time::Instant::now();
                // A handshake completed: the peer is alive.
                self.beats.heard(peer_id, now);
                let relayed_before = self
                    .connections
                    .values()
                    .any(|c| c.peer == peer_id && reach::is_relayed(&c.remote))
                    || self
                        .relayed_seen
                        .get(&peer_id)
                        .is_some_and(|t| now.duration_since(*t) < PUNCH_WINDOW);
                if reach::is_relayed(remote) {
                    if self.relayed_seen.len() >= MAX_RELAYED_SEEN {
                        self.relayed_seen
                            .retain(|_, t| now.duration_since(*t) < PUNCH_WINDOW);
                    }
                    if self.relayed_seen.len() < MAX_RELAYED_SEEN {
                        self.relayed_seen.insert(peer_id, now);
                    }
                }
                if !reach::is_relayed(remote) && relayed_before {
                    self.punched.insert(connection_id);
                    self.punched_peers.insert(peer_id);
                }
                self.connections.insert(
                    connection_id,
                    Conn {
                        peer: peer_id,
                        remote: remote.clone(),
                        dialer: endpoint.is_dialer(),
                    },
                );
                for reply in self.pending_dial.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(peer_id));
                }
                if num_established.get() == 1 {
                    let _ = self.events.send(NetEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                connection_id,
                ..
            } => {
                self.connections.remove(&connection_id);
                self.punched.remove(&connection_id);
                if self.closing.remove(&connection_id).is_some() {
                    self.release_deferred(peer_id);
                }
                if num_established == 0 {
                    self.rtts.remove(&peer_id);
                    self.punched_peers.remove(&peer_id);
                    self.drop_relayed.remove(&peer_id);
                    self.reach.remove_relay_candidate(&peer_id);
                    let _ = self.events.send(NetEvent::PeerDisconnected(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                for reply in self.pending_dial.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(NetError::Dial {
                        addr: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        count_message(&event);
        match event {
            // Only peers that serve plasm's DHT belong in the routing table.
            BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                connection_id,
            }) => {
                if !info.protocols.contains(&HOP_PROTOCOL) {
                    self.reach.remove_relay_candidate(&peer_id);
                } else {
                    // The address this node reached the relay at, else one it announced.
                    let via = self
                        .connections
                        .get(&connection_id)
                        .filter(|c| c.dialer && !reach::is_relayed(&c.remote))
                        .map(|c| c.remote.clone())
                        .or_else(|| {
                            info.listen_addrs
                                .iter()
                                .find(|a| !reach::is_relayed(a))
                                .cloned()
                        });
                    if let Some(addr) = via {
                        let addr = strip_p2p(addr);
                        self.reach.add_relay_candidate(peer_id, addr);
                        self.maintain_relays();
                    }
                }
                // Only peers that serve plasm's DHT belong in the routing table; they
                // are reachable, so they are also the ones asked for AutoNAT probes.
                if info.protocols.contains(&KAD_PROTOCOL) {
                    self.swarm.behaviour_mut().autonat.add_server(peer_id, None);
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                tracing::info!(relay = %relay_peer_id, renewal, "relay reservation accepted");
                self.reach.on_reservation_accepted(relay_peer_id);
                // A reservation that was in flight when the node became reachable
                // can be let go now.
                self.apply_mode();
            }
            BehaviourEvent::Relay(event) => self.on_relay_server_event(event),
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "AutoNAT status");
                let gone = self.reach.on_nat_status(match new {
                    autonat::NatStatus::Public(_) => NatStatus::Public,
                    autonat::NatStatus::Private => NatStatus::Private,
                    autonat::NatStatus::Unknown => NatStatus::Unknown,
                });
                // libp2p never expires what AutoNAT confirmed: stop announcing it.
                for addr in &gone {
                    self.swarm.remove_external_address(addr);
                }
                self.apply_mode();
                let _ = self.events.send(NetEvent::ExternalAddrsChanged);
            }
            BehaviourEvent::Autonat(autonat::Event::InboundProbe(probe)) => match probe {
                autonat::InboundProbeEvent::Error { peer, error, .. } => {
                    self.reach.stats.autonat_probes_refused += 1;
                    tracing::debug!(%peer, ?error, "AutoNAT probe refused");
                }
                autonat::InboundProbeEvent::Response { .. } => {
                    self.reach.stats.autonat_probes_answered += 1;
                }
                autonat::InboundProbeEvent::Request { .. } => {}
            },
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => {
                self.reach.stats.hole_punch_attempts += 1;
                match result {
                    Ok(connection) => {
                        tracing::info!(peer = %remote_peer_id, "hole punched: direct connection");
                        self.reach.stats.hole_punch_successes += 1;
                        self.punched.insert(connection);
                        self.punched_peers.insert(remote_peer_id);
                        self.drop_relayed.insert(remote_peer_id);
                        self.close_relayed_if_idle(remote_peer_id);
                        let _ = self.events.send(NetEvent::HolePunched(remote_peer_id));
                    }
                    Err(e) => {
                        tracing::info!(peer = %remote_peer_id, error = %e, "hole punch failed; staying relayed");
                        let _ = self.events.send(NetEvent::HolePunchFailed(remote_peer_id));
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if peer == *self.swarm.local_peer_id() {
                        continue;
                    }
                    if !self.lan_peers.contains_key(&peer) && self.lan_peers.len() >= MAX_LAN_PEERS
                    {
                        continue;
                    }
                    self.swarm.add_peer_address(peer, addr.clone());
                    let addrs = self.lan_peers.entry(peer).or_default();
                    if !addrs.contains(&addr) && addrs.len() < 8 {
                        addrs.push(addr);
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                for (peer, addr) in gone {
                    if let Some(addrs) = self.lan_peers.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.lan_peers.remove(&peer);
                        }
                    }
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.rtts.insert(peer, rtt);
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            }) => {
                self.on_query(id, result, step.last, &stats);
            }
            // Only the simulation's negative control filters records: dropped here.
            BehaviourEvent::Kad(kad::Event::InboundRequest { .. }) => {}
            BehaviourEvent::Job(event) => self.on_job_event(event),
            BehaviourEvent::Beat(event) => self.on_beat_event(event),
            BehaviourEvent::Steal(event) => self.on_steal_event(event),
            BehaviourEvent::Records(event) => self.on_records_event(event),
            _ => {}
        }
    }

    fn on_query(&mut self, id: QueryId, result: QueryResult, last: bool, stats: &kad::QueryStats) {
        if last {
            tracing::trace!(
                kind = query_kind(&result),
                requests = stats.num_requests(),
                "kad query ended"
            );
        }
        match result {
            QueryResult::GetClosestPeers(r) => {
                if let Some(reply) = self.records.closest.remove(&id) {
                    let peers = match r {
                        Ok(ok) => ok.peers,
                        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                    };
                    let _ = reply.send(peers.into_iter().map(|p| p.peer_id).collect());
                }
            }
            QueryResult::Bootstrap(r) if last || r.is_err() => {
                if let Some(reply) = self.pending_bootstrap.remove(&id) {
                    let _ = reply.send(r.map(|_| ()).map_err(|_| NetError::NoKnownPeers));
                }
            }
            QueryResult::StartProviding(r) => {
                if let Some(reply) = self.pending_provide.remove(&id) {
                    let _ = reply.send(r.map(|_| ()).map_err(|e| NetError::Store(e.to_string())));
                }
            }
            QueryResult::GetProviders(r) => {
                let me = *self.swarm.local_peer_id();
                let mut dial = Vec::new();
                let mut settle_from_now = None;
                if let Some(q) = self.pending_providers.get_mut(&id) {
                    q.requests = stats.num_requests();
                }
                if let Some(q) = self.pending_providers.get_mut(&id)
                    && let Ok(GetProvidersOk::FoundProviders { providers, .. }) = r
                {
                    // Requests answered when the first provider is known: an upper
                    // bound of the hops (parallel requests count too); 0 when this
                    // node's own store held the record.
                    if q.requests_to_first.is_none() && providers.iter().any(|p| *p != me) {
                        q.requests_to_first = Some(stats.num_successes() + stats.num_failures());
                        q.first_after = Some(q.started.elapsed());
                    }
                    for peer in providers {
                        if q.found.len() >= q.want || peer == me {
                            continue;
                        }
                        q.found.insert(peer);
                        dial.push(peer);
                    }
                    if !q.found.is_empty() && !q.settling {
                        q.settling = true;
                        settle_from_now = Some(q.settle);
                    }
                }
                // Provider addresses live only as long as the query: dial now, while
                // the swarm can still resolve them, so the requester can reach them later.
                for peer in dial {
                    if !self.swarm.is_connected(&peer) {
                        let opts = DialOpts::peer_id(peer)
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
                if let Some(settle) = settle_from_now {
                    self.settle_timers.push(Box::pin(async move {
                        tokio::time::sleep(settle).await;
                        id
                    }));
                }
                // Once enough providers are known, answering (and ending the query) saves the
                // round trips to the rest of the closest peers.
                let done = last
                    || self
                        .pending_providers
                        .get(&id)
                        .is_some_and(|q| q.found.len() >= q.want);
                if done {
                    self.answer_providers(id);
                }
            }
            _ => {}
        }
    }

    /// Answers a provider lookup with what it has found and ends its query (a no-op
    /// when it was answered already).
    fn answer_providers(&mut self, id: QueryId) {
        if let Some(q) = self.pending_providers.remove(&id) {
            let _ = q.reply.send(super::ProviderLookup {
                providers: q.found,
                requests_to_first: q.requests_to_first,
                first_after: q.first_after,
                requests: q.requests,
            });
            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                query.finish();
            }
        }
    }

    fn on_job_event(&mut self, event: request_response::Event<JobRequest, JobResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message,
                connection_id,
            } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let busy = |request: &JobRequest| match request {
                        JobRequest::Offer { .. } => JobResponse::Decline {
                            reason: DeclineReason::Busy,
                            message: "the executor's request queue is full".into(),
                        },
                        JobRequest::Bundle { .. } => JobResponse::Failure {
                            reason: FailureReason::Busy,
                            message: "the executor's request queue is full".into(),
                        },
                    };
                    let path = self.path_of(connection_id);
                    let Some(inbound) = &self.inbound else {
                        let _ = self.swarm.behaviour_mut().job.send_response(
                            channel,
                            JobResponse::Decline {
                                reason: DeclineReason::Policy,
                                message: "this node does not execute jobs".into(),
                            },
                        );
                        return;
                    };
                    if let Err(e) = inbound.try_send(InboundJob {
                        peer,
                        request,
                        path,
                        channel,
                    }) {
                        let job = match e {
                            mpsc::error::TrySendError::Full(j)
                            | mpsc::error::TrySendError::Closed(j) => j,
                        };
                        let response = busy(&job.request);
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .job
                            .send_response(job.channel, response);
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, reply)) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok((response, self.path_of(connection_id))));
                        self.close_relayed_if_idle(peer);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
                self.close_relayed_if_idle(peer);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // Oversized or undecodable requests end here: the stream is dropped.
                tracing::debug!(%peer, %error, "inbound job request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

impl EventLoop {
    fn on_beat_tick(&mut self) {
        let now = std::time::Instant::now();
        let out = self.beats.tick(now);
        for peer in out.send {
            let beat = self.beats.own();
            let id = self.swarm.behaviour_mut().beat.send_request(&peer, beat);
            self.beats.sent(id, peer, None, now);
        }
        for peer in out.suspect {
            tracing::info!(%peer, "peer missed two beats: suspect, probing");
            let _ = self.events.send(NetEvent::PeerSuspect(peer));
        }
        for peer in out.failed {
            tracing::warn!(%peer, "peer missed two beats and its probe: failed");
            let _ = self.events.send(NetEvent::PeerFailed(peer));
        }
    }

    fn on_beat_event(&mut self, event: request_response::Event<Beat, Beat>) {
        use std::sync::atomic::Ordering;
        let now = std::time::Instant::now();
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if !self.beats.admit(peer, now) {
                        // Dropped unanswered: the flooding peer's own request times out.
                        return;
                    }
                    if request.load.as_ref().is_some_and(|l| !l.is_sane()) {
                        self.beats.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    self.beats.stats.served.fetch_add(1, Ordering::Relaxed);
                    let own = self.beats.own();
                    let _ = self.swarm.behaviour_mut().beat.send_response(channel, own);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, rtt)) = self.beats.answered(request_id, response, now) {
                        self.rtts.insert(peer, rtt);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                // A peer of an older release does not speak beats: the detector
                // leaves it to the job's own timeout and its connection.
                let unsupported = matches!(
                    error,
                    request_response::OutboundFailure::UnsupportedProtocols
                );
                self.beats.lost(request_id, error.to_string(), unsupported);
            }
            request_response::Event::InboundFailure { error, .. } => {
                // Oversized or undecodable beats end here.
                if matches!(error, request_response::InboundFailure::Io(_)) {
                    self.beats.stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_steal_event(
        &mut self,
        event: request_response::Event<super::steal::Overflow, super::steal::StealAnswer>,
    ) {
        use std::sync::atomic::Ordering;
        let stats = &self.steal.gate.stats;
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if !self.steal.buckets.admit(peer, std::time::Instant::now()) {
                        // Dropped unanswered: the flooding peer's own request times out.
                        stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if !request.is_sane() {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                    let own = self.beats.own();
                    let answer = self.steal.gate.answer_to(
                        peer,
                        &request,
                        own.load.as_ref(),
                        std::time::Instant::now(),
                    );
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .steal
                        .send_response(channel, answer);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.steal.pending.remove(&request_id) {
                        if !response.is_sane() {
                            stats.malformed.fetch_add(1, Ordering::Relaxed);
                            let _ = reply.send(Err("an answer out of bounds".into()));
                            return;
                        }
                        if matches!(response, super::steal::StealAnswer::Idle { .. }) {
                            stats.idle_answers.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.steal.pending.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { error, .. } => {
                if matches!(error, request_response::InboundFailure::Io(_)) {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_records_event(
        &mut self,
        event: request_response::Event<
            super::records::RecordsRequest,
            super::records::RecordsResponse,
        >,
    ) {
        use super::records::{InboundRecords, RecordsResponse};
        use std::sync::atomic::Ordering;
        let stats = self.records.stats.clone();
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    stats
                        .bytes_in
                        .fetch_add(super::records::request_bytes(&request), Ordering::Relaxed);
                    // Puts cost a holder a verification and a write; blobs cost by
                    // size (a 32 MiB blob is 130 tokens: a burst of 100 cannot pay
                    // for one at once, so a peer sends at most about 5 MiB/s).
                    let cost = super::records::cost(&request);
                    let refuse = |this: &mut Self, reason: &str, channel| {
                        let _ = this.swarm.behaviour_mut().records.send_response(
                            channel,
                            RecordsResponse::Refused {
                                reason: reason.to_owned(),
                            },
                        );
                    };
                    if !self
                        .records
                        .buckets
                        .admit(peer, cost, std::time::Instant::now())
                    {
                        stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        refuse(self, "rate-limited", channel);
                        return;
                    }
                    if !request.is_sane() {
                        stats.malformed.fetch_add(1, Ordering::Relaxed);
                        refuse(self, "malformed", channel);
                        return;
                    }
                    // Only the peers closest to a job hold its records: a put sent to
                    // any other node is refused, so nobody can plant records on a
                    // node a fetcher trusts for its local copy.
                    if let Some(key) = request.put_key()
                        && !self.is_close(&key)
                    {
                        stats.not_close.fetch_add(1, Ordering::Relaxed);
                        refuse(self, "not among the peers closest to this key", channel);
                        return;
                    }
                    let Some(tx) = self.records.inbound.as_ref() else {
                        stats.busy.fetch_add(1, Ordering::Relaxed);
                        refuse(self, "this node holds no replicas", channel);
                        return;
                    };
                    match tx.try_send(InboundRecords {
                        peer,
                        request,
                        channel,
                    }) {
                        Ok(()) => {
                            stats.served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            stats.busy.fetch_add(1, Ordering::Relaxed);
                            refuse(self, "busy", e.into_inner().channel);
                        }
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    stats
                        .bytes_in
                        .fetch_add(super::records::response_bytes(&response), Ordering::Relaxed);
                    if let Some(reply) = self.records.pending.remove(&request_id) {
                        if !response.is_sane() {
                            stats.malformed.fetch_add(1, Ordering::Relaxed);
                            let _ = reply.send(Err("an answer out of bounds".into()));
                            return;
                        }
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.records.pending.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { error, .. } => {
                if matches!(error, request_response::InboundFailure::Io(_)) {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Whether this node is among the [`super::records::CLOSE_ENOUGH`] peers its
    /// routing table knows closest to `key` (itself included).
    fn is_close(&mut self, key: &[u8]) -> bool {
        let target = kad::KBucketKey::new(key.to_vec());
        let me = kad::KBucketKey::from(*self.swarm.local_peer_id());
        let mine = me.distance(&target);
        let closer = self
            .swarm
            .behaviour_mut()
            .kad
            .get_closest_local_peers(&target)
            .take(super::records::CLOSE_ENOUGH)
            .filter(|p| p.distance(&target) < mine)
            .count();
        closer < super::records::CLOSE_ENOUGH
    }

    /// Kademlia serves exactly when the node is reachable; relay listeners follow need.
    fn apply_mode(&mut self) {
        let mode = if self.reach.kad_server() {
            kad::Mode::Server
        } else {
            kad::Mode::Client
        };
        let kad = &mut self.swarm.behaviour_mut().kad;
        if kad.mode() != mode {
            tracing::info!(?mode, "Kademlia mode");
            kad.set_mode(Some(mode));
        }
        // A reachable relay server announces HOP; libp2p ties that to a confirmed
        // address, which a declared (`--public`) one is.
        for listener in self.reach.surplus_listeners() {
            self.swarm.remove_listener(listener);
        }
        self.maintain_relays();
    }

    /// Opens relay listeners until the wanted number of relays is asked.
    fn maintain_relays(&mut self) {
        let rtts = &self.rtts;
        let wanted = self
            .reach
            .relays_to_reserve(std::time::Instant::now(), |p| rtts.get(p).copied());
        for (relay, addr) in wanted {
            match self.swarm.listen_on(addr.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, %addr, "asking a relay for a reservation");
                    self.reach.on_listening(listener, relay);
                }
                Err(e) => tracing::warn!(%addr, error = %e, "cannot listen through a relay"),
            }
        }
    }

    fn on_relay_server_event(&mut self, event: relay::Event) {
        let stats = &mut self.reach.stats;
        match event {
            relay::Event::ReservationReqDenied { src_peer_id, .. } => {
                stats.relay_reservations_denied += 1;
                tracing::info!(peer = %src_peer_id, "relay: reservation refused (limits)");
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                ..
            } => {
                stats.relay_circuits_denied += 1;
                tracing::info!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit refused (limits)");
            }
            relay::Event::CircuitReqAccepted { .. } => stats.relay_circuits_accepted += 1,
            relay::Event::ReservationReqAccepted { renewed: false, .. } => {
                stats.relay_reservations_held += 1;
            }
            relay::Event::ReservationClosed { .. } | relay::Event::ReservationTimedOut { .. } => {
                stats.relay_reservations_held = stats.relay_reservations_held.saturating_sub(1);
            }
            _ => {}
        }
    }

    /// Which way a connection carries bytes.
    fn path_of(&self, connection: ConnectionId) -> Path {
        match self.connections.get(&connection) {
            Some(c) if reach::is_relayed(&c.remote) => Path {
                kind: PathKind::Relayed,
                relay: relay_of(&c.remote),
            },
            Some(c)
                if self.punched.contains(&connection) || self.punched_peers.contains(&c.peer) =>
            {
                Path {
                    kind: PathKind::HolePunched,
                    relay: None,
                }
            }
            _ => Path {
                kind: PathKind::Direct,
                relay: None,
            },
        }
    }

    /// Once a direct connection to `peer` exists and no request to it is in flight,
    /// its relayed connections close, so later requests take the direct path.
    fn close_relayed_if_idle(&mut self, peer: PeerId) {
        if !self.drop_relayed.contains(&peer)
            || self.pending_requests.values().any(|(p, _)| *p == peer)
        {
            return;
        }
        // Only circuits this node dialed: the other side may still be answering on
        // one it accepted, and only the requester knows when nothing is pending.
        let relayed: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.peer == peer && c.dialer && reach::is_relayed(&c.remote))
            .map(|(id, _)| *id)
            .collect();
        let direct = self
            .connections
            .values()
            .any(|c| c.peer == peer && !reach::is_relayed(&c.remote));
        if direct {
            for id in relayed {
                if self.swarm.close_connection(id) {
                    self.closing.insert(id, peer);
                }
            }
            self.drop_relayed.remove(&peer);
        }
    }

    /// Sends the requests held for `peer` once no connection to it is closing.
    fn release_deferred(&mut self, peer: PeerId) {
        if self.closing.values().any(|p| *p == peer) {
            return;
        }
        let (ready, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(p, _, _, _)| *p == peer);
        self.deferred = held;
        self.send_held(ready);
    }

    /// Sends held requests whose deadline passed; drops those nobody waits for.
    fn release_overdue(&mut self) {
        let now = std::time::Instant::now();
        self.deferred.retain(|(_, _, reply, _)| !reply.is_closed());
        let (ready, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(_, _, _, deadline)| *deadline <= now);
        self.deferred = held;
        self.send_held(ready);
    }

    fn send_held(&mut self, ready: Vec<Held>) {
        for (peer, request, reply, _) in ready {
            tracing::debug!(%peer, "held request sent");
            let id = self.swarm.behaviour_mut().job.send_request(&peer, request);
            self.pending_requests.insert(id, (peer, reply));
        }
    }
}

/// The relay's peer id in a `/p2p/<relay>/p2p-circuit` address.
fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => last = Some(peer),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// Why listening failed, in words a user can act on: libp2p's transport errors often
/// say nothing at the top (`cannot listen on …: ` was all a busy port gave), so the
/// whole chain of causes is used, with a hint for the usual one.
fn listen_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(e);
    let mut in_use = false;
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            in_use |= io.kind() == std::io::ErrorKind::AddrInUse;
        }
        next = err.source();
    }
    let mut reason = if parts.is_empty() {
        format!("{e:?}")
    } else {
        parts.join(": ")
    };
    if in_use || reason.contains("in use") {
        reason.push_str(
            " (another process, or another plasm node, uses this port: stop it, or give --listen another port)",
        );
    }
    reason
}

/// The address without a trailing `/p2p/<id>`.
fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

/// The peer id at the end of a multiaddr.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// Counts an inbound protocol message for the process's traffic figures
/// ([`super::traffic`]).
fn count_message(event: &BehaviourEvent) {
    use super::traffic::Kind;
    use request_response::{Event as Rr, Message as M};
    let kind = match event {
        BehaviourEvent::Kad(kad::Event::InboundRequest { request }) => {
            tracing::trace!(?request, "kad request");
            Kind::Kad
        }
        BehaviourEvent::Ping(ping::Event { result: Ok(_), .. }) => Kind::Ping,
        BehaviourEvent::Job(Rr::Message {
            message: M::Request { .. },
            ..
        })
        | BehaviourEvent::Beat(Rr::Message {
            message: M::Request { .. },
            ..
        })
        | BehaviourEvent::Steal(Rr::Message {
            message: M::Request { .. },
            ..
        })
        | BehaviourEvent::Records(Rr::Message {
            message: M::Request { .. },
            ..
        })
        | BehaviourEvent::Identify(identify::Event::Received { .. }) => Kind::Other,
        _ => return,
    };
    super::traffic::message(kind);
}

fn query_kind(r: &QueryResult) -> &'static str {
    match r {
        QueryResult::Bootstrap(_) => "bootstrap",
        QueryResult::GetClosestPeers(_) => "closest",
        QueryResult::GetProviders(_) => "providers",
        QueryResult::StartProviding(_) => "start_providing",
        QueryResult::RepublishProvider(_) => "republish_provider",
        QueryResult::GetRecord(_) => "get_record",
        QueryResult::PutRecord(_) => "put_record",
        QueryResult::RepublishRecord(_) => "republish_record",
    }
}
