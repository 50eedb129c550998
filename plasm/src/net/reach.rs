//! Reachability: what the node knows about being reachable, and what it does about it.
//!
//! A node is *reachable* when some address of its own is confirmed external:
//! declared by the operator (`--public` for its listen addresses,
//! `--external-address` for one it cannot see, such as a port forwarded on a
//! router) or confirmed by an AutoNAT dial-back. Only then does Kademlia serve
//! (server mode); a node that is not reachable asks only (client mode) and
//! reserves slots on relays so it can still be found and reached through a
//! `/p2p-circuit` address, which DCUtR then tries to upgrade to a direct
//! connection. This module is the state and the decisions, with no sockets in
//! it: the event loop feeds it swarm events and carries out what it returns, so
//! relay choice, renewal and mode switching are tested without a network.

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The protocol a Circuit Relay v2 server announces through identify.
pub const HOP_PROTOCOL: StreamProtocol = StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");

/// How long a relay that refused or dropped a reservation is left alone.
pub const RELAY_BACKOFF: Duration = Duration::from_secs(60);

/// Limits of the relay server a reachable node runs for others.
///
/// libp2p's defaults (128 KiB and 2 minutes per circuit) are too small for a job:
/// a circuit must carry the largest bundle the wan profile accepts plus a
/// response of twice the output limit, for as long as a job may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// Reservations held at once.
    pub max_reservations: usize,
    /// Reservations one peer may hold.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before it must be renewed.
    pub reservation_duration: Duration,
    /// Circuits relayed at once.
    pub max_circuits: usize,
    /// Circuits one peer may have open.
    pub max_circuits_per_peer: usize,
    /// Longest life of one circuit.
    pub max_circuit_duration: Duration,
    /// Most bytes one circuit carries.
    pub max_circuit_bytes: u64,
    /// Reservation requests one peer may make a minute (token bucket of that size).
    pub reservations_per_peer_per_minute: u32,
    /// Reservation requests one IP address may make a minute (many homes share a CGNAT address).
    pub reservations_per_ip_per_minute: u32,
    /// Circuits one source peer may open a minute (a requester offers to 8 executors per job).
    pub circuits_per_peer_per_minute: u32,
    /// Circuits one source IP address may open a minute.
    pub circuits_per_ip_per_minute: u32,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_reservations: 128,
            max_reservations_per_peer: 2,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 64,
            // A requester offers a job to up to 8 executors at once, each possibly
            // behind this relay.
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(600),
            // A 33 MiB bundle plus 2 x 4 MiB of output, with room for framing.
            max_circuit_bytes: 48 * 1024 * 1024,
            // libp2p's defaults (a burst of 60, then one circuit a minute per IP) are
            // for signalling: ten jobs from one home used them up (NAT lab).
            reservations_per_peer_per_minute: 4,
            reservations_per_ip_per_minute: 120,
            circuits_per_peer_per_minute: 60,
            circuits_per_ip_per_minute: 240,
        }
    }
}

/// Reachability settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachConfig {
    /// The operator declares the listen addresses reachable (`--public`, bootstrap nodes).
    pub public: bool,
    /// Addresses announced as reachable though the node cannot see them itself.
    pub external_addresses: Vec<Multiaddr>,
    /// Run a relay server for others (reachable nodes), with these limits.
    pub relay_server: Option<RelayLimits>,
    /// Reserve relay slots while not reachable.
    pub relay_client: bool,
    /// Relays to hold reservations on.
    pub wanted_relays: usize,
    /// Discover peers on the LAN by mDNS.
    pub mdns: bool,
    /// AutoNAT dials back only global addresses, and asks only servers at global addresses.
    pub autonat_global_only: bool,
    /// Dial out only: never a Kademlia server, a relay, or a relay client.
    pub hidden: bool,
    /// Announce listen addresses through identify (set when they are all on
    /// loopback, where they are what others dial; else only confirmed ones travel).
    pub share_listen_addrs: bool,
    /// The link's profile and its (possibly overridden) settings.
    pub profile: super::profile::Profile,
    /// The settings in force.
    pub settings: super::profile::ProfileSettings,
}

impl Default for ReachConfig {
    fn default() -> Self {
        Self {
            public: false,
            external_addresses: Vec::new(),
            relay_server: None,
            relay_client: true,
            wanted_relays: 2,
            mdns: false,
            autonat_global_only: true,
            hidden: false,
            share_listen_addrs: true,
            profile: super::profile::Profile::default(),
            settings: super::profile::ProfileSettings::default(),
        }
    }
}

/// What AutoNAT concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatStatus {
    /// Not probed yet, or no conclusion.
    Unknown,
    /// A dial-back reached us.
    Public,
    /// Dial-backs fail: behind NAT or a firewall.
    Private,
}

/// Counters of reachability, exported on `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReachStats {
    /// DCUtR upgrades tried (either side).
    pub hole_punch_attempts: u64,
    /// DCUtR upgrades that gave a direct connection.
    pub hole_punch_successes: u64,
    /// Reservations a relay accepted (renewals included).
    pub reservations_accepted: u64,
    /// Reservations refused or lost.
    pub reservations_lost: u64,
    /// Reservation requests this node's relay server refused (limits).
    pub relay_reservations_denied: u64,
    /// Circuit requests this node's relay server refused (limits).
    pub relay_circuits_denied: u64,
    /// Circuits this node's relay server carried.
    pub relay_circuits_accepted: u64,
    /// Reservations this node's relay server holds for others now.
    pub relay_reservations_held: u64,
    /// AutoNAT probes this node refused to answer (throttled, not a server, bad addresses).
    pub autonat_probes_refused: u64,
    /// AutoNAT probes this node answered with a successful dial-back.
    pub autonat_probes_answered: u64,
}

/// Whether an address goes through a relay.
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether an address only reaches this machine (loopback, `localhost`, or the
/// in-process memory transport). Decides, among others, that a node on such
/// addresses sends no multicast (mDNS).
pub fn is_local(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
            name.eq_ignore_ascii_case("localhost")
        }
        Protocol::Memory(_) => true,
        _ => false,
    })
}

/// The reachability state of one node.
#[derive(Debug)]
pub struct Reach {
    config: ReachConfig,
    nat: NatStatus,
    /// Direct addresses declared or confirmed by the node's own means.
    direct: BTreeSet<Multiaddr>,
    /// Direct addresses confirmed by AutoNAT dial-backs: they count only while
    /// AutoNAT's status is public (libp2p confirms on every successful probe and
    /// never expires them).
    probed: BTreeSet<Multiaddr>,
    relayed: BTreeSet<Multiaddr>,
    /// Peers that serve as relays, with an address to reach each.
    candidates: BTreeMap<PeerId, Multiaddr>,
    /// Relay listeners asked for, by the relay they go through.
    listeners: HashMap<ListenerId, PeerId>,
    /// Relays that accepted a reservation (and have not lost it since).
    reserved: BTreeSet<PeerId>,
    /// Relays left alone until then.
    backoff: HashMap<PeerId, Instant>,
    /// Counters.
    pub stats: ReachStats,
}

impl Reach {
    /// A node that knows nothing yet; declared external addresses count at once.
    pub fn new(config: ReachConfig) -> Self {
        let direct = config.external_addresses.iter().cloned().collect();
        Self {
            config,
            nat: NatStatus::Unknown,
            direct,
            probed: BTreeSet::new(),
            relayed: BTreeSet::new(),
            candidates: BTreeMap::new(),
            listeners: HashMap::new(),
            reserved: BTreeSet::new(),
            backoff: HashMap::new(),
            stats: ReachStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ReachConfig {
        &self.config
    }

    /// Whether a listen address the node bound should be announced as reachable:
    /// with `--public`, every bound address, except loopback ones when the node
    /// also listens beyond loopback (a public server is not reachable at 127.0.0.1).
    pub fn declares(&self, addr: &Multiaddr, all_listen_local: bool) -> bool {
        self.config.public && !is_relayed(addr) && (all_listen_local || !is_local(addr))
    }

    /// Some address of this node is confirmed reachable without a relay.
    pub fn reachable(&self) -> bool {
        !self.direct.is_empty() || (self.nat == NatStatus::Public && !self.probed.is_empty())
    }

    /// Kademlia serves exactly when the node is reachable (and not hidden).
    pub fn kad_server(&self) -> bool {
        !self.config.hidden && self.reachable()
    }

    /// `public`, `private` or `unknown`, as shown to operators.
    pub fn reachability(&self) -> &'static str {
        if self.reachable() {
            "public"
        } else if self.nat == NatStatus::Private || !self.relayed.is_empty() {
            "private"
        } else {
            "unknown"
        }
    }

    /// Records AutoNAT's conclusion; when it is no longer public, returns the
    /// addresses AutoNAT had confirmed, for the swarm to stop announcing.
    pub fn on_nat_status(&mut self, status: NatStatus) -> Vec<Multiaddr> {
        self.nat = status;
        if status == NatStatus::Public {
            return Vec::new();
        }
        std::mem::take(&mut self.probed).into_iter().collect()
    }

    /// Records an address confirmed by an AutoNAT dial-back.
    pub fn on_probe_confirmed(&mut self, addr: Multiaddr) {
        if !is_relayed(&addr) && !self.direct.contains(&addr) {
            self.probed.insert(addr);
        }
    }

    /// Records a confirmed external address (declared, AutoNAT, or a relay reservation).
    pub fn on_external_confirmed(&mut self, addr: Multiaddr) {
        if is_relayed(&addr) {
            self.relayed.insert(addr);
        } else {
            self.direct.insert(addr);
        }
    }

    /// Records an external address that is no longer confirmed.
    pub fn on_external_expired(&mut self, addr: &Multiaddr) {
        self.direct.remove(addr);
        self.probed.remove(addr);
        self.relayed.remove(addr);
    }

    /// Relays currently holding a reservation for this node.
    pub fn relays(&self) -> impl Iterator<Item = &PeerId> {
        self.reserved.iter()
    }

    /// Whether the node should hold relay reservations now.
    pub fn wants_relays(&self) -> bool {
        self.config.relay_client
            && !self.config.hidden
            && !self.reachable()
            && self.nat != NatStatus::Public
    }

    /// A peer announced the relay protocol; `addr` reaches it directly.
    pub fn add_relay_candidate(&mut self, peer: PeerId, addr: Multiaddr) {
        if !is_relayed(&addr) {
            self.candidates.insert(peer, addr);
        }
    }

    /// A peer is gone: it is no candidate until it announces itself again.
    pub fn remove_relay_candidate(&mut self, peer: &PeerId) {
        self.candidates.remove(peer);
    }

    /// The relay listen addresses to open now (`<relay addr>/p2p/<relay>/p2p-circuit`),
    /// fastest relays first by `rtt`, so that `wanted_relays` are held or asked for.
    /// Call [`Reach::on_listening`] with each listener the swarm returns.
    pub fn relays_to_reserve(
        &mut self,
        now: Instant,
        rtt: impl Fn(&PeerId) -> Option<Duration>,
    ) -> Vec<(PeerId, Multiaddr)> {
        if !self.wants_relays() {
            return Vec::new();
        }
        self.backoff.retain(|_, until| *until > now);
        let asked: BTreeSet<PeerId> = self.listeners.values().copied().collect();
        let missing = self.config.wanted_relays.saturating_sub(asked.len());
        let mut free: Vec<(&PeerId, &Multiaddr)> = self
            .candidates
            .iter()
            .filter(|(p, _)| !asked.contains(p) && !self.backoff.contains_key(p))
            .collect();
        free.sort_by_key(|(p, _)| rtt(p).unwrap_or(Duration::MAX));
        free.into_iter()
            .take(missing)
            .map(|(peer, addr)| {
                let circuit = addr
                    .clone()
                    .with_p2p(*peer)
                    .unwrap_or_else(|a| a)
                    .with(Protocol::P2pCircuit);
                (*peer, circuit)
            })
            .collect()
    }

    /// The swarm opened a relay listener through `relay`.
    pub fn on_listening(&mut self, listener: ListenerId, relay: PeerId) {
        self.listeners.insert(listener, relay);
    }

    /// A relay accepted (or renewed) the reservation.
    pub fn on_reservation_accepted(&mut self, relay: PeerId) {
        if !self.listeners.values().any(|r| *r == relay) {
            return;
        }
        self.reserved.insert(relay);
        self.stats.reservations_accepted += 1;
    }

    /// A listener closed: when it was a relay's, the reservation is gone (refused,
    /// expired or the relay went away); that relay is left alone for a while and
    /// the next call to [`Reach::relays_to_reserve`] picks another.
    pub fn on_listener_closed(&mut self, listener: ListenerId, now: Instant) -> Option<PeerId> {
        let relay = self.listeners.remove(&listener)?;
        if !self.listeners.values().any(|r| *r == relay) {
            self.reserved.remove(&relay);
        }
        self.stats.reservations_lost += 1;
        self.backoff.insert(relay, now + RELAY_BACKOFF);
        Some(relay)
    }

    /// Relay listeners to close because the node no longer needs them (it became
    /// reachable). Only listeners whose reservation was accepted: closing one with
    /// a reservation still in flight makes libp2p's relay client panic when the
    /// answer comes; those are closed once accepted (call again then).
    pub fn surplus_listeners(&mut self) -> Vec<ListenerId> {
        if self.wants_relays() {
            return Vec::new();
        }
        let done: Vec<ListenerId> = self
            .listeners
            .iter()
            .filter(|(_, r)| self.reserved.contains(r))
            .map(|(l, _)| *l)
            .collect();
        for l in &done {
            if let Some(r) = self.listeners.remove(l) {
                self.reserved.remove(&r);
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn server_mode_exactly_when_a_direct_address_is_confirmed() {
        let mut r = Reach::new(ReachConfig::default());
        assert!(!r.kad_server());
        assert_eq!(r.reachability(), "unknown");
        let relayed = addr(
            "/ip4/11.0.0.1/udp/4610/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        );
        r.on_external_confirmed(relayed.clone());
        assert!(
            !r.kad_server(),
            "a relayed address does not make a DHT server"
        );
        assert_eq!(r.reachability(), "private");
        let direct = addr("/ip4/11.0.0.9/udp/4610/quic-v1");
        r.on_external_confirmed(direct.clone());
        assert!(r.kad_server());
        assert_eq!(r.reachability(), "public");
        r.on_external_expired(&direct);
        assert!(
            !r.kad_server(),
            "back to client mode when the address expires"
        );
        let hidden = Reach::new(ReachConfig {
            hidden: true,
            external_addresses: vec![direct],
            ..ReachConfig::default()
        });
        assert!(!hidden.kad_server() && !hidden.wants_relays());
    }

    #[test]
    fn declared_addresses_skip_loopback_on_a_server_that_listens_beyond_it() {
        let r = Reach::new(ReachConfig {
            public: true,
            ..ReachConfig::default()
        });
        assert!(r.declares(&addr("/ip4/11.0.0.9/tcp/4610"), false));
        assert!(!r.declares(&addr("/ip4/127.0.0.1/tcp/4610"), false));
        assert!(r.declares(&addr("/ip4/127.0.0.1/tcp/4610"), true));
        let default = Reach::new(ReachConfig::default());
        assert!(!default.declares(&addr("/ip4/11.0.0.9/tcp/4610"), false));
        assert!(is_local(&addr("/dns4/localhost/udp/4610/quic-v1")));
        assert!(!is_local(&addr("/dns4/boot.example.org/udp/4610/quic-v1")));
    }

    #[test]
    fn two_relays_fastest_first_replaced_when_one_goes() {
        let mut r = Reach::new(ReachConfig::default());
        let (a, b, c) = (peer(), peer(), peer());
        for (p, port) in [(a, 1), (b, 2), (c, 3)] {
            r.add_relay_candidate(p, addr(&format!("/ip4/11.0.0.{port}/udp/4610/quic-v1")));
        }
        let rtt = |p: &PeerId| {
            Some(Duration::from_millis(if *p == a {
                30
            } else if *p == b {
                10
            } else {
                20
            }))
        };
        let now = Instant::now();
        let picked = r.relays_to_reserve(now, rtt);
        let relays: Vec<PeerId> = picked.iter().map(|(p, _)| *p).collect();
        assert_eq!(relays, vec![b, c], "the two fastest");
        assert!(
            picked[0]
                .1
                .to_string()
                .ends_with(&format!("/p2p/{b}/p2p-circuit"))
        );
        let (lb, lc) = (ListenerId::next(), ListenerId::next());
        r.on_listening(lb, b);
        r.on_listening(lc, c);
        r.on_reservation_accepted(b);
        r.on_reservation_accepted(c);
        assert!(
            r.relays_to_reserve(now, rtt).is_empty(),
            "two held: nothing to do"
        );
        // c goes away: a takes its place, c is not retried during its backoff.
        assert_eq!(r.on_listener_closed(lc, now), Some(c));
        let next: Vec<PeerId> = r
            .relays_to_reserve(now, rtt)
            .iter()
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(next, vec![a]);
        r.on_listening(ListenerId::next(), a);
        assert_eq!(r.relays().copied().collect::<Vec<_>>(), vec![b]);
        // Reachable now: the accepted reservation is surplus at once; the one still
        // in flight (a) only once it is accepted.
        r.on_external_confirmed(addr("/ip4/11.0.0.9/udp/4610/quic-v1"));
        assert!(!r.wants_relays());
        assert_eq!(r.surplus_listeners(), vec![lb]);
        assert!(r.surplus_listeners().is_empty());
        r.on_reservation_accepted(a);
        assert_eq!(r.surplus_listeners().len(), 1);
        assert!(r.relays_to_reserve(now, rtt).is_empty());
    }

    #[test]
    fn autonat_addresses_count_only_while_autonat_says_public() {
        let mut r = Reach::new(ReachConfig::default());
        let a = addr("/ip4/11.0.0.2/udp/4610/quic-v1");
        r.on_probe_confirmed(a.clone());
        assert!(!r.kad_server(), "a lone successful probe is not enough");
        r.on_nat_status(NatStatus::Public);
        assert!(r.kad_server());
        assert_eq!(r.on_nat_status(NatStatus::Private), vec![a]);
        assert!(!r.kad_server() && r.wants_relays());
    }

    #[test]
    fn relayed_addresses_are_no_relay_candidates() {
        let mut r = Reach::new(ReachConfig::default());
        let p = peer();
        r.add_relay_candidate(p, addr("/ip4/11.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"));
        assert!(r.relays_to_reserve(Instant::now(), |_| None).is_empty());
    }
}
