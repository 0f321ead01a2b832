//! Durations (`500ms`, `30s`, `10m`, `1h`, `30d`), sizes (`512KiB`, `10MiB`, `1GiB`) and rates
//! (`20/s`, `600/min`, `100/h`) as written in the config.

use std::num::NonZeroU32;
use std::time::Duration;

/// The most requests a rate may allow in its period: more is no limit at all.
pub const MAX_RATE_COUNT: u32 = 1_000_000;

/// Parses a duration with a unit, such as `30s` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` has no unit; write a duration such as `{text}s`, `500ms`, `10m` or `1h`"
        ));
    }
    humantime::parse_duration(text).map_err(|error| {
        format!("`{text}` is not a duration ({error}); write it as `500ms`, `30s`, `10m`, `1h` or `30d`")
    })
}

/// Parses a size in bytes, such as `10MiB`. A bare number is a count of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let invalid = || format!("`{text}` is not a size; write it as `512KiB`, `10MiB` or `1GiB`");
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return Err(invalid()),
    };
    number.checked_mul(multiplier).ok_or_else(invalid)
}

/// Parses a rate of requests, such as `20/s`: how many, and in what period (a second, a minute
/// or an hour).
pub fn parse_rate(text: &str) -> Result<(NonZeroU32, Duration), String> {
    let text = text.trim();
    let form = "write it as `20/s`, `600/min` or `100/h`";
    let Some((count, unit)) = text.split_once('/') else {
        return Err(format!("`{text}` is not a rate; {form}"));
    };
    let count = count
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|count| (1..=MAX_RATE_COUNT).contains(count))
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            format!("`{text}` is not a rate: it needs a whole number of requests from 1 to {MAX_RATE_COUNT} before the `/`; {form}")
        })?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => {
            return Err(format!(
                "`{text}`: `{other}` is not a period of a rate; use `s`, `min` or `h`, as in `20/s`, `600/min` or `100/h`"
            ))
        }
    };
    Ok((count, period))
}

/// Formats a byte count the way the config writes it, for messages.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("500ms", Some(500)),
            ("30s", Some(30_000)),
            ("10m", Some(600_000)),
            ("1h", Some(3_600_000)),
            ("30d", Some(30 * 86_400_000)),
            ("1h30m", Some(5_400_000)),
            ("30", None),
            ("soon", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let got = parse_duration(text).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *expected, "parse_duration({text:?})");
        }
    }

    #[test]
    fn rates() {
        let cases: &[(&str, Option<(u32, u64)>)] = &[
            ("20/s", Some((20, 1))),
            ("600/min", Some((600, 60))),
            (" 100 / h ", Some((100, 3600))),
            ("1000000/s", Some((1_000_000, 1))),
            ("1000001/s", None),
            ("0/s", None),
            ("-1/s", None),
            ("20", None),
            ("20/m", None),
            ("20/d", None),
            ("/s", None),
            ("1.5/s", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let got = parse_rate(text)
                .ok()
                .map(|(count, period)| (count.get(), period.as_secs()));
            assert_eq!(got, *expected, "parse_rate({text:?})");
        }
        let message = parse_rate("20/m").unwrap_err();
        assert_eq!(message, "`20/m`: `m` is not a period of a rate; use `s`, `min` or `h`, as in `20/s`, `600/min` or `100/h`");
    }

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("512KiB", Some(512 * 1024)),
            ("10MiB", Some(10 << 20)),
            ("1GiB", Some(1 << 30)),
            ("1MB", Some(1_000_000)),
            ("100", Some(100)),
            ("10 MiB", Some(10 << 20)),
            ("10MiBs", None),
            ("MiB", None),
            ("99999999999999GiB", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text).ok(), *expected, "parse_size({text:?})");
        }
        assert_eq!(format_size(10 << 20), "10MiB");
        assert_eq!(format_size(1000), "1000B");
    }
}
