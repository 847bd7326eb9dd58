//! uWebSockets.js as a peer: `bench/peers/uws/server.js` run by Node.js with the npm package
//! `uwebsockets` 3.0.6 (a package of uWebSockets.js v20 binaries), pinned with its integrity
//! hash in `bench/peers/uws/package-lock.json` and installed with `npm ci` into
//! `bench/peers/uws/node_modules`. The script listens on a free loopback port, subscribes every
//! WebSocket connection to one topic and publishes what its `/pub` WebSocket receives, so the
//! harness publishes to it as to the tokio-tungstenite baseline. Node or the package missing →
//! skipped, with the command that installs it; the harness never installs anything itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Running, StartError, SystemId};
use crate::publish::PublishVia;
use crate::wire::handshake::Kind;

/// The npm package and version the lock file pins.
pub const PACKAGE: &str = "uwebsockets";
/// The pinned version.
pub const PACKAGE_VERSION: &str = "3.0.6";

/// Where the peer lives in the repository (the script, `package.json`, the lock file).
pub const PEER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/uws");

/// Environment variable naming another peer directory (a copy of `bench/peers/uws`).
pub const DIR_ENV: &str = "HERALD_BENCH_UWS_DIR";

/// The install command for a peer directory.
pub fn install_command(dir: &Path) -> String {
    format!("cd {} && npm ci --no-audit --no-fund", dir.display())
}

/// The peer directory: `$HERALD_BENCH_UWS_DIR`, else the repository's `bench/peers/uws`.
pub fn peer_dir() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PEER_DIR))
}

/// What `start` needs, found on disk: the node binary and the installed package's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `node`.
    pub node: PathBuf,
    /// `server.js`.
    pub script: PathBuf,
    /// The `version` of the installed package.
    pub package_version: String,
}

/// The `version` field of an npm `package.json`.
pub fn package_json_version(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// Finds node and the installed package in `dir`; a missing piece is a skip with its reason
/// and install command.
pub fn find(dir: &Path, node: Option<PathBuf>) -> Result<Found, StartError> {
    let install = install_command(dir);
    let script = dir.join("server.js");
    if !script.is_file() {
        return Err(StartError::Skipped {
            reason: format!(
                "{} not found (the uWebSockets.js peer ships in bench/peers/uws; set {DIR_ENV} to a copy)",
                script.display()
            ),
            install,
        });
    }
    let Some(node) = node else {
        return Err(StartError::Skipped {
            reason: "node (Node.js) is not installed".into(),
            install: format!("apt-get install -y nodejs npm && {install}"),
        });
    };
    let manifest = dir.join("node_modules").join(PACKAGE).join("package.json");
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        return Err(StartError::Skipped {
            reason: format!(
                "the npm package {PACKAGE} is not installed in {}",
                dir.join("node_modules").display()
            ),
            install,
        });
    };
    let package_version = package_json_version(&text)
        .ok_or_else(|| StartError::Failed(format!("{}: no version field", manifest.display())))?;
    Ok(Found {
        node,
        script,
        package_version,
    })
}

/// The version string for reports.
pub fn version_string(node_version: &str, package_version: &str) -> String {
    format!("{PACKAGE} {package_version} (uWebSockets.js v20) on Node.js {node_version}")
}

/// Starts the uWebSockets.js peer.
pub fn start(kind: Kind, tls: bool) -> Result<Running, StartError> {
    if tls {
        return Err(StartError::NoTls(
            "no TLS: the uWebSockets.js peer is run plaintext only (App, not SSLApp), and a \
             --tls run does not measure it in plaintext"
                .into(),
        ));
    }
    if kind == Kind::Sse {
        return Err(StartError::Failed(
            "the uWebSockets.js peer speaks WebSocket only".into(),
        ));
    }
    let dir = peer_dir();
    let found = find(&dir, super::on_path("node"))?;
    if found.package_version != PACKAGE_VERSION {
        return Err(StartError::Failed(format!(
            "{PACKAGE} {} is installed in {}, the lock file pins {PACKAGE_VERSION}: {}",
            found.package_version,
            dir.join("node_modules").display(),
            install_command(&dir)
        )));
    }
    let mut cmd = Command::new(&found.node);
    cmd.arg(&found.script)
        .args(["--listen", "127.0.0.1:0", "--lifeline"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let (sp, addr) = super::spawn_until_ready("uWebSockets.js (node)", &mut cmd)?;
    let node_version = super::version_of(&found.node, &["--version"]);
    let mut running = Running::plain_ws(
        SystemId::Uws,
        sp,
        addr,
        version_string(&node_version, &found.package_version),
    );
    running.publish = Some(PublishVia::WsText {
        addr,
        path: "/pub".into(),
    });
    running.notes = vec![
            "one Node.js process (uWS event loop on one thread), idleTimeout 0, compression off, every connection subscribed to one topic; backlog 512 (uSockets' fixed listen backlog)".into(),
        ];
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_of_a_package_json() {
        assert_eq!(
            package_json_version(r#"{"name":"uwebsockets","version":"3.0.6","main":"uws.js"}"#),
            Some("3.0.6".into())
        );
        assert_eq!(package_json_version(r#"{"name":"x"}"#), None);
        assert_eq!(package_json_version("not json"), None);
        assert_eq!(
            version_string("v20.20.2", "3.0.6"),
            "uwebsockets 3.0.6 (uWebSockets.js v20) on Node.js v20.20.2"
        );
    }

    #[test]
    fn missing_pieces_are_skips_that_name_the_install_command() {
        let dir = tempfile::tempdir().unwrap();
        // No script: the directory is not a peer directory.
        let Err(StartError::Skipped { reason, install }) = find(dir.path(), None) else {
            panic!("expected a skip")
        };
        assert!(reason.contains("server.js"), "{reason}");
        assert!(install.contains("npm ci"), "{install}");
        std::fs::write(dir.path().join("server.js"), "").unwrap();
        // No node.
        let Err(StartError::Skipped { reason, install }) = find(dir.path(), None) else {
            panic!("expected a skip")
        };
        assert!(reason.contains("node"), "{reason}");
        assert!(
            install.starts_with("apt-get install -y nodejs npm"),
            "{install}"
        );
        assert!(install.contains("npm ci --no-audit --no-fund"), "{install}");
        // Node, but no package.
        let node = PathBuf::from("/usr/bin/node");
        let Err(StartError::Skipped { reason, install }) = find(dir.path(), Some(node.clone()))
        else {
            panic!("expected a skip")
        };
        assert!(reason.contains("uwebsockets is not installed"), "{reason}");
        assert_eq!(install, install_command(dir.path()));
        // Installed.
        let pkg = dir.path().join("node_modules/uwebsockets");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("package.json"), r#"{"version":"3.0.6"}"#).unwrap();
        let found = find(dir.path(), Some(node.clone())).unwrap();
        assert_eq!(found.package_version, "3.0.6");
        assert_eq!(found.script, dir.path().join("server.js"));
        assert_eq!(found.node, node);
    }

    #[test]
    fn the_lock_file_pins_the_package_with_its_integrity() {
        let lock = std::fs::read_to_string(Path::new(PEER_DIR).join("package-lock.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&lock).unwrap();
        let p = &v["packages"]["node_modules/uwebsockets"];
        assert_eq!(p["version"], PACKAGE_VERSION);
        assert_eq!(
            p["integrity"],
            "sha512-0Nw22DDOd1YGnJ8/IHYVCDHZXAVqLnjBxktl2bSjcJRVcgasb2Zs8WCRhL41IydraLLq001c6ycHdIS+rEcAxw=="
        );
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(PEER_DIR).join("package.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["dependencies"]["uwebsockets"], PACKAGE_VERSION);
    }
}
