//! `herald dev`: the whole system in one process on embedded defaults — an embedded Kafka
//! (librdkafka's mock cluster on loopback, topics created), the in-process registry (or Redis
//! with `--redis`), an edge with all shards and a processor — then one machine-readable
//! `HERALD_READY …` line. Ctrl-C stops it cleanly: the processor commits, the edge closes its
//! connections and removes their registry records.
//!
//! Browsers: the edge's Origin allow-list holds the demo page's origin (the admin address,
//! see `demo.rs`) and whatever `--allowed-origins` adds, so a page on one of those origins
//! can open WebSockets and EventSources (SSE answers them with `Access-Control-Allow-Origin`);
//! pages on any other origin are refused with 403, as in production.
//!
//! `--edges N` runs N edges in the process, sharing the registry and the processor, edge `i`
//! on the `--listen`/`--admin` (and `--tls-listen`) ports + `i − 1`: drain one
//! (`POST <admin>/admin/drain`) and its clients move to another edge — a client given all the
//! edges (`urls` in the JavaScript client) resumes there from its last position.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use herald_edge::auth::jwt::{issue_hs256, Claims};
use herald_edge::config::{EdgeConfig, Settings, Source, KEYS};
use herald_edge::EdgeOptions;
use herald_processor::{Processor, ProcessorConfig};
use herald_protocol::kafka::{TOPIC_DEAD, TOPIC_HIGH, TOPIC_LOW, TOPIC_NORMAL};
use herald_registry::{RedisOptions, Registry};
use rdkafka::mocking::MockCluster;

/// Arguments of `herald dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Client address of the edge (WebSocket `/ws`, SSE `/sse`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin address of the edge (`/healthz`, `/readyz`, `/stats`, `/metrics`).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
    /// HS256 secret clients' tokens are signed with (default: random, printed).
    #[arg(long, env = "HERALD_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    /// Registry URL (`redis://…` or `redis-cluster://…`); default: in-process.
    #[arg(long)]
    pub redis: Option<String>,
    /// Edge shards (default: all CPUs).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Partitions per push topic in the embedded Kafka.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Origins of your web app allowed to connect, comma-separated exact
    /// `scheme://host[:port]` (e.g. `http://localhost:3000`); the demo page's origin is
    /// always allowed.
    #[arg(long, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Also listen with TLS (`wss://`, `https://`) on `--tls-listen`, with a self-signed
    /// certificate for localhost/127.0.0.1/::1 generated at start (its path is printed:
    /// `curl --cacert <path>`).
    #[arg(long)]
    pub tls: bool,
    /// TLS client address of the edge (with `--tls`).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub tls_listen: SocketAddr,
    /// Edges to run (1–8), sharing the registry and the processor. Edge `i` listens on the
    /// `--listen`, `--admin` and `--tls-listen` ports + `i − 1` (8081, 9091, … by default);
    /// `HERALD_READY` names edge 1 as `ws=`, `sse=`, `admin=`, … and edge `i` as `ws<i>=`,
    /// `sse<i>=`, `admin<i>=`, `demo<i>=` (and `wss<i>=`, `sse_tls<i>=` with `--tls`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub edges: u16,
    /// Longest life of a connection (e.g. `10s`), after which the edge asks the client to
    /// reconnect — without jitter, to watch reconnect asks happen; default the edge's 30 min
    /// minus up to 3 min.
    #[arg(long)]
    pub max_lifetime: Option<String>,
    /// Pushes kept per user for missed-push recovery (the processor's `history_size`;
    /// 0 = history off).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub history_size: u32,
    /// The processor's `fetch_wait_max` against the embedded Kafka (e.g. `1ms`). librdkafka's
    /// mock broker holds a fetch on an empty partition for the whole wait even when records
    /// arrive meanwhile (a real broker answers at once), so this adds up to its value to every
    /// push's latency; shorter costs more idle CPU (about 7 % of a core at 5ms, 16 % at 1ms).
    #[arg(long, default_value = "5ms", value_parser = herald_edge::config::parse_duration)]
    pub fetch_wait_max: Duration,
}

/// `addr` with its port moved up by `by` (port 0, "any", stays 0).
fn port_plus(addr: SocketAddr, by: u16) -> Result<SocketAddr, String> {
    if addr.port() == 0 {
        return Ok(addr);
    }
    let port = addr
        .port()
        .checked_add(by)
        .ok_or_else(|| format!("no port {by} above {addr} for edge {}", by + 1))?;
    Ok(SocketAddr::new(addr.ip(), port))
}

/// Suffix of edge `i`'s `HERALD_READY` field names: none for edge 1, `i` for the others.
fn field_suffix(i: u16) -> String {
    if i == 0 {
        String::new()
    } else {
        (i + 1).to_string()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).expect("the OS random source works");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("herald dev: {msg}");
    ExitCode::from(code)
}

/// Runs the whole system until Ctrl-C / SIGTERM.
pub(crate) fn run(a: &DevArgs) -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,rdkafka=warn,librdkafka=warn"),
    )
    .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(dev(a))
}

async fn dev(a: &DevArgs) -> ExitCode {
    // Kafka: librdkafka's mock cluster, real protocol on loopback.
    let cluster = match MockCluster::new(1) {
        Ok(c) => c,
        Err(e) => return fail(1, &format!("embedded Kafka: {e}")),
    };
    for (topic, partitions) in [
        (TOPIC_HIGH, a.partitions),
        (TOPIC_NORMAL, a.partitions),
        (TOPIC_LOW, a.partitions),
        (TOPIC_DEAD, 1),
    ] {
        if let Err(e) = cluster.create_topic(topic, partitions, 1) {
            return fail(1, &format!("creating topic {topic}: {e}"));
        }
    }
    let bootstrap = cluster.bootstrap_servers();

    let registry = match &a.redis {
        None => Registry::in_process(),
        Some(url) => match Registry::connect(url, &RedisOptions::default()).await {
            Ok(r) => r,
            Err(e) => return fail(69, &format!("registry {url}: {e}")),
        },
    };

    let jwt_secret = a.jwt_secret.clone().unwrap_or_else(|| random_hex(16));
    let delivery_secret = random_hex(24);
    // Each edge's client, admin and TLS addresses: edge i on the given ports + i.
    let mut addrs = Vec::new();
    for i in 0..a.edges {
        let shifted = port_plus(a.listen, i)
            .and_then(|listen| Ok((listen, port_plus(a.admin, i)?, port_plus(a.tls_listen, i)?)));
        match shifted {
            Ok(t) => addrs.push(t),
            Err(e) => return fail(64, &e),
        }
    }
    // The demo pages are served from the admin addresses: their origins are always allowed.
    let mut origins: Vec<String> = addrs
        .iter()
        .map(|(_, admin, _)| format!("http://{admin}"))
        .collect();
    origins.extend(
        a.allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty()),
    );
    // With --tls: a fresh self-signed certificate in a directory of this run, for every edge.
    let tls_dir = std::env::temp_dir().join(format!("herald-dev-tls-{}", std::process::id()));
    let tls_files = if a.tls {
        let cert = match herald_edge::tls::dev_cert::DevCert::self_signed(&[
            "localhost",
            "127.0.0.1",
            "::1",
        ]) {
            Ok(c) => c,
            Err(e) => return fail(1, &e),
        };
        match cert.write(&tls_dir, "herald-dev") {
            Ok(f) => Some(f),
            Err(e) => return fail(1, &format!("writing the dev certificate: {e}")),
        }
    } else {
        None
    };
    let mut edge_cfgs = Vec::new();
    for (i, (listen, admin, tls_listen)) in addrs.iter().enumerate() {
        let node_id = if i == 0 {
            "dev-edge".to_string()
        } else {
            format!("dev-edge-{}", i + 1)
        };
        let mut settings = vec![
            ("listen", listen.to_string()),
            ("admin_listen", admin.to_string()),
            ("jwt_secret", jwt_secret.clone()),
            ("delivery_secret", delivery_secret.clone()),
            ("delivery_base_port", "0".into()),
            ("node_id", node_id),
            ("drain_window", "2s".into()),
            ("close_grace", "1s".into()),
            ("shards", a.shards.unwrap_or(0).to_string()),
            ("expected_connections", "10000".into()),
            ("allowed_origins", origins.join(",")),
        ];
        if let Some(lifetime) = &a.max_lifetime {
            settings.push(("max_lifetime", lifetime.clone()));
            settings.push(("lifetime_jitter", "0s".into()));
        }
        if let Some(files) = &tls_files {
            settings.push(("tls_listen", tls_listen.to_string()));
            settings.push(("tls_cert_file", files.cert.display().to_string()));
            settings.push(("tls_key_file", files.key.display().to_string()));
        }
        let mut s = Settings::defaults(KEYS);
        for (k, v) in settings {
            if let Err(e) = s.set(k, v, Source::Flag(k.replace('_', "-"))) {
                return fail(64, &e.to_string());
            }
        }
        match EdgeConfig::from_settings(&s) {
            Ok(c) => edge_cfgs.push(c),
            Err(e) => return fail(64, &e.to_string()),
        }
    }
    let edge_urls: Vec<String> = edge_cfgs
        .iter()
        .map(|c| format!("http://{}", c.listen))
        .collect();
    // Dropping a started edge shuts it down: an edge that fails to start stops the others.
    let mut edges = Vec::new();
    for (i, edge_cfg) in edge_cfgs.into_iter().enumerate() {
        // The demo page on edge i's admin address connects to edge i first, then the others.
        let mut urls = edge_urls.clone();
        urls.rotate_left(i);
        let demo = match crate::demo::extension(urls, jwt_secret.clone(), &bootstrap) {
            Ok(d) => d,
            Err(e) => return fail(1, &e),
        };
        match tokio::task::block_in_place(|| {
            herald_edge::start_with(
                edge_cfg,
                EdgeOptions {
                    registry: Some(registry.clone()),
                    admin_extension: Some(demo),
                    ..Default::default()
                },
            )
        }) {
            Ok(e) => edges.push(e),
            Err(e) => return fail(1, &format!("edge {}: {e}", i + 1)),
        }
    }
    let mut pcfg = ProcessorConfig::defaults();
    pcfg.kafka.bootstrap = bootstrap.clone();
    pcfg.kafka.group_id = "herald-dev".into();
    // librdkafka's mock brokers hold an empty fetch for the full wait; keep it short.
    pcfg.kafka.fetch_wait_max = a.fetch_wait_max;
    pcfg.delivery.secret = delivery_secret.into_bytes();
    // One process, one metrics recorder: the edge's admin `/metrics` shows every component.
    pcfg.metrics_listen = None;
    pcfg.redis = a.redis.clone();
    // The edge heartbeats its membership right after start; read it promptly.
    pcfg.delivery.edges_refresh = Duration::from_millis(500);
    pcfg.history.size = a.history_size;
    let processor = match Processor::start(pcfg, registry.clone()).await {
        Ok(p) => p,
        Err(e) => return fail(1, &format!("processor: {e}")),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let processor_task = tokio::spawn(processor.run(async {
        let _ = stop_rx.await;
    }));

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let sample = issue_hs256(
        jwt_secret.as_bytes(),
        &Claims {
            sub: "alice".into(),
            did: None,
            exp: now + 3600,
            nbf: None,
            iss: None,
            aud: None,
        },
    );
    let mut ready_extra = String::new();
    let mut admins = Vec::new();
    println!("Herald dev is running (Ctrl-C stops it).");
    for (i, edge) in edges.iter().enumerate() {
        let ws = format!("ws://{}/ws", edge.client_addr);
        let sse = format!("http://{}/sse", edge.client_addr);
        let admin = format!("http://{}", edge.admin_addr);
        let demo = format!("{admin}/demo");
        let name = if edges.len() == 1 {
            String::new()
        } else {
            format!(" {}", i + 1)
        };
        println!("  demo{name:<8}{demo}  (open it in a browser)");
        println!("  edge{name:<8}{ws}  {sse}  ({} shards)", edge.shards);
        if let Some(t) = edge.tls_addr {
            println!(
                "  {:<12}wss://{t}/ws  https://{t}/sse  (self-signed certificate {})",
                format!("edge{name} (TLS)"),
                tls_dir.join("herald-dev.crt").display()
            );
        }
        println!(
            "  admin{name:<7}{admin}/stats  {admin}/metrics (edge, registry and processor metrics)"
        );
        if edges.len() > 1 {
            println!("              POST {admin}/admin/drain moves its clients to the other edges");
        }
        let n = field_suffix(i as u16);
        if i > 0 {
            ready_extra.push_str(&format!(
                " ws{n}={ws} sse{n}={sse} admin{n}={admin} demo{n}={demo}"
            ));
            if let Some(t) = edge.tls_addr {
                ready_extra.push_str(&format!(" wss{n}=wss://{t}/ws sse_tls{n}=https://{t}/sse"));
            }
        }
        admins.push((ws, sse, admin, demo));
    }
    let (ws, sse, admin, demo) = admins.swap_remove(0);
    let tls_urls = edges[0].tls_addr.map(|t| {
        (
            format!("wss://{t}/ws"),
            format!("https://{t}/sse"),
            tls_dir.join("herald-dev.crt"),
        )
    });
    println!("  kafka       {bootstrap} (embedded mock cluster; topics herald.push.{{high,normal,low}}, herald.push.dead)");
    println!(
        "  registry    {}",
        a.redis.as_deref().unwrap_or("in-process")
    );
    println!("  processor   consumer group herald-dev");
    println!("  JWT secret  {jwt_secret}");
    println!(
        "  origins     {} (pages allowed to connect; add yours with --allowed-origins)",
        origins.join(" ")
    );
    println!();
    println!("Try it:");
    println!("  curl -N '{sse}?access_token={sample}'");
    if let Some((_, sse_tls, cert)) = &tls_urls {
        println!(
            "  curl -N --cacert {} '{sse_tls}?access_token={sample}'",
            cert.display()
        );
    }
    println!("  herald send --kafka {bootstrap} --user alice 'hello'");
    println!("  (tokens for other users: herald token --jwt-secret {jwt_secret} --user bob)");
    let tls_fields = tls_urls
        .as_ref()
        .map(|(wss, sse_tls, cert)| {
            format!(" wss={wss} sse_tls={sse_tls} tls_cert={}", cert.display())
        })
        .unwrap_or_default();
    println!(
        "HERALD_READY ws={ws} sse={sse} kafka={bootstrap} admin={admin} jwt_secret={jwt_secret} demo={demo}{tls_fields}{ready_extra}"
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();

    wait_for_signal().await;
    log::info!("stopping: processor commits, edge closes connections");
    let _ = stop_tx.send(());
    match processor_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("processor stopped with an error: {e}"),
        Err(e) => log::warn!("processor task: {e}"),
    }
    tokio::task::block_in_place(|| {
        for edge in edges {
            edge.shutdown();
        }
    });
    drop(cluster);
    if a.tls {
        let _ = std::fs::remove_dir_all(&tls_dir);
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_i_uses_the_ports_plus_i_and_any_port_stays_any() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(port_plus(a, 0).unwrap(), a);
        assert_eq!(port_plus(a, 1).unwrap().to_string(), "127.0.0.1:8081");
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(port_plus(any, 3).unwrap(), any);
        let top: SocketAddr = "127.0.0.1:65535".parse().unwrap();
        assert!(port_plus(top, 1).is_err());
    }

    #[test]
    fn ready_fields_of_edge_1_keep_their_names() {
        assert_eq!(field_suffix(0), "");
        assert_eq!(field_suffix(1), "2");
        assert_eq!(field_suffix(7), "8");
    }
}
