//! `net.ipv4.tcp_rmem`: per-socket receive buffer sizes (min, default, max).

use super::{Mechanism, Tunable};
use crate::requirement::{Bound, Requirement, Severity};
use crate::target::{Role, Target};
use crate::value::Value;

/// Recommended receive buffers for an edge: 4 KiB under pressure, 16 KiB to start, 4 MiB
/// for autotuning of busy connections (the delivery port).
pub(super) const EDGE_RMEM: [u64; 3] = [4096, 16384, 4194304];

/// `net.ipv4.tcp_rmem` checker.
#[derive(Debug)]
pub struct TcpRmem;

impl Tunable for TcpRmem {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_rmem"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_rmem",
            arity: 3,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Edge => Requirement::list(
                &[
                    ("min", Bound::AtMost(EDGE_RMEM[0])),
                    ("default", Bound::AtMost(EDGE_RMEM[1])),
                    ("max", Bound::Any),
                ],
                EDGE_RMEM.to_vec(),
            ),
            Role::Processor => Requirement::none(),
        }
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Receive buffer per socket: `min` is what each socket keeps under memory pressure, \
         `default` its initial size, `max` the autotuning ceiling. Buffers are charged only for \
         data actually queued, so an idle connection costs nothing here, but the limits decide \
         how much unread data a million sockets may pile up: clients send an edge almost \
         nothing (pings, acks), so a 16 KiB start (instead of 128 KiB) bounds what a flood of \
         client frames can pin, and a 4 KiB minimum is what lets pressure actually reclaim \
         memory. Busy connections such as the delivery port still autotune up to `max`."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "4 KiB under pressure (min <= 4096), 16 KiB to start (default <= 16384), 4 MiB autotuning ceiling",
            Role::Processor => "kernel default: few, busy sockets",
        }
    }
}
