//! nginx + nchan from Debian as a peer: configuration `bench/peers/nchan.conf` (compiled in),
//! started in a private prefix directory. Not installed → skipped, with the install command;
//! the harness never installs anything itself.
//!
//! With `--tls` the subscriber port is `listen … ssl` with the run's certificate (HTTP/1.1
//! over TLS: no `http2`; TLS 1.2 and 1.3 as Herald's edge accepts, nginx 1.22 leaves 1.3 out
//! by default; its default stateless session tickets, as the edge issues) and the harness
//! publishes on a second, plaintext loopback listener, as it publishes to Herald's delivery
//! port.

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

/// TLS on the subscriber port: the certificate files and the plaintext publisher port.
#[derive(Debug, Clone)]
pub struct NginxTls<'a> {
    /// Certificate and key.
    pub files: &'a crate::tls::ServerFiles,
    /// The plaintext listener the harness publishes on.
    pub publish_port: u16,
}

/// The configuration for `prefix`, `port` and `workers` (and TLS on `port`).
pub fn render(
    prefix: &str,
    port: u16,
    module: &str,
    workers: usize,
    tls: Option<&NginxTls<'_>>,
) -> String {
    let reuseport = if workers > 1 { " reuseport" } else { "" };
    let tls_block = match tls {
        None => String::new(),
        Some(t) => format!(
            "        # --tls: HTTP/1.1 over TLS for subscribers (no http2), the run's certificate.\n\
             \x20       ssl_certificate {};\n\
             \x20       ssl_certificate_key {};\n\
             \x20       ssl_protocols TLSv1.2 TLSv1.3;\n\
             \x20       # The harness publishes here, in plaintext, as to Herald's delivery port.\n\
             \x20       listen 127.0.0.1:{} backlog=1024{reuseport};\n",
            t.files.cert.display(),
            t.files.key.display(),
            t.publish_port
        ),
    };
    TEMPLATE
        .replace("@PREFIX@", prefix)
        .replace("@PORT@", &port.to_string())
        .replace("@MODULE@", module)
        .replace("@WORKERS@", &workers.to_string())
        .replace("@REUSEPORT@", reuseport)
        .replace("@SSL@", if tls.is_some() { " ssl" } else { "" })
        .replace("@TLS@\n", &tls_block)
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

/// Starts nginx + nchan with `workers` worker processes (subscribers over TLS with `tls`).
pub fn start(
    kind: Kind,
    workers: usize,
    tls: Option<&crate::tls::ServerFiles>,
) -> Result<Running, StartError> {
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
    let publish_port = if tls.is_some() {
        super::free_port()?
    } else {
        port
    };
    let nginx_tls = tls.map(|files| NginxTls {
        files,
        publish_port,
    });
    let conf = render(
        &prefix,
        port,
        &module.to_string_lossy(),
        workers.max(1),
        nginx_tls.as_ref(),
    );
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
    let publish_addr: SocketAddr = ([127, 0, 0, 1], publish_port).into();
    // The publisher port is probed (a plaintext probe of the TLS port would only log an error).
    if let Err(e) = super::wait_listening(publish_addr, sp.pid, Duration::from_secs(15)) {
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
            tls: tls.map(|f| crate::tls::ClientTls {
                ca: f.cert.clone(),
                server_name: crate::tls::SERVER_NAME.into(),
            }),
        },
        tree: ProcTree::new(sp.pid),
        publish: Some(PublishVia::HttpPost {
            addr: publish_addr,
            path: "/pub".into(),
        }),
        admin: None,
        aux: Vec::new(),
        version: format!(
            "{} + nchan {}",
            super::version_of(&nginx, &["-v"]).replace("nginx version: ", ""),
            nchan_version()
        ),
        notes: {
            let mut notes = vec![format!(
                "{} worker(s), worker_connections 21000, backlog 1024",
                workers.max(1)
            )];
            if tls.is_some() {
                notes.push(format!(
                    "clients on `listen {addr} ssl` (OpenSSL, the run's self-signed certificate, HTTP/1.1); publisher on plaintext {publish_addr}"
                ));
            }
            notes
        },
        owned: vec![sp.pid],
        work: Some(work),
        lifeline: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listens(conf: &str) -> Vec<&str> {
        conf.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("listen "))
            .collect()
    }

    #[test]
    fn template_renders_every_placeholder() {
        let c = render("/tmp/x", 8123, "/m.so", 2, None);
        assert!(!c.contains('@'), "{c}");
        assert!(c.contains("listen 127.0.0.1:8123 backlog=1024 reuseport;"));
        assert!(c.contains("worker_connections 21000;"));
        assert!(c.contains("load_module /m.so;"));
        assert!(!c.contains("ssl_certificate"), "{c}");
        assert!(!listens(&c).iter().any(|l| l.contains("ssl")), "{c}");
        let one = render("/tmp/x", 1, "/m.so", 1, None);
        assert!(one.contains("listen 127.0.0.1:1 backlog=1024;"));
    }

    #[test]
    fn tls_adds_ssl_to_the_subscriber_port_and_a_plaintext_publisher_port() {
        let files = crate::tls::ServerFiles {
            cert: "/run/b.crt".into(),
            key: "/run/b.key".into(),
        };
        let tls = NginxTls {
            files: &files,
            publish_port: 8124,
        };
        let c = render("/tmp/x", 8123, "/m.so", 1, Some(&tls));
        assert!(!c.contains('@'), "{c}");
        assert!(c.contains("listen 127.0.0.1:8123 ssl backlog=1024;"), "{c}");
        assert!(c.contains("listen 127.0.0.1:8124 backlog=1024;"), "{c}");
        assert!(c.contains("ssl_certificate /run/b.crt;"), "{c}");
        assert!(c.contains("ssl_certificate_key /run/b.key;"), "{c}");
        assert!(c.contains("ssl_protocols TLSv1.2 TLSv1.3;"), "{c}");
        assert_eq!(listens(&c).len(), 2, "{c}");
        assert!(!c
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("http2")));
    }
}
