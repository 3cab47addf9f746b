//! Time and identifiers: ISO-8601 timestamps, time-ordered ids and write versions.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2026-11-25T13:16:42.123Z` for a millisecond timestamp (UTC, always 24 characters for
/// years 0-9999). Written digit by digit rather than through `format!`: a Postgres page of
/// 100 records formats 200 of them.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
    }
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 3, millis);
    // Only ASCII digits and separators were written.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A ULID: 26 characters, time-ordered, strictly increasing within this process (a monotonic
/// generator), unique across processes with overwhelming probability.
pub fn new_id() -> String {
    let mut guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    match generator.generate() {
        Ok(id) => id.to_string(),
        // The random part overflowed within one millisecond (2^80 ids): take a fresh one.
        Err(_) => ulid::Ulid::new().to_string(),
    }
}

/// A kv/blob write version: changes on every write, never reused (a ULID).
pub fn new_version() -> String {
    new_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_795_612_602_007), "2026-11-25T13:16:42.007Z");
        assert_eq!(iso8601(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
        // Outside years 0-9999 the text is longer, as format! writes it.
        assert_eq!(iso8601(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
    }

    #[test]
    fn ids_strictly_increase() {
        let mut last = new_id();
        for _ in 0..10_000 {
            let next = new_id();
            assert!(next > last);
            assert_eq!(next.len(), 26);
            last = next;
        }
    }
}
