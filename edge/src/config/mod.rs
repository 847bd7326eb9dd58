//! Edge configuration: the key table, typed [`EdgeConfig`], and validation.
//!
//! Values come in layers (defaults < TOML file < `HERALD_*` env < flags, see `herald_settings`);
//! [`EdgeConfig::from_settings`] parses every key and cross-checks them, so a bad value is
//! reported once, naming its key, before any port is bound.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use herald_settings::{parse_bytes, parse_duration, ConfigError, Key, Settings, Source};

use crate::auth::jwt::JwtAlgorithm;
use crate::conn::proxy_header::{ProxyMode, ProxyPolicy};
use crate::tls::certs::CertError;
use crate::tls::{CertFiles, TlsFiles, TlsSettings, TlsVersion};

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "HERALD_";

macro_rules! keys {
    ($( $name:literal = $default:literal : $help:literal ;)*) => {
        /// Every edge setting: name, embedded default, help.
        pub const KEYS: &[Key] = &[ $( Key { name: $name, default: $default, help: $help } ),* ];
    };
}

keys! {
    "listen" = "0.0.0.0:8080" : "Client address (WebSocket `/ws`, SSE `/sse`, `/healthz`); every shard binds it with SO_REUSEPORT. Port 0 picks a free port.";
    "tls_listen" = "" : "TLS client address (`wss://…/ws`, `https://…/sse`), beside the plaintext `listen`; every shard binds it with SO_REUSEPORT. Empty = no TLS listener. Needs tls_cert_file and tls_key_file. Port 0 picks a free port.";
    "tls_cert_file" = "" : "PEM certificate chain of the TLS listener (leaf first); served to clients without SNI or with a name no tls_sni_certs entry is for.";
    "tls_key_file" = "" : "PEM private key of tls_cert_file (PKCS#8, SEC1 or PKCS#1 RSA).";
    "tls_sni_certs" = "" : "Extra certificates chosen by SNI: comma-separated `name=cert.pem:key.pem`; each certificate must be valid for its name.";
    "tls_min_version" = "1.2" : "Oldest TLS version accepted: 1.2 or 1.3.";
    "tls_reload_check" = "10s" : "How often the certificate and key files are checked for changes (they are also reloaded on SIGHUP). A reload that fails keeps the old certificates; open connections are never affected. 0 = only on SIGHUP.";
    "proxy_protocol" = "none" : "PROXY protocol on the client port (behind a TCP load balancer): none, v1, v2 or any. A connection from proxy_protocol_from must begin with a header of that version (else it is closed); from anyone else a header is refused. See docs/operations.md.";
    "proxy_protocol_from" = "" : "Comma-separated CIDRs (IPv4/IPv6; a bare address is one host) of the load balancers that may send a PROXY header. Required when proxy_protocol is not none.";
    "admin_listen" = "127.0.0.1:9090" : "Admin HTTP address: /healthz, /readyz, /stats, /metrics. Port 0 picks a free port.";
    "shards" = "0" : "Number of shards (executors, one per core, pinned). 0 = all online CPUs.";
    "node_id" = "" : "This edge's id in the registry. Empty = `edge-<hostname>-<client port>`.";
    "delivery_listen_ip" = "127.0.0.1" : "IP the per-shard delivery ports bind to (processors connect here).";
    "delivery_base_port" = "7100" : "Shard i listens for processors on delivery_base_port + i. 0 = pick a free consecutive range.";
    "delivery_advertise_host" = "" : "Host processors use to reach the delivery ports (registered in the registry). Empty = delivery_listen_ip.";
    "delivery_secret" = "" : "Shared secret of the delivery port's HMAC handshake. Empty = random per start (printed; only for development).";
    "delivery_max_frame" = "1052672" : "Largest delivery frame accepted from a processor, bytes (payload cap + headers).";
    "delivery_max_pending" = "64" : "Delivery-port connections per shard that may be waiting to authenticate at once; more are closed on accept.";
    "io_memory" = "512KiB" : "glommio io_memory per shard (locked memory; the process limit RLIMIT_MEMLOCK must cover all shards).";
    "ring_depth" = "128" : "io_uring ring depth per shard.";
    "timer_tick" = "100ms" : "Resolution of each shard's timer wheel (heartbeats, deadlines, lifetimes).";
    "max_head_bytes" = "8192" : "Largest HTTP request head accepted in a handshake; larger → 431.";
    "handshake_timeout" = "10s" : "Deadline for a complete handshake including authentication; then the connection is closed. Also the listeners' `TCP_DEFER_ACCEPT`: a connection is accepted once its first bytes arrive (a silent one after about this long).";
    "allowed_origins" = "" : "Comma-separated exact Origin allow-list (scheme://host[:port]); a listed origin is also what may authenticate with cookies. Empty = any Origin may connect with a header or query token, but a request carrying Origin (even `null`) that authenticates with a cookie gets 403. `null` never matches.";
    "jwt_algorithm" = "HS256" : "Pinned JWT algorithm: HS256 (jwt_secret) or RS256/ES256 (jwt_public_key_file).";
    "jwt_secret" = "" : "HS256 secret. JWT auth is on when this or jwt_public_key_file is set.";
    "jwt_public_key_file" = "" : "PEM public key for RS256/ES256.";
    "jwt_issuer" = "" : "Required `iss` claim (empty = not checked).";
    "jwt_audience" = "" : "Required audience: the token's `aud` must be this string or an array containing it (empty = not checked).";
    "jwt_leeway" = "5s" : "Clock leeway for exp/nbf (at most 30s).";
    "jwt_cookie" = "herald_token" : "Cookie that may carry the JWT (besides `Authorization: Bearer` and `?access_token=`); used only by requests without Origin or from an origin in allowed_origins, else 403.";
    "session_cookie_secret" = "" : "HMAC secret of signed session cookies; the method is on when set.";
    "insecure_user_param" = "off" : "`on` = benchmarks and local experiments only: a request's `?user=<id>` (and optional `&device=<id>`) is trusted as its identity, with no credential — anyone who can connect is whoever they say. Refused unless `listen` (and `tls_listen`, if set) is a loopback address; a warning is logged at start. Other methods, when configured, are tried first.";
    "session_cookie_name" = "herald_session" : "Name of the signed session cookie; like jwt_cookie, used only by requests without Origin or from an origin in allowed_origins, else 403.";
    "ping_interval" = "30s" : "WebSocket ping period (SSE sends a comment keep-alive instead, see sse_keepalive).";
    "pong_timeout" = "10s" : "Close a WebSocket when no pong arrived this long after a ping.";
    "sse_keepalive" = "15s" : "Period of SSE comment keep-alives.";
    "tcp_user_timeout" = "40s" : "TCP_USER_TIMEOUT on client sockets: unacknowledged data older than this kills the connection.";
    "max_client_frame" = "4096" : "Largest WebSocket frame a client may send (control traffic only); larger → close 1009.";
    "outbound_queue_bytes" = "65536" : "Per-connection outbound queue; overflow closes the connection as a slow consumer. A single message always fits an empty queue.";
    "dedupe_window" = "60s" : "A push written to a connection is not written to it again if it arrives again within this window (a processor retry after a late answer, a re-consumed record after a rebalance or crash). Covers the processor's request_timeout × max_attempts.";
    "dedupe_capacity" = "100000" : "Most pushes per shard remembered for dedupe_window (about 60 bytes each); a full table forgets its oldest early. 0 = no de-duplication.";
    "push_rate_per_conn" = "off" : "Per-connection push rate limit, `<pushes>/<period>` (e.g. `3/2s`, Zuul Push's limit) or off. Targeted pushes beyond it are answered `rate_limited` (final, counted, not retried); broadcasts are not limited.";
    "push_burst_per_conn" = "0" : "Burst of push_rate_per_conn: pushes a quiet connection may take at once. 0 = the rate's count.";
    "close_grace" = "5s" : "After asking a client to close (reconnect request, replaced, draining), wait this long for it to close first, then force-close.";
    "max_lifetime" = "30m" : "Longest life of a connection; at its end the client is asked to reconnect.";
    "lifetime_jitter" = "3m" : "Each connection's lifetime is max_lifetime − uniform(0, lifetime_jitter), spreading reconnects.";
    "registry_slack" = "60s" : "Registry record TTL = max_lifetime + close_grace + registry_slack, so live records never need refreshing.";
    "redis" = "" : "Registry URL: redis://host:port (single node) or redis-cluster://host:port[?node=host:port…]. Empty = in-process registry (single node).";
    "registry_heartbeat" = "2s" : "Edge membership heartbeat period in the registry.";
    "recovery_concurrency" = "64" : "History reads (missed-push recovery of clients resuming from a position) in flight at once per edge; more wait their turn, within recovery_timeout. 0 = no recovery (resuming clients are told `recovered: false`, reason `disabled`).";
    "recovery_timeout" = "3s" : "Longest a resuming client waits for its history read (queueing included); then it is told `recovered: false`, reason `unavailable`, and gets its live pushes.";
    "drain_window" = "30s" : "A drain (SIGTERM or POST /admin/drain) spreads reconnect requests over this window, then force-closes what is left. A second SIGTERM shortens it.";
    "drain_rate" = "1000" : "Most reconnect requests per second per edge during a drain (all shards together).";
    "max_devices_per_user" = "64" : "Most connections (devices) one user may hold on one shard; a handshake for another device beyond it gets 429 (a token holder cannot open unlimited connections under distinct device ids). A reconnect of an existing device replaces it and always fits. 0 = no cap.";
    "max_connections_per_shard" = "0" : "Admission: handshakes beyond this many connections on a shard get 503 + Retry-After. 0 = no cap.";
    "handshake_rate" = "5000" : "Admission: handshakes per second per shard (token bucket); beyond it 503 + Retry-After. 0 = unlimited.";
    "handshake_burst" = "10000" : "Admission: token-bucket burst of handshake_rate.";
    "retry_after_max" = "10s" : "503 answers carry Retry-After uniform in [1 s, retry_after_max], so refused clients come back spread out.";
    "expected_connections" = "100000" : "Connections this edge is sized for: the start-up kernel and limits checks (herald-tune) use it, and the control thread holds at most 2 × this many registry operations (at least 100,000) while Redis is unreachable.";
}

/// The parsed, validated edge configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Client listen address.
    pub listen: SocketAddr,
    /// The TLS listener (None = plaintext only).
    pub tls: Option<TlsSettings>,
    /// PROXY protocol on the client listener.
    pub proxy_protocol: ProxyPolicy,
    /// Admin HTTP listen address.
    pub admin_listen: SocketAddr,
    /// Number of shards (resolved: never 0).
    pub shards: usize,
    /// Registry node id.
    pub node_id: String,
    /// Delivery ports bind IP.
    pub delivery_listen_ip: IpAddr,
    /// First delivery port (0 = pick).
    pub delivery_base_port: u16,
    /// Advertised delivery host.
    pub delivery_advertise_host: String,
    /// Delivery handshake secret.
    pub delivery_secret: Vec<u8>,
    /// Whether `delivery_secret` was generated (so it gets printed).
    pub delivery_secret_generated: bool,
    /// Largest delivery frame.
    pub delivery_max_frame: usize,
    /// Unauthenticated delivery-port connections a shard holds at once.
    pub delivery_max_pending: usize,
    /// glommio io_memory per shard.
    pub io_memory: usize,
    /// io_uring ring depth.
    pub ring_depth: usize,
    /// Timer wheel resolution.
    pub timer_tick: Duration,
    /// Request head cap.
    pub max_head_bytes: usize,
    /// Handshake + auth deadline.
    pub handshake_timeout: Duration,
    /// Exact Origin allow-list (empty = unchecked).
    pub allowed_origins: Vec<String>,
    /// Authentication methods.
    pub auth: AuthConfig,
    /// Per-connection behaviour.
    pub conn: ConnConfig,
    /// Most devices per user per shard (0 = no cap).
    pub max_devices_per_user: usize,
    /// Registry URL (None = in-process).
    pub redis: Option<String>,
    /// Registry record TTL derived from lifetimes.
    pub registry_ttl: Duration,
    /// Membership heartbeat period.
    pub registry_heartbeat: Duration,
    /// Capacity the start-up checks size for.
    pub expected_connections: u64,
    /// Drain and admission control.
    pub ops: OpsConfig,
    /// Missed-push recovery.
    pub recovery: RecoveryConfig,
}

/// Missed-push recovery settings.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryConfig {
    /// History reads in flight at once (0 = recovery off).
    pub concurrency: usize,
    /// Deadline of one recovery, queueing included.
    pub timeout: Duration,
}

/// Drain and admission control settings.
#[derive(Debug, Clone)]
pub struct OpsConfig {
    /// Window over which a drain asks connections to reconnect.
    pub drain_window: Duration,
    /// Most reconnect requests per second per edge during a drain.
    pub drain_rate: u32,
    /// Connection cap per shard (0 = none).
    pub max_connections_per_shard: usize,
    /// Handshakes per second per shard (0 = unlimited).
    pub handshake_rate: u32,
    /// Token-bucket burst.
    pub handshake_burst: u32,
    /// Upper bound of the jittered Retry-After.
    pub retry_after_max: Duration,
}

/// Authentication settings.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// JWT verification, when configured.
    pub jwt: Option<JwtConfig>,
    /// Signed session cookies, when configured.
    pub session_cookie: Option<SessionCookieConfig>,
    /// `insecure_user_param`: trust `?user=` (loopback listeners only).
    pub trust_user_param: bool,
}

/// JWT verification settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The one accepted algorithm.
    pub algorithm: JwtAlgorithm,
    /// HS256 secret or PEM public key bytes.
    pub key: Vec<u8>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Required audience.
    pub audience: Option<String>,
    /// exp/nbf leeway in seconds.
    pub leeway_secs: u64,
    /// Cookie name that may carry the token.
    pub cookie: String,
}

/// Signed session cookie settings.
#[derive(Debug, Clone)]
pub struct SessionCookieConfig {
    /// HMAC secret.
    pub secret: Vec<u8>,
    /// Cookie name.
    pub name: String,
}

/// Per-connection settings used by the shards.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// WebSocket ping period.
    pub ping_interval: Duration,
    /// Pong deadline after a ping.
    pub pong_timeout: Duration,
    /// SSE keep-alive period.
    pub sse_keepalive: Duration,
    /// TCP_USER_TIMEOUT.
    pub tcp_user_timeout: Duration,
    /// Client frame cap.
    pub max_client_frame: usize,
    /// Outbound queue cap in bytes.
    pub outbound_queue_bytes: usize,
    /// How long a written push is remembered (repeat suppression).
    pub dedupe_window: Duration,
    /// Most pushes remembered per shard (0 = off).
    pub dedupe_capacity: usize,
    /// Per-connection push rate limit (None = off).
    pub push_rate: Option<crate::conn::PushRate>,
    /// Grace for the client to close first.
    pub close_grace: Duration,
    /// Maximum connection lifetime.
    pub max_lifetime: Duration,
    /// Lifetime jitter.
    pub lifetime_jitter: Duration,
}

fn parse_num<T: std::str::FromStr>(t: &str) -> Result<T, String> {
    t.parse::<T>()
        .map_err(|_| format!("`{t}` is not a valid number"))
}

/// `name=cert.pem:key.pem, …`
fn parse_sni_certs(t: &str) -> Result<Vec<(String, CertFiles)>, String> {
    t.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad = || format!("`{entry}` is not `name=cert.pem:key.pem`");
            let (name, files) = entry.split_once('=').ok_or_else(bad)?;
            let (cert, key) = files.split_once(':').ok_or_else(bad)?;
            let name = name.trim().to_ascii_lowercase();
            if name.is_empty() || cert.trim().is_empty() || key.trim().is_empty() {
                return Err(bad());
            }
            Ok((
                name,
                CertFiles {
                    cert: PathBuf::from(cert.trim()),
                    key: PathBuf::from(key.trim()),
                },
            ))
        })
        .collect()
}

/// An address, or none for an empty value.
fn parse_optional_addr(t: &str) -> Result<Option<SocketAddr>, String> {
    non_empty(t).map(|a| parse_addr(&a)).transpose()
}

fn parse_addr(t: &str) -> Result<SocketAddr, String> {
    t.parse()
        .map_err(|_| format!("`{t}` is not an address like 127.0.0.1:8080"))
}

fn non_empty(t: &str) -> Option<String> {
    (!t.is_empty()).then(|| t.to_string())
}

impl EdgeConfig {
    /// Parses and validates all settings.
    pub fn from_settings(s: &Settings) -> Result<EdgeConfig, ConfigError> {
        let listen = s.get("listen", parse_addr)?;
        let proxy_protocol = Self::proxy_protocol_from(s)?;
        let admin_listen = s.get("admin_listen", parse_addr)?;
        let mut shards: usize = s.get("shards", parse_num)?;
        if shards == 0 {
            shards = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
        }
        if shards > 1024 {
            return Err(s.error("shards", "at most 1024 shards"));
        }
        let node_id = s.get("node_id", |t| Ok(t.to_string()))?;
        let node_id = if node_id.is_empty() {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into());
            format!("edge-{host}-{}", listen.port())
        } else {
            node_id
        };
        if node_id.contains('|') || node_id.chars().any(char::is_control) {
            return Err(s.error("node_id", "must not contain `|` or control characters"));
        }
        let delivery_listen_ip: IpAddr = s.get("delivery_listen_ip", |t| {
            t.parse().map_err(|_| format!("`{t}` is not an IP address"))
        })?;
        let delivery_base_port: u16 = s.get("delivery_base_port", parse_num)?;
        if delivery_base_port != 0 && usize::from(delivery_base_port) + shards > 65536 {
            return Err(s.error(
                "delivery_base_port",
                format!("{delivery_base_port} + {shards} shards exceeds port 65535"),
            ));
        }
        let delivery_advertise_host = s
            .get("delivery_advertise_host", |t| Ok(non_empty(t)))?
            .unwrap_or_else(|| delivery_listen_ip.to_string());
        let secret = s.get("delivery_secret", |t| Ok(t.as_bytes().to_vec()))?;
        let delivery_secret_generated = secret.is_empty();
        let delivery_secret = if secret.is_empty() {
            crate::util::random_token(24).into_bytes()
        } else if secret.len() < 16 {
            return Err(s.error("delivery_secret", "must be at least 16 bytes"));
        } else {
            secret
        };
        let delivery_max_frame = s.get("delivery_max_frame", parse_bytes)? as usize;
        if delivery_max_frame < 1024 {
            return Err(s.error("delivery_max_frame", "must be at least 1024 bytes"));
        }
        let delivery_max_pending: usize = s.get("delivery_max_pending", parse_num)?;
        if delivery_max_pending == 0 {
            return Err(s.error("delivery_max_pending", "must be at least 1"));
        }
        let io_memory = s.get("io_memory", parse_bytes)? as usize;
        if io_memory < 64 * 1024 {
            return Err(s.error("io_memory", "must be at least 64KiB"));
        }
        let ring_depth: usize = s.get("ring_depth", parse_num)?;
        if !(8..=32768).contains(&ring_depth) {
            return Err(s.error("ring_depth", "must be between 8 and 32768"));
        }
        let timer_tick = s.get("timer_tick", parse_duration)?;
        if timer_tick < Duration::from_millis(1) || timer_tick > Duration::from_secs(10) {
            return Err(s.error("timer_tick", "must be between 1ms and 10s"));
        }
        let max_head_bytes = s.get("max_head_bytes", parse_bytes)? as usize;
        if !(512..=1 << 20).contains(&max_head_bytes) {
            return Err(s.error("max_head_bytes", "must be between 512 and 1MiB"));
        }
        let handshake_timeout = s.get("handshake_timeout", parse_duration)?;
        if handshake_timeout.is_zero() {
            return Err(s.error("handshake_timeout", "must be positive"));
        }
        let allowed_origins = s.get("allowed_origins", |t| {
            t.split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| {
                    if o.eq_ignore_ascii_case("null") {
                        Err("`null` cannot be allowed".to_string())
                    } else if !(o.starts_with("http://") || o.starts_with("https://")) {
                        Err(format!("`{o}` is not an origin like https://example.com"))
                    } else {
                        Ok(o.trim_end_matches('/').to_ascii_lowercase())
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        let auth = Self::auth_from(s)?;
        let tls = Self::tls_from(s)?;
        let conn = ConnConfig {
            ping_interval: s.get("ping_interval", parse_duration)?,
            pong_timeout: s.get("pong_timeout", parse_duration)?,
            sse_keepalive: s.get("sse_keepalive", parse_duration)?,
            tcp_user_timeout: s.get("tcp_user_timeout", parse_duration)?,
            max_client_frame: s.get("max_client_frame", parse_bytes)? as usize,
            outbound_queue_bytes: s.get("outbound_queue_bytes", parse_bytes)? as usize,
            dedupe_window: s.get("dedupe_window", parse_duration)?,
            dedupe_capacity: s.get("dedupe_capacity", parse_num)?,
            push_rate: {
                let burst: u32 = s.get("push_burst_per_conn", parse_num)?;
                s.get("push_rate_per_conn", |t| {
                    crate::conn::PushRate::parse(t, burst)
                })?
            },
            close_grace: s.get("close_grace", parse_duration)?,
            max_lifetime: s.get("max_lifetime", parse_duration)?,
            lifetime_jitter: s.get("lifetime_jitter", parse_duration)?,
        };
        for (key, d) in [
            ("ping_interval", conn.ping_interval),
            ("pong_timeout", conn.pong_timeout),
            ("sse_keepalive", conn.sse_keepalive),
            ("max_lifetime", conn.max_lifetime),
        ] {
            if d < timer_tick {
                return Err(s.error(key, format!("must be at least timer_tick ({timer_tick:?})")));
            }
        }
        if conn.lifetime_jitter >= conn.max_lifetime {
            return Err(s.error("lifetime_jitter", "must be smaller than max_lifetime"));
        }
        if !(125..=1 << 20).contains(&conn.max_client_frame) {
            return Err(s.error(
                "max_client_frame",
                "must be between 125 (largest control frame) and 1MiB",
            ));
        }
        if conn.outbound_queue_bytes < 1024 {
            return Err(s.error("outbound_queue_bytes", "must be at least 1024"));
        }
        let redis = s.get("redis", |t| {
            if t.is_empty()
                || t.starts_with("redis://")
                || t.starts_with("redis-cluster://")
                || t.starts_with("rediss://")
            {
                Ok(non_empty(t))
            } else {
                Err(format!("`{t}` is not a redis:// or redis-cluster:// URL"))
            }
        })?;
        let registry_slack = s.get("registry_slack", parse_duration)?;
        let registry_ttl = conn.max_lifetime + conn.close_grace + registry_slack;
        let registry_heartbeat = s.get("registry_heartbeat", parse_duration)?;
        if registry_heartbeat < Duration::from_millis(100) {
            return Err(s.error("registry_heartbeat", "must be at least 100ms"));
        }
        let expected_connections: u64 = s.get("expected_connections", parse_num)?;
        let max_devices_per_user: usize = s.get("max_devices_per_user", parse_num)?;
        let ops = OpsConfig {
            drain_window: s.get("drain_window", parse_duration)?,
            drain_rate: s.get("drain_rate", parse_num)?,
            max_connections_per_shard: s.get("max_connections_per_shard", parse_num)?,
            handshake_rate: s.get("handshake_rate", parse_num)?,
            handshake_burst: s.get("handshake_burst", parse_num)?,
            retry_after_max: s.get("retry_after_max", parse_duration)?,
        };
        if ops.drain_rate == 0 {
            return Err(s.error("drain_rate", "must be at least 1"));
        }
        if ops.handshake_rate > 0 && ops.handshake_burst == 0 {
            return Err(s.error(
                "handshake_burst",
                "must be at least 1 when handshake_rate is set",
            ));
        }
        if ops.retry_after_max < Duration::from_secs(1) {
            return Err(s.error("retry_after_max", "must be at least 1s"));
        }
        let recovery = RecoveryConfig {
            concurrency: s.get("recovery_concurrency", parse_num)?,
            timeout: s.get("recovery_timeout", parse_duration)?,
        };
        if recovery.timeout < Duration::from_millis(10) {
            return Err(s.error("recovery_timeout", "must be at least 10ms"));
        }
        Ok(EdgeConfig {
            ops,
            recovery,
            expected_connections,
            listen,
            tls,
            proxy_protocol,
            admin_listen,
            shards,
            node_id,
            delivery_listen_ip,
            delivery_base_port,
            delivery_advertise_host,
            delivery_secret,
            delivery_secret_generated,
            delivery_max_frame,
            delivery_max_pending,
            io_memory,
            ring_depth,
            timer_tick,
            max_head_bytes,
            handshake_timeout,
            allowed_origins,
            auth,
            conn,
            max_devices_per_user,
            redis,
            registry_ttl,
            registry_heartbeat,
        })
    }

    fn tls_from(s: &Settings) -> Result<Option<TlsSettings>, ConfigError> {
        let listen = s.get("tls_listen", parse_optional_addr)?;
        let path = |t: &str| Ok::<_, String>(non_empty(t).map(PathBuf::from));
        let cert = s.get("tls_cert_file", path)?;
        let key = s.get("tls_key_file", path)?;
        let sni = s.get("tls_sni_certs", parse_sni_certs)?;
        let min_version = s.get("tls_min_version", |t| t.parse::<TlsVersion>())?;
        let reload_check = s.get("tls_reload_check", parse_duration)?;
        let Some(listen) = listen else {
            return Ok(None);
        };
        let cert = cert.ok_or_else(|| {
            s.error(
                "tls_cert_file",
                "tls_listen is set: a PEM certificate chain is required",
            )
        })?;
        let key = key.ok_or_else(|| {
            s.error(
                "tls_key_file",
                "tls_listen is set: the certificate's PEM key is required",
            )
        })?;
        let settings = TlsSettings {
            listen,
            files: TlsFiles {
                default: CertFiles { cert, key },
                sni,
            },
            min_version,
            reload_check: (!reload_check.is_zero()).then_some(reload_check),
        };
        // Load everything now, so a bad file stops the start naming its setting.
        let provider = crate::tls::provider();
        crate::tls::certs::CertStore::load(&settings.files, &provider).map_err(|e| match e {
            CertError::Cert(m) => s.error("tls_cert_file", m),
            CertError::Key(m) => s.error("tls_key_file", m),
            CertError::Sni(m) => s.error("tls_sni_certs", m),
        })?;
        Ok(Some(settings))
    }

    fn proxy_protocol_from(s: &Settings) -> Result<ProxyPolicy, ConfigError> {
        let mode = s.get("proxy_protocol", ProxyMode::parse)?;
        let trusted = s.get("proxy_protocol_from", ProxyPolicy::parse_cidrs)?;
        if mode != ProxyMode::None && trusted.is_empty() {
            return Err(s.error(
                "proxy_protocol_from",
                format!(
                    "proxy_protocol = {} needs the load balancers' source CIDRs here \
                     (only they may send a PROXY header)",
                    mode.as_str()
                ),
            ));
        }
        Ok(ProxyPolicy { mode, trusted })
    }

    fn auth_from(s: &Settings) -> Result<AuthConfig, ConfigError> {
        let algorithm = s.get("jwt_algorithm", JwtAlgorithm::parse)?;
        let secret = s.get("jwt_secret", |t| Ok(t.as_bytes().to_vec()))?;
        let key_file = s.get("jwt_public_key_file", |t| {
            Ok(non_empty(t).map(PathBuf::from))
        })?;
        let leeway = s.get("jwt_leeway", parse_duration)?;
        if leeway > Duration::from_secs(30) {
            return Err(s.error("jwt_leeway", "must be at most 30s"));
        }
        let key = match (algorithm, secret.is_empty(), &key_file) {
            (_, true, None) => None,
            (JwtAlgorithm::Hs256, false, None) => {
                if secret.len() < 16 {
                    return Err(s.error("jwt_secret", "must be at least 16 bytes"));
                }
                Some(secret)
            }
            (JwtAlgorithm::Hs256, _, Some(_)) => return Err(s.error(
                "jwt_public_key_file",
                "HS256 uses jwt_secret; set jwt_algorithm to RS256 or ES256 to use a public key",
            )),
            (_, false, _) => {
                return Err(s.error(
                    "jwt_secret",
                    format!(
                        "{} uses jwt_public_key_file, not a secret",
                        algorithm.name()
                    ),
                ))
            }
            (_, true, Some(path)) => {
                let pem = std::fs::read(path).map_err(|e| {
                    s.error(
                        "jwt_public_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                algorithm
                    .decoding_key(&pem)
                    .map_err(|e| s.error("jwt_public_key_file", e))?;
                Some(pem)
            }
        };
        let jwt = match key {
            Some(key) => Some(JwtConfig {
                algorithm,
                key,
                issuer: s.get("jwt_issuer", |t| Ok(non_empty(t)))?,
                audience: s.get("jwt_audience", |t| Ok(non_empty(t)))?,
                leeway_secs: leeway.as_secs(),
                cookie: s.get("jwt_cookie", |t| Ok(t.to_string()))?,
            }),
            None => None,
        };
        let cookie_secret = s.get("session_cookie_secret", |t| Ok(t.as_bytes().to_vec()))?;
        let session_cookie = if cookie_secret.is_empty() {
            None
        } else if cookie_secret.len() < 16 {
            return Err(s.error("session_cookie_secret", "must be at least 16 bytes"));
        } else {
            Some(SessionCookieConfig {
                secret: cookie_secret,
                name: s.get("session_cookie_name", |t| Ok(t.to_string()))?,
            })
        };
        let trust_user_param = s.get("insecure_user_param", |t| match t {
            "on" | "true" => Ok(true),
            "off" | "false" | "" => Ok(false),
            other => Err(format!("`{other}`: on or off")),
        })?;
        if trust_user_param {
            let tls_listen = s.get("tls_listen", parse_optional_addr)?;
            let listeners = std::iter::once(s.get("listen", parse_addr)?).chain(tls_listen);
            if let Some(open) = listeners.into_iter().find(|a| !a.ip().is_loopback()) {
                return Err(s.error(
                    "insecure_user_param",
                    format!(
                        "trusts any client's word for who it is, so it is refused on {open}: \
                         only loopback listeners may use it"
                    ),
                ));
            }
        }
        if jwt.is_none() && session_cookie.is_none() && !trust_user_param {
            return Err(s.error(
                "jwt_secret",
                "no authentication method configured: set jwt_secret, jwt_public_key_file or session_cookie_secret",
            ));
        }
        Ok(AuthConfig {
            jwt,
            session_cookie,
            trust_user_param,
        })
    }

    /// Registry operations the control thread may hold while Redis is unreachable: every
    /// connection the edge is sized for can register and unregister once
    /// (2 × `expected_connections`, at least 100,000).
    pub fn registry_queue_capacity(&self) -> usize {
        (self.expected_connections as usize)
            .saturating_mul(2)
            .max(100_000)
    }

    /// A configuration for tests and embedding: everything on loopback, free ports, small
    /// memory, the given HS256 secret. Callers adjust fields afterwards.
    pub fn for_tests(jwt_secret: &str) -> EdgeConfig {
        let mut s = Settings::defaults(KEYS);
        for (k, v) in [
            ("listen", "127.0.0.1:0"),
            ("admin_listen", "127.0.0.1:0"),
            ("shards", "2"),
            ("delivery_base_port", "0"),
            ("delivery_secret", "test-delivery-secret-0123456789"),
            ("io_memory", "128KiB"),
            ("ring_depth", "64"),
            ("jwt_secret", jwt_secret),
            ("node_id", "test-edge"),
        ] {
            s.set(k, v.to_string(), Source::Default).expect("known key");
        }
        EdgeConfig::from_settings(&s).expect("test config is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        let mut s = Settings::defaults(KEYS);
        s.set("jwt_secret", "0123456789abcdef0123".into(), Source::Default)
            .unwrap();
        s
    }

    #[test]
    fn defaults_plus_secret_are_valid() {
        let c = EdgeConfig::from_settings(&base()).unwrap();
        assert_eq!(c.max_head_bytes, 8192);
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(
            c.registry_ttl,
            Duration::from_secs(30 * 60 + 5 + 60),
            "ttl = lifetime + grace + slack"
        );
        assert!(c.shards >= 1);
        assert!(c.delivery_secret_generated);
    }

    #[test]
    fn the_trusted_user_param_is_loopback_only() {
        let set = |st: &mut Settings, k: &str, v: &str| {
            st.set(k, v.to_string(), Source::Default)
                .expect("known key")
        };
        let mut st = Settings::defaults(KEYS);
        set(&mut st, "insecure_user_param", "on");
        set(&mut st, "listen", "0.0.0.0:0");
        let e = EdgeConfig::from_settings(&st).unwrap_err();
        assert_eq!(e.key, "insecure_user_param");
        set(&mut st, "listen", "127.0.0.1:0");
        let c = EdgeConfig::from_settings(&st).expect("loopback, no other method needed");
        assert!(c.auth.trust_user_param && c.auth.jwt.is_none());
        set(&mut st, "tls_listen", "0.0.0.0:0");
        set(&mut st, "tls_cert_file", "/nonexistent.pem");
        set(&mut st, "tls_key_file", "/nonexistent.pem");
        let e = EdgeConfig::from_settings(&st).unwrap_err();
        assert_eq!(e.key, "insecure_user_param", "the TLS listener counts too");
        let mut off = Settings::defaults(KEYS);
        set(&mut off, "insecure_user_param", "maybe");
        assert_eq!(
            EdgeConfig::from_settings(&off).unwrap_err().key,
            "insecure_user_param"
        );
    }

    #[test]
    fn no_auth_method_is_an_error_naming_a_key() {
        let e = EdgeConfig::from_settings(&Settings::defaults(KEYS)).unwrap_err();
        assert_eq!(e.key, "jwt_secret");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (key, value) in [
            ("listen", "nowhere"),
            ("ping_interval", "soon"),
            ("jwt_leeway", "60s"),
            ("allowed_origins", "null"),
            ("allowed_origins", "example.com"),
            ("lifetime_jitter", "1h"),
            ("max_client_frame", "10"),
            ("redis", "http://x"),
            ("jwt_algorithm", "none"),
            ("node_id", "a|b"),
            ("shards", "-1"),
            ("proxy_protocol", "v3"),
            ("proxy_protocol_from", "10.0.0.0/33"),
        ] {
            let mut s = base();
            s.set(key, value.into(), Source::Flag(key.into())).unwrap();
            let e = EdgeConfig::from_settings(&s).unwrap_err();
            assert_eq!(e.key, key, "{key}={value}: {e}");
        }
    }

    #[test]
    fn tls_settings_are_checked_and_bad_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = crate::tls::dev_cert::DevCert::self_signed(&["localhost"]).unwrap();
        let b = crate::tls::dev_cert::DevCert::self_signed(&["push.example.com"]).unwrap();
        let fa = a.write(dir.path(), "a").unwrap();
        let fb = b.write(dir.path(), "b").unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let p = |f: &std::path::Path| f.display().to_string();
        let with = |pairs: &[(&str, String)]| {
            let mut s = base();
            s.set("tls_listen", "127.0.0.1:0".into(), Source::Default)
                .unwrap();
            for (k, v) in pairs {
                s.set(k, v.clone(), Source::Flag(k.to_string())).unwrap();
            }
            EdgeConfig::from_settings(&s)
        };
        let ok = with(&[
            ("tls_cert_file", p(&fa.cert)),
            ("tls_key_file", p(&fa.key)),
            (
                "tls_sni_certs",
                format!("push.example.com={}:{}", p(&fb.cert), p(&fb.key)),
            ),
            ("tls_min_version", "1.3".into()),
        ])
        .unwrap();
        let tls = ok.tls.expect("a TLS listener");
        assert_eq!(tls.min_version, crate::tls::TlsVersion::V1_3);
        assert_eq!(tls.files.sni[0].0, "push.example.com");

        for (want, pairs) in [
            ("tls_cert_file", vec![("tls_key_file", p(&fa.key))]),
            ("tls_key_file", vec![("tls_cert_file", p(&fa.cert))]),
            (
                "tls_cert_file",
                vec![
                    ("tls_cert_file", p(&dir.path().join("missing.pem"))),
                    ("tls_key_file", p(&fa.key)),
                ],
            ),
            (
                "tls_cert_file",
                vec![("tls_cert_file", p(&garbage)), ("tls_key_file", p(&fa.key))],
            ),
            (
                "tls_key_file",
                vec![("tls_cert_file", p(&fa.cert)), ("tls_key_file", p(&fb.key))],
            ),
            (
                "tls_key_file",
                vec![
                    ("tls_cert_file", p(&fa.cert)),
                    ("tls_key_file", p(&fa.cert)),
                ],
            ),
            (
                "tls_sni_certs",
                vec![
                    ("tls_cert_file", p(&fa.cert)),
                    ("tls_key_file", p(&fa.key)),
                    (
                        "tls_sni_certs",
                        format!("other.example.com={}:{}", p(&fb.cert), p(&fb.key)),
                    ),
                ],
            ),
            (
                "tls_sni_certs",
                vec![
                    ("tls_cert_file", p(&fa.cert)),
                    ("tls_key_file", p(&fa.key)),
                    ("tls_sni_certs", "no-files".into()),
                ],
            ),
            (
                "tls_min_version",
                vec![
                    ("tls_cert_file", p(&fa.cert)),
                    ("tls_key_file", p(&fa.key)),
                    ("tls_min_version", "1.1".into()),
                ],
            ),
        ] {
            let e = with(&pairs).unwrap_err();
            assert_eq!(e.key, want, "{pairs:?}: {e}");
        }
        // Without tls_listen there is no TLS listener, whatever else is set.
        let mut s = base();
        s.set("tls_cert_file", p(&fa.cert), Source::Default)
            .unwrap();
        assert!(EdgeConfig::from_settings(&s).unwrap().tls.is_none());
    }

    #[test]
    fn proxy_protocol_needs_trusted_sources_and_names_bad_ones() {
        let mut s = base();
        assert_eq!(
            EdgeConfig::from_settings(&s).unwrap().proxy_protocol.mode,
            ProxyMode::None,
            "off by default"
        );
        s.set(
            "proxy_protocol",
            "v2".into(),
            Source::Flag("proxy-protocol".into()),
        )
        .unwrap();
        let e = EdgeConfig::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "proxy_protocol_from", "{e}");
        assert!(e.to_string().contains("proxy_protocol = v2"), "{e}");
        s.set(
            "proxy_protocol_from",
            "10.0.0.0/8, lb.example".into(),
            Source::Env("HERALD_PROXY_PROTOCOL_FROM".into()),
        )
        .unwrap();
        let e = EdgeConfig::from_settings(&s).unwrap_err();
        assert_eq!(e.key, "proxy_protocol_from");
        assert!(e.to_string().contains("`lb.example`"), "{e}");
        s.set(
            "proxy_protocol_from",
            "10.0.0.0/8,2001:db8::/32".into(),
            Source::Default,
        )
        .unwrap();
        let p = EdgeConfig::from_settings(&s).unwrap().proxy_protocol;
        assert_eq!(p.mode, ProxyMode::V2);
        assert_eq!(p.trusted.len(), 2);
    }

    #[test]
    fn test_config_is_valid() {
        let c = EdgeConfig::for_tests("0123456789abcdef0123");
        assert_eq!(c.shards, 2);
        assert_eq!(c.delivery_base_port, 0);
    }
}

#[cfg(test)]
mod doc_tests {
    use super::KEYS;

    #[test]
    fn configuration_doc_lists_every_setting_with_its_default() {
        let doc = include_str!("../../../docs/configuration.md");
        for k in KEYS {
            let default = if k.default.is_empty() {
                "(empty)"
            } else {
                k.default
            };
            let row = format!("| `{}` | `{}` |", k.name, default);
            assert!(
                doc.contains(&row),
                "docs/configuration.md lacks the row for {}",
                k.name
            );
        }
    }
}
