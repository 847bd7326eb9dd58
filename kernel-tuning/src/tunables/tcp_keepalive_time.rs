//! `net.ipv4.tcp_keepalive_time`: idle time before the first keepalive probe.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::target::{Role, Target};
use crate::value::Value;

/// Seconds of idleness before probing: under the 350 s idle timeout of common cloud NATs
/// and load balancers.
pub(super) const KEEPALIVE_TIME: u64 = 300;

/// `net.ipv4.tcp_keepalive_time` checker.
#[derive(Debug)]
pub struct TcpKeepaliveTime;

impl Tunable for TcpKeepaliveTime {
    fn id(&self) -> &'static str {
        "net.ipv4.tcp_keepalive_time"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "net.ipv4.tcp_keepalive_time",
            arity: 1,
        }
    }

    fn required(&self, _: &Target) -> Requirement {
        Requirement::at_most(KEEPALIVE_TIME, KEEPALIVE_TIME)
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Seconds a connection with SO_KEEPALIVE may stay silent before the kernel probes the \
         peer. Client connections have Herald's own heartbeats, but the long-lived internal \
         ones (processor to delivery port, edge and processor to Redis and Kafka) can idle \
         between bursts, and cloud NATs and load balancers silently forget flows idle for \
         about 350 s; the next push then stalls until TCP gives up on retransmits. The default \
         7200 s is far longer than those idle timeouts; 300 s keeps flows alive and finds dead \
         peers. Only sockets that enable SO_KEEPALIVE are affected, at one tiny packet per \
         idle period."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "300 s: below the ~350 s idle timeout of cloud NATs and load balancers"
    }
}
