//! The `/etc/sysctl.d/*.conf` format: `key = value` lines, `#` or `;` comments, blank lines.
//! Parsing lets `apply` merge into a file it wrote before and lets tests check the shipped
//! profiles; values are compared with whitespace normalised (`4096\t16384` = `4096 16384`).

use std::fmt;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Dotted key, without sysctl.d's leading `-` (ignore-errors marker).
    pub key: String,
    /// Value with runs of whitespace collapsed to one space.
    pub value: String,
}

/// A line that is not a comment, blank or `key = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for ParseError {}

/// Parse a sysctl.d file into its entries, in order.
pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| ParseError {
            line: i + 1,
            problem: format!("{line:?} is not `key = value`"),
        })?;
        let key = key.trim().trim_start_matches('-').trim();
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/*".contains(c));
        if !valid {
            return Err(ParseError {
                line: i + 1,
                problem: format!("{key:?} is not a sysctl key"),
            });
        }
        entries.push(Entry {
            key: key.to_string(),
            value: value.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    Ok(entries)
}

/// The value of `key` (the last one wins, as with `sysctl -p`).
pub fn lookup<'a>(entries: &'a [Entry], key: &str) -> Option<&'a str> {
    entries
        .iter()
        .rev()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_blanks_and_spacing() {
        let text =
            "# c\n; c\n\nfs.file-max = 10\nnet.ipv4.tcp_mem=1\t2   3\n-vm.max_map_count = 5\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(lookup(&e, "net.ipv4.tcp_mem"), Some("1 2 3"));
        assert_eq!(lookup(&e, "vm.max_map_count"), Some("5"));
        assert_eq!(lookup(&e, "nope"), None);
    }

    #[test]
    fn last_value_wins() {
        let e = parse("a.b = 1\na.b = 2\n").unwrap();
        assert_eq!(lookup(&e, "a.b"), Some("2"));
    }

    #[test]
    fn rejects_garbage_with_line_number() {
        let err = parse("fs.file-max = 1\nthis is not a setting\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse("bad key! = 1").is_err());
        assert!(parse(" = 1").is_err());
    }
}
