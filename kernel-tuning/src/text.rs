//! Plain-text helpers shared by the report, the plan, the sysctl file and the script:
//! word wrapping for the "why" paragraphs and shell quoting for one-line fixes.

/// Wrap `text` to lines of at most `width` characters (longer words stand alone), each
/// prefixed with `prefix` (`"# "` for comments, spaces for indentation).
pub fn wrap(text: &str, width: usize, prefix: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(format!("{prefix}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{prefix}{line}"));
    }
    lines
}

/// Quote `s` for a POSIX shell when it holds anything beyond `[A-Za-z0-9._/=:-]`.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/=:-,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_width_with_prefix() {
        let lines = wrap("aaa bbb ccc ddd", 7, "# ");
        assert_eq!(lines, vec!["# aaa bbb", "# ccc ddd"]);
        assert_eq!(
            wrap("averyveryverylongword x", 5, ""),
            vec!["averyveryverylongword", "x"]
        );
        assert!(wrap("   ", 10, "#").is_empty());
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("fs.file-max=10"), "fs.file-max=10");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
