//! Where tunables are read from: a directory standing for `/`, holding `proc/sys/…`,
//! `proc/self/limits` and `proc/meminfo`. On a host it is `/`; tests point it at a fake tree
//! built with `tempfile`. Every read returns a [`ReadError`] instead of panicking, so a
//! missing, unreadable or garbled file becomes an "unknown" finding with a reason.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::value::{Limit, Value};

/// Why a tunable's current value could not be determined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The file does not exist (module not loaded, older kernel, partial tree).
    Missing {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The file exists but reading it failed (permissions, EIO, a directory).
    Unreadable {
        /// The path that was tried.
        path: PathBuf,
        /// The operating system's message.
        error: String,
    },
    /// The file was read but its content is not what the kernel writes there.
    Unparsable {
        /// The path that was read.
        path: PathBuf,
        /// The offending text (trimmed, shortened).
        text: String,
        /// What was expected.
        problem: String,
    },
    /// The tunable does not exist on this host for a legitimate reason (conntrack not loaded).
    NotApplicable {
        /// Why it does not apply.
        reason: String,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Missing { path } => write!(f, "{} does not exist", path.display()),
            ReadError::Unreadable { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            ReadError::Unparsable {
                path,
                text,
                problem,
            } => {
                write!(f, "cannot parse {} ({text:?}): {problem}", path.display())
            }
            ReadError::NotApplicable { reason } => f.write_str(reason),
        }
    }
}

impl std::error::Error for ReadError {}

/// Which process's resource limits to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitsOf {
    /// `proc/self/limits`: the process running the check (the edge at start-up, or the
    /// shell that runs `herald-tune`).
    SelfProcess,
    /// `proc/<pid>/limits`: a running Herald process, so an SRE can check the service itself.
    Pid(u32),
}

/// A root directory standing for `/` of the host being checked.
#[derive(Debug, Clone)]
pub struct SysRoot {
    /// The directory that contains `proc/` (and `sys/`).
    dir: PathBuf,
    /// Whose `limits` file resource limits come from.
    limits_of: LimitsOf,
}

impl SysRoot {
    /// A root at `dir` (a fake tree in tests).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SysRoot {
            dir: dir.into(),
            limits_of: LimitsOf::SelfProcess,
        }
    }

    /// The running host: `/`.
    pub fn host() -> Self {
        SysRoot::new("/")
    }

    /// Read resource limits from `proc/<pid>/limits` instead of `proc/self/limits`.
    pub fn with_limits_of(mut self, limits_of: LimitsOf) -> Self {
        self.limits_of = limits_of;
        self
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this root is the live host, i.e. writing sysctls would change this kernel.
    pub fn is_host(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// Whose limits are read.
    pub fn limits_of(&self) -> LimitsOf {
        self.limits_of
    }

    /// Path of a file relative to the root (`proc/meminfo`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Path of a sysctl's file: `net.ipv4.tcp_mem` → `<root>/proc/sys/net/ipv4/tcp_mem`.
    pub fn sysctl_path(&self, key: &str) -> PathBuf {
        self.dir.join("proc/sys").join(key.replace('.', "/"))
    }

    /// Whether `rel` exists under the root (used to tell "module not loaded" from "no /proc").
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// The whole text of `path`.
    pub fn read_path(&self, path: &Path) -> Result<String, ReadError> {
        std::fs::read_to_string(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ReadError::Missing {
                path: path.to_path_buf(),
            },
            _ => ReadError::Unreadable {
                path: path.to_path_buf(),
                error: e.to_string(),
            },
        })
    }

    /// A sysctl holding `arity` whitespace-separated unsigned integers. One number reads as
    /// [`Value::Int`], more as [`Value::List`].
    pub fn read_sysctl(&self, key: &str, arity: usize) -> Result<Value, ReadError> {
        let path = self.sysctl_path(key);
        let text = self.read_path(&path)?;
        parse_numbers(&text, arity).map_err(|problem| unparsable(&path, &text, problem))
    }

    /// A resource limit from the `limits` file, by its row label (`Max open files`).
    pub fn read_rlimit(&self, label: &str) -> Result<Value, ReadError> {
        let rel = match self.limits_of {
            LimitsOf::SelfProcess => "proc/self/limits".to_string(),
            LimitsOf::Pid(pid) => format!("proc/{pid}/limits"),
        };
        let path = self.path(&rel);
        let text = self.read_path(&path)?;
        parse_limits_row(&text, label).map_err(|problem| unparsable(&path, &text, problem))
    }

    /// Total memory from `proc/meminfo` (`MemTotal`), or `None` when it cannot be read.
    pub fn memory_bytes(&self) -> Option<u64> {
        let text = self.read_path(&self.path("proc/meminfo")).ok()?;
        parse_mem_total(&text)
    }
}

fn unparsable(path: &Path, text: &str, problem: String) -> ReadError {
    let mut shown: String = text.trim().chars().take(60).collect();
    if text.trim().chars().count() > 60 {
        shown.push('…');
    }
    ReadError::Unparsable {
        path: path.to_path_buf(),
        text: shown,
        problem,
    }
}

/// Parse exactly `arity` unsigned integers separated by whitespace (tabs in `/proc`).
pub fn parse_numbers(text: &str, arity: usize) -> Result<Value, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() != arity {
        return Err(format!(
            "expected {arity} number(s), found {} word(s)",
            words.len()
        ));
    }
    let numbers = words
        .iter()
        .map(|w| {
            w.parse::<u64>()
                .map_err(|_| format!("{w:?} is not an unsigned integer"))
        })
        .collect::<Result<Vec<u64>, String>>()?;
    Ok(if arity == 1 {
        Value::Int(numbers[0])
    } else {
        Value::List(numbers)
    })
}

/// Parse one row of `/proc/<pid>/limits`, e.g.
/// `Max open files            1024                 524288               files`.
pub fn parse_limits_row(text: &str, label: &str) -> Result<Value, String> {
    let row = text
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .ok_or_else(|| format!("no {label:?} row"))?;
    let mut words = row.split_whitespace();
    let mut side = |name: &str| -> Result<Limit, String> {
        match words.next() {
            Some("unlimited") => Ok(Limit::Unlimited),
            Some(w) => w
                .parse()
                .map(Limit::Finite)
                .map_err(|_| format!("{name} limit {w:?} is not a number")),
            None => Err(format!("{label:?} row has no {name} limit")),
        }
    };
    let soft = side("soft")?;
    let hard = side("hard")?;
    Ok(Value::Rlimit { soft, hard })
}

/// `MemTotal:  24684096 kB` → bytes.
pub fn parse_mem_total(text: &str) -> Option<u64> {
    let row = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let mut words = row.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_with_tabs_and_newline() {
        assert_eq!(
            parse_numbers("287901\t383869\t575802\n", 3),
            Ok(Value::List(vec![287901, 383869, 575802]))
        );
        assert_eq!(parse_numbers("65530\n", 1), Ok(Value::Int(65530)));
        assert!(parse_numbers("1 2\n", 3).is_err());
        assert!(parse_numbers("-1\n", 1).is_err());
        assert!(parse_numbers("", 1).is_err());
        assert!(parse_numbers("abc", 1).is_err());
    }

    #[test]
    fn limits_rows() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            20000                unlimited            files     \n\
                    Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(
            parse_limits_row(text, "Max open files"),
            Ok(Value::Rlimit {
                soft: Limit::Finite(20000),
                hard: Limit::Unlimited
            })
        );
        assert!(parse_limits_row(text, "Max processes").is_err());
        assert!(parse_limits_row("Max open files  lots  10 files", "Max open files").is_err());
        assert!(parse_limits_row("Max open files  10", "Max open files").is_err());
    }

    #[test]
    fn mem_total() {
        assert_eq!(
            parse_mem_total("MemTotal:       8000 kB\nMemFree: 1 kB\n"),
            Some(8000 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: x kB\n"), None);
    }

    #[test]
    fn sysctl_path_maps_dots_to_slashes() {
        let root = SysRoot::new("/tmp/fake");
        assert_eq!(
            root.sysctl_path("net.ipv4.tcp_mem"),
            PathBuf::from("/tmp/fake/proc/sys/net/ipv4/tcp_mem")
        );
        assert!(!root.is_host());
        assert!(SysRoot::host().is_host());
    }
}
