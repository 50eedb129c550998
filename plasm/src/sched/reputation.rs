//! Local reputation (decision 0052): what this node has seen a peer do, and
//! nothing the peer says about itself. Evidence decays with a half-life, so a
//! peer that mended its ways is trusted again and an old record counts less
//! than a new one; an invalid receipt weighs as much as ten valid ones.
//!
//! Reliability is the share of good evidence with one good and one bad
//! observation assumed (a new peer is 0.5, neither trusted nor shunned).

use serde::{Deserialize, Serialize};

/// What a job sent to a peer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// A receipt that verified and whose output matched the bytes received.
    Valid,
    /// No answer in time, or the peer failed while holding the job.
    Timeout,
    /// Declined for a reason other than being busy.
    Refusal,
    /// Accepted the bytes and failed to run them.
    Failure,
    /// A receipt that did not verify or did not match: the heaviest.
    Invalid,
    /// Declined as busy while its fresh advertisement said it had a free slot:
    /// light (another requester may have taken the slot), never a breaker failure.
    Overstated,
}

impl Evidence {
    /// (good, bad) weight of one observation.
    fn weight(self) -> (f64, f64) {
        match self {
            Self::Valid => (1.0, 0.0),
            Self::Timeout => (0.0, 1.0),
            Self::Refusal => (0.0, 0.5),
            Self::Failure => (0.0, 1.0),
            Self::Invalid => (0.0, 10.0),
            Self::Overstated => (0.0, 0.25),
        }
    }
}

/// Half-life of evidence.
pub const HALF_LIFE_SECS: f64 = 6.0 * 3600.0;

/// A peer's record: decayed sums of good and bad observations, as of `at`
/// (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Record {
    /// Decayed weight of good observations.
    pub good: f64,
    /// Decayed weight of bad observations.
    pub bad: f64,
    /// When the sums were last brought up to date.
    pub at: i64,
}

impl Record {
    /// The record as it stands at `now` (decayed).
    pub fn at(&self, now: i64) -> Self {
        let dt = now.saturating_sub(self.at).max(0) as f64;
        let k = 0.5f64.powf(dt / HALF_LIFE_SECS);
        Self {
            good: self.good * k,
            bad: self.bad * k,
            at: now.max(self.at),
        }
    }

    /// Adds an observation made at `now`.
    pub fn observe(&mut self, e: Evidence, now: i64) {
        let (g, b) = e.weight();
        let mut r = self.at(now);
        r.good += g;
        r.bad += b;
        *self = r;
    }

    /// Reliability at `now`, 0..1.
    pub fn reliability(&self, now: i64) -> f64 {
        let r = self.at(now);
        let (g, b) = (r.good.max(0.0), r.bad.max(0.0));
        (g + 1.0) / (g + b + 2.0)
    }

    /// How much evidence there is (what a bounded store keeps first).
    pub fn weight(&self, now: i64) -> f64 {
        let r = self.at(now);
        r.good + r.bad
    }

    /// Whether values read from disk make sense (finite, not negative, a time
    /// between 1970 and 2200).
    pub fn is_sane(&self) -> bool {
        self.good.is_finite()
            && self.bad.is_finite()
            && self.good >= 0.0
            && self.bad >= 0.0
            && (0..=7_258_118_400).contains(&self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_moves_reliability_and_decays() {
        let mut r = Record::default();
        assert!((r.reliability(0) - 0.5).abs() < 1e-9);
        for _ in 0..20 {
            r.observe(Evidence::Valid, 0);
        }
        let good = r.reliability(0);
        assert!(good > 0.9, "{good}");
        r.observe(Evidence::Invalid, 0);
        let after = r.reliability(0);
        assert!(
            after < good - 0.25,
            "an invalid receipt weighs heavily: {after}"
        );
        // Two half-lives later the same evidence counts a quarter.
        let later = (2.0 * HALF_LIFE_SECS) as i64;
        assert!((r.weight(later) - r.weight(0) / 4.0).abs() < 1e-6);
        // The ratio of old evidence is kept; new evidence now outweighs it.
        for _ in 0..10 {
            r.observe(Evidence::Valid, later);
        }
        assert!(r.reliability(later) > after);
    }

    #[test]
    fn timeouts_and_refusals_lower_it() {
        let mut r = Record::default();
        r.observe(Evidence::Timeout, 0);
        assert!(r.reliability(0) < 0.5);
        let t = r.reliability(0);
        r.observe(Evidence::Refusal, 0);
        assert!(r.reliability(0) < t);
        assert!(Record::default().is_sane());
        let corrupt = Record {
            at: i64::MIN,
            ..Record::default()
        };
        assert!(!corrupt.is_sane());
        assert!(
            corrupt.reliability(1_800_000_000).is_finite(),
            "no overflow either"
        );
        assert!(
            !Record {
                good: f64::NAN,
                ..Record::default()
            }
            .is_sane()
        );
    }
}
