//! `check`: compare each tunable's current value on a host with what a target needs, and
//! report findings (as a table for people, as JSON for tooling). A value that cannot be read
//! becomes an "unknown" finding with its reason; nothing here panics or fails on a partial
//! or read-only `/proc`.

use std::fmt;

use serde_json::json;

use crate::requirement::{Requirement, Severity};
use crate::size::{format_size, group_digits};
use crate::sizing;
use crate::sysroot::{ReadError, SysRoot};
use crate::target::{Role, Target};
use crate::text::{shell_quote, wrap};
use crate::tunables::{Mechanism, Tunable, ALL};
use crate::value::{Limit, Value};

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The current value meets the requirement.
    Ok,
    /// The current value falls short; see the finding's fix.
    Short,
    /// The current value could not be determined; the reason says why.
    Unknown(String),
    /// The tunable does not apply (module not loaded, not needed by this role).
    NotApplicable(String),
}

impl Status {
    /// Short name used in tables and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Short => "short",
            Status::Unknown(_) => "unknown",
            Status::NotApplicable(_) => "not_applicable",
        }
    }

    /// The reason for `Unknown`/`NotApplicable`.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Unknown(r) | Status::NotApplicable(r) => Some(r),
            Status::Ok | Status::Short => None,
        }
    }
}

/// The verdict on one tunable for one target.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Tunable id (`fs.file-max`, `RLIMIT_NOFILE`).
    pub id: &'static str,
    /// How bad a shortfall is.
    pub severity: Severity,
    /// Ok, short, unknown or not applicable.
    pub status: Status,
    /// The value read from the host, when it could be read.
    pub current: Option<Value>,
    /// What the target needs.
    pub required: Requirement,
    /// The value `apply`/`script` would set (only when short): the recommendation merged with
    /// the components of the current value that are already good enough.
    pub proposed: Option<Value>,
    /// A one-line command an SRE can run to fix the shortfall; empty when nothing to fix.
    pub fix: String,
    /// Why the tunable matters.
    pub why: &'static str,
    /// How it is set (sysctl or resource limit).
    pub mechanism: Mechanism,
}

impl Finding {
    /// A shortfall that breaks Herald at the target.
    pub fn is_fatal(&self) -> bool {
        self.status == Status::Short && self.severity == Severity::Fatal
    }

    /// Any shortfall.
    pub fn is_short(&self) -> bool {
        self.status == Status::Short
    }

    /// The current value as text (`unknown` when unread).
    pub fn current_text(&self) -> String {
        self.current
            .as_ref()
            .map_or_else(|| "unknown".to_string(), Value::to_string)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.id, self.status.name())?;
        write!(
            f,
            " (current {}, required {})",
            self.current_text(),
            self.required
        )?;
        if let Some(reason) = self.status.reason() {
            write!(f, ": {reason}")?;
        }
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Evaluate one tunable on `root` for `target`.
pub fn evaluate(tunable: &dyn Tunable, root: &SysRoot, target: &Target) -> Finding {
    let required = tunable.required(target);
    let read = tunable.current(root);
    let current = read.as_ref().ok().cloned();
    let severity = tunable.severity(target.role, current.as_ref());
    let status = match (&read, required.is_none()) {
        (Err(ReadError::NotApplicable { reason }), _) => Status::NotApplicable(reason.clone()),
        (_, true) => Status::NotApplicable(format!("no requirement for the {} role", target.role)),
        (Err(e), false) => Status::Unknown(e.to_string()),
        (Ok(v), false) => match required.check(v) {
            Ok(true) => Status::Ok,
            Ok(false) => Status::Short,
            Err(problem) => Status::Unknown(problem),
        },
    };
    let proposed = match (&status, &current) {
        (Status::Short, Some(v)) => required.fix_for(v),
        _ => None,
    };
    let fix = proposed
        .as_ref()
        .map(|v| fix_command(tunable.mechanism(), v, target.role))
        .unwrap_or_default();
    Finding {
        id: tunable.id(),
        severity,
        status,
        current,
        required,
        proposed,
        fix,
        why: tunable.why(),
        mechanism: tunable.mechanism(),
    }
}

/// A one-line command that sets `value`: `sysctl -w` for a sysctl (persist with
/// `herald-tune apply`), a systemd drop-in for a resource limit.
pub fn fix_command(mechanism: Mechanism, value: &Value, role: Role) -> String {
    match mechanism {
        Mechanism::Sysctl { key, .. } => {
            format!(
                "sysctl -w {}",
                shell_quote(&format!("{key}={}", value.sysctl_text()))
            )
        }
        Mechanism::Rlimit {
            systemd,
            limits_item,
            ..
        } => {
            let dir = format!("/etc/systemd/system/{}.service.d", role.unit());
            format!(
                "mkdir -p {dir} && printf '[Service]\\n{systemd}={}\\n' > {dir}/99-herald-{limits_item}.conf \
                 && systemctl daemon-reload  # takes effect when {} restarts",
                systemd_limit(value),
                role.unit()
            )
        }
    }
}

/// A resource limit as systemd writes it: `N` when soft = hard, else `soft:hard`.
pub fn systemd_limit(value: &Value) -> String {
    let side = |l: Limit| match l {
        Limit::Finite(n) => n.to_string(),
        Limit::Unlimited => "infinity".to_string(),
    };
    match value {
        Value::Rlimit { soft, hard } if soft == hard => side(*soft),
        Value::Rlimit { soft, hard } => format!("{}:{}", side(*soft), side(*hard)),
        other => other.sysctl_text(),
    }
}

/// The result of checking a host.
#[derive(Debug, Clone)]
pub struct Report {
    /// What the host was checked for.
    pub target: Target,
    /// One finding per tunable, in [`ALL`] order.
    pub findings: Vec<Finding>,
    /// Connections the host's memory carries at the target's per-connection budget, when
    /// its memory is known.
    pub connections_allowed: Option<u64>,
}

/// Check every tunable on `root` for `target`.
pub fn check(root: &SysRoot, target: &Target) -> Report {
    Report {
        target: target.clone(),
        findings: ALL.iter().map(|t| evaluate(*t, root, target)).collect(),
        connections_allowed: target
            .memory_bytes
            .map(|m| sizing::connections_allowed(m, target.per_conn_bytes)),
    }
}

impl Report {
    /// Fatal shortfalls.
    pub fn fatal(&self) -> usize {
        self.findings.iter().filter(|f| f.is_fatal()).count()
    }

    /// Non-fatal shortfalls.
    pub fn warnings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.is_short() && !f.is_fatal())
            .count()
    }

    /// Findings whose value could not be read.
    pub fn unknown(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f.status, Status::Unknown(_)))
            .count()
    }

    /// `check`'s exit code: 1 when anything fatal falls short, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.fatal() > 0)
    }

    /// The finding for `id`.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.id == id)
    }

    /// Machine-readable form:
    /// `{"target", "connections_allowed", "findings": [{"id","current","required","severity",
    /// "status","reason","why","fix"}], "fatal", "warnings", "unknown"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let findings: Vec<_> = self
            .findings
            .iter()
            .map(|f| {
                json!({
                    "id": f.id,
                    "current": f.current.as_ref().map(Value::to_string),
                    "required": f.required.to_string(),
                    "severity": f.severity,
                    "status": f.status.name(),
                    "reason": f.status.reason(),
                    "why": f.why,
                    "fix": if f.fix.is_empty() { None } else { Some(&f.fix) },
                })
            })
            .collect();
        json!({
            "target": self.target,
            "connections_allowed": self.connections_allowed,
            "findings": findings,
            "fatal": self.fatal(),
            "warnings": self.warnings(),
            "unknown": self.unknown(),
        })
    }

    /// The report as a table followed by the why and fix of every shortfall.
    pub fn render_table(&self) -> String {
        let t = &self.target;
        let mut out = format!(
            "herald-tune check: {} for {} connections{}",
            t.role,
            group_digits(t.connections),
            crate::plan::shards_text(t)
        );
        match (t.memory_bytes, self.connections_allowed) {
            (Some(m), Some(allowed)) => out.push_str(&format!(
                ", {} memory (carries {} connections at {} B each)\n\n",
                format_size(m),
                group_digits(allowed),
                t.per_conn_bytes
            )),
            _ => out.push_str(", memory unknown\n\n"),
        }
        let rows: Vec<[String; 5]> = self
            .findings
            .iter()
            .map(|f| {
                let severity = match f.status {
                    Status::NotApplicable(_) => "-".to_string(),
                    _ => f.severity.to_string(),
                };
                let required = match f.status {
                    Status::NotApplicable(_) => "-".to_string(),
                    _ => f.required.to_string(),
                };
                let status = match f.status {
                    Status::NotApplicable(_) => "n/a",
                    _ => f.status.name(),
                };
                [
                    status.to_string(),
                    severity,
                    f.id.to_string(),
                    f.current_text(),
                    required,
                ]
            })
            .collect();
        let header = ["STATUS", "SEVERITY", "TUNABLE", "CURRENT", "REQUIRED"].map(String::from);
        let mut widths = [0usize; 5];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        for f in self
            .findings
            .iter()
            .filter(|f| f.is_short() || matches!(f.status, Status::Unknown(_)))
        {
            out.push_str(&format!(
                "\n{} ({}, {}): current {}, required {}\n",
                f.id,
                f.severity,
                f.status.name(),
                f.current_text(),
                f.required
            ));
            if let Some(reason) = f.status.reason() {
                out.push_str(&format!("  reason: {reason}\n"));
            }
            for line in wrap(f.why, 96, "  ") {
                out.push_str(&line);
                out.push('\n');
            }
            if !f.fix.is_empty() {
                out.push_str(&format!("  fix: {}\n", f.fix));
            }
        }
        out.push_str(&format!(
            "\n{} fatal, {} warning(s), {} unknown\n",
            self.fatal(),
            self.warnings(),
            self.unknown()
        ));
        if self
            .findings
            .iter()
            .any(|f| f.is_short() && matches!(f.mechanism, Mechanism::Sysctl { .. }))
        {
            out.push_str(&format!(
                "persist the sysctls: herald-tune apply --role {} --connections {} (or review: herald-tune script ...)\n",
                t.role, t.connections
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunables::by_id;

    #[test]
    fn fix_commands() {
        let m = by_id("net.ipv4.tcp_rmem").unwrap().mechanism();
        assert_eq!(
            fix_command(m, &Value::List(vec![4096, 16384, 4194304]), Role::Edge),
            "sysctl -w 'net.ipv4.tcp_rmem=4096 16384 4194304'"
        );
        let m = by_id("fs.file-max").unwrap().mechanism();
        assert_eq!(
            fix_command(m, &Value::Int(5), Role::Edge),
            "sysctl -w fs.file-max=5"
        );
        let m = by_id("RLIMIT_NOFILE").unwrap().mechanism();
        let v = Value::Rlimit {
            soft: Limit::Finite(1_110_000),
            hard: Limit::Unlimited,
        };
        let fix = fix_command(m, &v, Role::Edge);
        assert!(fix.contains("LimitNOFILE=1110000:infinity"), "{fix}");
        assert!(
            fix.contains("/etc/systemd/system/herald-edge.service.d/99-herald-nofile.conf"),
            "{fix}"
        );
    }

    #[test]
    fn systemd_limits() {
        let same = Value::Rlimit {
            soft: Limit::Finite(8),
            hard: Limit::Finite(8),
        };
        assert_eq!(systemd_limit(&same), "8");
        let inf = Value::Rlimit {
            soft: Limit::Unlimited,
            hard: Limit::Unlimited,
        };
        assert_eq!(systemd_limit(&inf), "infinity");
    }
}
