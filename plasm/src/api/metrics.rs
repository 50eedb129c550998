//! `/metrics`: the node's Prometheus metrics, kept and encoded by prometheus-client.
//!
//! Counters live where the events happen (jobs and fuel in the service, request
//! durations here); gauges that describe the present (queue depth, running jobs,
//! peers, routing table) are read at scrape time, so they are never stale. The
//! names are the ones operators already scrape: `plasm_jobs_total{outcome}`,
//! `plasm_queue_depth`, `plasm_running_jobs`, `plasm_fuel_consumed_total`,
//! `plasm_connected_peers`, `plasm_routing_table_size` and
//! `plasm_http_request_duration_seconds{route}`. Replicated receipts (decision
//! 0056) are counted as `plasm_records_*` (the records protocol) and
//! `plasm_replicas_*` (the replica service and its store).

use crate::net::reach::ReachStats;
use crate::service::Service;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The exposition format prometheus-client writes (OpenMetrics text, which
/// Prometheus negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the request-duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The label of a request-duration series: the matched route template, so the
/// number of series is bounded by the router, not by the URLs clients send.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// e.g. `/v1/jobs/{job_id}`, or `unmatched`.
    pub route: String,
}

type RouteHistograms = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn route_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The registry behind `/metrics`.
#[derive(Debug)]
pub struct ApiMetrics {
    registry: Registry,
    http: RouteHistograms,
    queue_depth: Gauge,
    running: Gauge,
    peers: Gauge,
    routing_table: Gauge,
    relays_held: Gauge,
    relay_server_held: Gauge,
    /// Reachability counters mirrored from the event loop at scrape time, in the
    /// order of [`reach_counters`].
    reach: Vec<Counter>,
    /// Requests refused by the origin policy (another site's page, a non-loopback Host).
    pub origin_refused: Counter,
    /// Event streams refused because [`super::MAX_STREAMS`] were open.
    pub streams_refused: Counter,
    /// Peers by breaker state, read at scrape time.
    breakers: Family<BreakerLabel, Gauge>,
    /// Beat counters mirrored from the event loop, in the order of [`beat_counters`].
    beats: Vec<Counter>,
    /// Swarm counters mirrored from the steal gate, in the order of [`steal_counters`].
    steals: Vec<Counter>,
    /// Records-protocol counters mirrored from the event loop, in the order of [`records_counters`].
    records: Vec<Counter>,
    /// Replica-service counters, in the order of [`replica_counters`].
    replicas: Vec<Counter>,
    /// The replica store's usage, read at scrape time, in the order of [`REPLICA_USAGE`].
    replica_usage: Vec<Gauge>,
}

/// The label of the breaker gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabel {
    /// `closed`, `open` or `half_open`.
    pub state: String,
}

/// Name, help, and the value in the beat counters.
type BeatCounter = (
    &'static str,
    &'static str,
    fn(&crate::net::beat::BeatStats) -> u64,
);

/// The beat counters exported (prometheus-client appends `_total`).
fn beat_counters() -> [BeatCounter; 7] {
    use std::sync::atomic::Ordering::Relaxed;
    [
        (
            "plasm_beats_sent",
            "Beats sent to watched peers and probes",
            |s| s.sent.load(Relaxed),
        ),
        (
            "plasm_beats_answered",
            "Beats this node sent that were answered",
            |s| s.answered.load(Relaxed),
        ),
        (
            "plasm_beats_served",
            "Beats from peers this node answered",
            |s| s.served.load(Relaxed),
        ),
        (
            "plasm_beats_rate_limited",
            "Beats from peers dropped by the per-peer rate limit",
            |s| s.rate_limited.load(Relaxed),
        ),
        (
            "plasm_beats_malformed",
            "Beats dropped as oversized, undecodable or out of bounds",
            |s| s.malformed.load(Relaxed),
        ),
        (
            "plasm_peers_suspected",
            "Watched peers that missed two beats",
            |s| s.suspected.load(Relaxed),
        ),
        (
            "plasm_peers_failed",
            "Watched peers that missed two beats and the probe",
            |s| s.failed.load(Relaxed),
        ),
    ]
}

/// Name, help, and the value in swarm mode's counters.
type StealCounter = (
    &'static str,
    &'static str,
    fn(&crate::net::steal::StealStats) -> u64,
);

/// Swarm mode's counters exported (prometheus-client appends `_total`).
fn steal_counters() -> [StealCounter; 9] {
    use std::sync::atomic::Ordering::Relaxed;
    [
        (
            "plasm_swarm_overflow_sent",
            "Overflow announcements this node sent (swarm mode)",
            |s| s.asked.load(Relaxed),
        ),
        (
            "plasm_swarm_idle_answers",
            "Overflow announcements answered idle",
            |s| s.idle_answers.load(Relaxed),
        ),
        (
            "plasm_swarm_overflow_answered",
            "Overflow announcements from peers this node answered",
            |s| s.answered.load(Relaxed),
        ),
        (
            "plasm_swarm_overflow_rate_limited",
            "Overflow announcements dropped by the per-peer rate limit",
            |s| s.rate_limited.load(Relaxed),
        ),
        (
            "plasm_swarm_malformed",
            "Steal messages dropped as oversized, undecodable or out of bounds",
            |s| s.malformed.load(Relaxed),
        ),
        (
            "plasm_swarm_jobs_given",
            "Queued jobs of this node that idle peers stole and ran",
            |s| s.given.load(Relaxed),
        ),
        (
            "plasm_swarm_jobs_given_back",
            "Stolen jobs whose thief did not run them, back in this node's queue",
            |s| s.given_back.load(Relaxed),
        ),
        (
            "plasm_swarm_jobs_taken",
            "Jobs this node stole from busy peers and ran",
            |s| s.taken.load(Relaxed),
        ),
        (
            "plasm_swarm_refused",
            "Stolen bundles refused by this node's steal policy",
            |s| s.refused.load(Relaxed),
        ),
    ]
}

/// Name, help, and the value in the records protocol's counters.
type RecordsCounter = (
    &'static str,
    &'static str,
    fn(&crate::net::records::RecordStats) -> u64,
);

/// The records protocol's counters exported (prometheus-client appends `_total`).
fn records_counters() -> [RecordsCounter; 7] {
    use std::sync::atomic::Ordering::Relaxed;
    [
        (
            "plasm_records_served",
            "Records requests from peers handed to the replica service",
            |s| s.served.load(Relaxed),
        ),
        (
            "plasm_records_rate_limited",
            "Records requests from peers refused by the per-peer rate limit",
            |s| s.rate_limited.load(Relaxed),
        ),
        (
            "plasm_records_malformed",
            "Records requests or answers out of bounds or undecodable",
            |s| s.malformed.load(Relaxed),
        ),
        (
            "plasm_records_busy",
            "Records requests from peers refused because the replica service was full or absent",
            |s| s.busy.load(Relaxed),
        ),
        (
            "plasm_records_sent",
            "Records requests this node sent",
            |s| s.sent.load(Relaxed),
        ),
        (
            "plasm_records_received_bytes",
            "Bytes of records and blobs received in records requests and answers",
            |s| s.bytes_in.load(Relaxed),
        ),
        (
            "plasm_records_sent_bytes",
            "Bytes of records and blobs sent in records requests and answers",
            |s| s.bytes_out.load(Relaxed),
        ),
    ]
}

/// Name, help, and the value in the replica service's counters.
type ReplicaCounter = (
    &'static str,
    &'static str,
    fn(&crate::service::replica::ReplicaStats) -> u64,
);

/// The replica service's counters exported (prometheus-client appends `_total`).
fn replica_counters() -> [ReplicaCounter; 4] {
    use std::sync::atomic::Ordering::Relaxed;
    [
        (
            "plasm_replicas_stored",
            "Records (receipts, acceptances, publications, audits) newly stored in this node's replica store",
            |s| s.stored.load(Relaxed),
        ),
        (
            "plasm_replicas_refused",
            "Records refused at ingestion (malformed, bad signature, another job, naming a receipt not held)",
            |s| s.refused.load(Relaxed),
        ),
        (
            "plasm_replicas_published",
            "Jobs whose records this node published or republished to the peers closest to them",
            |s| s.published.load(Relaxed),
        ),
        (
            "plasm_replicas_fetched",
            "Jobs whose records this node asked the network for (no copy here)",
            |s| s.fetched.load(Relaxed),
        ),
    ]
}

/// The replica store's usage gauges: name and help, in the order of
/// [`crate::store::replicas::ReplicaStore::usage`].
const REPLICA_USAGE: [(&str, &str); 4] = [
    (
        "plasm_replicas_records",
        "Records held in this node's replica store",
    ),
    (
        "plasm_replicas_record_bytes",
        "Bytes of record bodies held in this node's replica store",
    ),
    (
        "plasm_replicas_blobs",
        "Published modules and inputs held in this node's replica store",
    ),
    (
        "plasm_replicas_blob_bytes",
        "Bytes of published modules and inputs held in this node's replica store",
    ),
];

/// Name, help, and the value in the event loop's counters.
type ReachCounter = (&'static str, &'static str, fn(&ReachStats) -> u64);

/// The reachability counters exported (prometheus-client appends `_total`).
fn reach_counters() -> [ReachCounter; 9] {
    [
        (
            "plasm_hole_punch_attempts",
            "DCUtR hole punches tried",
            |s| s.hole_punch_attempts,
        ),
        (
            "plasm_hole_punch_successes",
            "DCUtR hole punches that gave a direct connection",
            |s| s.hole_punch_successes,
        ),
        (
            "plasm_relay_reservations_accepted",
            "Reservations relays accepted for this node (renewals included)",
            |s| s.reservations_accepted,
        ),
        (
            "plasm_relay_reservations_lost",
            "Reservations of this node refused, expired or lost",
            |s| s.reservations_lost,
        ),
        (
            "plasm_relay_server_reservations_denied",
            "Reservation requests this node's relay refused (limits)",
            |s| s.relay_reservations_denied,
        ),
        (
            "plasm_relay_server_circuits_denied",
            "Circuit requests this node's relay refused (limits)",
            |s| s.relay_circuits_denied,
        ),
        (
            "plasm_relay_server_circuits",
            "Circuits this node's relay carried",
            |s| s.relay_circuits_accepted,
        ),
        (
            "plasm_autonat_probes_refused",
            "AutoNAT probes refused (rate limit, not a server, unusable addresses)",
            |s| s.autonat_probes_refused,
        ),
        (
            "plasm_autonat_probes_answered",
            "AutoNAT probes answered with a dial-back",
            |s| s.autonat_probes_answered,
        ),
    ]
}

impl ApiMetrics {
    /// Registers the service's counters beside the API's own metrics.
    pub fn new(service: &Service, executor: &crate::net::executor::ExecutorMetrics) -> Self {
        let mut registry = Registry::default();
        let http = RouteHistograms::new_with_constructor(route_histogram);
        let (queue_depth, running, peers, routing_table, relays_held) = Default::default();
        let relay_server_held = Gauge::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "plasm_jobs",
            "Jobs finished on this node's API, by receipt outcome (or failed)",
            service.metrics.jobs.clone(),
        );
        registry.register(
            "plasm_jobs_by_path",
            "Jobs with a receipt, by the path their bytes took (local, direct, hole-punched, relayed)",
            service.metrics.by_path.clone(),
        );
        registry.register(
            "plasm_fuel_consumed",
            "Fuel used by jobs executed here",
            service.metrics.fuel.clone(),
        );
        registry.register(
            "plasm_executor_refusals",
            "Offers from peers declined to protect this node or other peers (rate, peer_reservations, reservations_full, queue_full, replayed_nonce, replayed_job, replay_window, aborts)",
            executor.refusals.clone(),
        );
        registry.register(
            "plasm_executor_jobs",
            "Jobs this node ran for peers, by receipt outcome (or failed: no receipt)",
            executor.served.clone(),
        );
        registry.register(
            "plasm_executor_fuel_consumed",
            "Fuel used by jobs this node ran for peers (part of plasm_fuel_consumed_total)",
            executor.fuel.clone(),
        );
        registry.register(
            "plasm_executor_evictions",
            "Entries evicted from a full table (reservation, nonce), taken from the peer holding the most",
            executor.evictions.clone(),
        );
        if let Some(stats) = service.pool().and_then(|p| p.runtime().worker_stats()) {
            for (name, help, c) in [
                (
                    "plasm_worker_spawned",
                    "Worker processes started",
                    &stats.spawned,
                ),
                (
                    "plasm_jobs_aborted_worker_crashed",
                    "Jobs ended because their worker process died (no receipt)",
                    &stats.crashed,
                ),
                (
                    "plasm_jobs_aborted_compile_limit",
                    "Jobs ended because preparing the module passed the compile deadline or the worker's memory (no receipt)",
                    &stats.compile_limit,
                ),
                (
                    "plasm_jobs_aborted_deadline",
                    "Jobs ended by their fuel-derived wall deadline (no receipt)",
                    &stats.deadline,
                ),
                (
                    "plasm_jobs_aborted_cancelled",
                    "Jobs cancelled while queued or running (no receipt)",
                    &stats.cancelled,
                ),
            ] {
                registry.register(name, help, c.clone());
            }
        }
        registry.register(
            "plasm_api_over_maximum",
            "Submissions refused because a limit was above the node's maximum",
            service.metrics.over_maximum.clone(),
        );
        let g = |r: &mut Registry, name: &str, help: &str, m: &Gauge| {
            r.register(name, help, m.clone());
        };
        g(
            &mut registry,
            "plasm_queue_depth",
            "Jobs waiting for a worker",
            &queue_depth,
        );
        g(
            &mut registry,
            "plasm_running_jobs",
            "Jobs executing",
            &running,
        );
        g(
            &mut registry,
            "plasm_connected_peers",
            "Peers with a connection",
            &peers,
        );
        g(
            &mut registry,
            "plasm_routing_table_size",
            "Kademlia routing table entries",
            &routing_table,
        );
        g(
            &mut registry,
            "plasm_relay_reservations",
            "Relays holding a reservation for this node now",
            &relays_held,
        );
        g(
            &mut registry,
            "plasm_relay_server_reservations",
            "Reservations this node's relay holds for others now",
            &relay_server_held,
        );
        let reach = reach_counters()
            .iter()
            .map(|(name, help, _)| {
                let c = Counter::default();
                registry.register(*name, *help, c.clone());
                c
            })
            .collect();
        let (origin_refused, streams_refused) = (Counter::default(), Counter::default());
        registry.register(
            "plasm_http_origin_refused",
            "Requests refused by the origin policy (another site's page, a non-loopback Host on a loopback API)",
            origin_refused.clone(),
        );
        registry.register(
            "plasm_http_streams_refused",
            "Event streams refused because the node serves its maximum at once",
            streams_refused.clone(),
        );
        let breakers = Family::<BreakerLabel, Gauge>::default();
        registry.register(
            "plasm_peer_breakers",
            "Peers known to placement, by circuit-breaker state",
            breakers.clone(),
        );
        registry.register(
            "plasm_breaker_trips",
            "Times a peer's circuit breaker opened",
            service.scheduler().trips(),
        );
        let beats = beat_counters()
            .iter()
            .map(|(name, help, _)| {
                let c = Counter::default();
                registry.register(*name, *help, c.clone());
                c
            })
            .collect();
        let steals = steal_counters()
            .iter()
            .map(|(name, help, _)| {
                let c = Counter::default();
                registry.register(*name, *help, c.clone());
                c
            })
            .collect();
        let counters = |registry: &mut Registry, names: &[(&str, &str)]| -> Vec<Counter> {
            names
                .iter()
                .map(|(name, help)| {
                    let c = Counter::default();
                    registry.register(*name, *help, c.clone());
                    c
                })
                .collect()
        };
        let records = counters(
            &mut registry,
            &records_counters().map(|(name, help, _)| (name, help)),
        );
        let replicas = counters(
            &mut registry,
            &replica_counters().map(|(name, help, _)| (name, help)),
        );
        let replica_usage = REPLICA_USAGE
            .iter()
            .map(|(name, help)| {
                let g = Gauge::default();
                registry.register(*name, *help, g.clone());
                g
            })
            .collect();
        registry.register(
            "plasm_http_request_duration_seconds",
            "HTTP request durations by route",
            http.clone(),
        );
        Self {
            registry,
            http,
            queue_depth,
            running,
            peers,
            routing_table,
            relays_held,
            relay_server_held,
            reach,
            origin_refused,
            streams_refused,
            breakers,
            beats,
            steals,
            records,
            replicas,
            replica_usage,
        }
    }

    /// Records one request's duration.
    pub fn observe(&self, route: &str, seconds: f64) {
        self.http
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Reads the gauges from the node and encodes everything.
    pub async fn render(&self, service: &Service) -> String {
        let stats = service.pool().map(|p| p.stats());
        self.queue_depth.set(stats.map_or(0, |s| s.queued) as i64);
        self.running.set(stats.map_or(0, |s| s.running) as i64);
        let info = match service.client() {
            Some(c) => c.info().await.ok(),
            None => None,
        };
        self.peers
            .set(info.as_ref().map_or(0, |i| i.connected.len()) as i64);
        self.routing_table
            .set(info.as_ref().map_or(0, |i| i.routing_table_size) as i64);
        if let Some(i) = &info {
            self.relays_held.set(i.relays.len() as i64);
            self.relay_server_held
                .set(i.stats.relay_reservations_held as i64);
            for (c, (_, _, value)) in self.reach.iter().zip(reach_counters()) {
                // The event loop's counters only grow: carry the difference over.
                c.inc_by(value(&i.stats).saturating_sub(c.get()));
            }
        }
        let mut counts = std::collections::HashMap::new();
        for p in service.scheduler().snapshot() {
            *counts.entry(p.breaker.as_str()).or_insert(0i64) += 1;
        }
        for state in ["closed", "open", "half_open"] {
            self.breakers
                .get_or_create(&BreakerLabel {
                    state: state.to_owned(),
                })
                .set(counts.get(state).copied().unwrap_or(0));
        }
        if let Some(c) = service.client() {
            let stats = c.beat_stats();
            for (c, (_, _, value)) in self.beats.iter().zip(beat_counters()) {
                c.inc_by(value(&stats).saturating_sub(c.get()));
            }
            let gate = c.steal_gate();
            for (c, (_, _, value)) in self.steals.iter().zip(steal_counters()) {
                c.inc_by(value(&gate.stats).saturating_sub(c.get()));
            }
            let stats = c.records_stats();
            for (c, (_, _, value)) in self.records.iter().zip(records_counters()) {
                c.inc_by(value(&stats).saturating_sub(c.get()));
            }
        }
        if let Some(r) = service.replicas() {
            for (c, (_, _, value)) in self.replicas.iter().zip(replica_counters()) {
                c.inc_by(value(&r.stats).saturating_sub(c.get()));
            }
            // SQLite: off the async threads; a failed read leaves the last value.
            let store = r.store().clone();
            if let Ok(Ok((records, bytes, blobs, blob_bytes))) =
                tokio::task::spawn_blocking(move || store.usage()).await
            {
                for (g, v) in self
                    .replica_usage
                    .iter()
                    .zip([records, bytes, blobs, blob_bytes])
                {
                    g.set(i64::try_from(v).unwrap_or(i64::MAX));
                }
            }
        }
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}
