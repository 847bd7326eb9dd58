//! `script`: the same changes `apply` would make, rendered as a bash script an SRE can read,
//! review in a change request and run: one block per short sysctl with the reason as a
//! comment, recorded in the sysctl.d file and applied with `sysctl -w`.

use std::path::Path;

use crate::apply::{changes, conf_path, limit_shortfalls};
use crate::check::{Report, Status};
use crate::size::group_digits;
use crate::text::{shell_quote, wrap};
use crate::tunables::by_id;

/// Width of comment text.
const WIDTH: usize = 92;

/// The helper that records a key in the file (replacing an earlier line for it) and sets it.
const SET_SYSCTL: &str = r#"# set_sysctl KEY VALUE: record `KEY = VALUE` in $conf, replacing an earlier line for
# KEY, and apply it to the running kernel.
set_sysctl() {
    local key=$1 value=$2 tmp
    tmp=$(mktemp "$conf.XXXXXX")
    grep -v -E "^[[:space:]]*-?${key//./\\.}[[:space:]]*=" "$conf" > "$tmp" || true
    printf '%s = %s\n' "$key" "$value" >> "$tmp"
    chmod 0644 "$tmp"
    mv "$tmp" "$conf"
    sysctl -w "$key=$value"
}
"#;

/// Render the script for `report`; the file it maintains is under `etc`.
pub fn render(report: &Report, etc: &Path) -> String {
    let t = &report.target;
    let conf = conf_path(etc, t.role);
    let mut out = String::from("#!/usr/bin/env bash\n");
    out.push_str(&format!(
        "# herald-tune script: kernel settings for a Herald {} carrying {} connections with {} shard(s).\n",
        t.role,
        group_digits(t.connections),
        t.shards
    ));
    for line in wrap(
        "Generated from the values on the host that ran herald-tune; it only touches what fell short \
         there. Review it, then run it as root on that host (or on identical ones). Every setting is \
         recorded in the sysctl.d file below, so it survives a reboot, and applied at once.",
        WIDTH,
        "# ",
    ) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("set -euo pipefail\n\n");
    out.push_str(&format!(
        "conf={}\n\n",
        shell_quote(&conf.display().to_string())
    ));
    out.push_str(
        "if [[ $(id -u) -ne 0 ]]; then\n    echo \"run as root: this script writes $conf and sets sysctls\" >&2\n    exit 1\nfi\n\n",
    );
    out.push_str("mkdir -p \"$(dirname \"$conf\")\"\ntouch \"$conf\"\n\n");
    out.push_str(SET_SYSCTL);

    let changes = changes(report);
    if changes.is_empty() {
        out.push_str("\n# Every sysctl already meets the target on this host: nothing to set.\n");
    }
    for c in &changes {
        let f = report.finding(c.key);
        let severity = f.map_or(String::new(), |f| format!(" ({})", f.severity));
        out.push_str(&format!(
            "\n# {}{severity}: now {}, required {}.\n",
            c.key,
            c.from,
            f.map_or(String::new(), |f| f.required.to_string())
        ));
        out.push_str(&format!("# Sized as: {}.\n", c.sizing));
        if let Some(t) = by_id(c.key) {
            for line in wrap(t.why(), WIDTH, "# ") {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out.push_str(&format!(
            "set_sysctl {} {}\n",
            c.key,
            shell_quote(&c.to.sysctl_text())
        ));
    }

    let fine: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.status == Status::Ok)
        .map(|f| format!("{} ({})", f.id, f.current_text()))
        .collect();
    let skipped: Vec<String> = report
        .findings
        .iter()
        .filter_map(|f| match &f.status {
            Status::Unknown(r) => Some(format!("{}: unknown, {r}", f.id)),
            Status::NotApplicable(r) => Some(format!("{}: {r}", f.id)),
            _ => None,
        })
        .collect();
    if !fine.is_empty() {
        out.push('\n');
        for line in wrap(
            &format!("Already fine on this host: {}.", fine.join(", ")),
            WIDTH,
            "# ",
        ) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    for s in &skipped {
        for line in wrap(&format!("Not set: {s}"), WIDTH, "# ") {
            out.push_str(&line);
            out.push('\n');
        }
    }

    let limits = limit_shortfalls(report);
    if !limits.is_empty() {
        out.push('\n');
        for line in wrap(
            &format!(
                "Process limits are not sysctls: they belong to the {} unit. The values below were read \
                 from the process that ran herald-tune, which may not be the service (check it with \
                 `herald-tune check --pid $(pidof -s {})`), so this script does not set them. To set \
                 them, run:",
                t.role.unit(),
                t.role.unit()
            ),
            WIDTH,
            "# ",
        ) {
            out.push_str(&line);
            out.push('\n');
        }
        for f in limits {
            out.push_str(&format!(
                "#   {} (now {}, required {}):\n#     {}\n",
                f.id,
                f.current_text(),
                f.required,
                f.fix
            ));
        }
    }
    out
}
