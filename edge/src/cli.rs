//! The `herald-edge` command line: flags generated from the settings table, config loading,
//! signals, exit codes (64 = bad configuration).

use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::auth::jwt::{issue_hs256, Claims};
use crate::config::{ConfigError, EdgeConfig, Settings, Source, ENV_PREFIX, KEYS};

/// Exit code for configuration errors (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

/// The clap command: `--config`, `--check-config`, `--dev`, and one flag per setting.
pub fn command() -> Command {
    let mut cmd = Command::new("herald-edge")
        .about("Herald edge node: WebSocket/SSE push connections, one shard per core")
        .long_about(
            "Herald edge node: holds client WebSocket (/ws) and SSE (/sse) connections, one \
             glommio shard per core, and delivers pushes that processors forward to each shard's \
             delivery port.\n\nSettings come from (lowest to highest precedence): defaults, the \
             TOML file given by --config, HERALD_<KEY> environment variables, and the flags below. \
             Durations take ms/s/m/h suffixes, sizes KiB/MiB.",
        )
        .version(env!("CARGO_PKG_VERSION"))
        .arg(
            Arg::new("config")
                .long("config")
                .short('c')
                .value_name("FILE")
                .help("TOML configuration file (flat `key = value`, keys as in the flags with `_`)"),
        )
        .arg(
            Arg::new("check-config")
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help("Validate the configuration, print it, and exit (0 valid, 64 invalid)"),
        )
        .arg(
            Arg::new("strict")
                .long("strict")
                .action(ArgAction::SetTrue)
                .help("Refuse to start when a start-up kernel/limits check (herald-tune) finds a fatal shortfall for expected_connections"),
        )
        .arg(
            Arg::new("dev")
                .long("dev")
                .action(ArgAction::SetTrue)
                .help("Development mode: listen on loopback, and without a configured auth method use a random JWT secret and print a sample token"),
        );
    for key in KEYS {
        let help = if key.default.is_empty() {
            key.help.to_string()
        } else {
            format!("{} [default: {}]", key.help, key.default)
        };
        cmd = cmd.arg(
            Arg::new(key.name)
                .long(flag_name(key.name))
                .value_name("VALUE")
                .help(help)
                .env(key.env_var(ENV_PREFIX))
                .hide_env(false),
        );
    }
    cmd
}

/// Loads settings: defaults < file < env < flags. Env values arrive through clap (`.env`), so
/// the source of each value is recovered from clap's value source.
pub fn load(m: &ArgMatches) -> Result<(Settings, bool), ConfigError> {
    let mut s = Settings::defaults(KEYS);
    if let Some(path) = m.get_one::<String>("config") {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: "config".into(),
            message: format!("cannot read {path}: {e}"),
            source: Some(Source::Flag("config".into())),
        })?;
        s.merge_toml(&text, path)?;
    }
    for key in KEYS {
        if let Some(v) = m.get_one::<String>(key.name) {
            let source = match m.value_source(key.name) {
                Some(clap::parser::ValueSource::EnvVariable) => {
                    Source::Env(key.env_var(ENV_PREFIX))
                }
                _ => Source::Flag(flag_name(key.name)),
            };
            s.set(key.name, v.clone(), source)?;
        }
    }
    let dev = m.get_flag("dev");
    let mut generated_secret = false;
    if dev {
        let unset = |s: &Settings, k: &str| matches!(s.raw(k).1, Source::Default);
        if unset(&s, "listen") {
            s.set("listen", "127.0.0.1:8080".into(), Source::Default)?;
        }
        if unset(&s, "jwt_secret")
            && unset(&s, "jwt_public_key_file")
            && unset(&s, "session_cookie_secret")
        {
            s.set("jwt_secret", crate::util::random_token(16), Source::Default)?;
            generated_secret = true;
        }
    }
    Ok((s, generated_secret))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let m = command().get_matches();
    let loaded =
        load(&m).and_then(|(s, generated)| Ok((EdgeConfig::from_settings(&s)?, generated)));
    let (cfg, generated_jwt) = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald-edge: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if m.get_flag("check-config") {
        println!("configuration OK\n{cfg:#?}");
        return ExitCode::SUCCESS;
    }
    if !kernel_checks(&cfg, m.get_flag("strict")) {
        return ExitCode::FAILURE;
    }
    let edge = match crate::server::start(cfg.clone()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("herald-edge: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cfg.delivery_secret_generated {
        println!(
            "delivery secret (generated; set `delivery_secret` for processors): {}",
            String::from_utf8_lossy(&cfg.delivery_secret)
        );
    }
    if generated_jwt {
        let secret = &cfg.auth.jwt.as_ref().expect("dev mode configured JWT").key;
        let token = issue_hs256(
            secret,
            &Claims {
                sub: "dev-user".into(),
                did: None,
                exp: herald_protocol::clock::unix_ms() / 1000 + 3600,
                nbf: None,
                iss: None,
                aud: None,
            },
        );
        println!(
            "JWT secret (generated): {}",
            String::from_utf8_lossy(secret)
        );
        println!("sample token for user dev-user (1 h): {token}");
    }
    let tls = edge
        .tls_addr
        .map(|t| format!(" wss=wss://{t}/ws sse_tls=https://{t}/sse"))
        .unwrap_or_default();
    println!(
        "herald-edge ready: node={} ws=ws://{}/ws sse=http://{}/sse admin=http://{} delivery={}:{}-{} shards={}{tls}",
        edge.node_id,
        edge.client_addr,
        edge.client_addr,
        edge.admin_addr,
        edge.delivery_ip,
        edge.delivery_base_port,
        edge.delivery_base_port as usize + edge.shards - 1,
        edge.shards
    );
    let controller = edge.controller();
    std::thread::Builder::new()
        .name("herald-signals".into())
        .spawn(move || handle_signals(&controller))
        .expect("signal thread");
    edge.wait();
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// Runs herald-tune's start-up checks for the configured capacity and logs each shortfall once
/// with its fix. Returns false when `strict` and a fatal shortfall was found.
fn kernel_checks(cfg: &EdgeConfig, strict: bool) -> bool {
    let findings =
        herald_tune::startup_findings(herald_tune::target::Role::Edge, cfg.expected_connections);
    let mut fatal = 0;
    for f in &findings {
        if f.is_fatal() {
            fatal += 1;
            log::error!(
                "kernel check for {} connections: {f}",
                cfg.expected_connections
            );
        } else {
            log::warn!(
                "kernel check for {} connections: {f}",
                cfg.expected_connections
            );
        }
    }
    if fatal > 0 && strict {
        eprintln!(
            "herald-edge: {fatal} fatal kernel/limits shortfall(s) for expected_connections = {} (--strict); \
             see the log above or run `herald-tune check --connections {}`",
            cfg.expected_connections, cfg.expected_connections
        );
        return false;
    }
    true
}

/// SIGTERM / SIGINT: the first starts a drain (the edge exits 0 when it is done), the second
/// shortens it, the third stops at once. SIGHUP reloads the TLS certificates.
fn handle_signals(controller: &crate::server::EdgeController) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a signal runtime");
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let mut n = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {
                    log::info!("signal: SIGHUP, reloading the TLS certificates");
                    controller.reload_tls();
                    continue;
                }
            }
            n += 1;
            match n {
                1 => {
                    log::info!("signal: draining (send again to shorten the drain, a third time to stop now)");
                    controller.drain();
                }
                2 => {
                    log::info!("signal: shortening the drain");
                    controller.shorten_drain();
                }
                _ => {
                    log::info!("signal: stopping now");
                    controller.stop();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_a_flag_and_flags_override() {
        let m = command()
            .try_get_matches_from([
                "herald-edge",
                "--ping-interval",
                "5s",
                "--jwt-secret",
                "0123456789abcdef",
            ])
            .unwrap();
        let (s, _) = load(&m).unwrap();
        let cfg = EdgeConfig::from_settings(&s).unwrap();
        assert_eq!(cfg.conn.ping_interval, std::time::Duration::from_secs(5));
        let help = command().render_long_help().to_string();
        for k in KEYS {
            assert!(
                help.contains(&format!("--{}", flag_name(k.name))),
                "{}",
                k.name
            );
        }
    }

    #[test]
    fn dev_mode_generates_a_secret() {
        let m = command()
            .try_get_matches_from(["herald-edge", "--dev"])
            .unwrap();
        let (s, generated) = load(&m).unwrap();
        assert!(generated);
        let cfg = EdgeConfig::from_settings(&s).unwrap();
        assert_eq!(cfg.listen.ip().to_string(), "127.0.0.1");
    }
}
