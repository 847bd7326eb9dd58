//! # The `herald-processor` command line
//!
//! Every key of [`KEYS`] is a flag (`--inflight-per-partition 256`), an environment variable
//! (`HERALD_PROCESSOR_INFLIGHT_PER_PARTITION=256`) and a TOML key in the file given with
//! `--config` (or `HERALD_PROCESSOR_CONFIG`); flags beat the environment, which beats the file,
//! which beats the defaults. An invalid configuration prints one message naming the key and
//! where its value came from, and exits with code 64 (EX_USAGE) before anything connects.
//! `--check-config` validates, prints the effective configuration (secret redacted) and exits.
//!
//! Exit codes: 0 clean shutdown (SIGINT/SIGTERM), 64 bad configuration, 69 the registry or
//! Kafka could not be reached at start-up, 1 anything else.

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command};
use herald_registry::{RedisOptions, Registry};

use crate::config::{ConfigError, ProcessorConfig, Settings, Source, ENV_PREFIX, KEYS};
use crate::processor::ProcessorError;

/// Exit code for configuration errors (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code when a dependency is unreachable at start-up (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: i32 = 69;

/// The command-line definition: one flag per key, plus `--config` and `--check-config`.
pub fn command() -> Command {
    let mut cmd = Command::new("herald-processor")
        .about("Herald processor: Kafka priority topics → registry look-up → owning edge shard")
        .version(env!("CARGO_PKG_VERSION"))
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("TOML file with settings (flat `key = value`); also HERALD_PROCESSOR_CONFIG"),
        )
        .arg(
            Arg::new("check-config")
                .long("check-config")
                .action(ArgAction::SetTrue)
                .help("Validate the configuration, print it and exit"),
        );
    for key in KEYS {
        cmd = cmd.arg(
            Arg::new(key.name)
                .long(key.flag())
                .value_name("VALUE")
                .help(format!("{} [default: {:?}]", key.help, key.default)),
        );
    }
    cmd
}

/// What the command line asked for.
#[derive(Debug)]
pub struct Invocation {
    /// The validated configuration.
    pub config: ProcessorConfig,
    /// `--check-config`: validate and exit.
    pub check_only: bool,
}

/// Why the command line could not be turned into a configuration.
#[derive(Debug)]
pub enum LoadError {
    /// clap's own outcome (usage error, or `--help` / `--version`).
    Usage(clap::Error),
    /// A setting is invalid.
    Config(ConfigError),
}

/// Parses `args` and the environment (`env`) into a validated configuration. The binary
/// additionally requires `redis`.
pub fn load(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Invocation, LoadError> {
    let matches = command()
        .try_get_matches_from(args)
        .map_err(LoadError::Usage)?;
    let mut settings = Settings::defaults(KEYS);
    let file = matches
        .get_one::<String>("config")
        .cloned()
        .or_else(|| env(&format!("{ENV_PREFIX}CONFIG")));
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LoadError::Config(ConfigError {
                key: "config".into(),
                message: format!("cannot read {path}: {e}"),
                source: Some(Source::File(path.clone())),
            })
        })?;
        settings
            .merge_toml(&text, &path)
            .map_err(LoadError::Config)?;
    }
    settings.merge_env(ENV_PREFIX, &env);
    for key in KEYS {
        if let Some(v) = matches.get_one::<String>(key.name) {
            settings
                .set(key.name, v.clone(), Source::Flag(key.flag()))
                .map_err(LoadError::Config)?;
        }
    }
    let config = ProcessorConfig::from_settings(&settings).map_err(LoadError::Config)?;
    match config.redis.as_deref() {
        None => {
            return Err(LoadError::Config(settings.error(
                "redis",
                "required: the processor finds connections in the shared registry (redis://… or redis-cluster://…)",
            )))
        }
        Some(url) if !(url.starts_with("redis://") || url.starts_with("redis-cluster://")) => {
            return Err(LoadError::Config(settings.error(
                "redis",
                format!("`{url}` is not a redis:// or redis-cluster:// URL"),
            )))
        }
        Some(_) => {}
    }
    Ok(Invocation {
        config,
        check_only: matches.get_flag("check-config"),
    })
}

/// Renders the effective configuration for `--check-config` (the secret redacted).
pub fn describe(config: &ProcessorConfig) -> String {
    format!("configuration OK\n{config:#?}\n")
}

/// Registry client options for a processor: look-ups may be re-sent by the client itself.
pub fn redis_options() -> RedisOptions {
    RedisOptions {
        max_command_attempts: 3,
        ..RedisOptions::default()
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The binary's main: returns the process exit code.
pub fn main() -> i32 {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let invocation = match load(std::env::args_os(), |k| std::env::var(k).ok()) {
        Ok(i) => i,
        Err(LoadError::Usage(e)) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_CONFIG } else { 0 };
        }
        Err(LoadError::Config(e)) => {
            eprintln!("herald-processor: {e}");
            return EXIT_CONFIG;
        }
    };
    let config = invocation.config;
    if invocation.check_only {
        print!("{}", describe(&config));
        return 0;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.worker_threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herald-processor: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let url = config.redis.clone().unwrap_or_default();
        let registry = match Registry::connect(&url, &redis_options()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("herald-processor: registry {url}: {e}");
                return EXIT_UNAVAILABLE;
            }
        };
        let result = crate::processor::run(config, registry.clone(), shutdown_signal()).await;
        registry.close().await;
        match result {
            Ok(()) => 0,
            Err(ProcessorError::Config(e)) => {
                eprintln!("herald-processor: {e}");
                EXIT_CONFIG
            }
            Err(e @ (ProcessorError::Kafka(_) | ProcessorError::Topic(_))) => {
                eprintln!("herald-processor: {e}");
                EXIT_UNAVAILABLE
            }
            Err(e) => {
                eprintln!("herald-processor: {e}");
                1
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("herald-processor")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    const SECRET: &str = "--delivery-secret=0123456789abcdef";

    #[test]
    fn flags_beat_env_beat_defaults() {
        let env = |k: &str| match k {
            "HERALD_PROCESSOR_INFLIGHT_PER_PARTITION" => Some("99".to_string()),
            "HERALD_PROCESSOR_GROUP_ID" => Some("from-env".to_string()),
            _ => None,
        };
        let inv = load(
            args(&[
                SECRET,
                "--redis",
                "redis://127.0.0.1:6379",
                "--group-id",
                "from-flag",
            ]),
            env,
        )
        .unwrap();
        assert_eq!(inv.config.inflight_per_partition, 99);
        assert_eq!(inv.config.kafka.group_id, "from-flag");
        assert!(!inv.check_only);
    }

    #[test]
    fn redis_is_required_by_the_binary() {
        let Err(LoadError::Config(e)) = load(args(&[SECRET]), |_| None) else {
            panic!("expected a config error");
        };
        assert_eq!(e.key, "redis");
        let Err(LoadError::Config(e)) = load(args(&[SECRET, "--redis", "http://x"]), |_| None)
        else {
            panic!("expected a config error");
        };
        assert_eq!(e.key, "redis");
        assert!(e.to_string().contains("--redis"), "{e}");
    }

    #[test]
    fn config_file_layer_and_its_errors() {
        let dir = std::env::temp_dir().join(format!("herald-processor-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "redis = \"redis://127.0.0.1:7000\"\ndelivery_secret = \"0123456789abcdef\"\nstarvation_guard = 7\n",
        )
        .unwrap();
        let inv = load(
            args(&["--config", good.to_str().unwrap(), "--check-config"]),
            |_| None,
        )
        .unwrap();
        assert_eq!(inv.config.starvation_guard, 7);
        assert!(inv.check_only);
        assert!(!describe(&inv.config).contains("0123456789abcdef"));

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "starvation_gaurd = 7\n").unwrap();
        let Err(LoadError::Config(e)) = load(args(&["--config", bad.to_str().unwrap()]), |_| None)
        else {
            panic!("expected a config error");
        };
        assert_eq!(e.key, "starvation_gaurd");
        let Err(LoadError::Config(e)) = load(args(&[]), |k| {
            (k == "HERALD_PROCESSOR_CONFIG").then(|| "/nonexistent/p.toml".to_string())
        }) else {
            panic!("expected a config error");
        };
        assert_eq!(e.key, "config");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_flags_are_usage_errors() {
        let Err(LoadError::Usage(e)) = load(args(&["--no-such-flag"]), |_| None) else {
            panic!("expected a usage error");
        };
        assert!(e.use_stderr());
    }
}
