//! The placement score of the design (planetary-mesh-tech-choices.md §7):
//! `cost = α·RTT + β·load + γ·queue + δ·(1 − reliability)`, lower is better.
//!
//! Each term is in units a person can weigh against the others: RTT in
//! milliseconds, load as the share of the executor's slots busy (0..1), queue as
//! jobs waiting per slot, reliability as this node's own estimate (0..1) from
//! [`super::reputation`]. The defaults (decision 0051) make a fully busy executor
//! cost as much as 100 ms more round trip, each queued job per slot another
//! 100 ms, and a peer that fails every job 200 ms: a free peer across a
//! continent beats a full one next door, and a flaky one loses to both.

use serde::{Deserialize, Serialize};

/// The weights of the score (`[placement]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// α: cost per millisecond of round trip.
    pub rtt: f64,
    /// β: cost of a fully busy executor (all slots running).
    pub load: f64,
    /// γ: cost per job waiting per slot.
    pub queue: f64,
    /// δ: cost of a peer that never delivers (reliability 0).
    pub reliability: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            rtt: 1.0,
            load: 100.0,
            queue: 100.0,
            reliability: 200.0,
        }
    }
}

impl Weights {
    /// Refuses weights that would make the score meaningless.
    pub fn check(&self) -> Result<(), String> {
        for (name, w) in [
            ("rtt", self.rtt),
            ("load", self.load),
            ("queue", self.queue),
            ("reliability", self.reliability),
        ] {
            if !w.is_finite() || !(0.0..=1e6).contains(&w) {
                return Err(format!(
                    "placement.{name} must be a number from 0 to 1000000, not {w}"
                ));
            }
        }
        Ok(())
    }
}

/// What placement knows of one candidate when it scores it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Inputs {
    /// Round trip in milliseconds (`None`: never measured; scored as [`UNKNOWN_RTT_MS`]).
    pub rtt_ms: Option<f64>,
    /// Worker slots the executor advertises (`None`: no advertisement).
    pub slots: Option<u32>,
    /// Jobs it runs or holds queued, plus this node's jobs sent since it said so.
    pub busy: u32,
    /// This node's estimate of the peer's reliability, 0..1.
    pub reliability: f64,
}

/// RTT assumed for a peer never measured: a slow WAN round trip, so a measured
/// near peer wins and an unmeasured one is not ruled out.
pub const UNKNOWN_RTT_MS: f64 = 150.0;

/// Each term of one candidate's score, and the total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// α·RTT.
    pub rtt: f64,
    /// β·load.
    pub load: f64,
    /// γ·queue.
    pub queue: f64,
    /// δ·(1 − reliability).
    pub reliability: f64,
    /// The sum: lower is better.
    pub total: f64,
}

/// Load and queue terms of a peer that does not advertise its state: half busy.
const UNKNOWN_LOAD: f64 = 0.5;

/// Scores one candidate.
pub fn score(w: &Weights, i: &Inputs) -> Score {
    let rtt = w.rtt * i.rtt_ms.unwrap_or(UNKNOWN_RTT_MS).max(0.0);
    let (load, queue) = match i.slots {
        Some(slots) if slots > 0 => {
            let slots = f64::from(slots);
            let busy = f64::from(i.busy);
            ((busy.min(slots) / slots), (busy - slots).max(0.0) / slots)
        }
        // No slots at all: as busy as can be.
        Some(_) => (1.0, 1.0),
        None => (UNKNOWN_LOAD, 0.0),
    };
    let (load, queue) = (w.load * load, w.queue * queue);
    let reliability = w.reliability * (1.0 - i.reliability.clamp(0.0, 1.0));
    Score {
        rtt,
        load,
        queue,
        reliability,
        total: rtt + load + queue + reliability,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rtt: f64, slots: u32, busy: u32, rel: f64) -> f64 {
        score(
            &Weights::default(),
            &Inputs {
                rtt_ms: Some(rtt),
                slots: Some(slots),
                busy,
                reliability: rel,
            },
        )
        .total
    }

    #[test]
    fn a_free_far_peer_beats_a_full_near_one() {
        assert!(at(80.0, 4, 0, 0.9) < at(1.0, 4, 4, 0.9));
        assert!(at(80.0, 4, 0, 0.9) < at(1.0, 4, 6, 0.9));
    }

    #[test]
    fn among_free_peers_the_nearer_wins_and_the_flaky_loses() {
        assert!(at(5.0, 4, 0, 0.9) < at(50.0, 4, 0, 0.9));
        assert!(at(50.0, 4, 0, 0.9) < at(5.0, 4, 0, 0.3));
    }

    #[test]
    fn more_slots_carry_the_same_work_more_lightly() {
        assert!(at(10.0, 8, 4, 0.9) < at(10.0, 2, 4, 0.9));
    }

    #[test]
    fn bad_weights_are_refused() {
        for bad in [f64::NAN, -1.0, f64::INFINITY, 2e6] {
            let w = Weights {
                load: bad,
                ..Weights::default()
            };
            assert!(w.check().is_err(), "{bad}");
        }
        assert!(Weights::default().check().is_ok());
    }
}
