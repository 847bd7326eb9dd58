//! The machine a report was measured on: cores, memory, kernel, CPU model, limits.

use serde::Serialize;

use crate::procfs::Proc;

/// Facts about this machine, recorded in every report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub cores: usize,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Host name.
    pub hostname: String,
    /// Open files per process (soft limit).
    pub open_files_limit: Option<u64>,
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Machine {
    /// Reads this machine.
    pub fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let open_files_limit = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            });
        Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes: Proc::default().mem_total().unwrap_or(0),
            kernel: first_line("/proc/sys/kernel/osrelease"),
            cpu_model,
            hostname: first_line("/proc/sys/kernel/hostname"),
            open_files_limit,
        }
    }

    /// One line for the report header.
    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB memory, Linux {}, {} open files per process",
            self.cores,
            self.cpu_model,
            self.memory_bytes as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.open_files_limit
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_plausible() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(m.memory_bytes > 0);
        assert!(!m.kernel.is_empty());
        assert!(m.describe().contains("cores"));
    }
}
