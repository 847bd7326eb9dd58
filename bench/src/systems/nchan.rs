//! nginx + nchan from Debian as a peer: configuration `bench/peers/nchan.conf` (compiled in),
//! started in a private prefix directory. Not installed → skipped, with the install command;
//! the harness never installs anything itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Running, StartError, SystemId};
use crate::children;
use crate::pool::ClientTarget;
use crate::procfs::ProcTree;
use crate::publish::PublishVia;
use crate::wire::handshake::Kind;

/// The configuration template shipped in `bench/peers/`.
pub const TEMPLATE: &str = include_str!("../../peers/nchan.conf");

/// How to install the peer on Debian.
pub const INSTALL: &str = "apt-get install -y nginx libnginx-mod-nchan";

/// Where Debian's libnginx-mod-nchan puts the module.
const MODULE_PATHS: [&str; 2] = [
    "/usr/lib/nginx/modules/ngx_nchan_module.so",
    "/usr/share/nginx/modules/ngx_nchan_module.so",
];

/// The configuration for `prefix`, `port` and `workers`.
pub fn render(prefix: &str, port: u16, module: &str, workers: usize) -> String {
    TEMPLATE
        .replace("@PREFIX@", prefix)
        .replace("@PORT@", &port.to_string())
        .replace("@MODULE@", module)
        .replace("@WORKERS@", &workers.to_string())
        .replace("@REUSEPORT@", if workers > 1 { " reuseport" } else { "" })
}

fn nchan_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "libnginx-mod-nchan"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Starts nginx + nchan with `workers` worker processes.
pub fn start(kind: Kind, workers: usize) -> Result<Running, StartError> {
    let Some(nginx) = super::on_path("nginx") else {
        return Err(StartError::Skipped {
            reason: "nginx is not installed".into(),
            install: INSTALL.into(),
        });
    };
    let Some(module) = MODULE_PATHS.iter().map(PathBuf::from).find(|p| p.is_file()) else {
        return Err(StartError::Skipped {
            reason: "the nchan module (libnginx-mod-nchan) is not installed".into(),
            install: INSTALL.into(),
        });
    };
    let work = tempfile::Builder::new()
        .prefix("herald-bench-nchan-")
        .tempdir()
        .map_err(|e| StartError::Failed(format!("no temp dir: {e}")))?;
    let port = super::free_port()?;
    let prefix = work.path().to_string_lossy().to_string();
    let conf = render(&prefix, port, &module.to_string_lossy(), workers.max(1));
    let conf_path = work.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| StartError::Failed(e.to_string()))?;
    let mut cmd = Command::new(&nginx);
    cmd.arg("-p")
        .arg(work.path())
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let sp = children::spawn("nginx", &mut cmd)
        .map_err(|e| StartError::Failed(format!("cannot start nginx: {e}")))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    if let Err(e) = super::wait_listening(addr, sp.pid, Duration::from_secs(15)) {
        children::kill(sp.pid);
        let log = std::fs::read_to_string(work.path().join("error.log")).unwrap_or_default();
        return Err(StartError::Failed(format!("nginx {e}: {}", log.trim())));
    }
    Ok(Running {
        id: SystemId::Nchan,
        target: ClientTarget {
            addr,
            kind,
            path: "/sub".into(),
            jwt_secret: None,
            user_prefix: "b".into(),
        },
        tree: ProcTree::new(sp.pid),
        publish: Some(PublishVia::HttpPost {
            addr,
            path: "/pub".into(),
        }),
        admin: None,
        aux: Vec::new(),
        version: format!(
            "{} + nchan {}",
            super::version_of(&nginx, &["-v"]).replace("nginx version: ", ""),
            nchan_version()
        ),
        notes: vec![format!(
            "{} worker(s), worker_connections 21000, backlog 1024",
            workers.max(1)
        )],
        owned: vec![sp.pid],
        work: Some(work),
        lifeline: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_renders_every_placeholder() {
        let c = render("/tmp/x", 8123, "/m.so", 2);
        assert!(!c.contains('@'), "{c}");
        assert!(c.contains("listen 127.0.0.1:8123 backlog=1024 reuseport;"));
        assert!(c.contains("worker_connections 21000;"));
        assert!(c.contains("load_module /m.so;"));
        let one = render("/tmp/x", 1, "/m.so", 1);
        assert!(one.contains("listen 127.0.0.1:1 backlog=1024;"));
    }
}
