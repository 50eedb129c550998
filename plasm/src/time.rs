//! Wall-clock helpers: RFC 3339 timestamps in UTC with exactly three fractional digits.

use time::OffsetDateTime;
use time::macros::format_description;

/// The current time as RFC 3339 UTC, millisecond precision (`2026-11-20T12:00:00.120Z`).
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Formats a timestamp as RFC 3339 UTC with exactly three fractional digits.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Reads an RFC 3339 timestamp (any offset); `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn always_three_fraction_digits() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_763_640_000_280_000_000)
            .expect("time");
        assert_eq!(super::format_rfc3339(t), "2025-11-20T12:00:00.280Z");
    }
}
