//! `net.ipv4.tcp_max_syn_backlog`: half-open connections per listener.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `net.ipv4.tcp_max_syn_backlog` checker.
#[derive(Debug)]
pub struct TcpMaxSynBacklog;

impl Tunable for TcpMaxSynBacklog {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_max_syn_backlog"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_max_syn_backlog",
            arity: 1,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Edge => {
                let b = sizing::edge_backlog(target.connections);
                Requirement::at_least(b, b)
            }
            Role::Processor => Requirement::none(),
        }
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "How many connections may sit half-open (SYN received, handshake not finished) per \
         listener before the kernel falls back to SYN cookies or drops SYNs. During a reconnect \
         storm the SYN queue fills before the accept queue does; with SYN cookies the \
         handshake still completes but loses window scaling and SACK negotiation on older \
         kernels, and without them SYNs are dropped and clients back off. Each entry is a \
         small request sock (~300 bytes) held only while the handshake is in flight."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "backlog, as net.core.somaxconn",
            Role::Processor => "kernel default: a processor accepts only admin connections",
        }
    }
}
