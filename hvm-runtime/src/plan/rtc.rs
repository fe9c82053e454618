//! The RTC's start: QEMU's `-rtc base=` takes `utc`, `localtime` or a
//! date and time; xl's `rtc_timeoffset` (seconds from host time) becomes
//! that date, computed when the plan is made.

use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of `now` moved by `offset` seconds, or
/// `None` when the clock is unusable (before 1970, or out of range).
pub fn utc_with_offset(now: SystemTime, offset: i64) -> Option<String> {
    let secs = i64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    let t = secs.checked_add(offset)?;
    if t < 0 {
        return None;
    }
    let days = t.div_euclid(86_400);
    let rest = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ))
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn dates() {
        assert_eq!(utc_with_offset(at(0), 0).unwrap(), "1970-01-01T00:00:00");
        assert_eq!(
            utc_with_offset(at(951_782_400), 0).unwrap(),
            "2000-02-29T00:00:00"
        );
        assert_eq!(
            utc_with_offset(at(1_700_000_000), 0).unwrap(),
            "2023-11-14T22:13:20"
        );
        assert_eq!(
            utc_with_offset(at(1_700_000_000), -3600).unwrap(),
            "2023-11-14T21:13:20"
        );
        assert_eq!(
            utc_with_offset(at(1_700_000_000), 86_400 * 365).unwrap(),
            "2024-11-13T22:13:20"
        );
        assert_eq!(utc_with_offset(at(10), -20), None);
    }
}
