//! `net.netfilter.nf_conntrack_max`: the connection-tracking table size, when conntrack is
//! loaded.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::sysroot::{ReadError, SysRoot};
use crate::target::{Role, Target};
use crate::value::Value;

/// The sysctl key.
const KEY: &str = "net.netfilter.nf_conntrack_max";

/// `net.netfilter.nf_conntrack_max` checker.
#[derive(Debug)]
pub struct NfConntrackMax;

impl Tunable for NfConntrackMax {
    fn id(&self) -> &'static str {
        KEY
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl { key: KEY, arity: 1 }
    }

    /// Missing while `proc/sys/net` exists means the nf_conntrack module is not loaded:
    /// nothing is tracked, so nothing can overflow.
    fn current(&self, root: &SysRoot) -> Result<Value, ReadError> {
        match root.read_sysctl(KEY, 1) {
            Err(ReadError::Missing { .. }) if root.exists("proc/sys/net") => {
                Err(ReadError::NotApplicable {
                    reason: "nf_conntrack is not loaded".to_string(),
                })
            }
            other => other,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        let need = sizing::conntrack_need(target.connections);
        Requirement::at_least(need, need.max(sizing::CONNTRACK_DEFAULT))
    }

    fn severity(&self, role: Role, _: Option<&Value>) -> Severity {
        match role {
            Role::Edge => Severity::Fatal,
            Role::Processor => Severity::Warning,
        }
    }

    fn why(&self) -> &'static str {
        "When the nf_conntrack module is loaded (iptables/nftables NAT or stateful rules, \
         Docker, kube-proxy), every TCP connection takes an entry in this table, including \
         sockets in TIME_WAIT and FIN_WAIT. When it is full the kernel drops new SYNs and logs \
         \"nf_conntrack: table full, dropping packet\": to clients the edge looks down. Each \
         entry costs ~320 bytes of kernel memory, on top of the socket; at 10M connections \
         prefer exempting the client port from tracking (a `notrack` rule in the raw table) \
         over a 12M-entry table. Raise net.netfilter.nf_conntrack_buckets (hashsize) to about \
         a quarter of the maximum with it. Not applicable when conntrack is not loaded."
    }

    fn sizing(&self, _: Role) -> &'static str {
        "connections x 1.2 (TIME_WAIT and closing flows), at least the kernel default 262144"
    }
}
