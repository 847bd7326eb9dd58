//! `net.core.netdev_max_backlog`: packets queued per CPU before the stack processes them.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `net.core.netdev_max_backlog` checker.
#[derive(Debug)]
pub struct NetdevMaxBacklog;

impl Tunable for NetdevMaxBacklog {
    fn id(&self) -> &'static str {
        "net.core.netdev_max_backlog"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.core.netdev_max_backlog",
            arity: 1,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Edge => {
                let b = sizing::netdev_backlog(target.connections);
                Requirement::at_least(b, b)
            }
            Role::Processor => Requirement::none(),
        }
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Length of each CPU's input queue between the NIC driver and the TCP stack (used with \
         RPS/RFS and by drivers without their own queueing). A broadcast fan-out or a \
         reconnect storm makes packets arrive in bursts; when the queue is full they are \
         dropped before TCP sees them (second column of /proc/net/softnet_stat), costing \
         retransmits on exactly the connections that are busiest. Packets are held only while \
         queued, so a larger limit costs memory only during a burst."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "clamp(backlog / 4, 1000, 16384)",
            Role::Processor => "kernel default: a processor receives steady streams",
        }
    }
}
