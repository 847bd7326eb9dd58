//! `net.ipv4.tcp_tw_reuse`: reuse TIME_WAIT ports for new outbound connections.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::target::{Role, Target};
use crate::value::Value;

/// `net.ipv4.tcp_tw_reuse` checker.
#[derive(Debug)]
pub struct TcpTwReuse;

impl Tunable for TcpTwReuse {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_tw_reuse"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_tw_reuse",
            arity: 1,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Processor => Requirement::exactly(1),
            Role::Edge => Requirement::none(),
        }
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Lets an outbound connect() reuse a local port whose previous connection is in \
         TIME_WAIT, when TCP timestamps prove the new connection's segments cannot be \
         confused with the old one's. A processor that closes and redials delivery \
         connections (an edge restarts, a pool is resized) otherwise holds each port for 60 s. \
         The default 2 enables it for loopback only, so production processors need 1. It only \
         affects connections this host initiates; the edge leaves TIME_WAIT to clients by \
         letting them close first, so it does not need it."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "kernel default: an edge lets clients close first",
            Role::Processor => "1: reuse TIME_WAIT ports for redials to the same edge shard",
        }
    }
}
