//! What a tunable must satisfy for a target, and how much a shortfall matters.
//!
//! A [`Requirement`] is a list of per-component [`Bound`]s (one for a scalar, three for
//! `tcp_mem`, the soft side for a resource limit) plus the value Herald recommends setting.
//! The bound is the minimum acceptable; the recommendation may carry extra headroom. Keeping
//! both lets `check` stay quiet on hosts that are good enough while `plan` writes the
//! numbers we would choose.

use std::fmt;

use serde::Serialize;

use crate::value::{Limit, Value};

/// How bad it is when a tunable falls short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The host works but degrades under load (queues overflow, memory pressure, slow
    /// detection of dead peers).
    Warning,
    /// Herald fails at the target: connections are refused, sockets cannot be allocated, or
    /// the runtime does not start. `check` exits 1 and the edge's `--strict` refuses to start.
    Fatal,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Fatal => "fatal",
        })
    }
}

/// A constraint on one component of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// No constraint (the role does not care about this component).
    Any,
    /// Must be at least this.
    AtLeast(u64),
    /// Must be at most this.
    AtMost(u64),
    /// Must be exactly this (flags such as `kernel.io_uring_disabled`).
    Exactly(u64),
}

impl Bound {
    /// Whether `v` satisfies the bound.
    pub fn admits(self, v: u64) -> bool {
        match self {
            Bound::Any => true,
            Bound::AtLeast(n) => v >= n,
            Bound::AtMost(n) => v <= n,
            Bound::Exactly(n) => v == n,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Any => f.write_str("any"),
            Bound::AtLeast(n) => write!(f, ">= {n}"),
            Bound::AtMost(n) => write!(f, "<= {n}"),
            Bound::Exactly(n) => write!(f, "= {n}"),
        }
    }
}

/// One labelled component constraint (`pressure >= 1049805`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Name of the component in messages (`min`, `pressure`, `soft`); empty for scalars.
    pub label: &'static str,
    /// The constraint.
    pub bound: Bound,
}

/// What a target needs from one tunable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Per-component constraints, in the value's component order.
    pub parts: Vec<Part>,
    /// The value Herald recommends (what `plan` prints and what `apply` writes for the parts
    /// that fall short); `None` when the role leaves the kernel default alone.
    pub set_to: Option<Value>,
}

impl Requirement {
    /// No requirement: the role does not depend on this tunable.
    pub fn none() -> Self {
        Requirement {
            parts: Vec::new(),
            set_to: None,
        }
    }

    /// A scalar that must be at least `min`; recommend `set`.
    pub fn at_least(min: u64, set: u64) -> Self {
        Requirement {
            parts: vec![Part {
                label: "",
                bound: Bound::AtLeast(min),
            }],
            set_to: Some(Value::Int(set)),
        }
    }

    /// A scalar that must be at most `max`; recommend `set`.
    pub fn at_most(max: u64, set: u64) -> Self {
        Requirement {
            parts: vec![Part {
                label: "",
                bound: Bound::AtMost(max),
            }],
            set_to: Some(Value::Int(set)),
        }
    }

    /// A scalar flag that must equal `value`.
    pub fn exactly(value: u64) -> Self {
        Requirement {
            parts: vec![Part {
                label: "",
                bound: Bound::Exactly(value),
            }],
            set_to: Some(Value::Int(value)),
        }
    }

    /// A vector with one labelled bound per component; recommend `set`.
    pub fn list(parts: &[(&'static str, Bound)], set: Vec<u64>) -> Self {
        Requirement {
            parts: parts
                .iter()
                .map(|&(label, bound)| Part { label, bound })
                .collect(),
            set_to: Some(Value::List(set)),
        }
    }

    /// A resource limit whose soft side must be at least `min`; recommend soft = hard = `set`.
    pub fn rlimit_at_least(min: u64, set: u64) -> Self {
        Requirement {
            parts: vec![Part {
                label: "soft",
                bound: Bound::AtLeast(min),
            }],
            set_to: Some(Value::Rlimit {
                soft: Limit::Finite(set),
                hard: Limit::Finite(set),
            }),
        }
    }

    /// True when nothing is required (every part is `Any`, or there are no parts).
    pub fn is_none(&self) -> bool {
        self.parts.iter().all(|p| p.bound == Bound::Any)
    }

    /// Whether `current` meets every bound. `Err` explains a shape mismatch (a vector with
    /// the wrong number of components), which callers report as "unknown".
    pub fn check(&self, current: &Value) -> Result<bool, String> {
        if self.parts.is_empty() {
            return Ok(true);
        }
        let have = current.components();
        if have.len() != self.parts.len() {
            return Err(format!(
                "expected {} numbers, found {}",
                self.parts.len(),
                have.len()
            ));
        }
        Ok(self
            .parts
            .iter()
            .zip(&have)
            .all(|(p, &v)| p.bound.admits(v)))
    }

    /// The value to write so that `current` meets the requirement: components that already
    /// satisfy their bound are kept (we never lower a limit somebody raised on purpose), the
    /// others take the recommended value. If keeping components would break the vector's
    /// ascending order (`min <= pressure <= max`), the whole recommendation is used.
    /// `None` when nothing needs to change or there is no recommendation.
    pub fn fix_for(&self, current: &Value) -> Option<Value> {
        if self.check(current) != Ok(false) {
            return None;
        }
        let set = self.set_to.as_ref()?;
        match (current, set) {
            (Value::List(have), Value::List(want)) if have.len() == want.len() => {
                let merged: Vec<u64> = self
                    .parts
                    .iter()
                    .zip(have.iter().zip(want))
                    .map(|(p, (&h, &w))| if p.bound.admits(h) { h } else { w })
                    .collect();
                let ascending = |v: &[u64]| v.windows(2).all(|w| w[0] <= w[1]);
                if ascending(want) && !ascending(&merged) {
                    Some(set.clone())
                } else {
                    Some(Value::List(merged))
                }
            }
            (Value::Rlimit { hard, .. }, Value::Rlimit { soft: want, .. }) => {
                let hard = if hard.as_u64() >= want.as_u64() {
                    *hard
                } else {
                    *want
                };
                Some(Value::Rlimit { soft: *want, hard })
            }
            _ => Some(set.clone()),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let text: Vec<String> = self
            .parts
            .iter()
            .filter(|p| p.bound != Bound::Any)
            .map(|p| {
                if p.label.is_empty() {
                    p.bound.to_string()
                } else {
                    format!("{} {}", p.label, p.bound)
                }
            })
            .collect();
        f.write_str(&text.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_bounds() {
        let r = Requirement::at_least(100, 150);
        assert_eq!(r.check(&Value::Int(100)), Ok(true));
        assert_eq!(r.check(&Value::Int(99)), Ok(false));
        assert_eq!(r.fix_for(&Value::Int(99)), Some(Value::Int(150)));
        assert_eq!(r.fix_for(&Value::Int(100)), None);
        assert_eq!(r.to_string(), ">= 100");
        assert_eq!(Requirement::exactly(0).check(&Value::Int(2)), Ok(false));
        assert_eq!(
            Requirement::at_most(30, 15).fix_for(&Value::Int(60)),
            Some(Value::Int(15))
        );
    }

    #[test]
    fn shape_mismatch_is_an_error_not_a_verdict() {
        let r = Requirement::list(
            &[("min", Bound::Any), ("pressure", Bound::AtLeast(5))],
            vec![1, 5],
        );
        assert!(r.check(&Value::List(vec![1, 2, 3])).is_err());
        assert_eq!(r.fix_for(&Value::List(vec![1, 2, 3])), None);
    }

    #[test]
    fn list_fix_keeps_satisfied_components() {
        let r = Requirement::list(
            &[
                ("min", Bound::AtMost(4096)),
                ("default", Bound::AtMost(16384)),
                ("max", Bound::Any),
            ],
            vec![4096, 16384, 4194304],
        );
        let cur = Value::List(vec![4096, 131072, 33554432]);
        assert_eq!(
            r.fix_for(&cur),
            Some(Value::List(vec![4096, 16384, 33554432]))
        );
        assert_eq!(r.to_string(), "min <= 4096, default <= 16384");
    }

    #[test]
    fn list_fix_falls_back_when_order_would_break() {
        let r = Requirement::list(
            &[
                ("min", Bound::Any),
                ("pressure", Bound::AtLeast(100)),
                ("max", Bound::AtLeast(100)),
            ],
            vec![80, 110, 120],
        );
        // Keeping min = 500 would give 500 110 120: not ascending.
        assert_eq!(
            r.fix_for(&Value::List(vec![500, 10, 20])),
            Some(Value::List(vec![80, 110, 120]))
        );
        assert_eq!(
            r.fix_for(&Value::List(vec![5, 10, 20])),
            Some(Value::List(vec![5, 110, 120]))
        );
    }

    #[test]
    fn rlimit_fix_never_lowers_hard() {
        let r = Requirement::rlimit_at_least(1000, 2000);
        let cur = Value::Rlimit {
            soft: Limit::Finite(10),
            hard: Limit::Unlimited,
        };
        assert_eq!(
            r.fix_for(&cur),
            Some(Value::Rlimit {
                soft: Limit::Finite(2000),
                hard: Limit::Unlimited
            })
        );
        let cur = Value::Rlimit {
            soft: Limit::Finite(10),
            hard: Limit::Finite(20),
        };
        assert_eq!(
            r.fix_for(&cur),
            Some(Value::Rlimit {
                soft: Limit::Finite(2000),
                hard: Limit::Finite(2000)
            })
        );
        let ok = Value::Rlimit {
            soft: Limit::Unlimited,
            hard: Limit::Unlimited,
        };
        assert_eq!(r.check(&ok), Ok(true));
        assert_eq!(r.to_string(), "soft >= 1000");
    }

    #[test]
    fn none_admits_everything() {
        let r = Requirement::none();
        assert!(r.is_none());
        assert_eq!(r.check(&Value::Int(0)), Ok(true));
        assert_eq!(r.to_string(), "none");
    }
}
