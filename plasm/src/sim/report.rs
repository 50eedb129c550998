//! What `plasm sim` measures, how, and how it prints it.
//!
//! * **Lookups.** A lookup asks Kademlia for the providers of one live node's
//!   own key; it succeeds when that node is among them within 30 s. Lookups
//!   whose target left while they ran are counted apart (not a live provider).
//! * **Hops.** libp2p's query statistics have no hop count, so the figure is
//!   *the requests answered when the first provider was known* (successes and
//!   failures, as [`crate::net::ProviderLookup::requests_to_first`]). With
//!   Kademlia's parallelism of 3 this is an upper bound of the hops; 0 means
//!   the asking node held the record itself.
//! * **Latency.** From the start of the query to the first provider.
//! * **Provider records found / expected.** One expected per successful-or-not
//!   lookup of a live provider.
//! * **Capability lookups.** Providers of the `runtime:any` key (every
//!   executor provides it): how many a lookup found, and how many were live.
//! * **Routing tables.** Up to 200 live nodes every 5 s: entries, and the share
//!   that names a node no longer running.
//! * **Traffic.** Bytes written on memory-transport connections (below Noise
//!   and Yamux) and inbound protocol messages, during the workload, per live
//!   node per minute ([`crate::net::traffic`]).
//! * **Memory.** Process RSS over the nodes running (bootstrap nodes
//!   included), and the growth over the RSS before the first node started.
//! * **CPU.** User and system seconds of the process during the workload, over
//!   its wall time (2.0 = both cores of this machine busy).

use super::SimConfig;
use crate::net::traffic::Traffic;
use serde::Serialize;
use std::time::Duration;

/// Fractional rates carried from tick to tick.
#[derive(Debug, Default)]
pub(crate) struct Due {
    pub churn: f64,
    pub lookups: f64,
    pub capabilities: f64,
    pub jobs: f64,
}

/// Adds `amount` to `acc` and takes its whole part.
pub(crate) fn take(acc: &mut f64, amount: f64) -> usize {
    *acc += amount.max(0.0);
    let whole = acc.floor();
    *acc -= whole;
    whole as usize
}

/// What the workload saw.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    pub lookups: u64,
    pub lookups_ok: u64,
    pub lookups_gone: u64,
    pub hops: Vec<u32>,
    pub latencies_ms: Vec<f64>,
    pub capability_lookups: u64,
    pub capability_found: u64,
    pub capability_live: u64,
    pub capability_empty: u64,
    pub jobs: u64,
    pub jobs_ok: u64,
    pub left: u64,
}

impl Outcomes {
    pub fn lookup(&mut self, live: bool, ok: bool, hops: Option<u32>, latency: Duration) {
        if !live {
            self.lookups_gone += 1;
            return;
        }
        self.lookups += 1;
        if ok {
            self.lookups_ok += 1;
            if let Some(h) = hops {
                self.hops.push(h);
            }
            self.latencies_ms.push(latency.as_secs_f64() * 1e3);
        }
    }

    pub fn capability(&mut self, found: usize, live: usize) {
        self.capability_lookups += 1;
        self.capability_found += found as u64;
        self.capability_live += live as u64;
        if found == 0 {
            self.capability_empty += 1;
        }
    }

    /// A job ended (it was counted in `jobs` when it started: one still running
    /// at the end is a failure).
    pub fn job(&mut self, ok: bool) {
        if ok {
            self.jobs_ok += 1;
        }
    }
}

/// Routing tables and connections of the nodes sampled at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub nodes: usize,
    pub table_entries: usize,
    pub dead_entries: usize,
    pub connections: usize,
    /// The most connections any bootstrap node holds.
    pub bootstrap_connections: usize,
    pub rss: u64,
}

pub(crate) struct Inputs<'a> {
    pub config: &'a SimConfig,
    pub bootstraps: usize,
    pub live_nodes: usize,
    pub join_time: Duration,
    pub wall: Duration,
    pub rss_before: u64,
    pub rss_joined: u64,
    pub rss_end: u64,
    pub cpu_before: f64,
    pub cpu_start: f64,
    pub cpu_end: f64,
    pub traffic_start: Traffic,
    pub traffic_end: Traffic,
    pub samples: Vec<Sample>,
    pub final_sample: Sample,
    pub outcomes: Outcomes,
    pub failed_starts: u64,
    pub stopped: Option<String>,
}

/// Percentiles of a list.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Spread {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
        Self {
            p50: at(0.5),
            p95: at(0.95),
            max: v[v.len() - 1],
        }
    }
}

/// The figures of one run (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Executors simulated.
    pub nodes: usize,
    /// Bootstrap nodes on top.
    pub bootstraps: usize,
    /// Percent of executors replaced per minute.
    pub churn_percent_per_minute: f64,
    /// Seed.
    pub seed: u64,
    /// Kademlia's hour-long timers were divided by this.
    pub time_scale: u32,
    /// The negative control (peers store no provider records) was on.
    pub control_no_records: bool,
    /// Seconds until every node had started and 95% had provided their key.
    pub join_seconds: f64,
    /// Seconds the workload ran.
    pub workload_seconds: f64,
    /// Nodes that left (each replaced by a new one).
    pub nodes_replaced: u64,
    /// Nodes that failed to start.
    pub failed_starts: u64,
    /// Why nodes stopped being started (the memory guard), if they did.
    pub stopped: Option<String>,
    /// Nodes running at the end (bootstrap nodes included).
    pub live_nodes: usize,
    /// Lookups of a live provider.
    pub lookups: u64,
    /// Of them, found the provider.
    pub lookups_found: u64,
    /// `lookups_found / lookups` (0 when there were none: a run that looked
    /// nothing up has shown nothing).
    pub lookup_success: f64,
    /// Lookups whose target left meanwhile (not counted above).
    pub lookups_of_departed: u64,
    /// Requests answered when the first provider was known (see the module text).
    pub hops: Spread,
    /// log2 of the nodes (bootstraps included).
    pub log2_n: f64,
    /// Milliseconds to the first provider.
    pub lookup_ms: Spread,
    /// Capability lookups (key `runtime:any`, 8 wanted).
    pub capability_lookups: u64,
    /// Providers they found per lookup, on average.
    pub capability_providers_per_lookup: f64,
    /// Share of those providers still running.
    pub capability_live_share: f64,
    /// Capability lookups that found none.
    pub capability_empty: u64,
    /// Jobs placed.
    pub jobs: u64,
    /// `jobs succeeded / jobs`.
    pub job_success: f64,
    /// Routing-table entries per node, at the end.
    pub routing_table_size: f64,
    /// Share of them naming a node no longer running, at the end.
    pub dead_entry_share: f64,
    /// The largest share of dead entries in any sample.
    pub dead_entry_share_max: f64,
    /// Connections per node, at the end.
    pub connections_per_node: f64,
    /// The most connections a bootstrap node held, in any sample.
    pub bootstrap_connections_max: usize,
    /// Inbound protocol messages per node per minute.
    pub messages_per_node_minute: f64,
    /// Of them, Kademlia requests.
    pub kad_messages_per_node_minute: f64,
    /// Of them, pings (libp2p's, every 15 s on every connection).
    pub ping_messages_per_node_minute: f64,
    /// Bytes sent per node per minute.
    pub bytes_per_node_minute: f64,
    /// Process RSS over the nodes running, at the end.
    pub memory_per_node_bytes: f64,
    /// RSS growth over the empty process, over the nodes running, at the end.
    pub memory_growth_per_node_bytes: f64,
    /// Process RSS at the end.
    pub rss_bytes: u64,
    /// Process RSS once every node had joined.
    pub rss_joined_bytes: u64,
    /// CPU seconds over wall seconds during the workload.
    pub cpu_cores: f64,
    /// CPU seconds spent joining the nodes.
    pub join_cpu_seconds: f64,
}

impl SimReport {
    pub(crate) fn build(i: Inputs<'_>) -> Self {
        let o = &i.outcomes;
        let live = i.live_nodes.max(1) as f64;
        let minutes = i.wall.as_secs_f64() / 60.0;
        let per_node_minute =
            |a: u64, b: u64| a.saturating_sub(b) as f64 / live / minutes.max(1e-9);
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let f = &i.final_sample;
        let share = |s: &Sample| {
            if s.table_entries == 0 {
                0.0
            } else {
                s.dead_entries as f64 / s.table_entries as f64
            }
        };
        let hops: Vec<f64> = o.hops.iter().map(|h| f64::from(*h)).collect();
        Self {
            nodes: i.config.nodes,
            bootstraps: i.bootstraps,
            churn_percent_per_minute: i.config.churn,
            seed: i.config.seed,
            time_scale: i.config.time_scale,
            control_no_records: i.config.control_no_records,
            join_seconds: i.join_time.as_secs_f64(),
            workload_seconds: i.wall.as_secs_f64(),
            nodes_replaced: o.left,
            failed_starts: i.failed_starts,
            stopped: i.stopped.clone(),
            live_nodes: i.live_nodes,
            lookups: o.lookups,
            lookups_found: o.lookups_ok,
            lookup_success: ratio(o.lookups_ok, o.lookups),
            lookups_of_departed: o.lookups_gone,
            hops: Spread::of(&hops),
            log2_n: ((i.config.nodes + i.bootstraps) as f64).log2(),
            lookup_ms: Spread::of(&o.latencies_ms),
            capability_lookups: o.capability_lookups,
            capability_providers_per_lookup: if o.capability_lookups == 0 {
                0.0
            } else {
                o.capability_found as f64 / o.capability_lookups as f64
            },
            capability_live_share: ratio(o.capability_live, o.capability_found),
            capability_empty: o.capability_empty,
            jobs: o.jobs,
            job_success: ratio(o.jobs_ok, o.jobs),
            routing_table_size: if f.nodes == 0 {
                0.0
            } else {
                f.table_entries as f64 / f.nodes as f64
            },
            dead_entry_share: share(f),
            dead_entry_share_max: i.samples.iter().map(share).fold(share(f), f64::max),
            connections_per_node: if f.nodes == 0 {
                0.0
            } else {
                f.connections as f64 / f.nodes as f64
            },
            bootstrap_connections_max: i
                .samples
                .iter()
                .map(|s| s.bootstrap_connections)
                .fold(f.bootstrap_connections, usize::max),
            messages_per_node_minute: per_node_minute(
                i.traffic_end.messages,
                i.traffic_start.messages,
            ),
            kad_messages_per_node_minute: per_node_minute(
                i.traffic_end.kad_messages,
                i.traffic_start.kad_messages,
            ),
            ping_messages_per_node_minute: per_node_minute(
                i.traffic_end.ping_messages,
                i.traffic_start.ping_messages,
            ),
            bytes_per_node_minute: per_node_minute(i.traffic_end.bytes, i.traffic_start.bytes),
            memory_per_node_bytes: i.rss_end as f64 / live,
            memory_growth_per_node_bytes: i.rss_end.saturating_sub(i.rss_before) as f64 / live,
            rss_bytes: i.rss_end,
            rss_joined_bytes: i.rss_joined,
            cpu_cores: (i.cpu_end - i.cpu_start) / i.wall.as_secs_f64().max(1e-9),
            join_cpu_seconds: i.cpu_start - i.cpu_before,
        }
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mib = |b: f64| b / (1024.0 * 1024.0);
        let kib = |b: f64| b / 1024.0;
        let mut t = String::new();
        let mut row = |k: &str, v: String| t.push_str(&format!("{k:<34} {v}\n"));
        row(
            "nodes",
            format!(
                "{} executors + {} bootstrap, churn {}%/min, seed {}, timers /{}{}",
                self.nodes,
                self.bootstraps,
                self.churn_percent_per_minute,
                self.seed,
                self.time_scale,
                if self.control_no_records {
                    ", CONTROL: no provider records stored"
                } else {
                    ""
                }
            ),
        );
        row(
            "join",
            format!(
                "{:.1} s ({:.1} CPU s), {} failed starts",
                self.join_seconds, self.join_cpu_seconds, self.failed_starts
            ),
        );
        if let Some(why) = &self.stopped {
            row("STOPPED", why.clone());
        }
        row(
            "workload",
            format!(
                "{:.1} s, {} nodes replaced, {} running at the end",
                self.workload_seconds, self.nodes_replaced, self.live_nodes
            ),
        );
        row(
            "lookup success (live provider)",
            format!(
                "{:.2}% ({}/{}; {} of departed nodes not counted)",
                self.lookup_success * 100.0,
                self.lookups_found,
                self.lookups,
                self.lookups_of_departed
            ),
        );
        row(
            "hops (requests to 1st provider)",
            format!(
                "p50 {} p95 {} max {} (log2 N = {:.2})",
                self.hops.p50, self.hops.p95, self.hops.max, self.log2_n
            ),
        );
        row(
            "lookup latency ms",
            format!(
                "p50 {:.1} p95 {:.1} max {:.1}",
                self.lookup_ms.p50, self.lookup_ms.p95, self.lookup_ms.max
            ),
        );
        row(
            "provider records found/expected",
            format!("{}/{}", self.lookups_found, self.lookups),
        );
        row(
            "capability lookups",
            format!(
                "{}: {:.1} providers each, {:.1}% live, {} found none",
                self.capability_lookups,
                self.capability_providers_per_lookup,
                self.capability_live_share * 100.0,
                self.capability_empty
            ),
        );
        row(
            "job success",
            format!("{:.2}% of {}", self.job_success * 100.0, self.jobs),
        );
        row(
            "routing table",
            format!(
                "{:.1} entries/node, {:.1}% dead (max {:.1}%)",
                self.routing_table_size,
                self.dead_entry_share * 100.0,
                self.dead_entry_share_max * 100.0
            ),
        );
        row(
            "connections",
            format!(
                "{:.1} per node; a bootstrap node held up to {}",
                self.connections_per_node, self.bootstrap_connections_max
            ),
        );
        row(
            "traffic per node per minute",
            format!(
                "{:.0} messages ({:.0} Kademlia, {:.0} pings), {:.1} KiB",
                self.messages_per_node_minute,
                self.kad_messages_per_node_minute,
                self.ping_messages_per_node_minute,
                kib(self.bytes_per_node_minute)
            ),
        );
        row(
            "memory per node",
            format!(
                "{:.1} KiB RSS/N ({:.1} KiB over the empty process); RSS {:.0} MiB",
                kib(self.memory_per_node_bytes),
                kib(self.memory_growth_per_node_bytes),
                mib(self.rss_bytes as f64)
            ),
        );
        row(
            "CPU",
            format!("{:.2} cores during the workload", self.cpu_cores),
        );
        t
    }
}

/// Resident set size of this process (0 where `/proc` cannot tell).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// User and system CPU seconds of this process so far (`/proc/self/stat`,
/// in USER_HZ ticks, which Linux fixes at 100 for user space).
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) in parentheses.
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_fractional_rates() {
        let s = Spread::of(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert_eq!((s.p50, s.max), (3.0, 100.0));
        let mut acc = 0.0;
        let got: usize = (0..10).map(|_| take(&mut acc, 0.25)).sum();
        assert_eq!(got, 2, "2.5 due over ten ticks: two whole, a half carried");
        assert!(rss_bytes() > 0);
        assert!(cpu_seconds() >= 0.0);
    }
}
