//! Reports: every run records the machine, the exact command, versions and a timestamp;
//! `--json FILE` gets the machine-readable result, `--out DIR` a Markdown report
//! (`report.md`) and its SVG plots.

pub mod svg;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::machine::Machine;

/// What every report starts with.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    /// Subcommand.
    pub scenario: String,
    /// The command line, as typed (quoted where needed).
    pub command: String,
    /// When the run started (UTC).
    pub timestamp: String,
    /// Where it ran.
    pub machine: Machine,
    /// Versions of everything measured (and of the harness).
    pub versions: BTreeMap<String, String>,
}

impl Header {
    /// A header for `scenario`, now, with this process's command line.
    pub fn new(scenario: &str) -> Header {
        let mut versions = BTreeMap::new();
        versions.insert(
            "herald-bench".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        );
        Header {
            scenario: scenario.to_string(),
            command: command_line(std::env::args()),
            timestamp: crate::clock::now_rfc3339(),
            machine: Machine::detect(),
            versions,
        }
    }

    /// The header as Markdown.
    pub fn markdown(&self, title: &str) -> String {
        let mut s = format!("# {title}\n\n");
        s += &format!("- command: `{}`\n", self.command);
        s += &format!("- when: {}\n", self.timestamp);
        s += &format!("- machine: {}\n", self.machine.describe());
        for (k, v) in &self.versions {
            s += &format!("- {k}: {v}\n");
        }
        s.push('\n');
        s
    }
}

/// The command line with the program named `herald-bench` and arguments quoted for a shell.
pub fn command_line(args: impl Iterator<Item = String>) -> String {
    let mut parts = vec!["herald-bench".to_string()];
    for a in args.skip(1) {
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
        {
            parts.push(a);
        } else {
            parts.push(format!("'{}'", a.replace('\'', r"'\''")));
        }
    }
    parts.join(" ")
}

/// A Markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n", headers.join(" | "));
    s += &format!(
        "|{}\n",
        headers
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for r in rows {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s
}

/// A plain-text table for the terminal (first column left-aligned, the rest right-aligned).
pub fn text_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
            .chain([headers[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut s = line(headers.to_vec()) + "\n";
    for r in rows {
        s += &line(r.iter().map(String::as_str).collect());
        s.push('\n');
    }
    s
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes `report.md` and the named extra files (plots) into `dir`.
pub fn write_out(dir: &Path, markdown: &str, files: &[(String, String)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("report.md"), markdown)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        let args = [
            "/x/herald-bench",
            "compare",
            "--quick",
            "--json",
            "a b.json",
            "it's",
        ]
        .map(String::from);
        assert_eq!(
            command_line(args.into_iter()),
            "herald-bench compare --quick --json 'a b.json' 'it'\\''s'"
        );
    }

    #[test]
    fn tables() {
        let rows = vec![vec!["herald".to_string(), "1,056".to_string()]];
        let md = table(&["system", "B/conn"], &rows);
        assert_eq!(md, "| system | B/conn |\n|---|---:|\n| herald | 1,056 |\n");
        let t = text_table(&["system", "B/conn"], &rows);
        assert_eq!(t, "system  B/conn\nherald   1,056\n");
    }

    #[test]
    fn header_markdown_has_the_essentials() {
        let h = Header::new("conns");
        let md = h.markdown("x");
        assert!(md.contains("- command: `herald-bench"));
        assert!(md.contains("- machine: "));
        assert!(md.contains("- herald-bench: "));
    }
}
