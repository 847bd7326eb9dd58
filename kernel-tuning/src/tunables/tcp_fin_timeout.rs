//! `net.ipv4.tcp_fin_timeout`: how long an orphaned connection waits in FIN_WAIT2.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::target::{Role, Target};
use crate::value::Value;

/// Longest acceptable FIN_WAIT2 time, seconds.
pub(super) const FIN_TIMEOUT_MAX: u64 = 30;
/// Recommended FIN_WAIT2 time, seconds.
pub(super) const FIN_TIMEOUT_SET: u64 = 15;

/// `net.ipv4.tcp_fin_timeout` checker.
#[derive(Debug)]
pub struct TcpFinTimeout;

impl Tunable for TcpFinTimeout {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_fin_timeout"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_fin_timeout",
            arity: 1,
        }
    }

    fn required(&self, _: &Target) -> Requirement {
        Requirement::at_most(FIN_TIMEOUT_MAX, FIN_TIMEOUT_SET)
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "After Herald closes a socket (force-close after the grace period, a slow consumer, \
         a drain) the kernel keeps the orphaned connection in FIN_WAIT2 until the peer sends \
         its FIN or this timer expires. Clients that vanished (phones leaving coverage) never \
         answer, so during a drain of a few hundred thousand connections the orphans pile up, \
         each holding a socket, a conntrack entry and memory, and past tcp_max_orphans the \
         kernel resets connections. The default 60 s doubles how long they linger; 15 s is \
         plenty for a live peer to answer."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "15 s (at most 30 s)"
    }
}
