//! Wall-clock helpers: RFC 3339 timestamps in UTC with millisecond precision.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current time as RFC 3339 UTC, millisecond precision (`2026-11-20T12:00:00.123Z`).
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Formats a timestamp as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let ms = t.millisecond();
    let t = t.replace_nanosecond(u32::from(ms) * 1_000_000).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
