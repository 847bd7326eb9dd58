//! A fake `/` for tests: `proc/sys/...` files, `proc/self/limits`, `proc/meminfo`, written
//! into a temporary directory through a small builder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use herald_tune::sysctl_file;
use herald_tune::SysRoot;
use tempfile::TempDir;

/// Values of a stock kernel (this project's CI host): 23.5 GiB, defaults everywhere.
pub(crate) const STOCK: &[(&str, &str)] = &[
    ("fs.file-max", "2466193"),
    ("fs.nr_open", "1048576"),
    ("net.core.somaxconn", "4096"),
    ("net.ipv4.tcp_max_syn_backlog", "2048"),
    ("net.core.netdev_max_backlog", "1000"),
    ("net.ipv4.ip_local_port_range", "32768\t60999"),
    ("net.ipv4.tcp_tw_reuse", "2"),
    ("net.ipv4.tcp_fin_timeout", "60"),
    ("net.ipv4.tcp_mem", "287901\t383869\t575802"),
    ("net.ipv4.tcp_rmem", "4096\t131072\t33554432"),
    ("net.ipv4.tcp_wmem", "4096\t16384\t4194304"),
    ("net.ipv4.tcp_keepalive_time", "7200"),
    ("net.ipv4.tcp_keepalive_intvl", "75"),
    ("net.ipv4.tcp_keepalive_probes", "9"),
    ("net.netfilter.nf_conntrack_max", "262144"),
    ("vm.max_map_count", "65530"),
    ("kernel.io_uring_disabled", "0"),
];

/// A temporary root directory.
pub(crate) struct FakeHost {
    pub dir: TempDir,
}

impl FakeHost {
    /// An empty root: no proc at all.
    pub(crate) fn empty() -> Self {
        FakeHost {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A root holding the stock kernel values and the given limits.
    pub(crate) fn stock() -> Self {
        let h = FakeHost::empty();
        for (k, v) in STOCK {
            h.sysctl(k, v);
        }
        h.limits(20000, 20000, 8 << 20, 8 << 20);
        h.meminfo(24_684_096 * 1024);
        h
    }

    /// A root holding the values of a sysctl.d file.
    pub(crate) fn from_profile(text: &str) -> Self {
        let h = FakeHost::empty();
        for e in sysctl_file::parse(text).expect("profile parses") {
            h.sysctl(&e.key, &e.value);
        }
        h
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn root(&self) -> SysRoot {
        SysRoot::new(self.dir.path())
    }

    /// Write a file relative to the root.
    pub(crate) fn file(&self, rel: &str, text: &str) -> &Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Remove a file relative to the root.
    pub(crate) fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.dir.path().join(rel)).unwrap();
        self
    }

    pub(crate) fn sysctl_rel(key: &str) -> String {
        format!("proc/sys/{}", key.replace('.', "/"))
    }

    pub(crate) fn sysctl(&self, key: &str, value: &str) -> &Self {
        self.file(&Self::sysctl_rel(key), &format!("{value}\n"))
    }

    pub(crate) fn limits_text(
        nofile_soft: u64,
        nofile_hard: u64,
        memlock_soft: u64,
        memlock_hard: u64,
    ) -> String {
        format!(
            "Limit                     Soft Limit           Hard Limit           Units     \n\
             Max cpu time              unlimited            unlimited            seconds   \n\
             Max open files            {nofile_soft:<20} {nofile_hard:<20} files     \n\
             Max locked memory         {memlock_soft:<20} {memlock_hard:<20} bytes     \n"
        )
    }

    pub(crate) fn limits(
        &self,
        nofile_soft: u64,
        nofile_hard: u64,
        memlock_soft: u64,
        memlock_hard: u64,
    ) -> &Self {
        self.file(
            "proc/self/limits",
            &Self::limits_text(nofile_soft, nofile_hard, memlock_soft, memlock_hard),
        )
    }

    pub(crate) fn meminfo(&self, bytes: u64) -> &Self {
        self.file(
            "proc/meminfo",
            &format!(
                "MemTotal:       {} kB\nMemFree:        1 kB\n",
                bytes / 1024
            ),
        )
    }

    pub(crate) fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }
}

/// The crate's directory (profiles live there).
pub(crate) fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Read a shipped file.
pub(crate) fn shipped(rel: &str) -> String {
    std::fs::read_to_string(crate_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
