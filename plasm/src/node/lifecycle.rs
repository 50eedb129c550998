//! A node's life under a service manager: signals, live reload, the watchdog.
//!
//! [`Signals`] is installed before the node starts, so a SIGHUP or SIGTERM that
//! arrives during start-up is held for the loop instead of killing the process
//! (the default action of both), whatever the node's mode. [`Node::reload`]
//! applies what can change on a running node and names what needs a restart;
//! [`Node::run_until_stopped`] is the loop `plasm start` and the package's unit
//! rely on: SIGHUP reloads, SIGTERM/SIGINT shut down within the grace period.

use super::{Node, NodeConfig};
use crate::notify;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals a node answers, installed (and so no longer fatal) from creation on.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers; call it first thing in the runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// What was applied, in words.
    pub applied: Vec<String>,
    /// Settings that changed but take effect only after a restart.
    pub needs_restart: Vec<&'static str>,
    /// What could not be applied, and why (the old value stays in force).
    pub failed: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.applied.is_empty() {
            parts.push(format!("applied: {}", self.applied.join("; ")));
        }
        if !self.needs_restart.is_empty() {
            parts.push(format!(
                "changed but needs a restart: {}",
                self.needs_restart.join(", ")
            ));
        }
        if !self.failed.is_empty() {
            parts.push(format!("not applied: {}", self.failed.join("; ")));
        }
        if parts.is_empty() {
            parts.push("nothing changed".into());
        }
        f.write_str(&parts.join(" | "))
    }
}

/// The settings that differ between two configurations and cannot change live.
fn restart_only_changes(old: &NodeConfig, new: &NodeConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("mode", old.mode != new.mode);
    check("public", old.public != new.public);
    check("listen", old.listen != new.listen);
    check("bootstrap", old.bootstrap != new.bootstrap);
    check(
        "bootstrap_list/bootstrap_publishers",
        old.bootstrap_list != new.bootstrap_list
            || old.bootstrap_publishers != new.bootstrap_publishers,
    );
    check("labels and limits", old.policy != new.policy);
    check("network", old.net.reach != new.net.reach);
    check("data_dir", old.data_dir != new.data_dir);
    check("api.address", old.api != new.api);
    check("api.token_file", old.api_tokens != new.api_tokens);
    check("api.tls_cert/tls_key", old.api_tls != new.api_tls);
    check("api.insecure_http", old.insecure_http != new.insecure_http);
    check("store.fsync", old.fsync != new.fsync);
    check("store.max_outputs", old.max_outputs != new.max_outputs);
    check(
        "store.keep_jobs/keep_days",
        old.job_retention != new.job_retention,
    );
    check("capacity.remote_jobs/remote_mib", old.remote != new.remote);
    check(
        "store.max_module_bytes",
        old.max_module_bytes != new.max_module_bytes,
    );
    changed
}

impl Node {
    /// Applies a re-read configuration to the running node: capacity, the
    /// shutdown grace and the API's certificate (re-read from the same files)
    /// change live; every other changed setting is named as needing a restart.
    pub fn reload(&mut self, new: NodeConfig) -> ReloadReport {
        let mut report = ReloadReport {
            needs_restart: restart_only_changes(&self.config, &new),
            ..ReloadReport::default()
        };
        if let Some(pool) = &self.pool {
            match pool.set_capacity(new.workers, new.queue) {
                Ok(()) => {
                    let (workers, queue) = pool.capacity();
                    self.config.workers = workers;
                    self.config.queue = queue;
                    report
                        .applied
                        .push(format!("capacity {workers} workers, queue {queue}"));
                }
                Err(e) => report.failed.push(format!("capacity: {e}")),
            }
        }
        if self.config.grace != new.grace {
            self.config.grace = new.grace;
            report
                .applied
                .push(format!("shutdown grace {} s", new.grace.as_secs()));
        }
        // Same paths: the files may hold a renewed certificate.
        if let Some(api) = &self.api
            && self.config.api_tls == new.api_tls
        {
            match api.reload_tls() {
                Ok(true) => report.applied.push("API certificate re-read".into()),
                Ok(false) => {}
                Err(e) => report.failed.push(e.to_string()),
            }
        }
        report
    }

    /// Serves until SIGTERM or SIGINT, then shuts down within the grace period.
    /// Each SIGHUP calls `load` for the configuration as it is now and applies it
    /// with [`Node::reload`]; a configuration that does not load changes nothing.
    pub async fn run_until_stopped<F>(mut self, mut signals: Signals, mut load: F)
    where
        F: FnMut() -> Result<NodeConfig, String>,
    {
        let watchdog = notify::watchdog_interval().map(|interval| {
            let client = self.client.clone();
            tokio::spawn(watchdog_pings(client, interval))
        });
        loop {
            tokio::select! {
                _ = signals.term.recv() => break,
                _ = signals.int.recv() => break,
                _ = signals.hup.recv() => {
                    notify::reloading();
                    match load() {
                        Ok(config) => {
                            let report = self.reload(config);
                            // Said once: on stderr (the journal), not also as a log line.
                            tracing::debug!(%report, "SIGHUP");
                            eprintln!("plasm: SIGHUP: {report}");
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "SIGHUP: configuration not applied");
                            eprintln!("plasm: SIGHUP: configuration not applied: {e}");
                        }
                    }
                    notify::ready("serving");
                }
            }
        }
        eprintln!("plasm: shutting down");
        notify::stopping();
        if let Some(w) = watchdog {
            w.abort();
        }
        self.shutdown().await;
    }
}

/// Pings the systemd watchdog at half its interval while the swarm's event loop
/// answers; a stuck loop stops the pings and systemd restarts the service.
async fn watchdog_pings(client: crate::net::Client, interval: Duration) {
    let period = interval / 2;
    loop {
        if tokio::time::timeout(period / 2, client.info())
            .await
            .is_ok_and(|r| r.is_ok())
        {
            notify::watchdog();
        } else {
            tracing::warn!("the network event loop did not answer in time: no watchdog ping");
        }
        tokio::time::sleep(period).await;
    }
}
