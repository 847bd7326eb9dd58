//! What the kernel says about a process and about kernel memory, read from `/proc`.
//!
//! Parsers are pure functions over the file text (tested on fixtures); [`Proc`] reads the
//! files under an injectable root. Two rules from measuring on this machine:
//! never read `/proc/PID/fd` of a process holding many sockets during a measurement (it
//! creates proc inodes and dentries, ~1.8 KB of slab per socket) — [`Proc::listener_pid`]
//! does, so it is only called once, before the baseline; and /proc/PID/stat CPU times are in
//! USER_HZ, which Linux fixes at 100 for every architecture's /proc interface.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Ticks per second of `utime`/`stime` in /proc/PID/stat (USER_HZ).
pub const USER_HZ: f64 = 100.0;

/// Reads `/proc` (or a fake tree in tests).
#[derive(Debug, Clone)]
pub struct Proc {
    /// Where procfs is mounted.
    root: PathBuf,
}

impl Default for Proc {
    fn default() -> Self {
        Proc::new("/proc")
    }
}

/// Slab caches whose objects a TCP connection allocates: the socket, its inode, dentry and
/// file, the bind buckets, and the event-loop entries (epoll items, io_uring requests).
/// Summing these instead of all of `Slab` keeps file-system caches of builds running on the
/// same machine out of the numbers.
pub const SOCKET_CACHES: [&str; 16] = [
    "TCP",
    "TCPv6",
    "tcp_bind_bucket",
    "tcp_bind2_bucket",
    "request_sock_TCP",
    "sock_inode_cache",
    "dentry",
    "filp",
    "eventpoll_epi",
    "eventpoll_pwq",
    "ep_head",
    "io_kiocb",
    "lsm_inode_cache",
    "lsm_file_cache",
    "skbuff_head_cache",
    "skbuff_small_head",
];

/// Kernel-wide memory counters that grow with sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct KernelMem {
    /// `Slab` of /proc/meminfo, bytes (all slab caches).
    pub slab: u64,
    /// Bytes in use in the [`SOCKET_CACHES`] (from /proc/slabinfo; `None` when unreadable).
    pub socket_slab: Option<u64>,
    /// `TCP … mem` of /proc/net/sockstat in bytes (socket buffers in use).
    pub tcp_mem: u64,
    /// TCP sockets in use.
    pub tcp_inuse: u64,
    /// TCP sockets in TIME_WAIT.
    pub tcp_tw: u64,
}

impl Proc {
    /// Procfs under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Proc {
        Proc { root: root.into() }
    }

    fn read(&self, rel: impl AsRef<Path>) -> io::Result<String> {
        std::fs::read_to_string(self.root.join(rel))
    }

    /// Resident set size of one process, bytes.
    pub fn rss(&self, pid: u32) -> io::Result<u64> {
        let text = self.read(format!("{pid}/status"))?;
        status_kib(&text, "VmRSS:")
            .map(|k| k * 1024)
            .ok_or_else(|| io::Error::other(format!("no VmRSS for pid {pid} (exited?)")))
    }

    /// User + system CPU time of one process (all threads, exited ones included), seconds.
    /// On the live /proc it is read from the process's CPU-time clock (nanoseconds), so even
    /// a short phase is measured exactly; /proc/PID/stat counts in 10 ms ticks and is the
    /// fallback (and what a fake procfs tree provides).
    pub fn cpu_seconds(&self, pid: u32) -> io::Result<f64> {
        if self.root == Path::new("/proc") {
            if let Some(secs) = process_cpu_clock(pid) {
                return Ok(secs);
            }
        }
        let text = self.read(format!("{pid}/stat"))?;
        let (utime, stime) = stat_times(&text)
            .ok_or_else(|| io::Error::other(format!("unreadable /proc/{pid}/stat")))?;
        Ok((utime + stime) as f64 / USER_HZ)
    }

    /// The parent pid of `pid`.
    pub fn ppid(&self, pid: u32) -> Option<u32> {
        stat_ppid(&self.read(format!("{pid}/stat")).ok()?)
    }

    /// Every process whose ancestry includes `root` (not `root` itself), parents first.
    pub fn descendants(&self, root: u32) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let pairs: Vec<(u32, u32)> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, self.ppid(pid)?)))
            .collect();
        let mut out = Vec::new();
        let mut frontier = vec![root];
        // Bounded: a process tree cannot be deeper than the number of processes.
        for _ in 0..=pairs.len() {
            let Some(parent) = frontier.pop() else { break };
            for &(pid, ppid) in &pairs {
                if ppid == parent && !out.contains(&pid) {
                    out.push(pid);
                    frontier.push(pid);
                }
            }
        }
        out
    }

    /// Kernel memory counters.
    pub fn kernel_mem(&self) -> io::Result<KernelMem> {
        let meminfo = self.read("meminfo")?;
        let slab = status_kib(&meminfo, "Slab:")
            .ok_or_else(|| io::Error::other("no Slab in /proc/meminfo"))?
            * 1024;
        let sockstat = self.read("net/sockstat")?;
        let tcp = sockstat_tcp(&sockstat).unwrap_or_default();
        let socket_slab = self
            .read("slabinfo")
            .ok()
            .map(|t| slab_bytes(&t, &SOCKET_CACHES));
        Ok(KernelMem {
            slab,
            socket_slab,
            tcp_mem: tcp.mem_pages * 4096,
            tcp_inuse: tcp.inuse,
            tcp_tw: tcp.tw,
        })
    }

    /// Total memory of the machine, bytes.
    pub fn mem_total(&self) -> Option<u64> {
        status_kib(&self.read("meminfo").ok()?, "MemTotal:").map(|k| k * 1024)
    }

    /// The process listening on TCP `port` (IPv4 or IPv6). Reads /proc/PID/fd of candidate
    /// processes: call it once, before any measurement.
    pub fn listener_pid(&self, port: u16) -> Option<u32> {
        let mut inodes = Vec::new();
        for file in ["net/tcp", "net/tcp6"] {
            if let Ok(text) = self.read(file) {
                inodes.extend(listening_inodes(&text, port));
            }
        }
        if inodes.is_empty() {
            return None;
        }
        let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
        let mut pids: Vec<u32> = std::fs::read_dir(&self.root)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let Ok(fds) = std::fs::read_dir(self.root.join(format!("{pid}/fd"))) else {
                continue;
            };
            for fd in fds.flatten() {
                if let Ok(link) = std::fs::read_link(fd.path()) {
                    if wanted.iter().any(|w| link.as_os_str() == w.as_str()) {
                        return Some(pid);
                    }
                }
            }
        }
        None
    }

    /// Waits (at most `timeout`) until earlier sockets are gone: fewer than 500 in TIME_WAIT
    /// and the count of TCP sockets in use steady (within 50) for a second — other processes
    /// on a shared machine open a few all the time. Returns whether it settled.
    pub fn wait_sockets_settled(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut last = self.kernel_mem().map(|k| k.tcp_inuse).unwrap_or(0);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_secs(1));
            let Ok(now) = self.kernel_mem() else {
                return false;
            };
            if now.tcp_tw < 500 && now.tcp_inuse.abs_diff(last) < 50 {
                return true;
            }
            last = now.tcp_inuse;
        }
        false
    }

    /// Frees reclaimable slab objects (dentries, inodes) so the baseline is not full of
    /// leftovers; needs root. Page cache is left alone (others share this machine).
    pub fn drop_slab_caches(&self) -> bool {
        std::fs::write(self.root.join("sys/vm/drop_caches"), "2\n").is_ok()
    }
}

/// The processes of one measured system: a root process and its descendants (nginx workers).
#[derive(Debug, Clone)]
pub struct ProcTree {
    /// The process the harness started (or was given).
    pub root: u32,
    /// Procfs to read.
    pub proc: Proc,
}

impl ProcTree {
    /// The tree rooted at `root`.
    pub fn new(root: u32) -> ProcTree {
        ProcTree {
            root,
            proc: Proc::default(),
        }
    }

    /// Root and descendants.
    pub fn pids(&self) -> Vec<u32> {
        let mut v = vec![self.root];
        v.extend(self.proc.descendants(self.root));
        v
    }

    /// Summed RSS of the tree, bytes.
    pub fn rss(&self) -> io::Result<u64> {
        let mut sum = 0;
        for pid in self.pids() {
            match self.proc.rss(pid) {
                Ok(r) => sum += r,
                Err(e) if pid == self.root => return Err(e),
                Err(_) => {} // a worker that just exited
            }
        }
        Ok(sum)
    }

    /// Summed CPU seconds of the tree.
    pub fn cpu_seconds(&self) -> io::Result<f64> {
        let mut sum = 0.0;
        for pid in self.pids() {
            match self.proc.cpu_seconds(pid) {
                Ok(c) => sum += c,
                Err(e) if pid == self.root => return Err(e),
                Err(_) => {}
            }
        }
        Ok(sum)
    }
}

/// CPU time of process `pid` from its CPU-time clock (`clock_getcpuclockid`), seconds.
fn process_cpu_clock(pid: u32) -> Option<f64> {
    use nix::time::{clock_getcpuclockid, clock_gettime};
    let clock = clock_getcpuclockid(nix::unistd::Pid::from_raw(pid as i32)).ok()?;
    let t = clock_gettime(clock).ok()?;
    Some(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// A `Field:   123 kB` line of /proc/PID/status or /proc/meminfo, in KiB.
pub fn status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The fields of /proc/PID/stat after the `(comm)` (which may hold spaces and parentheses).
fn stat_fields(text: &str) -> Option<Vec<&str>> {
    let close = text.rfind(')')?;
    Some(text[close + 1..].split_whitespace().collect())
}

/// CPU seconds of the kernel's softirq threads (`ksoftirqd/N`) so far, read from /proc.
///
/// Network receive and transmit work that a sender's own context did not finish (too much at
/// once for one softirq pass) is deferred to these threads and charged to no process; on
/// loopback that is packet processing the server's sends caused. A fan-out phase reports it
/// beside the server's CPU so a server that pushes its packet work there does not look cheaper
/// than one that pays it in its own threads.
pub fn softirq_threads_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let is_softirq = text
            .find('(')
            .is_some_and(|i| text[i + 1..].starts_with("ksoftirqd/"));
        if let (true, Some((u, s))) = (is_softirq, stat_times(&text)) {
            ticks += u + s;
        }
    }
    ticks as f64 / USER_HZ
}

/// (utime, stime) in ticks: fields 14 and 15 of /proc/PID/stat.
pub fn stat_times(text: &str) -> Option<(u64, u64)> {
    let f = stat_fields(text)?;
    // After "(comm)": state is field 3, so field n is at index n - 3.
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

/// Field 4 of /proc/PID/stat.
pub fn stat_ppid(text: &str) -> Option<u32> {
    stat_fields(text)?.get(1)?.parse().ok()
}

/// The `TCP:` line of /proc/net/sockstat.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SockstatTcp {
    /// Sockets in use.
    pub inuse: u64,
    /// TIME_WAIT sockets.
    pub tw: u64,
    /// Buffer memory, pages.
    pub mem_pages: u64,
}

/// Parses the `TCP:` line of /proc/net/sockstat.
pub fn sockstat_tcp(text: &str) -> Option<SockstatTcp> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = words.iter().position(|w| *w == name)?;
        words.get(i + 1)?.parse().ok()
    };
    Some(SockstatTcp {
        inuse: get("inuse")?,
        tw: get("tw").unwrap_or(0),
        mem_pages: get("mem").unwrap_or(0),
    })
}

/// Bytes in use (active objects × object size) in the named caches of /proc/slabinfo.
pub fn slab_bytes(slabinfo: &str, caches: &[&str]) -> u64 {
    slabinfo
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("slabinfo"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if !caches.contains(f.first()?) {
                return None;
            }
            let active: u64 = f.get(1)?.parse().ok()?;
            let size: u64 = f.get(3)?.parse().ok()?;
            Some(active * size)
        })
        .sum()
}

/// Socket inodes of /proc/net/tcp{,6} rows in state LISTEN (0A) on `port`.
pub fn listening_inodes(text: &str, port: u16) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port && *cols.get(3)? == "0A").then(|| cols.get(9)?.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (herald edge) S 17 4242 17 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 3 0 100 1000000 2500 18446744073709551615";

    #[test]
    fn stat_fields_survive_spaces_in_comm() {
        assert_eq!(stat_times(STAT), Some((250, 75)));
        assert_eq!(stat_ppid(STAT), Some(17));
        assert_eq!(stat_times("garbage"), None);
    }

    #[test]
    fn status_and_meminfo_lines() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmRSS:\t  1234 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1234));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn sockstat() {
        let t =
            "sockets: used 300\nTCP: inuse 12 orphan 0 tw 3 alloc 20 mem 7\nUDP: inuse 1 mem 0\n";
        assert_eq!(
            sockstat_tcp(t),
            Some(SockstatTcp {
                inuse: 12,
                tw: 3,
                mem_pages: 7
            })
        );
    }

    #[test]
    fn slabinfo_sums_the_socket_caches() {
        let t = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\nTCP 10 12 2368 13 8 : tunables 0 0 0 : slabdata 1 1 0\next4_inode_cache 500 600 1128 29 8 : tunables 0 0 0 : slabdata 1 1 0\nfilp 100 128 192 21 1 : tunables 0 0 0 : slabdata 1 1 0\n";
        assert_eq!(slab_bytes(t, &SOCKET_CACHES), 10 * 2368 + 100 * 192);
    }

    #[test]
    fn listeners_by_port() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5551 1 0 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 5552 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(t, 8080), vec![5551]);
        assert!(listening_inodes(t, 8081).is_empty());
    }

    #[test]
    fn live_cpu_time_is_finer_than_a_tick() {
        let proc = Proc::default();
        let me = std::process::id();
        let before = proc.cpu_seconds(me).unwrap();
        // Spin until the clock moves by at least 1 ms: ticks of /proc/PID/stat are 10 ms.
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.001 {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            after = proc.cpu_seconds(me).unwrap();
        }
        assert!(x != 1);
        assert!(after - before < 0.009, "moved {} s", after - before);
    }

    #[test]
    fn fake_proc_tree() {
        let dir = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "10/stat",
            "10 (nginx) S 1 10 10 0 -1 0 0 0 0 0 100 50 0 0 20 0 1 0 1 1 1 1",
        );
        w("10/status", "VmRSS:\t 1000 kB\n");
        w(
            "11/stat",
            "11 (nginx) S 10 10 10 0 -1 0 0 0 0 0 300 100 0 0 20 0 1 0 1 1 1 1",
        );
        w("11/status", "VmRSS:\t 3000 kB\n");
        w(
            "12/stat",
            "12 (other) S 1 12 12 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 1 1 1 1",
        );
        w("meminfo", "MemTotal: 2048 kB\nSlab:   512 kB\n");
        w("net/sockstat", "TCP: inuse 5 orphan 0 tw 0 alloc 5 mem 2\n");
        w(
            "slabinfo",
            "slabinfo - version: 2.1\nTCP 2 2 2368 13 8 : tunables 0 0 0 : slabdata 1 1 0\n",
        );
        let tree = ProcTree {
            root: 10,
            proc: Proc::new(dir.path()),
        };
        assert_eq!(tree.pids(), vec![10, 11]);
        assert_eq!(tree.rss().unwrap(), 4000 * 1024);
        assert!((tree.cpu_seconds().unwrap() - 5.5).abs() < 1e-9);
        let k = tree.proc.kernel_mem().unwrap();
        assert_eq!(k.slab, 512 * 1024);
        assert_eq!(k.tcp_mem, 2 * 4096);
        assert_eq!(k.socket_slab, Some(2 * 2368));
        assert_eq!(tree.proc.mem_total(), Some(2048 * 1024));
    }
}
