//! Values a tunable can hold: one integer (`fs.file-max`), a whitespace-separated vector
//! (`net.ipv4.tcp_mem`, `net.ipv4.ip_local_port_range`) or a process resource limit with a
//! soft and a hard side (`RLIMIT_NOFILE`). The same type carries what was read from the host
//! and what a plan proposes, so rendering and comparison live in one place.

use std::fmt;

/// One side of a resource limit: a number or `unlimited` (`RLIM_INFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A finite limit (files for `RLIMIT_NOFILE`, bytes for `RLIMIT_MEMLOCK`).
    Finite(u64),
    /// No limit; satisfies every lower bound.
    Unlimited,
}

impl Limit {
    /// The limit as a number, `u64::MAX` standing for unlimited so comparisons just work.
    pub fn as_u64(self) -> u64 {
        match self {
            Limit::Finite(n) => n,
            Limit::Unlimited => u64::MAX,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Finite(n) => write!(f, "{n}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// The value of one tunable, as read or as proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A single integer sysctl such as `fs.file-max`.
    Int(u64),
    /// A vector sysctl: `tcp_mem`/`tcp_rmem`/`tcp_wmem` have three parts, the port range two.
    List(Vec<u64>),
    /// A process resource limit: the kernel enforces `soft`; `hard` is how far the process
    /// itself may raise it.
    Rlimit {
        /// Enforced limit.
        soft: Limit,
        /// Ceiling for the soft limit.
        hard: Limit,
    },
}

impl Value {
    /// The numbers requirements are checked against, in order. A resource limit exposes its
    /// soft side only: that is the one the kernel enforces.
    pub fn components(&self) -> Vec<u64> {
        match self {
            Value::Int(n) => vec![*n],
            Value::List(v) => v.clone(),
            Value::Rlimit { soft, .. } => vec![soft.as_u64()],
        }
    }

    /// The text to put after `key = ` in a sysctl.d file (`4096 16384 4194304`).
    pub fn sysctl_text(&self) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::List(v) => v.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
            Value::Rlimit { soft, .. } => soft.to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(_) | Value::List(_) => f.write_str(&self.sysctl_text()),
            Value::Rlimit { soft, hard } => write!(f, "soft {soft}, hard {hard}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_shape() {
        assert_eq!(Value::Int(7).to_string(), "7");
        assert_eq!(
            Value::List(vec![4096, 16384, 4194304]).to_string(),
            "4096 16384 4194304"
        );
        let r = Value::Rlimit {
            soft: Limit::Finite(1024),
            hard: Limit::Unlimited,
        };
        assert_eq!(r.to_string(), "soft 1024, hard unlimited");
        assert_eq!(r.components(), vec![1024]);
        let u = Value::Rlimit {
            soft: Limit::Unlimited,
            hard: Limit::Unlimited,
        };
        assert_eq!(u.components(), vec![u64::MAX]);
    }
}
