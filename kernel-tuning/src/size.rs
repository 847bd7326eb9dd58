//! Byte sizes on the command line (`8GiB`, `512MiB`, `1.5GB`, `4096`) and in messages.
//! Decimal units (kB, MB, GB, TB) are powers of 1000, binary ones (KiB … TiB) and the bare
//! letters K/M/G/T (as in systemd and ulimit) powers of 1024. Fractions are exact: the
//! value is computed in integers and truncated to whole bytes.

/// Parse a size; the error says what was wrong (clap prefixes it with the flag's name).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    if number.is_empty() {
        return Err(format!("{text:?} does not start with a number"));
    }
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u128.pow(2),
        "gb" => 1000_u128.pow(3),
        "tb" => 1000_u128.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} (use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) || fraction.len() > 18 {
        return Err(format!("{number:?} is not a number"));
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("{number:?} is too large"))?
    };
    let mut bytes = whole
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if !fraction.is_empty() {
        let digits: u128 = fraction
            .parse()
            .map_err(|_| format!("{number:?} is not a number"))?;
        let scale = 10_u128.pow(fraction.len() as u32);
        bytes += digits * multiplier / scale;
    }
    u64::try_from(bytes).map_err(|_| format!("{text:?} is too large"))
}

/// A byte count for people, to the nearest tenth: `8 GiB`, `1.5 GiB`, `100 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size {
            let tenths = ((bytes as u128 * 10 + size as u128 / 2) / size as u128) as u64;
            return if tenths.is_multiple_of(10) {
                format!("{} {name}", tenths / 10)
            } else {
                format!("{}.{} {name}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes} B")
}

/// A count with thousands separators (`1,184,025`), for summaries.
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64 GiB"), Ok(64 << 30));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size("100kB"), Ok(100_000));
        assert_eq!(parse_size(".5KiB"), Ok(512));
        assert_eq!(parse_size("0.1KiB"), Ok(102));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse_size("GiB").unwrap_err().contains("number"));
        assert!(parse_size("8XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("1.2.3GB").is_err());
        assert!(parse_size(".").is_err());
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("-8GiB").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(8 << 30), "8 GiB");
        assert_eq!(format_size(1_610_612_736), "1.5 GiB");
        assert_eq!(format_size(4300), "4.2 KiB");
        assert_eq!(format_size(1_705_062_400), "1.6 GiB");
        assert_eq!(format_size(100), "100 B");
        assert_eq!(group_digits(1_184_025), "1,184,025");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
    }
}
