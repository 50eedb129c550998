//! Node configuration: embedded defaults, overridden by a TOML file
//! (`--config`, or `PLASM_CONFIG`), overridden by `PLASM_*` environment
//! variables, overridden by command-line flags. `plasm config` prints the result.

use crate::net::executor::ExecutorPolicy;
use crate::net::profile::{Profile, ProfileSettings};
use crate::net::reach::RelayLimits;
use crate::node::{DEFAULT_API_PORT, DEFAULT_PORT, Mode, NodeConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (the message names the key and position).
    #[error("config file {path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// toml's message.
        message: String,
    },
    /// An environment variable or flag has an invalid value.
    #[error("{name}: {message}")]
    Value {
        /// Variable or flag.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The HTTP API section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API.
    pub enabled: bool,
    /// Address (port 0 allowed). Anything but loopback needs `token_file`.
    pub address: String,
    /// Token file (`<token> <scope>[,<scope>]` per line); empty: none.
    pub token_file: String,
    /// PEM certificate chain to serve TLS with; empty: plain HTTP.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// Allow plain HTTP on an address beyond loopback (tokens then cross the network in clear).
    pub insecure_http: bool,
}

/// Capacity: worker threads and queued jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacityConfig {
    /// Worker threads (0: one per CPU).
    pub workers: usize,
    /// Jobs waiting for a worker (0: four per worker).
    pub queue: usize,
    /// Jobs handed to peers and not yet answered (0: 256).
    pub remote_jobs: usize,
    /// MiB of module and input those jobs may hold (0: 256).
    pub remote_mib: u64,
}

/// The store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// fsync every commit (survives power loss).
    pub fsync: bool,
    /// Job outputs kept (receipts follow keep_jobs/keep_days).
    pub max_outputs: u64,
    /// Bytes of module files kept (oldest removed first).
    pub max_module_bytes: u64,
    /// Whole jobs (manifest, receipt) kept at least: the newest this many...
    pub keep_jobs: u64,
    /// ...and every job finished less than this many days ago.
    pub keep_days: u64,
}

/// What the executor accepts from others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest fuel budget.
    pub max_fuel: u64,
    /// Largest memory cap.
    pub max_memory_bytes: u64,
    /// Largest output cap.
    pub max_output_bytes: u64,
    /// Largest module.
    pub max_module_bytes: u64,
    /// Largest input.
    pub max_input_bytes: u64,
}

/// Limits of the relay server a reachable node runs (`[network.relay]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Reservations held at once.
    pub max_reservations: usize,
    /// Reservations one peer may hold.
    pub max_reservations_per_peer: usize,
    /// Seconds a reservation lasts before renewal.
    pub reservation_seconds: u64,
    /// Circuits relayed at once.
    pub max_circuits: usize,
    /// Circuits one peer may have open.
    pub max_circuits_per_peer: usize,
    /// Longest life of a circuit, in seconds.
    pub max_circuit_seconds: u64,
    /// Most bytes one circuit carries.
    pub max_circuit_bytes: u64,
    /// Reservation requests one peer may make a minute.
    pub reservations_per_peer_per_minute: u32,
    /// Reservation requests one IP address may make a minute.
    pub reservations_per_ip_per_minute: u32,
    /// Circuits one source peer may open a minute.
    pub circuits_per_peer_per_minute: u32,
    /// Circuits one source IP address may open a minute.
    pub circuits_per_ip_per_minute: u32,
}

impl Default for RelayConfig {
    fn default() -> Self {
        let l = RelayLimits::default();
        Self {
            max_reservations: l.max_reservations,
            max_reservations_per_peer: l.max_reservations_per_peer,
            reservation_seconds: l.reservation_duration.as_secs(),
            max_circuits: l.max_circuits,
            max_circuits_per_peer: l.max_circuits_per_peer,
            max_circuit_seconds: l.max_circuit_duration.as_secs(),
            max_circuit_bytes: l.max_circuit_bytes,
            reservations_per_peer_per_minute: l.reservations_per_peer_per_minute,
            reservations_per_ip_per_minute: l.reservations_per_ip_per_minute,
            circuits_per_peer_per_minute: l.circuits_per_peer_per_minute,
            circuits_per_ip_per_minute: l.circuits_per_ip_per_minute,
        }
    }
}

/// Values that replace those of the profile's preset (`[network.profile_overrides]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileOverrides {
    /// Seconds an idle connection stays open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive_seconds: Option<u64>,
    /// Seconds between provider-record publications while nothing changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_seconds: Option<u64>,
    /// Seconds a dial may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dial_timeout_seconds: Option<u64>,
    /// Seconds an offer round trip may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_timeout_seconds: Option<u64>,
    /// Longest wait between reconnection attempts, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_max_seconds: Option<u64>,
    /// Largest bundle (module + input) accepted from others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bundle_bytes: Option<u64>,
    /// Execute jobs offered by others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execute_for_others: Option<bool>,
    /// Relay for others when reachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_for_others: Option<bool>,
}

impl ProfileOverrides {
    fn apply(&self, mut s: ProfileSettings) -> ProfileSettings {
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        s.keep_alive = secs(self.keep_alive_seconds, s.keep_alive);
        s.advertise_interval = secs(self.advertise_seconds, s.advertise_interval);
        s.dial_timeout = secs(self.dial_timeout_seconds, s.dial_timeout);
        s.offer_timeout = secs(self.offer_timeout_seconds, s.offer_timeout);
        s.backoff_max = secs(self.backoff_max_seconds, s.backoff_max);
        s.max_bundle_bytes = self.max_bundle_bytes.unwrap_or(s.max_bundle_bytes);
        s.execute_for_others = self.execute_for_others.unwrap_or(s.execute_for_others);
        s.relay_for_others = self.relay_for_others.unwrap_or(s.relay_for_others);
        s
    }
}

/// Engines (`[runtime]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Engines offered: `wasmtime`, `wasm3` (default both).
    pub engines: Vec<String>,
    /// Engine for jobs that do not ask for one (default `wasmtime`).
    pub default: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let d = crate::runtime::engines::EngineChoice::default();
        Self {
            engines: d.offered.iter().map(|e| e.as_str().to_owned()).collect(),
            default: d.default.as_str().to_owned(),
        }
    }
}

impl RuntimeConfig {
    fn choice(&self) -> Result<crate::runtime::engines::EngineChoice, ConfigError> {
        use crate::runtime::engines::{EngineChoice, EngineName};
        let parse = |key: &str, s: &str| {
            EngineName::parse(s)
                .ok_or_else(|| value_err(key, format!("{s}: expected wasmtime or wasm3")))
        };
        let mut offered = Vec::new();
        for e in &self.engines {
            let e = parse("runtime.engines", e)?;
            if !offered.contains(&e) {
                offered.push(e);
            }
        }
        if offered.is_empty() {
            return Err(value_err("runtime.engines", "offer at least one engine"));
        }
        let default = parse("runtime.default", &self.default)?;
        if !offered.contains(&default) {
            return Err(value_err(
                "runtime.default",
                format!("{default} is not in runtime.engines"),
            ));
        }
        Ok(EngineChoice { offered, default })
    }
}

/// Reachability (`[network]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The link: `lan`, `wan` (default), `mobile` or `hostile` (see `net::profile`).
    pub profile: String,
    /// Addresses announced as reachable that the node cannot see itself (a port
    /// forwarded on a router): multiaddrs without `/p2p`.
    pub external_addresses: Vec<String>,
    /// LAN discovery by mDNS. Unset: on exactly when some listen address is beyond loopback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mdns: Option<bool>,
    /// Dial out only: never advertised as a provider or relay, never a DHT server.
    pub hidden: bool,
    /// AutoNAT trusts only dial-backs to global addresses (turn off only in a lab on private addresses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autonat_global_only: Option<bool>,
    /// Relay server limits (reachable nodes relay for others).
    pub relay: RelayConfig,
    /// Values replacing the profile's preset.
    pub profile_overrides: ProfileOverrides,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            profile: Profile::default().as_str().into(),
            external_addresses: Vec::new(),
            mdns: None,
            hidden: false,
            autonat_global_only: None,
            relay: RelayConfig::default(),
            profile_overrides: ProfileOverrides::default(),
        }
    }
}

/// Audits by re-execution (`[audit]`, decision 0057).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Share of the receipts peers sign for this node's jobs that it runs again (0 to 1).
    pub sample_rate: f64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { sample_rate: 0.01 }
    }
}

/// Receipts replicated on the peers closest to their job (`[replication]`, decision 0056).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Peers each job's records are stored on.
    pub replicas: usize,
    /// Minutes between republishing what this node holds.
    pub republish_minutes: u64,
    /// Days a record is kept.
    pub retention_days: u64,
    /// Records this node holds at most (oldest go first).
    pub max_records: u64,
    /// MiB of published modules and inputs this node holds at most.
    pub max_blob_mb: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        let r = crate::service::replica::ReplicaConfig::default();
        Self {
            replicas: r.k,
            republish_minutes: r.republish_every.as_secs() / 60,
            retention_days: r.limits.retention.as_secs() / 86_400,
            max_records: r.limits.max_records,
            max_blob_mb: r.limits.max_blob_bytes >> 20,
        }
    }
}

/// Where jobs sent to peers run (`[placement]`, decisions 0050-0052).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementConfig {
    /// α: score per millisecond of round trip.
    pub weight_rtt: f64,
    /// β: score of a fully busy executor.
    pub weight_load: f64,
    /// γ: score per job waiting per slot.
    pub weight_queue: f64,
    /// δ: score of a peer that never delivers.
    pub weight_reliability: f64,
    /// Failures in a row that open a peer's circuit breaker.
    pub breaker_failures: u32,
    /// Seconds a breaker stays open before its half-open trial.
    pub breaker_cooldown_seconds: u64,
    /// This node's jobs one executor holds at once (1 to 8).
    pub max_jobs_per_executor: usize,
    /// Seconds a job waits for an executor with room before it fails.
    pub queue_wait_seconds: u64,
    /// Seconds between beats to an executor holding one of this node's jobs.
    pub beat_seconds: u64,
    /// `solo`, `mesh` or `swarm` (decision 0053).
    pub mode: String,
    /// Swarm: stolen jobs this node runs at once.
    pub steal_max_concurrent: usize,
    /// Swarm: labels a job must require for this node to steal it.
    pub steal_require_labels: Vec<String>,
    /// Swarm: memory this node must have (MiB) to steal anything.
    pub steal_min_memory_mb: u64,
    /// Swarm: largest stolen bundle (module + input), MiB.
    pub steal_max_bundle_mb: u64,
    /// Swarm: how long a busy node waits for answers to its overflow announcement.
    pub consent_timeout_ms: u64,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        let s = crate::sched::SchedConfig::default();
        let steal = crate::net::steal::StealPolicy::default();
        Self {
            weight_rtt: s.weights.rtt,
            weight_load: s.weights.load,
            weight_queue: s.weights.queue,
            weight_reliability: s.weights.reliability,
            breaker_failures: s.breaker.failures,
            breaker_cooldown_seconds: s.breaker.cooldown.as_secs(),
            max_jobs_per_executor: s.max_per_peer,
            queue_wait_seconds: s.queue_wait.as_secs(),
            beat_seconds: crate::sched::detector::DetectorConfig::default()
                .interval
                .as_secs(),
            mode: s.mode.as_str().into(),
            steal_max_concurrent: steal.max_concurrent,
            steal_require_labels: steal.require_labels,
            steal_min_memory_mb: steal.min_memory_mb,
            steal_max_bundle_mb: steal.max_bundle_bytes >> 20,
            consent_timeout_ms: steal.consent_timeout.as_millis() as u64,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory (identity key, store, modules).
    pub data_dir: String,
    /// `node` or `bootstrap`.
    pub mode: String,
    /// Publicly reachable: serve the DHT.
    pub public: bool,
    /// Listen multiaddrs.
    pub listen: Vec<String>,
    /// Bootstrap multiaddrs (ending in /p2p/<peer id>).
    pub bootstrap: Vec<String>,
    /// A signed bootstrap list file (decision 0055); empty: none. An absent file is no error.
    pub bootstrap_list: String,
    /// Publisher keys (base64 Ed25519) whose bootstrap lists are trusted.
    pub bootstrap_publishers: Vec<String>,
    /// Labels advertised.
    pub labels: Vec<String>,
    /// Seconds running jobs may take to finish after SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// HTTP API.
    pub api: ApiConfig,
    /// Capacity.
    pub capacity: CapacityConfig,
    /// Store.
    pub store: StoreConfig,
    /// Limits for jobs from others.
    pub limits: LimitsConfig,
    /// Reachability.
    pub network: NetworkConfig,
    /// Engines.
    pub runtime: RuntimeConfig,
    /// Placement of jobs sent to peers.
    pub placement: PlacementConfig,
    /// Audits by re-execution.
    pub audit: AuditConfig,
    /// Replicated receipts.
    pub replication: ReplicationConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            mode: "node".into(),
            public: false,
            listen: vec![
                format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"),
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"),
            ],
            bootstrap: Vec::new(),
            bootstrap_list: String::new(),
            bootstrap_publishers: Vec::new(),
            labels: Vec::new(),
            shutdown_grace_seconds: 30,
            api: ApiConfig::default(),
            capacity: CapacityConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            network: NetworkConfig::default(),
            runtime: RuntimeConfig::default(),
            placement: PlacementConfig::default(),
            audit: AuditConfig::default(),
            replication: ReplicationConfig::default(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: format!("127.0.0.1:{DEFAULT_API_PORT}"),
            token_file: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            insecure_http: false,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            fsync: false,
            max_outputs: 10_000,
            max_module_bytes: crate::store::DEFAULT_MAX_MODULE_BYTES,
            keep_jobs: 1_000_000,
            keep_days: 90,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let p = ExecutorPolicy::default();
        Self {
            max_fuel: p.max_fuel,
            max_memory_bytes: p.max_memory_bytes,
            max_output_bytes: p.max_output_bytes,
            max_module_bytes: p.max_module_bytes,
            max_input_bytes: p.max_input_bytes,
        }
    }
}

fn default_data_dir() -> String {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("plasm").display().to_string();
    }
    std::env::var_os("HOME")
        .map(|h| {
            PathBuf::from(h)
                .join(".local/share/plasm")
                .display()
                .to_string()
        })
        .unwrap_or_else(|| "/var/lib/plasm".into())
}

fn value_err(name: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Value {
        name: name.into(),
        message: message.to_string(),
    }
}

/// What the command line says, the last layer over the file and the environment.
/// Empty lists and `None` leave the layer below in force.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`: the TOML file (else `PLASM_CONFIG`, else none).
    pub config_file: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Vec<String>,
    /// `--bootstrap`.
    pub bootstrap: Vec<String>,
    /// `--mode`.
    pub mode: Option<String>,
    /// `--public` (can only switch it on).
    pub public: bool,
    /// `--label`.
    pub labels: Vec<String>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--queue`.
    pub queue: Option<usize>,
    /// `--api`.
    pub api: Option<String>,
    /// `--no-api`.
    pub no_api: bool,
    /// `--api-token-file`.
    pub api_token_file: Option<PathBuf>,
    /// `--api-tls-cert`.
    pub api_tls_cert: Option<PathBuf>,
    /// `--api-tls-key`.
    pub api_tls_key: Option<PathBuf>,
    /// `--insecure-http` (can only switch it on).
    pub insecure_http: bool,
    /// `--external-address`.
    pub external_addresses: Vec<String>,
    /// `--hidden` (can only switch it on).
    pub hidden: bool,
    /// `--no-mdns` (can only switch it off).
    pub no_mdns: bool,
    /// `--profile`.
    pub profile: Option<String>,
}

impl Config {
    /// The effective configuration: defaults < TOML file < `PLASM_*` from `env` <
    /// the command line. Called again on every SIGHUP, so a reload sees the file as
    /// it is now with the same flags on top.
    pub fn layered(
        o: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = o
            .config_file
            .clone()
            .or_else(|| env("PLASM_CONFIG").map(PathBuf::from));
        let mut c = match file {
            Some(path) => Config::from_file(&path)?,
            None => Config::default(),
        };
        c.apply_env(&env)?;
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(d) = &o.data_dir {
            c.data_dir = path(d);
        }
        if !o.listen.is_empty() {
            c.listen = o.listen.clone();
        }
        if !o.bootstrap.is_empty() {
            c.bootstrap = o.bootstrap.clone();
        }
        if let Some(m) = &o.mode {
            c.mode = m.clone();
        }
        c.public |= o.public;
        if !o.labels.is_empty() {
            c.labels = o.labels.clone();
        }
        if let Some(w) = o.workers {
            c.capacity.workers = w.max(1);
        }
        if let Some(q) = o.queue {
            c.capacity.queue = q.max(1);
        }
        if let Some(a) = &o.api {
            c.api.address = a.clone();
        }
        if o.no_api {
            c.api.enabled = false;
        }
        if let Some(t) = &o.api_token_file {
            c.api.token_file = path(t);
        }
        if let Some(t) = &o.api_tls_cert {
            c.api.tls_cert = path(t);
        }
        if let Some(t) = &o.api_tls_key {
            c.api.tls_key = path(t);
        }
        c.api.insecure_http |= o.insecure_http;
        if !o.external_addresses.is_empty() {
            c.network.external_addresses = o.external_addresses.clone();
        }
        c.network.hidden |= o.hidden;
        if o.no_mdns {
            c.network.mdns = Some(false);
        }
        if let Some(p) = &o.profile {
            c.network.profile = p.clone();
        }
        Ok(c)
    }

    /// Defaults overridden by the TOML file at `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Applies `PLASM_*` variables from `env` (lists are comma-separated).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let list = |v: String| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let boolean = |name: &str, v: String| match v.as_str() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(value_err(name, "expected true or false")),
        };
        let number = |name: &str, v: String| v.parse::<u64>().map_err(|e| value_err(name, e));
        if let Some(v) = env("PLASM_DATA_DIR") {
            self.data_dir = v;
        }
        if let Some(v) = env("PLASM_MODE") {
            self.mode = v;
        }
        if let Some(v) = env("PLASM_PUBLIC") {
            self.public = boolean("PLASM_PUBLIC", v)?;
        }
        if let Some(v) = env("PLASM_LISTEN") {
            self.listen = list(v);
        }
        if let Some(v) = env("PLASM_BOOTSTRAP") {
            self.bootstrap = list(v);
        }
        if let Some(v) = env("PLASM_BOOTSTRAP_LIST") {
            self.bootstrap_list = v;
        }
        if let Some(v) = env("PLASM_BOOTSTRAP_PUBLISHERS") {
            self.bootstrap_publishers = list(v);
        }
        if let Some(v) = env("PLASM_LABELS") {
            self.labels = list(v);
        }
        if let Some(v) = env("PLASM_API") {
            self.api.address = v;
        }
        if let Some(v) = env("PLASM_API_TOKEN_FILE") {
            self.api.token_file = v;
        }
        if let Some(v) = env("PLASM_API_TLS_CERT") {
            self.api.tls_cert = v;
        }
        if let Some(v) = env("PLASM_API_TLS_KEY") {
            self.api.tls_key = v;
        }
        if let Some(v) = env("PLASM_INSECURE_HTTP") {
            self.api.insecure_http = boolean("PLASM_INSECURE_HTTP", v)?;
        }
        if let Some(v) = env("PLASM_EXTERNAL_ADDRESSES") {
            self.network.external_addresses = list(v);
        }
        if let Some(v) = env("PLASM_MDNS") {
            self.network.mdns = Some(boolean("PLASM_MDNS", v)?);
        }
        if let Some(v) = env("PLASM_PROFILE") {
            self.network.profile = v;
        }
        if let Some(v) = env("PLASM_HIDDEN") {
            self.network.hidden = boolean("PLASM_HIDDEN", v)?;
        }
        if let Some(v) = env("PLASM_WORKERS") {
            self.capacity.workers = number("PLASM_WORKERS", v)? as usize;
        }
        if let Some(v) = env("PLASM_QUEUE") {
            self.capacity.queue = number("PLASM_QUEUE", v)? as usize;
        }
        Ok(())
    }

    /// Checks values and builds the node configuration.
    pub fn to_node_config(&self) -> Result<NodeConfig, ConfigError> {
        let dir = PathBuf::from(&self.data_dir);
        let mut c = NodeConfig::new(dir);
        c.mode = match self.mode.as_str() {
            "node" => Mode::Node,
            "bootstrap" => Mode::Bootstrap,
            other => {
                return Err(value_err(
                    "mode",
                    format!("{other}: expected node or bootstrap"),
                ));
            }
        };
        c.public = self.public;
        let addrs = |name: &str, v: &[String]| {
            v.iter()
                .map(|a| a.parse().map_err(|e| value_err(name, format!("{a}: {e}"))))
                .collect::<Result<Vec<_>, _>>()
        };
        c.listen = addrs("listen", &self.listen)?;
        c.bootstrap = addrs("bootstrap", &self.bootstrap)?;
        // A bootstrap address must say whose it is: without the peer id the node
        // cannot authenticate it (and would only warn at every start).
        if let Some(a) = c.bootstrap.iter().find(|a: &&libp2p::Multiaddr| {
            !matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_)))
        }) {
            return Err(value_err(
                "bootstrap",
                format!(
                    "{a} has no /p2p/<peer id>: append the bootstrap node's peer id (it prints \
                     `listening …/p2p/12D3KooW…` at start; `plasm id --data-dir DIR` shows it)"
                ),
            ));
        }
        if let Some(k) = self
            .bootstrap_publishers
            .iter()
            .find(|k| crate::net::bootstrap::parse_publisher_key(k).is_none())
        {
            return Err(value_err(
                "bootstrap_publishers",
                format!(
                    "{k}: not a base64 Ed25519 public key (`plasm bootstrap keygen` prints one)"
                ),
            ));
        }
        c.bootstrap_list =
            (!self.bootstrap_list.is_empty()).then(|| PathBuf::from(&self.bootstrap_list));
        c.bootstrap_publishers = self.bootstrap_publishers.clone();
        c.net.transport = crate::node::transport_for(&c.listen);
        let n = &self.network;
        let reach = &mut c.net.reach;
        reach.external_addresses = addrs("network.external_addresses", &n.external_addresses)?;
        reach.hidden = n.hidden;
        reach.mdns = n
            .mdns
            .unwrap_or_else(|| !c.listen.iter().all(crate::net::reach::is_local));
        reach.autonat_global_only = n.autonat_global_only.unwrap_or(true);
        reach.profile = Profile::parse(&n.profile).ok_or_else(|| {
            value_err(
                "network.profile",
                format!("{}: expected lan, wan, mobile or hostile", n.profile),
            )
        })?;
        reach.settings = n.profile_overrides.apply(reach.profile.settings());
        let r = &n.relay;
        reach.relay_server = Some(RelayLimits {
            max_reservations: r.max_reservations,
            max_reservations_per_peer: r.max_reservations_per_peer,
            reservation_duration: Duration::from_secs(r.reservation_seconds),
            max_circuits: r.max_circuits,
            max_circuits_per_peer: r.max_circuits_per_peer,
            max_circuit_duration: Duration::from_secs(r.max_circuit_seconds),
            max_circuit_bytes: r.max_circuit_bytes,
            reservations_per_peer_per_minute: r.reservations_per_peer_per_minute,
            reservations_per_ip_per_minute: r.reservations_per_ip_per_minute,
            circuits_per_peer_per_minute: r.circuits_per_peer_per_minute,
            circuits_per_ip_per_minute: r.circuits_per_ip_per_minute,
        });
        c.policy.labels = self.labels.clone();
        c.policy.engines = self.runtime.choice()?;
        c.policy.max_fuel = self.limits.max_fuel;
        c.policy.max_memory_bytes = self.limits.max_memory_bytes;
        c.policy.max_output_bytes = self.limits.max_output_bytes;
        c.policy.max_module_bytes = self.limits.max_module_bytes;
        c.policy.max_input_bytes = self.limits.max_input_bytes;
        c.api = if self.api.enabled {
            Some(
                self.api
                    .address
                    .parse()
                    .map_err(|e| value_err("api.address", format!("{}: {e}", self.api.address)))?,
            )
        } else {
            None
        };
        c.api_tokens =
            (!self.api.token_file.is_empty()).then(|| PathBuf::from(&self.api.token_file));
        c.api_tls = match (self.api.tls_cert.as_str(), self.api.tls_key.as_str()) {
            ("", "") => None,
            ("", _) | (_, "") => {
                return Err(value_err(
                    "api.tls_cert/api.tls_key",
                    "give both the certificate and its key, or neither",
                ));
            }
            (cert, key) => Some(crate::api::TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
        };
        c.insecure_http = self.api.insecure_http;
        if self.capacity.workers > 0 {
            c.workers = self.capacity.workers;
        }
        c.queue = if self.capacity.queue > 0 {
            self.capacity.queue
        } else {
            c.workers * 4
        };
        c.fsync = self.store.fsync;
        c.max_outputs = self.store.max_outputs;
        c.max_module_bytes = self.store.max_module_bytes;
        c.job_retention = crate::store::JobRetention {
            min_jobs: self.store.keep_jobs,
            min_age: Duration::from_secs(self.store.keep_days.saturating_mul(24 * 3600)),
        };
        let defaults = crate::service::RemoteLimits::default();
        c.remote = crate::service::RemoteLimits {
            jobs: match self.capacity.remote_jobs {
                0 => defaults.jobs,
                n => n,
            },
            bytes: match self.capacity.remote_mib {
                0 => defaults.bytes,
                n => n.saturating_mul(1 << 20),
            },
        };
        c.grace = Duration::from_secs(self.shutdown_grace_seconds);
        let p = &self.placement;
        let weights = crate::sched::score::Weights {
            rtt: p.weight_rtt,
            load: p.weight_load,
            queue: p.weight_queue,
            reliability: p.weight_reliability,
        };
        weights.check().map_err(|e| value_err("placement", e))?;
        if !(1..=8).contains(&p.max_jobs_per_executor) {
            return Err(value_err(
                "placement.max_jobs_per_executor",
                format!(
                    "{}: from 1 to 8 (a connection carries 16 job streams, both ways)",
                    p.max_jobs_per_executor
                ),
            ));
        }
        if !(1..=3600).contains(&p.beat_seconds) {
            return Err(value_err(
                "placement.beat_seconds",
                format!("{}: from 1 to 3600", p.beat_seconds),
            ));
        }
        if p.breaker_failures == 0 {
            return Err(value_err("placement.breaker_failures", "at least 1"));
        }
        if !(1..=86_400).contains(&p.breaker_cooldown_seconds) {
            return Err(value_err(
                "placement.breaker_cooldown_seconds",
                format!("{}: from 1 to 86400", p.breaker_cooldown_seconds),
            ));
        }
        let mode = crate::sched::Mode::parse(&p.mode).ok_or_else(|| {
            value_err(
                "placement.mode",
                format!("{:?}: solo, mesh or swarm", p.mode),
            )
        })?;
        if mode == crate::sched::Mode::Swarm
            && matches!(
                c.net.reach.profile,
                crate::net::profile::Profile::Mobile | crate::net::profile::Profile::Hostile
            )
        {
            return Err(value_err(
                "placement.mode",
                format!(
                    "swarm: never on the {} profile (it takes no other node's work)",
                    c.net.reach.profile.as_str()
                ),
            ));
        }
        if !(1..=64).contains(&p.steal_max_concurrent) {
            return Err(value_err(
                "placement.steal_max_concurrent",
                format!("{}: from 1 to 64", p.steal_max_concurrent),
            ));
        }
        if !(1..=1024).contains(&p.steal_max_bundle_mb) {
            return Err(value_err(
                "placement.steal_max_bundle_mb",
                format!("{}: from 1 to 1024", p.steal_max_bundle_mb),
            ));
        }
        if !(100..=60_000).contains(&p.consent_timeout_ms) {
            return Err(value_err(
                "placement.consent_timeout_ms",
                format!("{}: from 100 to 60000", p.consent_timeout_ms),
            ));
        }
        if p.steal_require_labels.len() > crate::net::steal::MAX_STEAL_NAMES
            || p.steal_require_labels
                .iter()
                .any(|l| l.is_empty() || l.len() > crate::net::steal::MAX_STEAL_NAME_BYTES)
        {
            return Err(value_err(
                "placement.steal_require_labels",
                format!(
                    "at most {} labels of 1 to {} bytes",
                    crate::net::steal::MAX_STEAL_NAMES,
                    crate::net::steal::MAX_STEAL_NAME_BYTES
                ),
            ));
        }
        c.net.steal = crate::net::steal::StealPolicy {
            enabled: mode == crate::sched::Mode::Swarm,
            max_concurrent: p.steal_max_concurrent,
            require_labels: p.steal_require_labels.clone(),
            min_memory_mb: p.steal_min_memory_mb,
            max_bundle_bytes: p.steal_max_bundle_mb << 20,
            consent_timeout: Duration::from_millis(p.consent_timeout_ms),
            give: mode == crate::sched::Mode::Swarm,
        };
        c.placement = crate::sched::SchedConfig {
            mode,
            policy: crate::sched::Policy::Score,
            weights,
            breaker: crate::sched::breaker::BreakerConfig {
                failures: p.breaker_failures,
                cooldown: Duration::from_secs(p.breaker_cooldown_seconds),
            },
            max_per_peer: p.max_jobs_per_executor,
            // A manifest stays fresh for 10 minutes: waiting longer cannot help.
            queue_wait: Duration::from_secs(p.queue_wait_seconds.min(540)),
        };
        let a = &self.audit;
        if !(0.0..=1.0).contains(&a.sample_rate) {
            return Err(value_err("audit.sample_rate", "between 0 and 1"));
        }
        c.audit_sample_rate = a.sample_rate;
        let r = &self.replication;
        if !(1..=20).contains(&r.replicas) {
            return Err(value_err("replication.replicas", "1 to 20"));
        }
        if r.republish_minutes == 0 || r.retention_days == 0 || r.max_records == 0 {
            return Err(value_err(
                "replication",
                "republish_minutes, retention_days and max_records are at least 1",
            ));
        }
        c.replication.k = r.replicas;
        c.replication.republish_every = Duration::from_secs(r.republish_minutes * 60);
        c.replication.limits.retention = Duration::from_secs(r.retention_days * 86_400);
        c.replication.limits.max_records = r.max_records;
        c.replication.limits.max_blob_bytes = r.max_blob_mb << 20;
        c.net.detector.interval = Duration::from_secs(p.beat_seconds);
        c.net.detector.probe_timeout =
            (c.net.detector.interval / 5).max(Duration::from_millis(200));
        c.net.limits.beat_timeout = c.net.detector.interval;
        Ok(c)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The effective configuration as TOML with a comment above each key, and the
    /// keys left unset (`network.mdns`, `network.autonat_global_only`,
    /// `[network.profile_overrides]`) shown commented out with what unset means:
    /// what `plasm config` prints, a file that can be edited and used as is.
    pub fn to_commented_toml(&self) -> String {
        let plain = self.to_toml();
        let mut out = String::from(
            "# plasm configuration: the effective values (defaults < file < PLASM_* variables < flags).\n\
             # Save it, edit it, and start with `plasm start --config FILE`.\n\n",
        );
        let mut section = String::new();
        for line in plain.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                if let Some(c) = comment(&section, "") {
                    out.push_str(&format!("# {c}\n"));
                }
                out.push_str(line);
                out.push('\n');
                for (key, example, meaning) in unset_keys(self, &section) {
                    out.push_str(&format!("# {key} = {example}   # unset: {meaning}\n"));
                }
                continue;
            }
            if let Some((key, _)) = line.split_once(" = ")
                && !key.starts_with(' ')
                && let Some(c) = comment(&section, key.trim())
            {
                out.push_str(&format!("# {c}\n"));
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// The comment above `key` of `[section]` (`key` empty: above the section header).
fn comment(section: &str, key: &str) -> Option<&'static str> {
    Some(match (section, key) {
        ("", "data_dir") => {
            "Identity key (identity.key, mode 0600), job store (plasm.db), modules/, and node.lock (one node per data dir)."
        }
        ("", "mode") => {
            "\"node\" executes jobs; \"bootstrap\" serves the DHT and relays, never executes."
        }
        ("", "public") => {
            "True when this machine is reachable from the Internet: it then serves the DHT."
        }
        ("", "listen") => {
            "QUIC (UDP) and TCP. Nodes on one machine each need their own ports; beyond loopback turns on mDNS."
        }
        ("", "bootstrap") => {
            "Bootstrap peers: multiaddrs ending in /p2p/<peer id>. One reachable is enough."
        }
        ("", "bootstrap_list") => {
            "A signed bootstrap list (plasm bootstrap sign): its peers are dialed too when its publisher is in bootstrap_publishers, its signature verifies and it has not expired. Empty: none; a missing file is no error."
        }
        ("", "bootstrap_publishers") => {
            "Publisher keys (base64 Ed25519, `plasm bootstrap keygen` prints one) whose bootstrap lists are trusted."
        }
        ("", "labels") => "Labels advertised to requesters, e.g. [\"region=eu\", \"gpu\"].",
        ("", "shutdown_grace_seconds") => {
            "Seconds running jobs may take to finish after SIGTERM before they are failed."
        }
        ("api", "") => "The HTTP API and dashboard.",
        ("api", "address") => "Anything but loopback needs token_file and TLS (or insecure_http).",
        ("api", "token_file") => {
            "Lines of \"<token> <scope>[,<scope>]\": tokens of at least 16 characters, scopes submit, read, admin; mode 0600."
        }
        ("api", "tls_cert") => {
            "PEM certificate chain and key: the API serves HTTPS (re-read on SIGHUP)."
        }
        ("api", "insecure_http") => {
            "Serve plain HTTP beyond loopback (tokens and jobs cross the network in clear)."
        }
        ("capacity", "") => "Applied live on SIGHUP.",
        ("capacity", "workers") => "Worker processes running jobs at once (0: one per CPU).",
        ("capacity", "queue") => "Jobs waiting for a worker (0: four per worker).",
        ("capacity", "remote_jobs") => "Jobs handed to peers and not yet answered (0: 256).",
        ("capacity", "remote_mib") => "MiB of module and input those jobs may hold (0: 256).",
        ("store", "fsync") => "Sync every commit: survives power loss, at a cost in throughput.",
        ("store", "max_outputs") => "Outputs of the newest jobs kept.",
        ("store", "max_module_bytes") => "Bytes of modules kept.",
        ("store", "keep_jobs") => {
            "Whole jobs are kept while within the newest keep_jobs or younger than keep_days."
        }
        ("limits", "") => {
            "The largest limits a job may ask for, from the API or from peers (422 over_maximum above)."
        }
        ("network", "profile") => {
            "The link: lan, wan, mobile (executes nothing for others) or hostile (never relays)."
        }
        ("network", "external_addresses") => {
            "Addresses others can reach this node at that it cannot see itself (a forwarded port), without /p2p."
        }
        ("network", "hidden") => "Dial out only: never advertised, never a DHT server or relay.",
        ("network.relay", "") => "Limits of the relay a reachable node runs for others.",
        ("network.profile_overrides", "") => "Values replacing the profile's presets.",
        ("runtime", "engines") => {
            "Engines offered: wasmtime (compiles; needs W+X memory) and wasm3 (interprets)."
        }
        ("runtime", "default") => "The engine for jobs that do not ask for one.",
        ("placement", "weight_rtt") => {
            "Where jobs sent to peers run: score = weight_rtt*RTT(ms) + weight_load*load + weight_queue*queue + weight_reliability*(1-reliability), lowest wins (decision 0051)."
        }
        ("placement", "breaker_failures") => {
            "Failures in a row (timeouts, refusals, invalid receipts) that open a peer's breaker for breaker_cooldown_seconds."
        }
        ("placement", "max_jobs_per_executor") => {
            "This node's jobs one executor holds at once (1 to 8); more wait for room."
        }
        ("placement", "queue_wait_seconds") => {
            "Seconds a job waits for an executor with room (at most 540: manifests stay fresh 10 minutes)."
        }
        ("placement", "mode") => {
            "solo (jobs never leave this node), mesh (to peers by score; the default) or swarm (mesh, and idle opted-in peers take queued jobs: never on mobile or hostile)."
        }
        ("placement", "steal_max_concurrent") => {
            "Swarm: stolen jobs this node runs at once (1 to 64)."
        }
        ("placement", "steal_require_labels") => {
            "Swarm: this node steals only jobs requiring all these labels."
        }
        ("placement", "steal_min_memory_mb") => {
            "Swarm: this node steals nothing when it has less memory than this."
        }
        ("placement", "steal_max_bundle_mb") => {
            "Swarm: largest stolen module + input, MiB (the profile's bundle cap also applies)."
        }
        ("placement", "consent_timeout_ms") => {
            "Swarm: how long a busy node waits for idle peers to answer its overflow announcement."
        }
        ("audit", "sample_rate") => {
            "Share (0 to 1) of the receipts peers sign for this node's jobs that it runs again and signs a verdict on; a mismatch lowers the executor's reputation here."
        }
        ("replication", "replicas") => {
            "Peers (DHT servers closest to the job id) each receipt and its acceptance are stored on."
        }
        ("replication", "republish_minutes") => {
            "How often this node republishes the records it holds, so they outlive their executor."
        }
        ("replication", "retention_days") => "Days a replicated record is kept.",
        ("replication", "max_records") => {
            "Records this node holds for the network at most; the oldest go first."
        }
        ("replication", "max_blob_mb") => {
            "MiB of published modules and inputs (auditable jobs) this node holds at most."
        }
        ("placement", "beat_seconds") => {
            "Beats to executors holding this node's jobs: two missed and a probe, and the job is placed again."
        }
        _ => return None,
    })
}

/// Keys of `[section]` left unset: (key, an example value, what unset means).
fn unset_keys(c: &Config, section: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let n = &c.network;
    let o = &n.profile_overrides;
    let mut v = Vec::new();
    match section {
        "network" => {
            if n.mdns.is_none() {
                v.push((
                    "mdns",
                    "false",
                    "on exactly when a listen address is beyond loopback",
                ));
            }
            if n.autonat_global_only.is_none() {
                v.push((
                    "autonat_global_only",
                    "false",
                    "true: AutoNAT trusts dial-backs to global addresses only",
                ));
            }
        }
        "network.profile_overrides" => {
            let preset = "the profile's preset";
            for (set, key, example) in [
                (o.keep_alive_seconds.is_some(), "keep_alive_seconds", "60"),
                (o.advertise_seconds.is_some(), "advertise_seconds", "120"),
                (
                    o.dial_timeout_seconds.is_some(),
                    "dial_timeout_seconds",
                    "10",
                ),
                (
                    o.offer_timeout_seconds.is_some(),
                    "offer_timeout_seconds",
                    "10",
                ),
                (o.backoff_max_seconds.is_some(), "backoff_max_seconds", "60"),
                (o.max_bundle_bytes.is_some(), "max_bundle_bytes", "34603008"),
                (o.execute_for_others.is_some(), "execute_for_others", "true"),
                (o.relay_for_others.is_some(), "relay_for_others", "true"),
            ] {
                if !set {
                    v.push((key, example, preset));
                }
            }
        }
        _ => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("plasm.toml");
        std::fs::write(
            &path,
            "mode = \"bootstrap\"\nlabels = [\"gpu\"]\n[capacity]\nworkers = 3\n",
        )
        .expect("write");
        let mut c = Config::from_file(&path).expect("parse");
        assert_eq!((c.mode.as_str(), c.capacity.workers), ("bootstrap", 3));
        assert_eq!(c.api, Config::default().api);
        c.apply_env(|k| (k == "PLASM_WORKERS").then(|| "5".to_owned()))
            .expect("env");
        let n = c.to_node_config().expect("node config");
        assert_eq!((n.workers, n.queue, n.mode), (5, 20, Mode::Bootstrap));
        // What `plasm config` prints parses back to the same configuration.
        assert_eq!(
            toml::from_str::<Config>(&c.to_toml()).expect("round trip"),
            c
        );
        let commented = c.to_commented_toml();
        assert_eq!(toml::from_str::<Config>(&commented).expect("round trip"), c);
        assert!(commented.contains("# mdns = false   # unset: on exactly when"));
        assert!(commented.contains("# keep_alive_seconds = 60"));
        assert!(commented.contains("# Worker processes running jobs at once"));
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("plasm.toml");
        std::fs::write(&path, "workerz = 3\n").expect("write");
        let e = Config::from_file(&path)
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("workerz"), "{e}");
        let mut c = Config::default();
        assert!(
            c.apply_env(|k| (k == "PLASM_PUBLIC").then(|| "maybe".to_owned()))
                .is_err()
        );
        c.mode = "nodes".into();
        assert!(c.to_node_config().is_err());
        let mut c = Config::default();
        c.api.tls_cert = "/etc/plasm/api.crt".into();
        let e = c
            .to_node_config()
            .expect_err("cert without key")
            .to_string();
        assert!(e.contains("tls_key"), "{e}");
        c.api.tls_key = "/etc/plasm/api.key".into();
        let n = c.to_node_config().expect("both given");
        assert_eq!(
            n.api_tls.map(|t| t.key),
            Some(PathBuf::from("/etc/plasm/api.key"))
        );
    }

    #[test]
    fn placement_modes_and_the_steal_policy_are_checked() {
        let mut c = Config::default();
        let n = c.to_node_config().expect("defaults");
        assert_eq!(n.placement.mode, crate::sched::Mode::Mesh);
        assert!(!n.net.steal.enabled, "nobody steals unless opted in");
        c.placement.mode = "swarm".into();
        c.placement.steal_require_labels = vec!["gpu".into()];
        let n = c.to_node_config().expect("swarm");
        assert!(n.net.steal.enabled);
        assert_eq!(n.net.steal.require_labels, vec!["gpu".to_owned()]);
        assert_eq!(n.net.steal.max_bundle_bytes, 33 << 20);
        for profile in ["mobile", "hostile"] {
            let mut m = c.clone();
            m.network.profile = profile.into();
            let e = m.to_node_config().expect_err("never swarm").to_string();
            assert!(e.contains("placement.mode") && e.contains(profile), "{e}");
        }
        for bad in [
            |c: &mut Config| c.placement.mode = "crowd".into(),
            |c: &mut Config| c.placement.steal_max_concurrent = 0,
            |c: &mut Config| c.placement.steal_max_bundle_mb = 0,
            |c: &mut Config| c.placement.consent_timeout_ms = 10,
            |c: &mut Config| c.placement.steal_require_labels = vec![String::new()],
            |c: &mut Config| c.placement.steal_require_labels = vec!["x".repeat(65)],
        ] {
            let mut b = c.clone();
            bad(&mut b);
            let e = b.to_node_config().expect_err("refused").to_string();
            assert!(e.contains("placement."), "{e}");
        }
        c.placement.mode = "solo".into();
        assert_eq!(
            c.to_node_config().expect("solo").placement.mode,
            crate::sched::Mode::Solo
        );
    }

    #[test]
    fn bootstrap_list_and_publishers_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("plasm.toml");
        let key = crate::identity::Identity::from_seed([9; 32]).public_key_b64();
        std::fs::write(
            &path,
            format!("bootstrap_list = \"/etc/plasm/bootstrap.json\"\nbootstrap_publishers = [\"{key}\"]\n"),
        )
        .expect("write");
        let c = Config::from_file(&path).expect("parse");
        let n = c.to_node_config().expect("node config");
        assert_eq!(
            n.bootstrap_list,
            Some(PathBuf::from("/etc/plasm/bootstrap.json"))
        );
        assert_eq!(n.bootstrap_publishers, vec![key.clone()]);
        assert_eq!(
            toml::from_str::<Config>(&c.to_commented_toml()).expect("round trip"),
            c
        );
        assert!(c.to_commented_toml().contains("# Publisher keys"));
        assert_eq!(
            Config::default()
                .to_node_config()
                .expect("defaults")
                .bootstrap_list,
            None
        );
        let mut e = Config::default();
        e.apply_env(|k| match k {
            "PLASM_BOOTSTRAP_LIST" => Some("/tmp/list.json".into()),
            "PLASM_BOOTSTRAP_PUBLISHERS" => Some(format!("{key}, {key}")),
            _ => None,
        })
        .expect("env");
        assert_eq!(e.bootstrap_list, "/tmp/list.json");
        assert_eq!(e.bootstrap_publishers.len(), 2);
        for bad in ["AAAA", "not base64!", ""] {
            let mut b = c.clone();
            b.bootstrap_publishers = vec![bad.into()];
            let err = b.to_node_config().expect_err("refused").to_string();
            assert!(err.contains("bootstrap_publishers"), "{err}");
        }
    }

    #[test]
    fn the_packaged_file_is_the_defaults() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/debian/plasm.toml");
        let mut c = Config::from_file(&path).expect("the packaged config parses");
        c.data_dir = Config::default().data_dir;
        // The package names where its bootstrap list goes (the file may be absent).
        assert_eq!(c.bootstrap_list, "/etc/plasm/bootstrap.json");
        c.bootstrap_list = Config::default().bootstrap_list;
        assert_eq!(c, Config::default());
    }

    #[test]
    fn flags_override_file_and_environment() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("plasm.toml");
        std::fs::write(&path, "labels = [\"file\"]\n[capacity]\nworkers = 3\n").expect("write");
        let o = Overrides {
            labels: vec!["flag".into()],
            insecure_http: true,
            ..Overrides::default()
        };
        let env = |k: &str| match k {
            "PLASM_CONFIG" => Some(path.display().to_string()),
            "PLASM_WORKERS" => Some("4".into()),
            _ => None,
        };
        let c = Config::layered(&o, env).expect("layered");
        assert_eq!(c.labels, vec!["flag".to_owned()]);
        assert_eq!(c.capacity.workers, 4);
        assert!(c.api.insecure_http);
    }
}
