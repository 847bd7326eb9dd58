//! `net.ipv4.ip_local_port_range`: ephemeral ports for outbound connections.

use super::{Mechanism, Tunable};
use crate::requirement::{Bound, Requirement, Severity};
use crate::target::{Role, Target};
use crate::value::Value;

/// Lowest ephemeral port we recommend: below it live registered service ports (Redis 6379,
/// Kafka 9092, the edge's delivery ports 7100+) that an outbound connection must not take.
pub(super) const PORT_RANGE_LOW: u64 = 10240;
/// Highest port.
pub(super) const PORT_RANGE_HIGH: u64 = 65535;

/// `net.ipv4.ip_local_port_range` checker.
#[derive(Debug)]
pub struct IpLocalPortRange;

impl Tunable for IpLocalPortRange {
    fn id(&self) -> &'static str {
        "net.ipv4.ip_local_port_range"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.ip_local_port_range",
            arity: 2,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Processor => Requirement::list(
                &[
                    ("low", Bound::AtMost(PORT_RANGE_LOW)),
                    ("high", Bound::AtLeast(PORT_RANGE_HIGH)),
                ],
                vec![PORT_RANGE_LOW, PORT_RANGE_HIGH],
            ),
            Role::Edge => Requirement::none(),
        }
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Ports the kernel picks for outbound connections. A processor dials every edge \
         shard's delivery port, Redis and Kafka, and each (destination address, port) pair can \
         have at most one connection per local port, including sockets lingering in TIME_WAIT \
         after a reconnect or retry. The default 32768-60999 gives 28232 ports per \
         destination; when they run out connect() fails with EADDRNOTAVAIL and pushes go to the \
         retry path. Starting at 10240 keeps well-known service ports (6379, 7100+, 9092) free; \
         list any other listening ports in net.ipv4.ip_local_reserved_ports. Edges accept \
         rather than dial, so they keep the default."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "kernel default: an edge accepts rather than dials",
            Role::Processor => {
                "10240 65535: 55296 ports per destination, well-known service ports below left free"
            }
        }
    }
}
