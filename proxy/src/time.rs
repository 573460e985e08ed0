//! Civil-calendar conversions for timestamps (SigV4 dates, ISO 8601 fields),
//! by Howard Hinnant's days-from-civil algorithms: exact for the proleptic
//! Gregorian calendar, no time zone data needed because everything is UTC.
//! And a cheap clock for bookkeeping that only needs milliseconds.

/// Milliseconds of the kernel's coarse monotonic clock: the time of the
/// last timer tick, read from the vDSO without reading the TSC or
/// converting it. A tick (1-10 ms) is resolution enough for idle and
/// header timeouts counted in seconds, and the connection bookkeeping
/// reads it at every read and write, where a precise `Instant` read and
/// its `Duration` arithmetic showed in profiles.
pub fn coarse_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE) {
        Ok(t) => {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
            secs * 1000 + nanos / 1_000_000
        }
        // Linux has had the clock since 2.6.32; should it be missing,
        // time since the first call still counts.
        Err(_) => {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            u64::try_from(
                START
                    .get_or_init(std::time::Instant::now)
                    .elapsed()
                    .as_millis(),
            )
            .unwrap_or(u64::MAX)
        }
    }
}

/// Appends the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37
/// GMT`, RFC 9110 5.6.7), formatted at most once a second per thread, as
/// hyper does for its `date` field.
pub fn write_http_date(out: &mut Vec<u8>) {
    use std::{cell::RefCell, io::Write as _, time::SystemTime};
    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let mut buf = [0u8; 29];
            // Always 29 bytes for years 1970-9999.
            if write!(&mut buf[..], "{}", httpdate::HttpDate::from(now)).is_ok() {
                *c = (secs, buf);
            }
        }
        out.extend_from_slice(&c.1);
    });
}

/// Days since 1970-01-01 of a date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day, hour, minute, second) of seconds since the epoch.
pub fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// ISO 8601 with milliseconds, as AWS APIs print timestamps.
pub fn iso8601(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (y, mo, day, h, mi, s) = civil(d.as_secs());
    format!(
        "{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_follows_the_precise_one() {
        // Each coarse reading between two precise ones, so a preemption
        // between the reads widens the bounds instead of failing the test.
        let read = || {
            let before = std::time::Instant::now();
            let coarse = coarse_ms();
            (before, coarse, std::time::Instant::now())
        };
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap();
        let (b0, c0, a0) = read();
        std::thread::sleep(std::time::Duration::from_millis(120));
        let (b1, c1, a1) = read();
        let moved = c1 - c0;
        // Up to a tick (at most 10 ms) behind at either end.
        let (least, most) = (ms(b1 - a0).saturating_sub(20), ms(a1 - b0) + 20);
        assert!(
            (least..=most).contains(&moved),
            "coarse clock moved {moved} ms, precise {least}-{most}"
        );
        assert!(
            moved >= 100,
            "coarse clock moved {moved} ms over a 120 ms sleep"
        );
    }

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_795_305_600 + 3661), (2026, 11, 22, 1, 1, 1));
        for day in [0i64, 59, 60, 365, 10_000, 20_000, 30_000] {
            let (y, m, d, ..) = civil(day as u64 * 86_400);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
