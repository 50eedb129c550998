//! A circuit breaker per peer (component-container-motivations.md): after
//! `failures` failures in a row (timeouts, refusals, invalid receipts) the
//! breaker opens and the peer gets no jobs for `cooldown`; then it is half-open
//! and gets one job; its success closes the breaker, its failure opens it again
//! for twice as long (up to [`MAX_COOLDOWN_FACTOR`] times the cool-down).
//!
//! Time is passed in, so the state machine is tested without sleeping.

use serde::Serialize;
use std::time::{Duration, Instant};

/// How a breaker trips and recovers (`[placement]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker.
    pub failures: u32,
    /// How long it stays open the first time.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// The longest a breaker stays open, whatever the configuration says.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(86_400);

/// A cool-down grows at most this many times after failed trials.
pub const MAX_COOLDOWN_FACTOR: u32 = 8;

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Jobs go to the peer.
    Closed,
    /// No job goes to the peer until the cool-down ends.
    Open,
    /// One trial job may go to the peer.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// One peer's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    in_a_row: u32,
    open_until: Option<Instant>,
    factor: u32,
    /// The generation of the half-open trial that is out, if one is.
    trial_out: Option<u64>,
    /// Generations handed out (a late give-back of an old trial never frees a new one).
    generations: u64,
    /// Times it opened.
    pub trips: u64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            in_a_row: 0,
            open_until: None,
            factor: 1,
            trial_out: None,
            generations: 0,
            trips: 0,
        }
    }
}

impl Breaker {
    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a job may go to the peer now (without taking the half-open trial).
    pub fn admits(&self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => self.trial_out.is_none(),
        }
    }

    /// Takes the right to send a job: always when closed, once when half-open.
    /// `Some(Some(generation))`: this job is the half-open trial (give it back
    /// with [`Self::neutral`] if it comes to nothing).
    pub fn take(&mut self, now: Instant) -> Option<Option<u64>> {
        match self.state(now) {
            BreakerState::Closed => Some(None),
            BreakerState::Open => None,
            BreakerState::HalfOpen if self.trial_out.is_some() => None,
            BreakerState::HalfOpen => {
                self.generations += 1;
                self.trial_out = Some(self.generations);
                Some(Some(self.generations))
            }
        }
    }

    /// A job (or the trial) succeeded: the breaker closes.
    pub fn success(&mut self) {
        *self = Self {
            trips: self.trips,
            generations: self.generations,
            ..Self::default()
        };
    }

    /// The half-open trial of `generation` came to nothing (no verdict on the
    /// peer: a busy decline, a cancel): it is given back, unless another trial
    /// has been handed out since.
    pub fn neutral(&mut self, generation: u64) {
        if self.trial_out == Some(generation) {
            self.trial_out = None;
        }
    }

    /// A failure; returns whether the breaker opened because of it.
    pub fn failure(&mut self, now: Instant, config: &BreakerConfig) -> bool {
        match self.state(now) {
            BreakerState::HalfOpen => {
                self.factor = (self.factor * 2).min(MAX_COOLDOWN_FACTOR);
                self.open(now, config);
                true
            }
            // Late answers of jobs sent before it opened change nothing.
            BreakerState::Open => false,
            BreakerState::Closed => {
                self.in_a_row += 1;
                if self.in_a_row >= config.failures.max(1) {
                    self.open(now, config);
                    true
                } else {
                    false
                }
            }
        }
    }

    fn open(&mut self, now: Instant, config: &BreakerConfig) {
        // Bounded whatever the configuration says: Instant arithmetic panics on overflow.
        let cooldown = config
            .cooldown
            .saturating_mul(self.factor)
            .min(MAX_COOLDOWN);
        self.open_until = Some(now.checked_add(cooldown).unwrap_or(now));
        self.trial_out = None;
        self.in_a_row = 0;
        self.trips += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flapping_peer_trips_then_recovers_through_half_open() {
        let c = BreakerConfig {
            failures: 3,
            cooldown: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert!(!b.failure(t0, &c) && !b.failure(t0, &c));
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert!(b.failure(t0, &c), "the third in a row opens it");
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(b.take(t0 + Duration::from_secs(9)).is_none());
        // Half-open: one trial only.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        assert!(matches!(b.take(t1), Some(Some(_))));
        assert!(b.take(t1).is_none() && !b.admits(t1));
        // The trial fails: open again, twice as long.
        assert!(b.failure(t1, &c));
        assert!(!b.admits(t1 + Duration::from_secs(19)));
        let t2 = t1 + Duration::from_secs(20);
        assert!(matches!(b.take(t2), Some(Some(_))));
        b.success();
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert_eq!(b.trips, 2);
        // A success between failures resets the count.
        assert!(!b.failure(t2, &c) && !b.failure(t2, &c));
        b.success();
        assert!(!b.failure(t2, &c));
        assert_eq!(b.state(t2), BreakerState::Closed);
    }

    #[test]
    fn a_neutral_answer_gives_the_trial_back() {
        let c = BreakerConfig::default();
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..3 {
            b.failure(t0, &c);
        }
        let t1 = t0 + c.cooldown;
        let Some(Some(first)) = b.take(t1) else {
            panic!("the trial")
        };
        b.neutral(first);
        let Some(Some(second)) = b.take(t1) else {
            panic!("a busy decline is no verdict: the trial is given back")
        };
        // A late give-back of the first trial does not free the second.
        b.neutral(first);
        assert!(b.take(t1).is_none(), "one trial at a time");
        b.neutral(second);
        assert!(b.take(t1).is_some());
    }

    #[test]
    fn the_cooldown_stops_growing() {
        let c = BreakerConfig {
            failures: 1,
            cooldown: Duration::from_secs(1),
        };
        let mut t = Instant::now();
        let mut b = Breaker::default();
        b.failure(t, &c);
        for _ in 0..10 {
            t += Duration::from_secs(1) * MAX_COOLDOWN_FACTOR;
            assert!(
                b.take(t).is_some(),
                "half-open after at most the largest cool-down"
            );
            b.failure(t, &c);
        }
    }

    #[test]
    fn a_huge_cooldown_does_not_overflow() {
        let c = BreakerConfig {
            failures: 1,
            cooldown: Duration::from_secs(u64::MAX),
        };
        let now = Instant::now();
        let mut b = Breaker::default();
        assert!(b.failure(now, &c));
        assert_eq!(b.state(now + MAX_COOLDOWN), BreakerState::HalfOpen);
    }
}
