//! `vm.max_map_count`: memory mappings one process may hold.

use super::{Mechanism, Tunable};
use crate::requirement::{Requirement, Severity};
use crate::sizing;
use crate::target::{Role, Target};
use crate::value::Value;

/// `vm.max_map_count` checker.
#[derive(Debug)]
pub struct VmMaxMapCount;

impl Tunable for VmMaxMapCount {
    fn id(&self) -> &'static str {
        "vm.max_map_count"
    }

    fn mechanism(&self) -> Mechanism {
        Mechanism::Sysctl {
            key: "vm.max_map_count",
            arity: 1,
        }
    }

    fn required(&self, target: &Target) -> Requirement {
        match target.role {
            Role::Edge => Requirement::at_least(sizing::MAX_MAP_COUNT, sizing::MAX_MAP_COUNT),
            Role::Processor => Requirement::none(),
        }
    }

    fn severity(&self, _: Role, _: Option<&Value>) -> Severity {
        Severity::Warning
    }

    fn why(&self) -> &'static str {
        "Mappings (VMAs) a process may hold; mmap() fails with ENOMEM past it, which the \
         allocator reports as an out-of-memory abort although RAM is free. An edge holding \
         gigabytes of per-connection state spread over per-shard heaps, allocator arenas, \
         io_uring rings and registered buffers, thread stacks and their guard pages runs \
         close to the default 65530 once the heap fragments. 262144 costs nothing until used \
         (each mapping is a ~200-byte vm_area_struct). Check usage with \
         `wc -l /proc/$(pidof -s herald-edge)/maps`."
    }

    fn sizing(&self, role: Role) -> &'static str {
        match role {
            Role::Edge => "262144 (4 x the default 65530)",
            Role::Processor => "kernel default: tokio with few connections",
        }
    }
}
