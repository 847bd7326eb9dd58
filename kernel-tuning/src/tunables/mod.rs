//! The tunables, one module each, behind the [`Tunable`] trait (after Redpanda's rpk
//! tuners): an id, how to read the current value from a [`SysRoot`], what a [`Target`]
//! requires, how bad a shortfall is, and a paragraph saying why it matters for Herald.
//! [`ALL`] lists them in the order reports and files show them.

mod fs_file_max;
mod fs_nr_open;
mod io_uring_disabled;
mod ip_local_port_range;
mod netdev_max_backlog;
mod nf_conntrack_max;
mod rlimit_memlock;
mod rlimit_nofile;
mod somaxconn;
mod tcp_fin_timeout;
mod tcp_keepalive_intvl;
mod tcp_keepalive_probes;
mod tcp_keepalive_time;
mod tcp_max_syn_backlog;
mod tcp_mem;
mod tcp_rmem;
mod tcp_tw_reuse;
mod tcp_wmem;
mod vm_max_map_count;

use std::fmt;

use crate::requirement::{Requirement, Severity};
use crate::sysroot::{ReadError, SysRoot};
use crate::target::{Role, Target};
use crate::value::Value;

pub use fs_file_max::FsFileMax;
pub use fs_nr_open::FsNrOpen;
pub use io_uring_disabled::IoUringDisabled;
pub use ip_local_port_range::IpLocalPortRange;
pub use netdev_max_backlog::NetdevMaxBacklog;
pub use nf_conntrack_max::NfConntrackMax;
pub use rlimit_memlock::RlimitMemlock;
pub use rlimit_nofile::RlimitNofile;
pub use somaxconn::Somaxconn;
pub use tcp_fin_timeout::TcpFinTimeout;
pub use tcp_keepalive_intvl::TcpKeepaliveIntvl;
pub use tcp_keepalive_probes::TcpKeepaliveProbes;
pub use tcp_keepalive_time::TcpKeepaliveTime;
pub use tcp_max_syn_backlog::TcpMaxSynBacklog;
pub use tcp_mem::TcpMem;
pub use tcp_rmem::TcpRmem;
pub use tcp_tw_reuse::TcpTwReuse;
pub use tcp_wmem::TcpWmem;
pub use vm_max_map_count::VmMaxMapCount;

/// How a tunable is set on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// A sysctl under `/proc/sys`, persisted in `/etc/sysctl.d`.
    Sysctl {
        /// Dotted key (`net.core.somaxconn`).
        key: &'static str,
        /// How many numbers the file holds.
        arity: usize,
    },
    /// A per-process resource limit, set by systemd (`LimitNOFILE=`) or `limits.d`.
    Rlimit {
        /// Row label in `/proc/<pid>/limits`.
        label: &'static str,
        /// systemd directive.
        systemd: &'static str,
        /// `limits.d` item name.
        limits_item: &'static str,
    },
}

/// One kernel or process setting Herald depends on.
pub trait Tunable: Sync + fmt::Debug {
    /// Stable identifier: the sysctl key, or the resource name (`RLIMIT_NOFILE`).
    fn id(&self) -> &'static str;

    /// How the setting is read and written.
    fn mechanism(&self) -> Mechanism;

    /// The value on the host under `root`. The default reads the sysctl file or the limits
    /// row named by [`Tunable::mechanism`].
    fn current(&self, root: &SysRoot) -> Result<Value, ReadError> {
        match self.mechanism() {
            Mechanism::Sysctl { key, arity } => root.read_sysctl(key, arity),
            Mechanism::Rlimit { label, .. } => root.read_rlimit(label),
        }
    }

    /// What `target` needs, and the value Herald recommends.
    fn required(&self, target: &Target) -> Requirement;

    /// How bad a shortfall is for `role`; `current` is `None` when it could not be read
    /// (the worst case applies).
    fn severity(&self, role: Role, current: Option<&Value>) -> Severity;

    /// Why Herald cares, what goes wrong when it is off, and what the setting costs.
    fn why(&self) -> &'static str;

    /// How the required and recommended numbers are derived for `role` (plan comments, docs).
    fn sizing(&self, role: Role) -> &'static str;

    /// A command that shows the value in effect.
    fn verify(&self, role: Role) -> String {
        match self.mechanism() {
            Mechanism::Sysctl { key, .. } => format!("sysctl {key}"),
            Mechanism::Rlimit { label, .. } => {
                format!("grep '{label}' /proc/$(pidof -s {})/limits", role.unit())
            }
        }
    }

    /// The sysctl key, if this tunable is a sysctl.
    fn sysctl_key(&self) -> Option<&'static str> {
        match self.mechanism() {
            Mechanism::Sysctl { key, .. } => Some(key),
            Mechanism::Rlimit { .. } => None,
        }
    }
}

/// Every tunable, in report order: file limits, listen queues, ports and TIME_WAIT, socket
/// memory, keepalive, conntrack, memory maps, io_uring, process limits.
pub static ALL: &[&dyn Tunable] = &[
    &FsFileMax,
    &FsNrOpen,
    &Somaxconn,
    &TcpMaxSynBacklog,
    &NetdevMaxBacklog,
    &IpLocalPortRange,
    &TcpTwReuse,
    &TcpFinTimeout,
    &TcpMem,
    &TcpRmem,
    &TcpWmem,
    &TcpKeepaliveTime,
    &TcpKeepaliveIntvl,
    &TcpKeepaliveProbes,
    &NfConntrackMax,
    &VmMaxMapCount,
    &IoUringDisabled,
    &RlimitNofile,
    &RlimitMemlock,
];

/// The tunable with this id.
pub fn by_id(id: &str) -> Option<&'static dyn Tunable> {
    ALL.iter().copied().find(|t| t.id() == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_sysctl_ids_are_keys() {
        let mut seen = HashSet::new();
        for t in ALL {
            assert!(seen.insert(t.id()), "duplicate {}", t.id());
            if let Some(key) = t.sysctl_key() {
                assert_eq!(key, t.id());
            }
            assert!(t.why().len() > 120, "{} needs a real paragraph", t.id());
            assert!(!t.sizing(Role::Edge).is_empty() && !t.sizing(Role::Processor).is_empty());
        }
        assert_eq!(ALL.len(), 19);
        assert!(by_id("net.ipv4.tcp_mem").is_some());
        assert!(by_id("nope").is_none());
    }

    #[test]
    fn recommendations_meet_their_own_requirements() {
        for role in [Role::Edge, Role::Processor] {
            for conns in [1, 10_000, 1_000_000, 10_000_000, 50_000_000] {
                for memory in [None, Some(8 << 30), Some(64 << 30), Some(1 << 40)] {
                    let target = Target::new(role, conns).with_memory(memory).with_shards(16);
                    for t in ALL {
                        let r = t.required(&target);
                        if let Some(v) = &r.set_to {
                            assert_eq!(
                                r.check(v),
                                Ok(true),
                                "{} for {target:?}: {v} vs {r}",
                                t.id()
                            );
                        } else {
                            assert!(
                                r.is_none(),
                                "{} requires {r} but recommends nothing",
                                t.id()
                            );
                        }
                    }
                }
            }
        }
    }
}
