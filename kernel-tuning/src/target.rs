//! What a host is tuned for: its role and how many connections it must carry, plus the
//! memory and per-connection budget that memory-derived settings (`tcp_mem`) are sized from.

use std::fmt;

use serde::Serialize;

/// User-space bytes Herald budgets per idle connection (the edge's target is ≤ 2 KiB).
pub const USER_BYTES_PER_CONN: u64 = 2048;
/// Kernel bytes per idle server socket (measured ≈ 4.2 KB on loopback: `struct tcp_sock`,
/// file, dentry, inode, epoll/io_uring bookkeeping), rounded up.
pub const KERNEL_BYTES_PER_CONN: u64 = 4300;
/// Default whole-connection budget: user space plus kernel.
pub const DEFAULT_PER_CONN_BYTES: u64 = USER_BYTES_PER_CONN + KERNEL_BYTES_PER_CONN;
/// Connections `check`/`apply`/`script` assume for an edge when `--connections` is not given.
pub const DEFAULT_EDGE_CONNECTIONS: u64 = 100_000;
/// Outbound connections assumed for a processor when `--connections` is not given.
pub const DEFAULT_PROCESSOR_CONNECTIONS: u64 = 10_000;

/// Which Herald service the host runs; the two need different things from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds client WebSocket/SSE connections (glommio, io_uring, shard per core).
    Edge,
    /// Consumes Kafka and forwards pushes over outbound connections to edge shards (tokio).
    Processor,
}

impl Role {
    /// Lower-case name, as used in file names (`99-herald-edge.conf`) and units.
    pub fn name(self) -> &'static str {
        match self {
            Role::Edge => "edge",
            Role::Processor => "processor",
        }
    }

    /// The systemd unit of this role.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Edge => "herald-edge",
            Role::Processor => "herald-processor",
        }
    }

    /// `--connections` default for this role.
    pub fn default_connections(self) -> u64 {
        match self {
            Role::Edge => DEFAULT_EDGE_CONNECTIONS,
            Role::Processor => DEFAULT_PROCESSOR_CONNECTIONS,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The load a host is tuned for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The service the host runs.
    pub role: Role,
    /// Edge: client connections held. Processor: outbound connections held (to edge shards'
    /// delivery ports, brokers, Redis).
    pub connections: u64,
    /// Host memory; when known, memory-derived settings are capped so they fit and `plan`
    /// reports how many connections the memory allows.
    pub memory_bytes: Option<u64>,
    /// Whole budget per connection (user space + kernel); the kernel share is
    /// [`KERNEL_BYTES_PER_CONN`], the rest is user space.
    pub per_conn_bytes: u64,
    /// Shards (io_uring executors) the edge runs; locked memory is budgeted per shard.
    pub shards: u32,
}

/// A target that cannot be planned for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Zero connections.
    NoConnections,
    /// Zero shards.
    NoShards,
    /// The per-connection budget is smaller than the kernel's own share.
    PerConnBelowKernel {
        /// The budget asked for.
        per_conn_bytes: u64,
    },
    /// The memory is smaller than the reserve kept for the OS.
    MemoryBelowReserve {
        /// The memory given.
        memory_bytes: u64,
        /// The reserve it would need to exceed.
        reserve_bytes: u64,
    },
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::NoConnections => f.write_str("--connections must be at least 1"),
            TargetError::NoShards => f.write_str("--shards must be at least 1"),
            TargetError::PerConnBelowKernel { per_conn_bytes } => write!(
                f,
                "--per-conn-bytes {per_conn_bytes} is below the kernel's own {KERNEL_BYTES_PER_CONN} bytes per socket; \
                 the budget is user space + kernel"
            ),
            TargetError::MemoryBelowReserve { memory_bytes, reserve_bytes } => write!(
                f,
                "--memory {memory_bytes} bytes leaves nothing for connections after the {reserve_bytes}-byte reserve"
            ),
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// A target with the default per-connection budget, one shard and unknown memory.
    pub fn new(role: Role, connections: u64) -> Self {
        Target {
            role,
            connections,
            memory_bytes: None,
            per_conn_bytes: DEFAULT_PER_CONN_BYTES,
            shards: 1,
        }
    }

    /// Set the host memory.
    pub fn with_memory(mut self, memory_bytes: Option<u64>) -> Self {
        self.memory_bytes = memory_bytes;
        self
    }

    /// Set the shard count.
    pub fn with_shards(mut self, shards: u32) -> Self {
        self.shards = shards;
        self
    }

    /// Set the per-connection budget.
    pub fn with_per_conn_bytes(mut self, per_conn_bytes: u64) -> Self {
        self.per_conn_bytes = per_conn_bytes;
        self
    }

    /// User-space share of the per-connection budget.
    pub fn user_bytes_per_conn(&self) -> u64 {
        self.per_conn_bytes.saturating_sub(KERNEL_BYTES_PER_CONN)
    }

    /// Reject targets no plan can be computed for, naming the flag at fault.
    pub fn validate(&self) -> Result<(), TargetError> {
        if self.connections == 0 {
            return Err(TargetError::NoConnections);
        }
        if self.shards == 0 {
            return Err(TargetError::NoShards);
        }
        if self.per_conn_bytes < KERNEL_BYTES_PER_CONN {
            return Err(TargetError::PerConnBelowKernel {
                per_conn_bytes: self.per_conn_bytes,
            });
        }
        if let Some(memory_bytes) = self.memory_bytes {
            let reserve_bytes = crate::sizing::memory_reserve(memory_bytes);
            if memory_bytes <= reserve_bytes {
                return Err(TargetError::MemoryBelowReserve {
                    memory_bytes,
                    reserve_bytes,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_flag() {
        let t = Target::new(Role::Edge, 0);
        assert!(t
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--connections"));
        let t = Target::new(Role::Edge, 1).with_per_conn_bytes(4000);
        assert!(t
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--per-conn-bytes"));
        let t = Target::new(Role::Edge, 1).with_memory(Some(256 << 20));
        assert!(t.validate().unwrap_err().to_string().contains("--memory"));
        let t = Target::new(Role::Edge, 1).with_shards(0);
        assert!(t.validate().unwrap_err().to_string().contains("--shards"));
        assert_eq!(
            Target::new(Role::Processor, 1)
                .with_memory(Some(1 << 30))
                .validate(),
            Ok(())
        );
    }

    #[test]
    fn budget_split() {
        let t = Target::new(Role::Edge, 1);
        assert_eq!(t.per_conn_bytes, 6348);
        assert_eq!(t.user_bytes_per_conn(), 2048);
    }
}
