//! `net.ipv4.tcp_keepalive_intvl`: seconds between unanswered keepalive probes.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::target::{Role, Target};
use crate::value::Value;

/// Seconds between probes.
pub(super) const KEEPALIVE_INTVL: u64 = 30;

/// `net.ipv4.tcp_keepalive_intvl` checker.
#[derive(Debug)]
pub struct TcpKeepaliveIntvl;

impl Tunable for TcpKeepaliveIntvl {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_keepalive_intvl"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_keepalive_intvl",
            arity: 1,
        }
    }

    fn required(&self, _: &Target) -> Requirement {
        Requirement::at_most(KEEPALIVE_INTVL, KEEPALIVE_INTVL)
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Seconds between keepalive probes once the first went unanswered. Together with \
         tcp_keepalive_time and tcp_keepalive_probes it bounds how long a dead internal peer \
         (a crashed edge behind a delivery connection, a Redis node that vanished) keeps a \
         socket and the pushes queued on it: 300 + 5 x 30 = 450 s instead of the \
         default 7200 + 9 x 75 = 7875 s. Probes are sent only on idle sockets with \
         SO_KEEPALIVE."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "30 s (at most)"
    }
}
