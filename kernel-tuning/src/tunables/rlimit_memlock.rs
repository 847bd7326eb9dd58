//! `RLIMIT_MEMLOCK`: locked memory one process may hold (io_uring registered buffers).

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `RLIMIT_MEMLOCK` checker.
#[derive(Debug)]
pub struct RlimitMemlock;

impl Tunable for RlimitMemlock {
    fn id(&self) -> &'static str {
        "RLIMIT_MEMLOCK"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Rlimit {
            label: "Max locked memory",
            systemd: "LimitMEMLOCK",
            limits_item: "memlock",
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Edge => {
                let n = sizing::memlock(target.shards);
                Requirement::rlimit_at_least(n, n)
            }
            Role::Processor => Requirement::none(),
        }
    }

    /// Below glommio's own floor (512 KiB) the edge does not start: fatal. Above it but
    /// below the per-shard budget, buffer registration fails and glommio falls back to
    /// unregistered buffers with a warning: degraded, not broken.
    fn severity(&self, role: Role, current: Option<&Value>) -> Severity {
        if role == Role::Processor {
            return Severity::Warning;
        }
        match current.map(Value::components).as_deref() {
            Some([soft]) if *soft >= sizing::GLOMMIO_MEMLOCK_FLOOR => Severity::Warning,
            _ => Severity::Fatal,
        }
    }

    fn why(&self) -> &'static str {
        "Memory a process may lock. io_uring charges the buffers glommio registers with its \
         rings against it (each shard registers its io_memory with three rings, and on kernels \
         before 5.12 the rings themselves count too), summed over all shards of the service \
         user. glommio refuses to start below 512 KiB; above that but short of the budget, \
         registration fails and shards fall back to slower unregistered buffers. Processes \
         with CAP_IPC_LOCK (root) are not charged. 8 MiB per shard covers the edge's default \
         io_memory of 512 KiB with room to raise it; the processor (tokio) does not lock memory."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "8 MiB x shards (io_uring registered buffers)",
            Role::Processor => "no requirement: tokio locks no memory",
        }
    }
}
