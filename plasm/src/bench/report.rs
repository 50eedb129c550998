//! The figures a bench prints, each with the method that produced it.
//!
//! A figure is only worth quoting when the reader knows exactly what the timer
//! wrapped, how many samples it took and which statistic is shown, so every
//! figure carries that text, is printed with it, and `--json` writes them all
//! for tracking from run to run.

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable id for tracking (`api.throughput`, `api.p50`...).
    pub id: String,
    /// What it is, in words.
    pub label: String,
    /// The value, in `unit`.
    pub value: f64,
    /// `ms`, `jobs/s`, `kB`, `x`...
    pub unit: String,
    /// What the timer wrapped, how many samples, which statistic.
    pub method: String,
    /// The goal it is held to, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
}

impl Figure {
    /// A figure with no goal.
    pub fn new(id: &str, label: impl Into<String>, value: f64, unit: &str) -> Self {
        Self {
            id: id.into(),
            label: label.into(),
            value,
            unit: unit.into(),
            method: String::new(),
            goal: None,
        }
    }

    /// Sets the method text.
    pub fn method(mut self, m: impl Into<String>) -> Self {
        self.method = m.into();
        self
    }

    /// Sets the goal text.
    pub fn goal(mut self, g: impl Into<String>) -> Self {
        self.goal = Some(g.into());
        self
    }
}

/// Every figure of a run, printed as they come.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// `plasm` version.
    pub version: String,
    /// CPUs the machine offers.
    pub cpus: usize,
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
}

impl Report {
    /// An empty report for this build and machine.
    pub fn new() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").into(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            figures: Vec::new(),
        }
    }

    /// Prints `f` and keeps it.
    pub fn add(&mut self, f: Figure) {
        let value = if f.value >= 100.0 {
            format!("{:.0}", f.value)
        } else {
            format!("{:.2}", f.value)
        };
        let goal = f
            .goal
            .as_deref()
            .map_or_else(String::new, |g| format!("  (goal {g})"));
        outln!("{:<22} {}: {value} {}{goal}", f.id, f.label, f.unit);
        if !f.method.is_empty() {
            outln!("{:<22}   method: {}", "", f.method);
        }
        self.figures.push(f);
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
