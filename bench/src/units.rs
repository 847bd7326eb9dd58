//! Number and duration formats of the command line and the reports.

use std::time::Duration;

/// Parses `500ms`, `2s`, `1.5s`, `3m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 500ms, 2s, 1m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "bad duration unit {other:?} in {s:?} (ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 7.0).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a comma-separated list of connection counts, e.g. `1000,5000,10k,19k`.
pub fn parse_sizes(s: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (num, mult) = match part.strip_suffix(['k', 'K']) {
            Some(n) => (n, 1000.0),
            None => (part, 1.0),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("bad size {part:?} in {s:?}"))?;
        let n = (n * mult).round();
        if !(1.0..=10_000_000.0).contains(&n) {
            return Err(format!("size {part:?} out of range"));
        }
        v.push(n as usize);
    }
    if v.is_empty() {
        return Err("no sizes given".into());
    }
    if v.windows(2).any(|w| w[1] <= w[0]) {
        return Err(format!("sizes must increase: {s:?}"));
    }
    Ok(v)
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A float rounded to an integer with separators; `–` when not finite.
pub fn int(x: f64) -> String {
    if x.is_finite() {
        let sign = if x < 0.0 { "-" } else { "" };
        format!("{sign}{}", thousands(x.abs().round() as u64))
    } else {
        "–".into()
    }
}

/// Compact: `9.8k`, `1.2M`, `950`.
pub fn si(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// An optional value or `–`.
pub fn opt(x: Option<f64>, f: fn(f64) -> String) -> String {
    x.map(f).unwrap_or_else(|| "–".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(
            parse_sizes("1000, 5k,19k").unwrap(),
            vec![1000, 5000, 19000]
        );
        assert!(parse_sizes("5,1").is_err());
        assert!(parse_sizes("").is_err());
        assert!(parse_sizes("0").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(int(137_702.4), "137,702");
        assert_eq!(int(f64::NAN), "–");
        assert_eq!(si(9_800.0), "9.8k");
        assert_eq!(si(73_307.0), "73k");
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(950.0), "950");
    }
}
