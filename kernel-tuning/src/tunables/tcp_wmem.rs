//! `net.ipv4.tcp_wmem`: per-socket send buffer sizes (min, default, max).

use super::{Mechanism, Tunable};
use crate::requirement::{Bound, Requirement, Severity};
use crate::target::{Role, Target};
use crate::value::Value;

/// Recommended send buffers for an edge (the kernel's own defaults, made explicit).
pub(super) const EDGE_WMEM: [u64; 3] = [4096, 16384, 4194304];

/// `net.ipv4.tcp_wmem` checker.
#[derive(Debug)]
pub struct TcpWmem;

impl Tunable for TcpWmem {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_wmem"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_wmem",
            arity: 3,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Edge => Requirement::list(
                &[
                    ("min", Bound::AtMost(EDGE_WMEM[0])),
                    ("default", Bound::AtMost(EDGE_WMEM[1])),
                    ("max", Bound::Any),
                ],
                EDGE_WMEM.to_vec(),
            ),
            Role::Processor => Requirement::none(),
        }
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Send buffer per socket: pushes to a client sit here until acknowledged. A small \
         `default` (16 KiB) caps how much a slow or dead client can pin in the kernel before \
         Herald's own per-connection outbound queue notices and closes it as a slow consumer; \
         the 4 KiB `min` is what every socket shrinks to under memory pressure. With a million \
         connections, a 64 KiB default would let 1 % of slow clients hold 640 MB. Autotuning \
         still grows busy sockets up to `max`."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "4 KiB under pressure (min <= 4096), 16 KiB to start (default <= 16384), 4 MiB autotuning ceiling",
            Role::Processor => "kernel default: few, busy sockets",
        }
    }
}
