//! Human-friendly sizes and durations: parsing command-line values and
//! formatting measurements.
//!
//! Sizes are always binary: `K`, `KB` and `KiB` all mean 1024 bytes (the
//! spawner's `--rss 1G` must mean a gibibyte, never 10^9 bytes).

use std::time::Duration;

use anyhow::{Result, bail};

const SIZE_EXAMPLE: &str = "expected a byte count such as 0, 4096, 256K, 512MiB, 1.5G or 4GiB";
const DURATION_EXAMPLE: &str = "expected a positive duration such as 10s, 500ms, 2m or 30";

/// Parse a byte size: a non-negative number (decimals allowed with a unit)
/// followed by an optional case-insensitive unit `B`, `K`/`KB`/`KiB`,
/// `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`/`TB`/`TiB`. All units are powers of 1024.
pub fn parse_size(input: &str) -> Result<u64> {
    let s = input.trim();
    if s.is_empty() {
        bail!("empty size: {SIZE_EXAMPLE}");
    }
    if s.starts_with('-') {
        bail!("size '{input}' is negative: {SIZE_EXAMPLE}");
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim();
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => bail!("size '{input}' has an unknown unit '{unit}': {SIZE_EXAMPLE}"),
    };
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        bail!("size '{input}' has no number: {SIZE_EXAMPLE}");
    }
    if frac_part.contains('.') {
        bail!("size '{input}' is not a number: {SIZE_EXAMPLE}");
    }
    let overflow = || {
        anyhow::anyhow!("size '{input}' is too large (the limit is 2^64-1 bytes): {SIZE_EXAMPLE}")
    };
    let int: u64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| overflow())?
    };
    let mut bytes = int.checked_mul(1u64 << shift).ok_or_else(overflow)?;
    if !frac_part.is_empty() {
        if shift == 0 {
            bail!("size '{input}' has a fraction of a byte: {SIZE_EXAMPLE}");
        }
        // Exact decimal fraction of the unit, computed in u128 and truncated
        // to whole bytes. 19 digits keep 10^digits inside u64.
        let digits = &frac_part[..frac_part.len().min(19)];
        let frac: u128 = digits.parse().map_err(|_| overflow())?;
        let scale = 10u128.pow(digits.len() as u32);
        let extra = (frac << shift) / scale;
        bytes = bytes
            .checked_add(u64::try_from(extra).map_err(|_| overflow())?)
            .ok_or_else(overflow)?;
    }
    Ok(bytes)
}

/// Parse a duration: `500ms`, `10s`, `2m`, `1h`, `250us`, `100ns` or a bare
/// number of seconds (`30`, `1.5`). Zero and negative durations are rejected.
pub fn parse_duration(input: &str) -> Result<Duration> {
    let s = input.trim();
    if s.is_empty() {
        bail!("empty duration: {DURATION_EXAMPLE}");
    }
    if s.starts_with('-') {
        bail!("duration '{input}' is negative: {DURATION_EXAMPLE}");
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let nanos_per_unit: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => 1e9,
        "ms" => 1e6,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        "m" | "min" | "mins" => 60e9,
        "h" => 3600e9,
        other => bail!("duration '{input}' has an unknown unit '{other}': {DURATION_EXAMPLE}"),
    };
    if number.is_empty() {
        bail!("duration '{input}' has no number: {DURATION_EXAMPLE}");
    }
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("duration '{input}' is not a number: {DURATION_EXAMPLE}"))?;
    let nanos = value * nanos_per_unit;
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        bail!("duration '{input}' is too large: {DURATION_EXAMPLE}");
    }
    let nanos = nanos.round() as u64;
    if nanos == 0 {
        bail!("duration '{input}' is zero: {DURATION_EXAMPLE}");
    }
    Ok(Duration::from_nanos(nanos))
}

/// A whole number for option `what`, with an error naming it and `example`.
pub fn parse_u64_named(s: &str, what: &str, example: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!(
            "{what} cannot be negative (got {s}); e.g. {example}"
        ));
    }
    t.parse::<u64>()
        .map_err(|_| format!("{what} must be a whole number (got '{s}'); e.g. {example}"))
}

/// Three significant digits, trailing zeros after the decimal point removed.
fn sig3(value: f64) -> String {
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `512 B`, `4 KiB`, `1.5 MiB`, `1 GiB`.
/// Text shown to a person, cut to `max` characters: a command line can be
/// hundreds of kilobytes (`sh -c "$script"`), which buries everything
/// printed after it. The whole text stays in the files.
pub fn elide(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((cut, _)) => format!(
            "{}… ({} in all)",
            &text[..cut],
            format_bytes(text.len() as u64)
        )
        .into(),
    }
}

/// How many characters of a command line are shown (see [`elide`]).
pub const SHOWN_COMMAND: usize = 200;

pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    // Rounding can produce "1024 KiB"; promote it.
    if sig3(value) == "1024" && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", sig3(value), UNITS[unit])
}

/// `850 ns`, `12.3 µs`, `4.56 ms`, `1.2 s`, `2.5 min` for long spans.
pub fn format_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if v < 999_500.0 {
        format!("{} µs", sig3(v / 1e3))
    } else if v < 999_500_000.0 {
        format!("{} ms", sig3(v / 1e6))
    } else if v < 120e9 {
        format!("{} s", sig3(v / 1e9))
    } else {
        format!("{} min", sig3(v / 60e9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_elided_with_its_size() {
        assert_eq!(elide("make -j4", 200), "make -j4");
        let long = format!("sh -c {}", "x".repeat(180_000));
        let shown = elide(&long, SHOWN_COMMAND);
        assert!(shown.starts_with("sh -c xxx"), "{shown}");
        assert!(shown.ends_with("… (176 KiB in all)"), "{shown}");
        assert!(shown.chars().count() < SHOWN_COMMAND + 30);
        // Cut on a character, never inside one.
        assert_eq!(elide("µµµ", 2), "µµ… (6 B in all)");
    }

    #[test]
    fn sizes_plain_and_units() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        for s in [
            "256K",
            "256k",
            "256KB",
            "256kb",
            "256KiB",
            "256kib",
            " 256 KiB ",
        ] {
            assert_eq!(parse_size(s).unwrap(), 256 * 1024, "{s}");
        }
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size(".5M").unwrap(), 512 << 10);
        assert_eq!(parse_size("0.1K").unwrap(), 102);
    }

    #[test]
    fn sizes_rejected_with_example() {
        for bad in [
            "", "-1", "-4G", "abc", "12X", "1.2.3G", "G", "1.5", "1e9", "0x10",
        ] {
            let err = parse_size(bad).unwrap_err().to_string();
            assert!(err.contains("256K"), "{bad}: {err}");
        }
        // overflow: 2^64 bytes and a huge T count
        assert!(parse_size("18446744073709551616").is_err());
        assert!(
            parse_size("16777216T")
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["0", "0s", "0.0", "-1", "-5s", "abc", "5x", "s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(
            parse_duration("0ms")
                .unwrap_err()
                .to_string()
                .contains("zero")
        );
        assert!(
            parse_duration("-3s")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(4096), "4 KiB");
        assert_eq!(format_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(format_bytes(1 << 30), "1 GiB");
        assert_eq!(format_bytes((1 << 30) - 1), "1 GiB");
        assert_eq!(format_ns(850), "850 ns");
        assert_eq!(format_ns(12_345), "12.3 µs");
        assert_eq!(format_ns(4_561_000), "4.56 ms");
        assert_eq!(format_ns(1_200_000_000), "1.2 s");
        assert_eq!(format_ns(999_999), "1 ms");
        assert_eq!(format_ns(150_000_000_000), "2.5 min");
    }
}
