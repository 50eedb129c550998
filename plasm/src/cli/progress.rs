//! A job's progress on stderr: one live line on a terminal, plain lines when piped.
//!
//! On a terminal (indicatif) the line says the state, where the job runs, the
//! time since the command started and the fuel once known, and is redrawn ten
//! times a second so the elapsed time moves while nothing else does. Piped (a
//! log, CI, `2>file`), each change is one line of `key=value` words a script
//! can read, and nothing is redrawn.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// What is known of a job at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `queued`, `offered`, `running`, `succeeded`, `failed`, or a stage of a remote run.
    pub state: String,
    /// Where it runs: `here`, or a peer and the path to it.
    pub place: Option<String>,
    /// Fuel used, once known.
    pub fuel: Option<u64>,
    /// Anything else worth a word (an error, an outcome).
    pub detail: Option<String>,
}

/// The progress display of one job.
#[derive(Debug)]
pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    started: Instant,
    last: Option<Status>,
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Progress {
    /// A display for the job called `label`: live when stderr is a terminal.
    pub fn new(label: &str) -> Self {
        Self::with_terminal(label, std::io::stderr().is_terminal())
    }

    /// As [`Self::new`], saying whether to draw on a terminal.
    pub fn with_terminal(label: &str, terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self {
            label: label.to_owned(),
            bar,
            started: Instant::now(),
            last: None,
        }
    }

    fn words(s: &Status) -> String {
        let mut out = s.state.clone();
        if let Some(p) = &s.place {
            out.push_str(&format!(" · {p}"));
        }
        if let Some(f) = s.fuel {
            out.push_str(&format!(" · fuel {}", thousands(f)));
        }
        if let Some(d) = &s.detail {
            out.push_str(&format!(" · {d}"));
        }
        out
    }

    fn line(&self, s: &Status) -> String {
        let mut out = format!("job={} state={}", self.label, s.state);
        if let Some(p) = &s.place {
            out.push_str(&format!(" where={:?}", p));
        }
        out.push_str(&format!(
            " elapsed={:.3}s",
            self.started.elapsed().as_secs_f64()
        ));
        if let Some(f) = s.fuel {
            out.push_str(&format!(" fuel={f}"));
        }
        if let Some(d) = &s.detail {
            out.push_str(&format!(" detail={d:?}"));
        }
        out
    }

    /// Shows a new status (piped: a line, only when something changed).
    pub fn update(&mut self, status: Status) {
        if self.last.as_ref() == Some(&status) {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(Self::words(&status)),
            None => eprintln!("{}", self.line(&status)),
        }
        self.last = Some(status);
    }

    /// Ends the display with a last status, leaving it on screen.
    pub fn finish(mut self, status: Status) {
        match self.bar.take() {
            Some(bar) => bar.finish_with_message(Self::words(&status)),
            None if self.last.as_ref() != Some(&status) => eprintln!("{}", self.line(&status)),
            None => {}
        }
    }

    /// Removes a live line without a last status (an error follows).
    pub fn abandon(mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_lines_are_words_a_script_can_read() {
        let p = Progress::with_terminal("abc", false);
        let line = p.line(&Status {
            state: "succeeded".into(),
            place: Some("peer X (direct)".into()),
            fuel: Some(1234),
            detail: None,
        });
        assert!(line.starts_with("job=abc state=succeeded where=\"peer X (direct)\" elapsed="));
        assert!(line.ends_with(" fuel=1234"));
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
