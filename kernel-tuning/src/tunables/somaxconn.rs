//! `net.core.somaxconn`: the cap on every listening socket's accept queue.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `net.core.somaxconn` checker.
#[derive(Debug)]
pub struct Somaxconn;

impl Tunable for Somaxconn {
    fn id(&self) -> &'static str {
        "net.core.somaxconn"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.core.somaxconn",
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
        "Caps the accept queue of every listening socket: the queue is min(backlog passed to \
         listen(), somaxconn). Each edge shard has its own SO_REUSEPORT listener, so the queue \
         is per shard. In a reconnect storm (a neighbouring edge dies, a deploy drains one) \
         hundreds of thousands of clients come back within seconds; when a shard's queue is \
         full the kernel drops the handshake's final ACK or the SYN, clients retry after 1 s, \
         3 s, 7 s and the storm lasts longer than it has to. Memory is used only while \
         connections wait. Overflows show as ListenOverflows/ListenDrops in `nstat -az`. The \
         listener must also ask for the larger backlog in listen()."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "backlog = clamp(connections / 16, 4096, 65535): a sixteenth of the host reconnecting during one accept stall",
            Role::Processor => "kernel default: a processor accepts only admin connections",
        }
    }
}
