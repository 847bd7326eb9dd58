//! `herald token`: issue an HS256 client token (user = `sub`, device = `did`).

use std::process::ExitCode;

use clap::Args;
use herald_edge::auth::jwt::{issue_hs256, Claims};
use herald_edge::auth::valid_id;
use herald_edge::config::parse_duration;

/// Arguments of `herald token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The edge's HS256 secret (`jwt_secret`).
    #[arg(long, env = "HERALD_JWT_SECRET")]
    pub jwt_secret: String,
    /// User id (`sub`).
    #[arg(long)]
    pub user: String,
    /// Device id (`did`); omitted = the edge generates one per connection.
    #[arg(long)]
    pub device: Option<String>,
    /// Validity: ms, s, m or h (e.g. 30m, 1h, 48h).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Issuer (`iss`), when the edge requires one.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Audience (`aud`), when the edge requires one.
    #[arg(long)]
    pub audience: Option<String>,
}

/// Prints the token; exit 64 on bad arguments.
pub(crate) fn run(a: &TokenArgs) -> ExitCode {
    let ttl = match parse_duration(&a.ttl) {
        Ok(t) if !t.is_zero() => t,
        Ok(_) => return fail("--ttl must be positive"),
        Err(e) => return fail(&format!("--ttl: {e}")),
    };
    if !valid_id(&a.user) {
        return fail("--user must be 1–256 bytes without `/` or control characters");
    }
    if a.device.as_deref().is_some_and(|d| !valid_id(d)) {
        return fail("--device must be 1–256 bytes without `/` or control characters");
    }
    if a.jwt_secret.len() < 16 {
        return fail("--jwt-secret must be at least 16 bytes (the edge refuses shorter secrets)");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let token = issue_hs256(
        a.jwt_secret.as_bytes(),
        &Claims {
            sub: a.user.clone(),
            did: a.device.clone(),
            exp: now + ttl.as_secs().max(1),
            nbf: None,
            iss: a.issuer.clone(),
            aud: a.audience.clone(),
        },
    );
    println!("{token}");
    ExitCode::SUCCESS
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("herald token: {msg}");
    ExitCode::from(64)
}
