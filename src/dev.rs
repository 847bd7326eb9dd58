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
    /// Pushes kept per user for missed-push recovery (the processor's `history_size`;
    /// 0 = history off).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub history_size: u32,
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
    // The demo page is served from the admin address: its origin is always allowed.
    let demo_origin = format!("http://{}", a.admin);
    let mut origins = vec![demo_origin];
    origins.extend(
        a.allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty()),
    );
    let mut s = Settings::defaults(KEYS);
    let mut set = |k: &str, v: String| s.set(k, v, Source::Flag(k.replace('_', "-")));
    let settings = [
        ("listen", a.listen.to_string()),
        ("admin_listen", a.admin.to_string()),
        ("jwt_secret", jwt_secret.clone()),
        ("delivery_secret", delivery_secret.clone()),
        ("delivery_base_port", "0".into()),
        ("node_id", "dev-edge".into()),
        ("drain_window", "2s".into()),
        ("close_grace", "1s".into()),
        ("shards", a.shards.unwrap_or(0).to_string()),
        ("expected_connections", "10000".into()),
        ("allowed_origins", origins.join(",")),
    ];
    // With --tls: a fresh self-signed certificate in a directory of this run.
    let tls_dir = std::env::temp_dir().join(format!("herald-dev-tls-{}", std::process::id()));
    let mut settings = settings.to_vec();
    if a.tls {
        let cert = match herald_edge::tls::dev_cert::DevCert::self_signed(&[
            "localhost",
            "127.0.0.1",
            "::1",
        ]) {
            Ok(c) => c,
            Err(e) => return fail(1, &e),
        };
        let files = match cert.write(&tls_dir, "herald-dev") {
            Ok(f) => f,
            Err(e) => return fail(1, &format!("writing the dev certificate: {e}")),
        };
        settings.push(("tls_listen", a.tls_listen.to_string()));
        settings.push(("tls_cert_file", files.cert.display().to_string()));
        settings.push(("tls_key_file", files.key.display().to_string()));
    }
    for (k, v) in settings {
        if let Err(e) = set(k, v) {
            return fail(64, &e.to_string());
        }
    }
    let edge_cfg = match EdgeConfig::from_settings(&s) {
        Ok(c) => c,
        Err(e) => return fail(64, &e.to_string()),
    };
    let demo = match crate::demo::extension(
        format!("http://{}", edge_cfg.listen),
        jwt_secret.clone(),
        &bootstrap,
    ) {
        Ok(d) => d,
        Err(e) => return fail(1, &e),
    };
    let edge = match tokio::task::block_in_place(|| {
        herald_edge::start_with(
            edge_cfg,
            EdgeOptions {
                registry: Some(registry.clone()),
                admin_extension: Some(demo),
                ..Default::default()
            },
        )
    }) {
        Ok(e) => e,
        Err(e) => return fail(1, &format!("edge: {e}")),
    };

    let mut pcfg = ProcessorConfig::defaults();
    pcfg.kafka.bootstrap = bootstrap.clone();
    pcfg.kafka.group_id = "herald-dev".into();
    // librdkafka's mock brokers hold an empty fetch for the full wait; keep it short.
    pcfg.kafka.fetch_wait_max = Duration::from_millis(5);
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
    let ws = format!("ws://{}/ws", edge.client_addr);
    let sse = format!("http://{}/sse", edge.client_addr);
    let tls_urls = edge.tls_addr.map(|t| {
        (
            format!("wss://{t}/ws"),
            format!("https://{t}/sse"),
            tls_dir.join("herald-dev.crt"),
        )
    });
    let admin = format!("http://{}", edge.admin_addr);
    let demo = format!("{admin}/demo");
    println!("Herald dev is running (Ctrl-C stops it).");
    println!("  demo        {demo}  (open it in a browser)");
    println!("  edge        {ws}  {sse}  ({} shards)", edge.shards);
    if let Some((wss, sse_tls, cert)) = &tls_urls {
        println!(
            "  edge (TLS)  {wss}  {sse_tls}  (self-signed certificate {})",
            cert.display()
        );
    }
    println!("  admin       {admin}/stats  {admin}/metrics (edge, registry and processor metrics)");
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
        "HERALD_READY ws={ws} sse={sse} kafka={bootstrap} admin={admin} jwt_secret={jwt_secret} demo={demo}{tls_fields}"
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
    tokio::task::block_in_place(|| edge.shutdown());
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
