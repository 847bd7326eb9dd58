//! # herald-settings — layered configuration shared by Herald's programs
//!
//! Embedded defaults < TOML file < environment (`HERALD_*` for the edge, `HERALD_PROCESSOR_*`
//! for the processor) < flags. Every setting is a string keyed by its snake_case name until the
//! program's typed configuration parses it, so an error always names the key and where the bad
//! value came from. Each program declares its key table ([`Key`]) once; it drives the CLI
//! flags, the environment variables and the configuration documents (tests check the documents
//! list every key with its default). Also the duration and size parsers every setting uses.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Where a setting's value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The embedded default.
    Default,
    /// The TOML file at this path.
    File(String),
    /// The named environment variable.
    Env(String),
    /// The command-line flag (without dashes).
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "the default"),
            Source::File(p) => write!(f, "config file {p}"),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(n) => write!(f, "flag --{n}"),
        }
    }
}

/// A configuration error: which key, what is wrong, and where the value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's key (`inflight_per_partition`), or the file for file-level errors.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
    /// Where the offending value came from, when known.
    pub source: Option<Source>,
}

impl ConfigError {
    /// An error about `key` with no known source.
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_string(),
            message: message.into(),
            source: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: `{}`: {}", self.key, self.message)?;
        if let Some(src) = &self.source {
            write!(f, " (set by {src})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// One key of the settings table.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// snake_case name used in TOML; `HERALD_PROCESSOR_<NAME>` in the environment;
    /// `--<name-with-dashes>` as a flag.
    pub name: &'static str,
    /// Embedded default as text ("" = unset).
    pub default: &'static str,
    /// One-line help shown by `--help` and in the configuration document.
    pub help: &'static str,
}

impl Key {
    /// The environment variable that overrides this key.
    pub fn env_var(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.name.to_ascii_uppercase())
    }

    /// The command-line flag (without the leading dashes).
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }
}

/// Raw values with their sources, before typed parsing.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Current value and source per key name.
    values: BTreeMap<&'static str, (String, Source)>,
    /// The table the values belong to (unknown names are rejected against it).
    keys: Vec<Key>,
}

impl Settings {
    /// Settings holding only the defaults of `keys`.
    pub fn defaults(keys: &[Key]) -> Self {
        let values = keys
            .iter()
            .map(|k| (k.name, (k.default.to_string(), Source::Default)))
            .collect();
        Settings {
            values,
            keys: keys.to_vec(),
        }
    }

    /// Sets `name` from `source`; an unknown name is an error naming it.
    pub fn set(&mut self, name: &str, value: String, source: Source) -> Result<(), ConfigError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| ConfigError {
                key: name.to_string(),
                message: "unknown setting".into(),
                source: Some(source.clone()),
            })?;
        self.values.insert(key.name, (value, source));
        Ok(())
    }

    /// Merges a TOML document (a flat table of keys; arrays become comma-separated lists).
    pub fn merge_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            key: path.to_string(),
            message: format!("not valid TOML: {}", e.message()),
            source: Some(Source::File(path.to_string())),
        })?;
        for (name, value) in table {
            if !self.keys.iter().any(|k| k.name == name) {
                return Err(ConfigError {
                    key: name,
                    message: "unknown setting".into(),
                    source: Some(Source::File(path.to_string())),
                });
            }
            let text = toml_to_text(&name, &value, path)?;
            self.set(&name, text, Source::File(path.to_string()))?;
        }
        Ok(())
    }

    /// Merges `PREFIX<KEY>` variables from `env`. Unknown `PREFIX*` variables are ignored.
    pub fn merge_env(&mut self, prefix: &str, env: impl Fn(&str) -> Option<String>) {
        for key in &self.keys {
            let var = key.env_var(prefix);
            if let Some(v) = env(&var) {
                self.values.insert(key.name, (v, Source::Env(var)));
            }
        }
    }

    /// The raw text and source of `name` (panics on a name not in the table: a programming
    /// error caught by every test that loads a configuration).
    pub fn raw(&self, name: &str) -> (&str, &Source) {
        let (v, s) = self
            .values
            .get(name)
            .unwrap_or_else(|| panic!("setting `{name}` is not declared in the key table"));
        (v.as_str(), s)
    }

    /// Parses `name` with `parse`, attaching the key and source to any error.
    pub fn get<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let (text, source) = self.raw(name);
        parse(text.trim()).map_err(|message| ConfigError {
            key: name.to_string(),
            message,
            source: Some(source.clone()),
        })
    }

    /// An error about `name` carrying its current source.
    pub fn error(&self, name: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: name.to_string(),
            message: message.into(),
            source: Some(self.raw(name).1.clone()),
        }
    }
}

fn toml_to_text(name: &str, value: &toml::Value, path: &str) -> Result<String, ConfigError> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| toml_to_text(name, v, path))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => {
            return Err(ConfigError {
                key: name.to_string(),
                message: format!("expected a string, number, boolean or array, got {other}"),
                source: Some(Source::File(path.to_string())),
            })
        }
    })
}

/// Parses durations like `250ms`, `30s`, `5m`, `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (use e.g. 250ms, 30s, 5m, 1h)"))?;
    let secs = match unit.trim() {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => {
            return Err(format!(
                "unknown duration unit `{u}` in `{text}` (us, ms, s, m, h)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{text}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a byte size: plain bytes or with a unit (`KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (use e.g. 4096, 512KiB, 2MiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        u => return Err(format!("unknown size unit `{u}` in `{text}`")),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[Key] = &[
        Key {
            name: "request_timeout",
            default: "2s",
            help: "h",
        },
        Key {
            name: "kafka_properties",
            default: "",
            help: "h",
        },
    ];

    #[test]
    fn layers_override_in_order_and_errors_name_key_and_source() {
        let mut s = Settings::defaults(KEYS);
        s.merge_toml(
            "request_timeout = \"5s\"\nkafka_properties = [\"a=1\", \"b=2\"]",
            "p.toml",
        )
        .unwrap();
        assert_eq!(s.raw("kafka_properties").0, "a=1,b=2");
        assert_eq!(
            s.get("request_timeout", parse_duration).unwrap(),
            Duration::from_secs(5)
        );
        s.merge_env("HERALD_PROCESSOR_", |v| {
            (v == "HERALD_PROCESSOR_REQUEST_TIMEOUT").then(|| "soon".to_string())
        });
        let err = s.get("request_timeout", parse_duration).unwrap_err();
        assert_eq!(err.key, "request_timeout");
        assert!(
            err.to_string()
                .contains("environment variable HERALD_PROCESSOR_REQUEST_TIMEOUT"),
            "{err}"
        );
        s.set(
            "request_timeout",
            "250ms".into(),
            Source::Flag("request-timeout".into()),
        )
        .unwrap();
        assert_eq!(
            s.get("request_timeout", parse_duration).unwrap(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn unknown_keys_and_bad_toml_are_errors() {
        let mut s = Settings::defaults(KEYS);
        let e = s.merge_toml("request_timout = 1", "c.toml").unwrap_err();
        assert_eq!(e.key, "request_timout");
        assert!(e.to_string().contains("unknown setting"), "{e}");
        let e = s.merge_toml("= =", "c.toml").unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
        let e = s.merge_toml("[section]\nx = 1", "c.toml").unwrap_err();
        assert!(e.to_string().contains("unknown setting"), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_bytes("2MiB").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn flags_and_env_names_derive_from_the_key() {
        let k = KEYS[0];
        assert_eq!(k.flag(), "request-timeout");
        assert_eq!(
            k.env_var("HERALD_PROCESSOR_"),
            "HERALD_PROCESSOR_REQUEST_TIMEOUT"
        );
    }
}
