//! Small helpers shared by several modules: dates in mail format, ids.

use rand::Rng;

/// The current time as an RFC 5322 date (`Sat, 28 Nov 2026 17:36:18 +0000`).
pub fn rfc5322_date_now() -> String {
    rfc5322_date(time::OffsetDateTime::now_utc())
}

/// A time as an RFC 5322 date in UTC.
pub fn rfc5322_date(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day padding:none] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    t.format(&format)
        .unwrap_or_else(|_| "Thu, 1 Jan 1970 00:00:00 +0000".into())
}

/// A time in milliseconds since the epoch as an RFC 5322 date.
pub fn rfc5322_date_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    rfc5322_date(t)
}

/// A time in milliseconds as ISO 8601 for humans and JSON.
pub fn iso8601_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&format).unwrap_or_default()
}

/// A short random session id for logs.
pub fn new_session_id() -> String {
    let random: u64 = rand::rng().random();
    format!("{random:016x}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dates_and_ids() {
        assert_eq!(rfc5322_date_ms(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(iso8601_ms(86_400_000), "1970-01-02T00:00:00Z");
        let id = crate::envelope::QueueId::new();
        assert_eq!(
            crate::envelope::QueueId::parse(id.as_str()),
            Some(id.clone())
        );
        assert!(crate::envelope::QueueId::parse("../../etc/passwd....").is_none());
        assert!(serde_json::from_str::<crate::envelope::QueueId>("\"../x\"").is_err());
    }
}
