//! `apply`: persist the sysctls a check found short in `/etc/sysctl.d/99-herald-<role>.conf`,
//! merged with what an earlier apply wrote there, show the difference first, then load the
//! file with `sysctl -p`. Process limits are not written: they belong to the systemd unit,
//! and the limits a check reads are those of whichever process ran it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::check::{Finding, Report};
use crate::diff::line_diff;
use crate::size::group_digits;
use crate::sysctl_file::{self, Entry};
use crate::target::Role;
use crate::tunables::{Mechanism, ALL};
use crate::value::Value;

/// One sysctl that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: &'static str,
    /// Live value.
    pub from: Value,
    /// Value written.
    pub to: Value,
    /// How it was sized (comment in the file).
    pub sizing: &'static str,
}

/// Everything `apply` will do, computed before anything is written.
#[derive(Debug, Clone)]
pub struct Apply {
    /// The file written.
    pub path: PathBuf,
    /// Its current content, if it exists.
    pub old_text: Option<String>,
    /// The content to write.
    pub new_text: String,
    /// Live values that change.
    pub changes: Vec<Change>,
}

/// Why `apply` cannot proceed.
#[derive(Debug)]
pub enum ApplyError {
    /// The existing file could not be read.
    Read(PathBuf, io::Error),
    /// The existing file is not a sysctl.d file; we will not overwrite what we cannot merge.
    Existing(PathBuf, sysctl_file::ParseError),
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ApplyError::Existing(p, e) => {
                write!(
                    f,
                    "{} exists but is not a sysctl.d file ({e}); fix or remove it first",
                    p.display()
                )
            }
        }
    }
}

impl std::error::Error for ApplyError {}

/// `<etc>/sysctl.d/99-herald-<role>.conf`.
pub fn conf_path(etc: &Path, role: Role) -> PathBuf {
    etc.join("sysctl.d").join(format!("99-herald-{role}.conf"))
}

/// The sysctls of `report` that fall short, with the values to write.
pub fn changes(report: &Report) -> Vec<Change> {
    report
        .findings
        .iter()
        .filter_map(|f| match (f.mechanism, &f.current, &f.proposed) {
            (Mechanism::Sysctl { key, .. }, Some(from), Some(to)) if f.is_short() => {
                let sizing =
                    crate::tunables::by_id(key).map_or("", |t| t.sizing(report.target.role));
                Some(Change {
                    key,
                    from: from.clone(),
                    to: to.clone(),
                    sizing,
                })
            }
            _ => None,
        })
        .collect()
}

/// Resource-limit findings that fall short (reported, not written).
pub fn limit_shortfalls(report: &Report) -> Vec<&Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.is_short() && matches!(f.mechanism, Mechanism::Rlimit { .. }))
        .collect()
}

/// Work out the new file for `report` under `etc`, reading the existing one.
pub fn prepare(report: &Report, etc: &Path) -> Result<Apply, ApplyError> {
    let path = conf_path(etc, report.target.role);
    let old_text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(ApplyError::Read(path, e)),
    };
    let old_entries = match &old_text {
        Some(t) => sysctl_file::parse(t).map_err(|e| ApplyError::Existing(path.clone(), e))?,
        None => Vec::new(),
    };
    let changes = changes(report);
    let new_text = render_conf(report, &changes, &old_entries);
    Ok(Apply {
        path,
        old_text,
        new_text,
        changes,
    })
}

/// The file content: changed keys with their sizing, keys an earlier apply wrote kept as
/// they were (they are why the live value is good now), in tunable order.
pub fn render_conf(report: &Report, changes: &[Change], old: &[Entry]) -> String {
    let t = &report.target;
    let mut out = format!(
        "# Written by `herald-tune apply` for a Herald {}: {} connections, {} shard(s).\n\
         # Holds the sysctls that fell short of that target; `herald-tune check` verifies them.\n\
         # Why each matters: docs/kernel-tuning.md.\n",
        t.role,
        group_digits(t.connections),
        t.shards
    );
    let known: Vec<&str> = ALL.iter().filter_map(|t| t.sysctl_key()).collect();
    for key in &known {
        if let Some(c) = changes.iter().find(|c| c.key == *key) {
            out.push_str(&format!(
                "\n# {} (was {})\n{} = {}\n",
                c.sizing,
                c.from,
                c.key,
                c.to.sysctl_text()
            ));
        } else if let Some(v) = sysctl_file::lookup(old, key) {
            out.push_str(&format!("\n# kept from an earlier apply\n{key} = {v}\n"));
        }
    }
    let mut foreign: Vec<&Entry> = Vec::new();
    for e in old.iter().filter(|e| !known.contains(&e.key.as_str())) {
        if let Some(i) = foreign.iter().position(|f| f.key == e.key) {
            foreign.remove(i);
        }
        foreign.push(e);
    }
    for e in foreign {
        out.push_str(&format!(
            "\n# not a herald-tune key; kept as found\n{} = {}\n",
            e.key, e.value
        ));
    }
    out
}

impl Apply {
    /// Nothing to change on the live kernel.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }

    /// Live values that change, then the file's line diff.
    pub fn diff(&self) -> String {
        let mut out = String::from("live kernel -> new:\n");
        for c in &self.changes {
            out.push_str(&format!("  {}: {} -> {}\n", c.key, c.from, c.to));
        }
        let state = if self.old_text.is_some() {
            "current"
        } else {
            "absent"
        };
        out.push_str(&format!(
            "\n--- {} ({state})\n+++ {} (new)\n",
            self.path.display(),
            self.path.display()
        ));
        for line in line_diff(self.old_text.as_deref().unwrap_or(""), &self.new_text) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Write the file (creating `sysctl.d` if needed) via a temporary file and a rename, so a
    /// crash never leaves half a file for the next boot.
    pub fn write(&self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("conf.herald-tune.tmp");
        std::fs::write(&tmp, &self.new_text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Load `path` into the live kernel with `sysctl -p`; returns sysctl's output.
pub fn load(path: &Path) -> Result<String, String> {
    let out = Command::new("sysctl")
        .arg("-p")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run sysctl: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "sysctl -p {} failed ({}):\n{text}",
            path.display(),
            out.status
        ))
    }
}

/// The effective uid of this process, from `/proc/self/status`.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

/// `Uid:\t<real>\t<effective>\t<saved>\t<fs>` → effective.
pub fn parse_effective_uid(status: &str) -> Option<u32> {
    let row = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    row.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_row() {
        assert_eq!(
            parse_effective_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"),
            Some(0)
        );
        assert_eq!(parse_effective_uid("Uid:\t1000\n"), None);
        assert_eq!(parse_effective_uid(""), None);
    }

    #[test]
    fn conf_path_per_role() {
        assert_eq!(
            conf_path(Path::new("/etc"), Role::Edge),
            PathBuf::from("/etc/sysctl.d/99-herald-edge.conf")
        );
    }
}
