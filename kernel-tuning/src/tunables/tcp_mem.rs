//! `net.ipv4.tcp_mem`: the kernel's TCP buffer memory thresholds, in pages.

use super::{Mechanism, Tunable};
use crate::requirement::{Bound, Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `net.ipv4.tcp_mem` checker.
#[derive(Debug)]
pub struct TcpMem;

impl Tunable for TcpMem {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_mem"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_mem",
            arity: 3,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        let budget = sizing::tcp_mem_budget_pages(sizing::effective_connections(target));
        Requirement::list(
            &[
                ("min", Bound::Any),
                ("pressure", Bound::AtLeast(budget)),
                ("max", Bound::AtLeast(budget)),
            ],
            sizing::tcp_mem(target).to_vec(),
        )
    }

    fn severity(&self, role: Role, _: Option<&Value>) -> Severity {
        match role {
            Role::Edge => Severity::Fatal,
            Role::Processor => Severity::Warning,
        }
    }

    fn why(&self) -> &'static str {
        "Three thresholds, in 4 KiB pages, for memory held by all TCP socket buffers together \
         (data queued to send or not yet read). Above `pressure` the kernel shrinks every \
         socket's buffers towards tcp_rmem/tcp_wmem's minimum and throughput collapses; above \
         `max` it refuses buffer memory, drops incoming segments and logs \"TCP: out of memory\". \
         The kernel default is about 9 % of RAM, sized for a few busy sockets, not a million \
         that each briefly queue a push. Giving every connection its kernel share as the `min` \
         keeps an ordinary fleet out of pressure; capping `max` by the RAM left after user \
         space keeps TCP from driving the host into the OOM killer. Usage is the `mem` field of \
         the TCP line in /proc/net/sockstat."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "pages; min = connections x 4300 B / 4096, max = 1.5 x min capped by memory - reserve - connections x user bytes, pressure midway; at least the kernel default"
    }
}
