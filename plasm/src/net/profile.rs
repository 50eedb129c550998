//! Connection profiles: the mesh-swarm ADR's presets for the link a node sits on.
//!
//! An office LAN, a home on broadband, a laptop on a train and a hostile network
//! want different timers and different promises to others. A profile is a named
//! preset of keep-alive and advertisement interval, dial and request timeouts,
//! reconnection backoff, the largest bundle accepted over the link, and what the
//! node does for others (execute, relay). Every value can be overridden in the
//! configuration (`[network.profile_overrides]`); `plasm config` prints the result.

use std::time::Duration;

/// The link a node sits on (`--profile`, `network.profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// An office or home LAN: fast, cheap, reliable.
    Lan,
    /// Broadband or a VPN (the default).
    #[default]
    Wan,
    /// A phone link or a train: submits and follows status, executes nothing for others.
    Mobile,
    /// A network not to be trusted: takes only small jobs, never relays.
    Hostile,
}

impl Profile {
    /// Parses `lan`, `wan`, `mobile` or `hostile`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "lan" => Some(Self::Lan),
            "wan" => Some(Self::Wan),
            "mobile" => Some(Self::Mobile),
            "hostile" => Some(Self::Hostile),
            _ => None,
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lan => "lan",
            Self::Wan => "wan",
            Self::Mobile => "mobile",
            Self::Hostile => "hostile",
        }
    }

    /// The preset.
    pub fn settings(self) -> ProfileSettings {
        const MIB: u64 = 1024 * 1024;
        let s = |secs: u64| Duration::from_secs(secs);
        match self {
            Self::Lan => ProfileSettings {
                keep_alive: s(60),
                advertise_interval: s(600),
                dial_timeout: s(5),
                offer_timeout: s(5),
                backoff_max: s(30),
                max_bundle_bytes: 33 * MIB,
                execute_for_others: true,
                relay_for_others: true,
            },
            Self::Wan => ProfileSettings {
                keep_alive: s(120),
                advertise_interval: s(1200),
                dial_timeout: s(10),
                offer_timeout: s(10),
                backoff_max: s(60),
                max_bundle_bytes: 33 * MIB,
                execute_for_others: true,
                relay_for_others: true,
            },
            Self::Mobile => ProfileSettings {
                keep_alive: s(300),
                advertise_interval: s(1200),
                dial_timeout: s(20),
                offer_timeout: s(20),
                backoff_max: s(120),
                max_bundle_bytes: 4 * MIB,
                execute_for_others: false,
                relay_for_others: false,
            },
            Self::Hostile => ProfileSettings {
                keep_alive: s(600),
                advertise_interval: s(1200),
                dial_timeout: s(30),
                offer_timeout: s(30),
                backoff_max: s(300),
                max_bundle_bytes: MIB,
                execute_for_others: true,
                relay_for_others: false,
            },
        }
    }
}

/// What a profile sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileSettings {
    /// How long an idle connection is kept open.
    pub keep_alive: Duration,
    /// How often provider records are published again while nothing changes.
    pub advertise_interval: Duration,
    /// How long a dial may take.
    pub dial_timeout: Duration,
    /// How long an offer round trip may take.
    pub offer_timeout: Duration,
    /// Longest wait between reconnection attempts (jittered exponential backoff up to it).
    pub backoff_max: Duration,
    /// Largest bundle (module + input) accepted from others over this link.
    pub max_bundle_bytes: u64,
    /// Executes jobs offered by others (and is advertised as an executor).
    pub execute_for_others: bool,
    /// Runs a relay for others when reachable.
    pub relay_for_others: bool,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        Profile::default().settings()
    }
}

/// The next backoff after `current`: doubled up to `max`, with up to 25% of jitter
/// taken from `entropy` (so many nodes that lost the same bootstrap do not all
/// come back at the same moment).
pub fn next_backoff(current: Duration, max: Duration, entropy: u64) -> Duration {
    let doubled = (current * 2).min(max);
    let jitter = doubled.mul_f64((entropy % 1000) as f64 / 4000.0);
    doubled
        .saturating_sub(jitter)
        .max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_follow_the_adr() {
        let secs = |p: Profile| p.settings().advertise_interval.as_secs();
        assert_eq!(
            [
                Profile::Lan,
                Profile::Wan,
                Profile::Mobile,
                Profile::Hostile
            ]
            .map(secs),
            // Decision 0058: at most Kademlia's own republish (20 min).
            [600, 1200, 1200, 1200]
        );
        assert!(!Profile::Mobile.settings().execute_for_others);
        assert!(!Profile::Hostile.settings().relay_for_others);
        assert_eq!(Profile::Hostile.settings().max_bundle_bytes, 1 << 20);
        assert_eq!(Profile::default(), Profile::Wan);
        for p in ["lan", "wan", "mobile", "hostile"] {
            assert_eq!(Profile::parse(p).map(Profile::as_str), Some(p));
        }
        assert_eq!(Profile::parse("fast"), None);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let max = Duration::from_secs(60);
        let mut b = Duration::from_secs(1);
        for e in [0u64, 999, 500, 123, 7, 999, 999, 0] {
            let next = next_backoff(b, max, e);
            assert!(next <= (b * 2).min(max), "{next:?}");
            assert!(next >= (b * 2).min(max).mul_f64(0.75), "{next:?}");
            b = next;
        }
        assert!(b > Duration::from_secs(40), "reaches the cap region: {b:?}");
    }
}
