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
        let need = sizing::tcp_mem_need(target);
        Requirement::list(
            &[
                ("min", Bound::Any),
                ("pressure", Bound::AtLeast(need)),
                ("max", Bound::AtLeast(need)),
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
        "Three thresholds, in 4 KiB pages, for memory held by all TCP socket buffers together: \
         data queued to send (a push waiting for its ACK) or not yet read. Idle sockets hold \
         none (their ~4.3 KB of kernel structures are slab, outside tcp_mem), but every socket \
         with data queued is charged at least one page, so a broadcast to a million \
         connections briefly wants ~1M pages. Above `pressure` the kernel shrinks every \
         socket's buffers towards tcp_rmem/tcp_wmem's minimum and sends slow down; above `max` \
         it refuses buffer memory, drops incoming segments and logs \"TCP: out of memory\". \
         Too high is as bad: buffers come on top of the connections' idle cost, so a max beyond \
         what the connections leave of RAM trades TCP back-pressure for the OOM killer. Usage \
         is the `mem` field of the TCP line in /proc/net/sockstat."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "pages; max = 1.5 x connections x 4300 B / 4096, at least the kernel default, at most (memory - 512 MiB - connections x per-connection budget) / 4096; min = 2/3 max, pressure = 5/6 max"
    }
}
