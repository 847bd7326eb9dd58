//! `net.ipv4.tcp_keepalive_probes`: unanswered probes before a connection is dropped.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::target::{Role, Target};
use crate::value::Value;

/// Probes before giving up.
pub(super) const KEEPALIVE_PROBES: u64 = 5;

/// `net.ipv4.tcp_keepalive_probes` checker.
#[derive(Debug)]
pub struct TcpKeepaliveProbes;

impl Tunable for TcpKeepaliveProbes {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_keepalive_probes"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_keepalive_probes",
            arity: 1,
        }
    }

    fn required(&self, _: &Target) -> Requirement {
        Requirement::at_most(KEEPALIVE_PROBES, KEEPALIVE_PROBES)
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Unanswered keepalive probes before the kernel declares the peer dead and errors the \
         socket, so Herald's pools redial and the processor retries elsewhere. Five probes 30 s \
         apart ride out a short network blip while still reporting a dead peer within 150 s \
         of the first probe; the default 9 x 75 s takes more than 11 minutes, during which \
         pushes to that connection are lost to the retry path."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "5 probes (at most)"
    }
}
