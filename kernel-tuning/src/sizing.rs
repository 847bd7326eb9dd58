//! The arithmetic behind every recommended number, in one place so `check`, `plan`, the
//! profiles and `docs/kernel-tuning.md` agree. Each function is a formula from the target;
//! the doc comment states it. Floors at kernel defaults keep a plan for a small target from
//! lowering a limit the kernel already sets higher.

use crate::target::{Target, KERNEL_BYTES_PER_CONN};

/// Bytes per page in `tcp_mem` (the kernel counts it in pages; 4 KiB on x86-64 and arm64).
pub const PAGE_BYTES: u64 = 4096;
/// Descriptors beyond the connections: listeners, delivery ports, Redis/Kafka clients,
/// io_uring/epoll/eventfd/timerfd, log files, metrics.
pub const NOFILE_EXTRA: u64 = 10_000;
/// Kernel default of `fs.nr_open` (1 << 20).
pub const NR_OPEN_DEFAULT: u64 = 1 << 20;
/// Smallest `fs.file-max` the kernel picks (`NR_FILE`).
pub const FILE_MAX_MIN: u64 = 8192;
/// Backlog floor: the kernel's `somaxconn` default since 5.4.
pub const BACKLOG_MIN: u64 = 4096;
/// Backlog ceiling: the largest value every supported kernel accepts for `somaxconn`.
pub const BACKLOG_MAX: u64 = 65535;
/// `netdev_max_backlog` kernel default.
pub const NETDEV_BACKLOG_MIN: u64 = 1000;
/// `netdev_max_backlog` ceiling we recommend.
pub const NETDEV_BACKLOG_MAX: u64 = 16384;
/// Kernel default of `nf_conntrack_max` on hosts with ≥ 4 GiB (65536 buckets × 4).
pub const CONNTRACK_DEFAULT: u64 = 262_144;
/// Approximate kernel memory per conntrack entry (`nf_conntrack` slab object).
pub const CONNTRACK_ENTRY_BYTES: u64 = 320;
/// `vm.max_map_count` we require: 4 × the kernel default 65530.
pub const MAX_MAP_COUNT: u64 = 262_144;
/// Locked memory per edge shard: glommio registers its `io_memory` (edge default 512 KiB)
/// with three io_uring rings (main, latency, poll) → 1.5 MiB, plus rings on pre-5.12 kernels;
/// 8 MiB leaves room to raise `io_memory` to ~2.5 MiB.
pub const MEMLOCK_PER_SHARD: u64 = 8 << 20;
/// glommio refuses to start below this `RLIMIT_MEMLOCK` (its `MIN_MEMLOCK_LIMIT`).
pub const GLOMMIO_MEMLOCK_FLOOR: u64 = 512 << 10;
/// Fixed memory reserve: kernel, the process's fixed cost (binary, shard structures, Redis
/// and Kafka clients), sshd, agents.
pub const RESERVE_FIXED: u64 = 512 << 20;

/// `ceil(a / b)` for `b > 0`.
fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// Open files one process needs: `ceil(connections × 1.1) + 10 000`: 10 % headroom for
/// sockets in close/accept transit and the fixed descriptors.
pub fn nofile(connections: u64) -> u64 {
    connections
        .saturating_add(div_ceil(connections, 10))
        .saturating_add(NOFILE_EXTRA)
}

/// System-wide files needed: `2 × nofile` (the rest of the host, a restarting second
/// instance during a deploy).
pub fn file_max_need(connections: u64) -> u64 {
    nofile(connections).saturating_mul(2)
}

/// The kernel's own `fs.file-max` for a host of `memory` bytes: ~10 % of memory in KiB,
/// i.e. `memory / 10 KiB`, at least 8192.
pub fn file_max_default(memory: Option<u64>) -> u64 {
    memory.map_or(FILE_MAX_MIN, |m| (m / 10240).max(FILE_MAX_MIN))
}

/// Accept and SYN backlog of an edge: `clamp(ceil(connections / 16), 4096, 65535)`; a
/// sixteenth of the host's connections arriving within one accept stall during a reconnect
/// storm (a neighbour edge dying). A backlog is only a limit: it costs memory when it fills.
pub fn edge_backlog(connections: u64) -> u64 {
    div_ceil(connections, 16).clamp(BACKLOG_MIN, BACKLOG_MAX)
}

/// Per-CPU input packet queue of an edge: `clamp(edge_backlog / 4, 1000, 16384)`.
pub fn netdev_backlog(connections: u64) -> u64 {
    (edge_backlog(connections) / 4).clamp(NETDEV_BACKLOG_MIN, NETDEV_BACKLOG_MAX)
}

/// Conntrack entries needed: `ceil(connections × 1.2)` (20 % for TIME_WAIT and closing flows).
pub fn conntrack_need(connections: u64) -> u64 {
    div_ceil(connections.saturating_mul(12), 10)
}

/// Memory kept away from connections: `512 MiB + memory / 16`. The fixed part is the OS and
/// the process's fixed cost; the sixteenth absorbs bursts: socket buffers while pushes are in
/// flight, slab fragmentation, page cache.
pub fn memory_reserve(memory: u64) -> u64 {
    RESERVE_FIXED + memory / 16
}

/// How many connections `memory` carries at `per_conn_bytes` each: `(memory − reserve) /
/// per_conn_bytes`.
pub fn connections_allowed(memory: u64, per_conn_bytes: u64) -> u64 {
    memory.saturating_sub(memory_reserve(memory)) / per_conn_bytes.max(1)
}

/// Connections memory-derived settings are sized for: the target, or what memory allows
/// when that is less (a plan never sizes `tcp_mem` beyond the RAM).
pub fn effective_connections(target: &Target) -> u64 {
    match target.memory_bytes {
        Some(m) => target
            .connections
            .min(connections_allowed(m, target.per_conn_bytes)),
        None => target.connections,
    }
}

/// Locked memory for `shards` edge shards.
pub fn memlock(shards: u32) -> u64 {
    MEMLOCK_PER_SHARD.saturating_mul(u64::from(shards))
}

/// `tcp_mem` budget in pages: `ceil(connections × 4300 / 4096)`, the kernel share of the
/// per-connection budget, ≈ 1.05 pages. The kernel charges every socket that has data queued
/// (a push waiting for its ACK) at least one 4 KiB page, so this is what a push queued on
/// every connection at once takes.
pub fn tcp_mem_budget_pages(connections: u64) -> u64 {
    div_ceil(
        connections.saturating_mul(KERNEL_BYTES_PER_CONN),
        PAGE_BYTES,
    )
}

/// What the kernel itself sets for `tcp_mem` on a host of `memory` bytes
/// (`tcp_init_mem`: limit = pages / 16; min = ¾ limit, pressure = limit, max = 1½ limit).
pub fn tcp_mem_default(memory: u64) -> [u64; 3] {
    let limit = (memory / PAGE_BYTES / 16).max(128);
    let low = limit / 4 * 3;
    [low, limit, low * 2]
}

/// Pages socket buffers may take without pushing the host into the OOM killer:
/// `(memory − 512 MiB − connections × per-connection budget) / 4096`. Buffers are charged on
/// top of the idle cost of the connections, so they get what the connections leave, which
/// includes the `memory / 16` burst part of the reserve. `None` when memory is unknown.
pub fn tcp_mem_room_pages(target: &Target) -> Option<u64> {
    let conns = effective_connections(target);
    target.memory_bytes.map(|m| {
        m.saturating_sub(RESERVE_FIXED)
            .saturating_sub(conns.saturating_mul(target.per_conn_bytes))
            / PAGE_BYTES
    })
}

/// `tcp_mem` (pages) recommended for a target:
/// `max = ceil(1.5 × budget)`, at least the kernel's default max for the memory, at most the
/// room buffers have; `min = max × 2/3` (= the budget when uncapped) and
/// `pressure = max × 5/6` (= 1.25 × budget), with `budget` taken for the connections the
/// memory allows.
pub fn tcp_mem(target: &Target) -> [u64; 3] {
    let budget = tcp_mem_budget_pages(effective_connections(target));
    let mut max = div_ceil(budget.saturating_mul(3), 2);
    if let Some(memory) = target.memory_bytes {
        max = max.max(tcp_mem_default(memory)[2]);
    }
    if let Some(room) = tcp_mem_room_pages(target) {
        max = max.min(room);
    }
    [max * 2 / 3, max * 5 / 6, max]
}

/// The least `tcp_mem` pressure and max a host must have: the budget, or two thirds of the
/// room when memory caps it (the `min` of the recommendation).
pub fn tcp_mem_need(target: &Target) -> u64 {
    let budget = tcp_mem_budget_pages(effective_connections(target));
    match tcp_mem_room_pages(target) {
        Some(room) => budget.min(room * 2 / 3),
        None => budget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Role;

    #[test]
    fn file_limits() {
        assert_eq!(nofile(10_000), 21_000);
        assert_eq!(nofile(1_000_000), 1_110_000);
        assert_eq!(nofile(10_000_000), 11_010_000);
        assert_eq!(nofile(1), 10_002);
        assert_eq!(file_max_need(1_000_000), 2_220_000);
        assert_eq!(file_max_default(Some(8 << 30)), 838_860);
        assert_eq!(file_max_default(Some(1 << 20)), FILE_MAX_MIN);
        assert_eq!(file_max_default(None), FILE_MAX_MIN);
    }

    #[test]
    fn backlogs() {
        assert_eq!(edge_backlog(10_000), 4096);
        assert_eq!(edge_backlog(1_000_000), 62_500);
        assert_eq!(edge_backlog(10_000_000), 65_535);
        assert_eq!(netdev_backlog(10_000), 1024);
        assert_eq!(netdev_backlog(1_000_000), 15_625);
        assert_eq!(netdev_backlog(10_000_000), 16_383);
    }

    #[test]
    fn memory_arithmetic() {
        assert_eq!(memory_reserve(8 << 30), 1 << 30);
        assert_eq!(connections_allowed(8 << 30, 6348), 1_184_025);
        assert_eq!(connections_allowed(64 << 30, 6348), 10_064_215);
        assert_eq!(connections_allowed(0, 6348), 0);
        assert_eq!(tcp_mem_default(8 << 30), [98_304, 131_072, 196_608]);
    }

    #[test]
    fn tcp_mem_without_memory_is_pure_budget() {
        let t = Target::new(Role::Edge, 1_000_000);
        assert_eq!(tcp_mem_budget_pages(1_000_000), 1_049_805);
        assert_eq!(tcp_mem(&t), [1_049_805, 1_312_256, 1_574_708]);
        assert_eq!(tcp_mem_need(&t), 1_049_805);
    }

    #[test]
    fn tcp_mem_is_capped_by_the_room_connections_leave() {
        let t = Target::new(Role::Edge, 1_000_000).with_memory(Some(8 << 30));
        // (8 GiB - 512 MiB - 1e6 x 6348 B) / 4096.
        assert_eq!(tcp_mem_room_pages(&t), Some(416_275));
        assert_eq!(tcp_mem(&t), [277_516, 346_895, 416_275]);
        assert_eq!(tcp_mem_need(&t), 277_516);
    }

    #[test]
    fn tcp_mem_never_below_the_kernel_default_when_there_is_room() {
        let small = Target::new(Role::Edge, 10_000).with_memory(Some(8 << 30));
        assert_eq!(tcp_mem(&small), [131_072, 163_840, 196_608]);
        assert_eq!(tcp_mem_need(&small), 10_499);
    }

    #[test]
    fn tcp_mem_for_an_overcommitted_target_uses_what_fits() {
        let t = Target::new(Role::Edge, 5_000_000).with_memory(Some(8 << 30));
        assert_eq!(effective_connections(&t), 1_184_025);
        // What is left is the burst reserve: memory / 16.
        assert_eq!(tcp_mem_room_pages(&t), Some(131_072));
        assert_eq!(tcp_mem(&t), [87_381, 109_226, 131_072]);
    }
}
