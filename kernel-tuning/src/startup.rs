//! The check the edge runs at start-up for its configured capacity: cheap (a few small
//! files under `/proc`), never failing (unreadable values are simply not reported), and
//! returning only shortfalls so the edge logs each once with its fix (and refuses to start
//! under `--strict` when one is fatal).

use crate::check::{check, Finding};
use crate::sysroot::SysRoot;
use crate::target::{Role, Target};

/// Shortfalls of the live host for `role` carrying `connections`, with shards taken from
/// the CPUs this process may run on and memory from `/proc/meminfo`.
pub fn startup_findings(role: Role, connections: u64) -> Vec<Finding> {
    let root = SysRoot::host();
    let shards = std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    let target = Target::new(role, connections)
        .with_memory(root.memory_bytes())
        .with_shards(shards);
    startup_findings_for(&root, &target)
}

/// Shortfalls on `root` for an explicit target (the edge knows its real shard count).
pub fn startup_findings_for(root: &SysRoot, target: &Target) -> Vec<Finding> {
    check(root, target)
        .findings
        .into_iter()
        .filter(Finding::is_short)
        .collect()
}
