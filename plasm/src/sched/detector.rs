//! Failure detection from beats (decision 0050): a watched peer is asked for a
//! beat every `interval`; one that has answered none for two intervals (two
//! missed beats) is **suspect**, and is sent one more beat at once; if that
//! one goes unanswered for `probe_timeout` too, the peer is **failed**. An
//! answer at any point makes it alive again (SWIM's suspicion with Lifeguard's
//! refutation, with a direct probe in place of SWIM's indirect one: only the
//! requester of a job needs the verdict, so no third party is asked).
//!
//! A peer killed just after answering a beat is declared failed at most
//! `2 × interval + probe_timeout` later: 11 s with the 5 s default, which leaves
//! a second for the job to be placed again within the 12 s.

use serde::Serialize;
use std::time::{Duration, Instant};

/// The beat and its detector (`[network] beat_seconds`, `probe_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Time between beats to a watched peer.
    pub interval: Duration,
    /// How long a suspect has to answer its probe.
    pub probe_timeout: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

/// What the detector says of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Answered within two intervals.
    Alive,
    /// Missed two beats; its probe is out.
    Suspect,
    /// Missed two beats and the probe.
    Failed,
}

impl Liveness {
    /// `alive`, `suspect` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Failed => "failed",
        }
    }
}

/// One watched peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detector {
    /// The last answer, or when watching began.
    heard: Instant,
}

impl Detector {
    /// Starts watching at `now` (the watch counts as an answer: a peer is not
    /// suspect before it was ever asked).
    pub fn new(now: Instant) -> Self {
        Self { heard: now }
    }

    /// The peer answered.
    pub fn heard(&mut self, now: Instant) {
        self.heard = self.heard.max(now);
    }

    /// When it last answered (or watching began).
    pub fn last_heard(&self) -> Instant {
        self.heard
    }

    /// The verdict at `now`.
    pub fn state(&self, now: Instant, c: &DetectorConfig) -> Liveness {
        let silent = now.saturating_duration_since(self.heard);
        if silent >= c.interval * 2 + c.probe_timeout {
            Liveness::Failed
        } else if silent >= c.interval * 2 {
            Liveness::Suspect
        } else {
            Liveness::Alive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_missed_beats_make_a_suspect_and_the_probe_decides() {
        let c = DetectorConfig::default();
        let t0 = Instant::now();
        let mut d = Detector::new(t0);
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        assert_eq!(d.state(at(9.9), &c), Liveness::Alive);
        assert_eq!(d.state(at(10.0), &c), Liveness::Suspect);
        assert_eq!(d.state(at(11.0), &c), Liveness::Failed);
        // An answer refutes the suspicion, even a late one.
        d.heard(at(10.5));
        assert_eq!(d.state(at(11.0), &c), Liveness::Alive);
        // Answers never move time back.
        d.heard(at(1.0));
        assert_eq!(d.last_heard(), at(10.5));
    }

    #[test]
    fn the_worst_case_fits_the_twelve_seconds() {
        let c = DetectorConfig::default();
        assert!(c.interval * 2 + c.probe_timeout <= Duration::from_secs(11));
    }
}
