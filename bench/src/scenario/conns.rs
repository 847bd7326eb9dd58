//! `conns`: what an idle connection costs a system. Opens connections in steps (e.g. 1k, 5k,
//! 10k, 19k) from client processes and many source addresses; at each step waits for the
//! server to hold them, lets it settle, and reads the system's RSS (`/proc/PID/status` of
//! the process tree), kernel slab and socket-buffer memory, and the handshake rate.
//!
//! User-space bytes per connection = least-squares slope of RSS over the steps. Kernel bytes
//! per connection = slope of the socket slab caches (`procfs::SOCKET_CACHES` from
//! /proc/slabinfo — socket, inode, dentry, file, epoll and io_uring objects — or all of
//! `Slab` when slabinfo is unreadable), which on loopback holds both ends of every
//! connection; the server's share is that minus the clients' share measured against the
//! calibration sink (see `systems::sink`), or half of it without calibration. Sockets that
//! other processes open or close meanwhile land in the same counters: each step records the
//! machine's TCP sockets in use, and a step where they differ from two per connection is
//! flagged. Socket buffers (`TCP mem` of
//! /proc/net/sockstat) are fitted and reported on their own: an idle connection should hold
//! none, and the machine-wide counter moves with any traffic on a shared machine.
//! Connections per GiB = 2^30 / (user + kernel share).
//!
//! With `--tls` the same steps run over TLS (the clients speak rustls to the system's TLS
//! listener): the RSS slope is then the bytes of an idle TLS connection, and the accept rate
//! counts TCP connect + full TLS handshake + HTTP upgrade, reported as `tls_handshakes_per_s`
//! besides the unchanged `accept_rate`. The kernel share is calibrated against the plaintext
//! sink: the servers measured keep TLS in user space, so a socket costs the kernel the same.

use std::time::Duration;

use serde::Serialize;

use crate::fit::{least_squares, Fit};
use crate::pool::{ClientPool, ClientSpec, Opened};
use crate::procfs::{KernelMem, Proc};
use crate::progress;
use crate::report::svg::Series;
use crate::report::Header;
use crate::scenario::Failure;
use crate::systems::{Running, SystemId};
use crate::units;

/// Bytes in the "GB" of connections per GB (a GiB).
pub const GIB: f64 = (1u64 << 30) as f64;

/// How to step through sizes.
#[derive(Debug, Clone, Serialize)]
pub struct ConnsPlan {
    /// Total connections at each step, increasing.
    pub sizes: Vec<usize>,
    /// Most connections per client process.
    pub per_client: usize,
    /// Wait after the server holds a step's connections, before reading memory (s).
    pub settle_s: f64,
    /// Drop reclaimable slab (dentries, inodes) before each reading (needs root).
    pub drop_caches: bool,
    /// Handshakes in flight per client process.
    pub concurrency: usize,
}

/// One step's readings.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Connections open (handshake completed) after this step.
    pub conns: usize,
    /// System RSS, bytes.
    pub rss_bytes: u64,
    /// Kernel slab and socket buffers (whole machine).
    pub kernel: KernelMem,
    /// RSS of helper processes (same order as [`Running::aux`]).
    pub aux_rss_bytes: Vec<u64>,
    /// How the step's handshakes went.
    pub opened: Opened,
    /// Connections the server itself reported, when it can tell.
    pub server_seen: Option<u64>,
    /// TCP sockets in use on the machine beyond the baseline and our two per connection
    /// (other processes' sockets distort the kernel numbers).
    pub foreign_sockets: i64,
}

/// Everything `conns` measured on one system.
#[derive(Debug, Clone, Serialize)]
pub struct ConnsResult {
    /// RSS before any connection, bytes.
    pub baseline_rss_bytes: u64,
    /// Kernel counters before any connection.
    pub baseline_kernel: KernelMem,
    /// Helper RSS before any connection.
    pub baseline_aux_rss_bytes: Vec<u64>,
    /// The steps.
    pub steps: Vec<Step>,
    /// RSS against connections.
    pub user_fit: Option<Fit>,
    /// Socket slab caches (or all of Slab) against connections (both ends).
    pub kernel_fit: Option<Fit>,
    /// What `kernel_fit` fitted: `socket caches` or `Slab`.
    pub kernel_source: String,
    /// Socket buffer memory against connections (both ends).
    pub tcp_mem_fit: Option<Fit>,
    /// Helper RSS against connections, by helper name.
    pub aux_fits: Vec<(String, Option<Fit>)>,
    /// Handshakes per second over all steps.
    pub accept_rate: f64,
    /// Handshakes per CPU-second of the server and its helpers (Herald's redis-server
    /// registry) while the steps' handshakes ran.
    pub accept_per_core: Option<f64>,
    /// Connections that failed.
    pub failed: usize,
    /// Whether earlier sockets were gone before the baseline.
    pub sockets_settled: bool,
    /// Whether reclaimable slab was dropped before readings.
    pub dropped_caches: bool,
    /// The connections spoke TLS.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// What the clients' TLS handshakes negotiated (version, suite, key exchange, ALPN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_session: Option<String>,
}

/// The clients' share of kernel memory per connection, measured against the sink.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    /// Slab slope with both ends being harness sockets.
    pub total_bytes_per_conn: f64,
    /// Half of it: one client socket.
    pub client_share_bytes_per_conn: f64,
    /// Fit quality.
    pub r2: f64,
}

/// The headline numbers of one system.
#[derive(Debug, Clone, Serialize)]
pub struct Density {
    /// User-space bytes per idle connection (RSS slope).
    pub user_bytes_per_conn: Option<f64>,
    /// R² of the RSS fit.
    pub user_r2: Option<f64>,
    /// Kernel bytes per connection, server share.
    pub kernel_bytes_per_conn: Option<f64>,
    /// Kernel slab bytes per connection, both ends (loopback).
    pub kernel_total_bytes_per_conn: Option<f64>,
    /// Socket buffer bytes per connection, both ends (≈ 0 when idle).
    pub tcp_mem_bytes_per_conn: Option<f64>,
    /// R² of the kernel fit.
    pub kernel_r2: Option<f64>,
    /// How the server share was estimated: `calibrated` or `half`.
    pub kernel_method: String,
    /// What was fitted: `socket caches` (/proc/slabinfo) or `Slab`.
    pub kernel_source: String,
    /// 2^30 / (user + kernel share).
    pub conns_per_gb: Option<f64>,
    /// Handshakes per second.
    pub accept_rate: f64,
    /// Handshakes per CPU-second of the server and its helpers.
    pub accept_per_core: Option<f64>,
    /// Helper bytes per connection (Herald's Redis registry), by name.
    pub aux_bytes_per_conn: Vec<(String, f64)>,
    /// The connections spoke TLS (then `user_bytes_per_conn` is per idle TLS connection).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// TLS runs: TCP connects + full TLS handshakes + HTTP upgrades per second (the same
    /// measure as `accept_rate`, named for what it includes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshakes_per_s: Option<f64>,
}

/// CPU seconds so far of the server's processes and its helpers (0 where unreadable).
fn server_cpu_seconds(sys: &Running) -> f64 {
    sys.tree.cpu_seconds().unwrap_or(0.0)
        + sys
            .aux
            .iter()
            .map(|(_, t)| t.cpu_seconds().unwrap_or(0.0))
            .sum::<f64>()
}

fn read_aux(sys: &Running) -> Vec<u64> {
    sys.aux.iter().map(|(_, t)| t.rss().unwrap_or(0)).collect()
}

/// Runs the steps of `plan` against `sys`, opening connections through `pool`.
pub fn measure(
    sys: &Running,
    pool: &mut ClientPool,
    spec: &ClientSpec,
    plan: &ConnsPlan,
) -> Result<ConnsResult, String> {
    let name = sys.id.name();
    let proc = Proc::default();
    let sockets_settled = proc.wait_sockets_settled(Duration::from_secs(30));
    let dropped_caches = plan.drop_caches && proc.drop_slab_caches();
    std::thread::sleep(Duration::from_secs(1));
    let baseline_rss_bytes = sys.tree.rss().map_err(|e| format!("{name}: {e}"))?;
    let baseline_kernel = proc.kernel_mem().map_err(|e| e.to_string())?;
    let baseline_aux_rss_bytes = read_aux(sys);
    progress::say(format!(
        "{name}: baseline RSS {} KiB, slab {} KiB",
        units::thousands(baseline_rss_bytes / 1024),
        units::thousands(baseline_kernel.slab / 1024)
    ));
    let last = *plan.sizes.last().ok_or("no sizes")?;
    let bar = progress::bar(last as u64, &format!("{name} connections"));
    let mut steps = Vec::new();
    let mut failed = 0usize;
    let (mut ok_sum, mut secs_sum, mut cpu_sum) = (0usize, 0f64, 0f64);
    for &size in &plan.sizes {
        let add = size.saturating_sub(pool.total());
        let cpu_before = server_cpu_seconds(sys);
        let opened = pool.add(spec, add, plan.per_client)?;
        cpu_sum += (server_cpu_seconds(sys) - cpu_before).max(0.0);
        failed += opened.failed;
        ok_sum += opened.ok;
        secs_sum += opened.seconds;
        if opened.failed * 100 > add.max(1) {
            let why = pool
                .stats()
                .map(|s| format!("{:?}", s.errors))
                .unwrap_or_default();
            bar.finish_and_clear();
            return Err(format!(
                "{name}: {} of {add} connections failed at step {size}: {why}",
                opened.failed
            ));
        }
        let conns = pool.total() - failed;
        let server_seen = sys.wait_server_connections(conns as u64, Duration::from_secs(60));
        if let Some(seen) = server_seen.filter(|&s| s < conns as u64) {
            bar.finish_and_clear();
            return Err(format!(
                "{name}: clients hold {conns} connections but the server reports {seen}"
            ));
        }
        std::thread::sleep(Duration::from_secs_f64(plan.settle_s));
        if dropped_caches {
            proc.drop_slab_caches();
            std::thread::sleep(Duration::from_millis(300));
        }
        let rss = sys.tree.rss().map_err(|e| format!("{name}: {e}"))?;
        let kernel = proc.kernel_mem().map_err(|e| e.to_string())?;
        bar.set_position(size as u64);
        bar.suspend(|| {
            progress::say(format!(
                "{name}: {} conns: RSS {} KiB ({} B/conn over baseline), slab {} KiB, {} handshakes/s",
                units::thousands(conns as u64),
                units::thousands(rss / 1024),
                units::int((rss as f64 - baseline_rss_bytes as f64) / conns.max(1) as f64),
                units::thousands(kernel.slab / 1024),
                units::si(opened.rate)
            ))
        });
        let foreign_sockets =
            kernel.tcp_inuse as i64 - baseline_kernel.tcp_inuse as i64 - 2 * conns as i64;
        if foreign_sockets.unsigned_abs() * 50 > 2 * conns as u64 {
            bar.suspend(|| {
                progress::say(format!(
                    "{name}: warning: {foreign_sockets:+} TCP sockets of other processes appeared meanwhile; kernel numbers of this step are unreliable"
                ))
            });
        }
        steps.push(Step {
            conns,
            rss_bytes: rss,
            kernel,
            aux_rss_bytes: read_aux(sys),
            opened,
            server_seen,
            foreign_sockets,
        });
    }
    bar.finish_and_clear();
    let fit_of = |f: &dyn Fn(&Step) -> f64| {
        least_squares(
            &steps
                .iter()
                .map(|s| (s.conns as f64, f(s)))
                .collect::<Vec<_>>(),
        )
    };
    let user_fit = fit_of(&|s| s.rss_bytes as f64);
    let socket_slab = steps.iter().all(|s| s.kernel.socket_slab.is_some());
    let kernel_fit = if socket_slab {
        fit_of(&|s| s.kernel.socket_slab.unwrap_or(0) as f64)
    } else {
        fit_of(&|s| s.kernel.slab as f64)
    };
    let tcp_mem_fit = fit_of(&|s| s.kernel.tcp_mem as f64);
    let aux_fits = sys
        .aux
        .iter()
        .enumerate()
        .map(|(i, (n, _))| {
            (
                n.clone(),
                fit_of(&|s| s.aux_rss_bytes.get(i).copied().unwrap_or(0) as f64),
            )
        })
        .collect();
    Ok(ConnsResult {
        baseline_rss_bytes,
        baseline_kernel,
        baseline_aux_rss_bytes,
        steps,
        user_fit,
        kernel_fit,
        kernel_source: if socket_slab { "socket caches" } else { "Slab" }.into(),
        tcp_mem_fit,
        aux_fits,
        accept_rate: if secs_sum > 0.0 {
            ok_sum as f64 / secs_sum
        } else {
            0.0
        },
        accept_per_core: (cpu_sum > 0.0).then(|| ok_sum as f64 / cpu_sum),
        failed,
        sockets_settled,
        dropped_caches,
        tls: spec.target.tls.is_some(),
        tls_session: pool.tls_session().map(str::to_string),
    })
}

/// The headline numbers from a result and (optionally) the clients' calibrated share.
pub fn density(r: &ConnsResult, calibration: Option<&Calibration>) -> Density {
    let user = r.user_fit.map(|f| f.slope);
    let total = r.kernel_fit.map(|f| f.slope);
    let (kernel, method) = match (total, calibration) {
        (Some(t), Some(c)) => (Some(t - c.client_share_bytes_per_conn), "calibrated"),
        (Some(t), None) => (Some(t / 2.0), "half"),
        (None, _) => (None, "none"),
    };
    let conns_per_gb = match (user, kernel) {
        (Some(u), Some(k)) if u + k.max(0.0) > 0.0 => Some(GIB / (u + k.max(0.0))),
        (Some(u), None) if u > 0.0 => Some(GIB / u),
        _ => None,
    };
    Density {
        user_bytes_per_conn: user,
        user_r2: r.user_fit.map(|f| f.r2),
        kernel_bytes_per_conn: kernel,
        kernel_total_bytes_per_conn: total,
        tcp_mem_bytes_per_conn: r.tcp_mem_fit.map(|f| f.slope),
        kernel_r2: r.kernel_fit.map(|f| f.r2),
        kernel_method: method.into(),
        kernel_source: r.kernel_source.clone(),
        conns_per_gb,
        accept_rate: r.accept_rate,
        accept_per_core: r.accept_per_core,
        aux_bytes_per_conn: r
            .aux_fits
            .iter()
            .filter_map(|(n, f)| Some((n.clone(), f.as_ref()?.slope)))
            .collect(),
        tls: r.tls,
        tls_handshakes_per_s: r.tls.then_some(r.accept_rate),
    }
}

/// Measures the clients' share of kernel memory against the sink, with `plan`'s sizes.
pub fn calibrate(plan: &ConnsPlan) -> Result<Calibration, String> {
    progress::say("calibrating the clients' kernel share against the sink");
    let sys = crate::systems::sink::start().map_err(|e| format!("calibration: {e}"))?;
    let mut pool = ClientPool::new()?;
    let spec = ClientSpec::new(sys.target.clone());
    let r = measure(&sys, &mut pool, &spec, plan);
    pool.quit();
    sys.stop();
    let fit = r?
        .kernel_fit
        .ok_or("calibration: not enough steps for a fit")?;
    progress::say(format!(
        "calibration: {} B of kernel memory per connection with harness sockets at both ends (R² {:.4})",
        units::int(fit.slope),
        fit.r2
    ));
    Ok(Calibration {
        total_bytes_per_conn: fit.slope,
        client_share_bytes_per_conn: fit.slope / 2.0,
        r2: fit.r2,
    })
}

/// RSS (MiB) against connections, for the plot.
pub fn rss_series(name: &str, r: &ConnsResult) -> Series {
    let mut points = vec![(0.0, r.baseline_rss_bytes as f64 / 1048576.0)];
    points.extend(
        r.steps
            .iter()
            .map(|s| (s.conns as f64, s.rss_bytes as f64 / 1048576.0)),
    );
    Series {
        name: name.to_string(),
        points,
    }
}

/// The steps as a Markdown table.
pub fn steps_markdown(r: &ConnsResult) -> String {
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .map(|s| {
            vec![
                units::thousands(s.conns as u64),
                units::thousands(s.rss_bytes / 1024),
                units::int(
                    (s.rss_bytes as f64 - r.baseline_rss_bytes as f64) / s.conns.max(1) as f64,
                ),
                units::thousands(s.kernel.slab / 1024),
                s.kernel
                    .socket_slab
                    .map_or("–".into(), |b| units::thousands(b / 1024)),
                units::thousands(s.kernel.tcp_mem / 1024),
                format!("{:+}", s.foreign_sockets),
                units::si(s.opened.rate),
                s.server_seen
                    .map(units::thousands)
                    .unwrap_or_else(|| "–".into()),
            ]
        })
        .collect();
    crate::report::table(
        &[
            "connections",
            "RSS KiB",
            "B/conn over baseline",
            "slab KiB (machine)",
            "socket slab KiB",
            "TCP mem KiB",
            "other sockets",
            "handshakes/s",
            "server says",
        ],
        &rows,
    )
}

/// The `conns` JSON document.
#[derive(Debug, Serialize)]
struct ConnsReport<'a> {
    #[serde(flatten)]
    header: &'a Header,
    system: SystemInfo,
    plan: &'a ConnsPlan,
    calibration: Option<&'a Calibration>,
    #[serde(flatten)]
    density: &'a Density,
    result: &'a ConnsResult,
}

/// Name, version and notes of a measured system.
#[derive(Debug, Clone, Serialize)]
pub struct SystemInfo {
    /// Report name.
    pub name: String,
    /// Version string.
    pub version: String,
    /// Facts about the run.
    pub notes: Vec<String>,
}

/// The headline numbers as Markdown bullet points.
pub fn density_markdown(d: &Density, calibration: Option<&Calibration>) -> String {
    let mut s = String::new();
    s += &format!(
        "- user-space bytes per idle {}connection (RSS slope): **{}** (R² {})\n",
        if d.tls { "TLS " } else { "" },
        units::opt(d.user_bytes_per_conn, units::int),
        d.user_r2.map_or("–".into(), |r| format!("{r:.5}"))
    );
    let how = match (d.kernel_method.as_str(), calibration) {
        ("calibrated", Some(c)) => format!(
            "minus the clients' {} B measured against the sink",
            units::int(c.client_share_bytes_per_conn)
        ),
        _ => "halved".to_string(),
    };
    s += &format!(
        "- kernel bytes per connection, server share: **{}** ({} B of {} for both ends of a loopback connection, {how})\n",
        units::opt(d.kernel_bytes_per_conn, units::int),
        units::opt(d.kernel_total_bytes_per_conn, units::int),
        d.kernel_source,
    );
    s += &format!(
        "- socket buffers: {} B per connection, both ends (idle connections should hold none)\n",
        units::opt(d.tcp_mem_bytes_per_conn, units::int)
    );
    s += &format!(
        "- connections per GiB (user + kernel share): **{}**\n",
        units::opt(d.conns_per_gb, units::si)
    );
    match d.tls_handshakes_per_s {
        Some(rate) => {
            s += &format!(
                "- TLS handshakes: **{}**/s (TCP connect, full TLS handshake and HTTP upgrade)\n",
                units::si(rate)
            )
        }
        None => {
            s += &format!(
                "- accept rate: **{}** handshakes/s\n",
                units::si(d.accept_rate)
            )
        }
    }
    if let Some(per_core) = d.accept_per_core {
        s += &format!(
            "- handshakes per CPU-second of the server and its helpers: **{}**\n",
            units::si(per_core)
        );
    }
    for (n, b) in &d.aux_bytes_per_conn {
        s += &format!(
            "- {n}: {} bytes per connection (not counted above)\n",
            units::int(*b)
        );
    }
    s
}

/// Runs `herald-bench conns`.
pub fn run(a: &crate::cli::ConnsArgs) -> Result<(), Failure> {
    let plan = a.steps.plan().map_err(Failure::Usage)?;
    if a.tls && a.url.is_some() {
        return Err(Failure::Usage(
            "--tls starts the system with the run's certificate; it does not combine with --url"
                .into(),
        ));
    }
    let mut header = Header::new("conns");
    let external = a.url.is_some();
    let id = if external {
        SystemId::External
    } else {
        SystemId::parse(&a.system).map_err(Failure::Usage)?
    };
    if id == SystemId::Herald {
        crate::systems::herald::find_edge_bin(a.edge.edge_bin.as_deref())?;
    }
    let calibration = if a.steps.no_calibrate {
        None
    } else {
        Some(calibrate(&plan)?)
    };
    let cert = if a.tls {
        Some(crate::tls::RunCert::generate()?)
    } else {
        None
    };
    let sys = match &a.url {
        Some(url) => super::external(url, a.pid, a.jwt_secret.clone())?,
        None => super::start(
            id,
            a.kind,
            &a.edge,
            a.nchan_workers,
            *plan.sizes.last().unwrap_or(&0),
            cert.as_ref(),
        )?,
    };
    header
        .versions
        .insert(sys.id.name().to_string(), sys.version.clone());
    let info = SystemInfo {
        name: sys.id.name().to_string(),
        version: sys.version.clone(),
        notes: sys.notes.clone(),
    };
    let mut pool = ClientPool::new()?;
    let mut spec = ClientSpec::new(sys.target.clone());
    spec.concurrency = plan.concurrency;
    let result = measure(&sys, &mut pool, &spec, &plan);
    pool.quit();
    sys.stop();
    let result = result?;
    let d = density(&result, calibration.as_ref());
    println!(
        "{}",
        crate::report::text_table(
            &[
                "system",
                "user B/conn",
                "kernel B/conn",
                "conns/GiB",
                if d.tls {
                    "TLS handshakes/s"
                } else {
                    "accept/s"
                },
            ],
            &[vec![
                info.name.clone(),
                units::opt(d.user_bytes_per_conn, units::int),
                units::opt(d.kernel_bytes_per_conn, units::int),
                units::opt(d.conns_per_gb, units::si),
                units::si(d.accept_rate),
            ]],
        )
    );
    if let Some(path) = &a.output.json {
        crate::report::write_json(
            path,
            &ConnsReport {
                header: &header,
                system: info.clone(),
                plan: &plan,
                calibration: calibration.as_ref(),
                density: &d,
                result: &result,
            },
        )?;
    }
    if let Some(dir) = &a.output.out {
        let mut md = header.markdown(&format!("herald-bench conns: {}", info.name));
        md += &format!("System: {} — {}\n\n", info.version, info.notes.join("; "));
        if let Some(t) = &result.tls_session {
            md += &format!("Clients over TLS: {t} (rustls, full handshakes, no resumption).\n\n");
        }
        md += &density_markdown(&d, calibration.as_ref());
        md += "\n";
        md += &steps_markdown(&result);
        md += "\n![RSS against connections](rss.svg)\n";
        let svg = crate::report::svg::line_chart(
            "RSS against idle connections",
            "connections",
            "RSS (MiB)",
            false,
            &[rss_series(&info.name, &result)],
        );
        crate::report::write_out(dir, &md, &[("rss.svg".into(), svg)])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(points: &[(usize, u64, u64)]) -> ConnsResult {
        ConnsResult {
            baseline_rss_bytes: 1_000_000,
            baseline_kernel: KernelMem::default(),
            baseline_aux_rss_bytes: vec![],
            steps: points
                .iter()
                .map(|&(c, rss, slab)| Step {
                    conns: c,
                    rss_bytes: rss,
                    kernel: KernelMem {
                        slab,
                        ..KernelMem::default()
                    },
                    aux_rss_bytes: vec![],
                    opened: Opened::default(),
                    server_seen: None,
                    foreign_sockets: 0,
                })
                .collect(),
            user_fit: least_squares(
                &points
                    .iter()
                    .map(|p| (p.0 as f64, p.1 as f64))
                    .collect::<Vec<_>>(),
            ),
            kernel_fit: least_squares(
                &points
                    .iter()
                    .map(|p| (p.0 as f64, p.2 as f64))
                    .collect::<Vec<_>>(),
            ),
            kernel_source: "Slab".into(),
            tcp_mem_fit: None,
            aux_fits: vec![],
            accept_rate: 5000.0,
            accept_per_core: Some(4000.0),
            failed: 0,
            sockets_settled: true,
            dropped_caches: false,
            tls: false,
            tls_session: None,
        }
    }

    #[test]
    fn density_uses_the_calibrated_client_share() {
        // 1,000 B user and 10,000 B kernel (both ends) per connection.
        let r = result(&[(1000, 2_000_000, 10_000_000), (2000, 3_000_000, 20_000_000)]);
        let half = density(&r, None);
        assert!((half.user_bytes_per_conn.unwrap() - 1000.0).abs() < 1e-6);
        assert!((half.kernel_bytes_per_conn.unwrap() - 5000.0).abs() < 1e-6);
        assert_eq!(half.kernel_method, "half");
        assert!((half.conns_per_gb.unwrap() - GIB / 6000.0).abs() < 1e-6);
        let cal = Calibration {
            total_bytes_per_conn: 11_000.0,
            client_share_bytes_per_conn: 5_500.0,
            r2: 1.0,
        };
        let c = density(&r, Some(&cal));
        assert!((c.kernel_bytes_per_conn.unwrap() - 4500.0).abs() < 1e-6);
        assert_eq!(c.kernel_method, "calibrated");
        assert!(half.tls_handshakes_per_s.is_none());
        let plain = serde_json::to_value(&half).unwrap();
        assert!(plain.get("tls").is_none() && plain.get("tls_handshakes_per_s").is_none());
        assert!(density_markdown(&half, None).contains("- accept rate: **5.0k** handshakes/s"));
        assert!(density_markdown(&half, None)
            .contains("CPU-second of the server and its helpers: **4.0k**"));
        let mut tls = r.clone();
        tls.tls = true;
        let t = density(&tls, Some(&cal));
        assert_eq!(t.tls_handshakes_per_s, Some(5000.0));
        assert_eq!(t.accept_rate, 5000.0, "accept_rate stays, unchanged");
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["tls"], true);
        assert_eq!(v["tls_handshakes_per_s"], 5000.0);
        let md = density_markdown(&t, Some(&cal));
        assert!(md.contains("per idle TLS connection"), "{md}");
        assert!(md.contains("TLS handshakes: **5.0k**/s"), "{md}");
        let md = steps_markdown(&r);
        assert_eq!(md.lines().count(), 4);
        assert_eq!(rss_series("x", &r).points.len(), 3);
    }
}
