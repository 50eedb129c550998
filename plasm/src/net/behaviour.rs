//! The composed libp2p behaviour: policy first, then discovery, liveness and jobs.
#![allow(missing_docs)] // `#[derive(NetworkBehaviour)]` generates an undocumented event enum

use super::beat::{BEAT_PROTOCOL, Beat, MAX_BEAT_BYTES};
use super::protocol::{JOB_PROTOCOL, JobRequest, JobResponse, KAD_PROTOCOL};
use super::reach::{ReachConfig, RelayLimits};
use super::records::{
    MAX_RECORDS_MESSAGE_BYTES, RECORDS_PROTOCOL, RECORDS_TIMEOUT, RecordsRequest, RecordsResponse,
};
use super::steal::{MAX_STEAL_BYTES, Overflow, STEAL_PROTOCOL, StealAnswer};
use libp2p::kad::store::MemoryStore;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, autonat, connection_limits, dcutr, identify, identity::Keypair, kad, mdns, ping, relay,
    request_response,
};
use std::num::NonZeroU32;
use std::time::Duration;

/// Protocol version announced through identify.
pub const IDENTIFY_PROTOCOL: &str = "/plasm/id/1.0.0";

/// Size and time limits of the network layer.
#[derive(Debug, Clone, Copy)]
pub struct WireLimits {
    /// Largest request read from a stream (the bundle: module + input).
    pub max_request_bytes: u64,
    /// Largest response read from a stream (receipt + stdout + stderr).
    pub max_response_bytes: u64,
    /// Time a request may take, execution included.
    pub request_timeout: Duration,
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Incoming connections being negotiated.
    pub max_pending_incoming: u32,
    /// Concurrent inbound+outbound job streams per connection.
    pub max_concurrent_streams: usize,
    /// Time a beat may take to be answered.
    pub beat_timeout: Duration,
}

impl Default for WireLimits {
    fn default() -> Self {
        // Sized so a home router survives: kubo's connection storms are the cautionary tale.
        Self {
            max_request_bytes: 33 * 1024 * 1024,
            max_response_bytes: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(120),
            max_connections: 128,
            // A relayed connection, its hole-punched replacement, and a simultaneous dial.
            max_connections_per_peer: 3,
            max_pending_incoming: 16,
            max_concurrent_streams: 16,
            beat_timeout: Duration::from_secs(5),
        }
    }
}

/// Every behaviour of a plasm node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection caps: the policy behaviour, consulted before any other.
    pub limits: connection_limits::Behaviour,
    /// Liveness and round-trip times.
    pub ping: ping::Behaviour,
    /// Exchanges listen addresses and protocols.
    pub identify: identify::Behaviour,
    /// The DHT under `/plasm/kad/1.0.0`.
    pub kad: kad::Behaviour<MemoryStore>,
    /// The job protocol.
    pub job: request_response::cbor::Behaviour<JobRequest, JobResponse>,
    /// Beats: load advertisement and failure detection (decision 0049).
    pub beat: request_response::cbor::Behaviour<Beat, Beat>,
    /// Swarm mode's consent messages: overflow and idle (decision 0053).
    pub steal: request_response::cbor::Behaviour<Overflow, StealAnswer>,
    /// Receipts and the records beside them, replicated and fetched (decision 0056).
    pub records: request_response::cbor::Behaviour<RecordsRequest, RecordsResponse>,
    /// Reservations on relays, and dialing through them.
    pub relay_client: relay::client::Behaviour,
    /// The relay server of a reachable node, bounded by [`RelayLimits`].
    pub relay: Toggle<relay::Behaviour>,
    /// Reachability probes (AutoNAT v1): asks peers to dial back, answers their asks.
    pub autonat: autonat::Behaviour,
    /// Upgrades relayed connections to direct ones (hole punching).
    pub dcutr: dcutr::Behaviour,
    /// LAN discovery.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The relay server's configuration from plasm's limits (rate limiters per peer and IP kept).
fn relay_config(l: &RelayLimits) -> relay::Config {
    // A token bucket of `per_minute` tokens, refilled at that rate.
    let rate = |per_minute: u32| {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        (n, Duration::from_secs(60) / n.get())
    };
    let config = relay::Config {
        max_reservations: l.max_reservations,
        max_reservations_per_peer: l.max_reservations_per_peer,
        reservation_duration: l.reservation_duration,
        reservation_rate_limiters: Vec::new(),
        max_circuits: l.max_circuits,
        max_circuits_per_peer: l.max_circuits_per_peer,
        max_circuit_duration: l.max_circuit_duration,
        max_circuit_bytes: l.max_circuit_bytes,
        circuit_src_rate_limiters: Vec::new(),
    };
    let (n, i) = rate(l.reservations_per_peer_per_minute);
    let config = config.reservation_rate_per_peer(n, i);
    let (n, i) = rate(l.reservations_per_ip_per_minute);
    let config = config.reservation_rate_per_ip(n, i);
    let (n, i) = rate(l.circuits_per_peer_per_minute);
    let config = config.circuit_src_per_peer(n, i);
    let (n, i) = rate(l.circuits_per_ip_per_minute);
    config.circuit_src_per_ip(n, i)
}

impl Behaviour {
    /// Builds the behaviour for `key` with `limits`, reachability settings `reach`,
    /// and the relay client the swarm builder made with its transport.
    pub fn new(
        key: &Keypair,
        limits: WireLimits,
        reach: &ReachConfig,
        timers: super::KadSettings,
        relay_client: relay::client::Behaviour,
    ) -> Result<Self, std::io::Error> {
        let peer_id = PeerId::from(key.public());
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(timers.query_timeout);
        kad_config.set_provider_record_ttl(Some(timers.provider_ttl));
        kad_config.set_provider_publication_interval(Some(timers.provider_republish));
        if !timers.store_provider_records {
            // Inbound provider records reach the event loop, which drops them.
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        }
        // The node runs its own bounded bootstrap and refresh (node.rs), also when it has no peers yet.
        kad_config.set_periodic_bootstrap_interval(None);
        let kad = kad::Behaviour::with_config(peer_id, MemoryStore::new(peer_id), kad_config);
        let codec = request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(limits.max_request_bytes)
            .set_response_size_maximum(limits.max_response_bytes);
        let job = request_response::Behaviour::with_codec(
            codec,
            [(JOB_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(limits.request_timeout)
                .with_max_concurrent_streams(limits.max_concurrent_streams),
        );
        // Beats are small and answered from memory: a short timeout, and a few
        // streams (a probe beside the periodic beat) per connection.
        let beat = request_response::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_BEAT_BYTES)
                .set_response_size_maximum(MAX_BEAT_BYTES),
            [(BEAT_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(limits.beat_timeout)
                .with_max_concurrent_streams(8),
        );
        // Overflow announcements are answered from memory: the same short timeout.
        let steal = request_response::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_STEAL_BYTES)
                .set_response_size_maximum(MAX_STEAL_BYTES),
            [(STEAL_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(limits.beat_timeout)
                .with_max_concurrent_streams(4),
        );
        // Records and blobs: bounded by the codec, a few streams per connection.
        let records = request_response::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_RECORDS_MESSAGE_BYTES)
                .set_response_size_maximum(MAX_RECORDS_MESSAGE_BYTES),
            [(RECORDS_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(RECORDS_TIMEOUT)
                .with_max_concurrent_streams(4),
        );
        let connection_limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(limits.max_connections))
            .with_max_established_per_peer(Some(limits.max_connections_per_peer))
            .with_max_pending_incoming(Some(limits.max_pending_incoming))
            .with_max_pending_outgoing(Some(limits.max_pending_incoming * 2));
        let relay = reach
            .relay_server
            .as_ref()
            .filter(|_| !reach.hidden)
            .map(|l| relay::Behaviour::new(peer_id, relay_config(l)));
        let autonat = autonat::Behaviour::new(
            peer_id,
            autonat::Config {
                boot_delay: Duration::from_secs(2),
                retry_interval: Duration::from_secs(30),
                refresh_interval: Duration::from_secs(600),
                only_global_ips: reach.autonat_global_only,
                // Ask only peers known to be reachable (added as they announce the DHT
                // in server mode): a NATed peer's dial-back can ride a punched flow.
                use_connected: false,
                // Only nodes declared reachable answer probes (rate-limited); others refuse.
                throttle_clients_global_max: if reach.public { 30 } else { 0 },
                throttle_clients_peer_max: if reach.public { 3 } else { 0 },
                ..autonat::Config::default()
            },
        );
        let mdns = if reach.mdns && !reach.hidden {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                peer_id,
            )?)
        } else {
            None
        };
        Ok(Self {
            limits: connection_limits::Behaviour::new(connection_limits),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                    .with_agent_version(format!("plasm/{}", env!("CARGO_PKG_VERSION")))
                    // Listen addresses travel on loopback and the LAN (mDNS); beyond, only
                    // confirmed external and relayed addresses are announced.
                    .with_hide_listen_addrs(!reach.share_listen_addrs),
            ),
            kad,
            job,
            beat,
            steal,
            records,
            relay_client,
            relay: relay.into(),
            autonat,
            dcutr: dcutr::Behaviour::new(peer_id),
            mdns: mdns.into(),
        })
    }
}
