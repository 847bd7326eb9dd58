//! Plan arithmetic for 10k / 1M / 10M connections with concrete numbers, and the rendering
//! of the plan as a sysctl.d file and as JSON.

use herald_tune::plan::plan;
use herald_tune::sysctl_file;
use herald_tune::{Role, Target};

const GIB: u64 = 1 << 30;

fn sysctls(p: &herald_tune::Plan) -> Vec<(String, String)> {
    p.settings
        .iter()
        .map(|s| (s.key.to_string(), s.value.sysctl_text()))
        .collect()
}

fn limits(p: &herald_tune::Plan) -> Vec<(String, String)> {
    p.limits
        .iter()
        .map(|l| (l.systemd.to_string(), l.value.sysctl_text()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn edge_10k_on_8gib_keeps_kernel_defaults_where_they_are_larger() {
    let p = plan(
        &Target::new(Role::Edge, 10_000)
            .with_memory(Some(8 * GIB))
            .with_shards(8),
    )
    .unwrap();
    assert_eq!(p.connections_allowed, Some(1_184_025));
    assert_eq!(p.reserve_bytes, Some(GIB));
    assert!(p.fits());
    assert_eq!(
        sysctls(&p),
        pairs(&[
            ("fs.file-max", "838860"),
            ("fs.nr_open", "1048576"),
            ("net.core.somaxconn", "4096"),
            ("net.ipv4.tcp_max_syn_backlog", "4096"),
            ("net.core.netdev_max_backlog", "1024"),
            ("net.ipv4.tcp_fin_timeout", "15"),
            ("net.ipv4.tcp_mem", "131072 163840 196608"),
            ("net.ipv4.tcp_rmem", "4096 16384 4194304"),
            ("net.ipv4.tcp_wmem", "4096 16384 4194304"),
            ("net.ipv4.tcp_keepalive_time", "300"),
            ("net.ipv4.tcp_keepalive_intvl", "30"),
            ("net.ipv4.tcp_keepalive_probes", "5"),
            ("net.netfilter.nf_conntrack_max", "262144"),
            ("vm.max_map_count", "262144"),
            ("kernel.io_uring_disabled", "0"),
        ])
    );
    assert_eq!(
        limits(&p),
        pairs(&[("LimitNOFILE", "21000"), ("LimitMEMLOCK", "67108864")])
    );
    assert_eq!(
        p.left_default,
        vec!["net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"]
    );
}

#[test]
fn edge_1m_on_8gib_caps_tcp_mem_by_what_connections_leave() {
    let p = plan(
        &Target::new(Role::Edge, 1_000_000)
            .with_memory(Some(8 * GIB))
            .with_shards(8),
    )
    .unwrap();
    assert_eq!(p.connections_allowed, Some(1_184_025));
    assert!(p.fits());
    assert_eq!(
        sysctls(&p),
        pairs(&[
            ("fs.file-max", "2220000"),
            ("fs.nr_open", "1110000"),
            ("net.core.somaxconn", "62500"),
            ("net.ipv4.tcp_max_syn_backlog", "62500"),
            ("net.core.netdev_max_backlog", "15625"),
            ("net.ipv4.tcp_fin_timeout", "15"),
            // max = (8 GiB - 512 MiB - 1e6 x 6348) / 4096, below 1.5 x 1e6 x 4300 / 4096;
            // min = 2/3 max, pressure = 5/6 max.
            ("net.ipv4.tcp_mem", "277516 346895 416275"),
            ("net.ipv4.tcp_rmem", "4096 16384 4194304"),
            ("net.ipv4.tcp_wmem", "4096 16384 4194304"),
            ("net.ipv4.tcp_keepalive_time", "300"),
            ("net.ipv4.tcp_keepalive_intvl", "30"),
            ("net.ipv4.tcp_keepalive_probes", "5"),
            ("net.netfilter.nf_conntrack_max", "1200000"),
            ("vm.max_map_count", "262144"),
            ("kernel.io_uring_disabled", "0"),
        ])
    );
    assert_eq!(
        limits(&p),
        pairs(&[("LimitNOFILE", "1110000"), ("LimitMEMLOCK", "67108864")])
    );
}

#[test]
fn edge_1m_on_16gib_is_not_capped() {
    let p = plan(
        &Target::new(Role::Edge, 1_000_000)
            .with_memory(Some(16 * GIB))
            .with_shards(16),
    )
    .unwrap();
    assert_eq!(p.connections_allowed, Some(2_452_623));
    assert_eq!(
        p.value("net.ipv4.tcp_mem").unwrap().sysctl_text(),
        "1049805 1312256 1574708"
    );
    assert_eq!(
        limits(&p),
        pairs(&[("LimitNOFILE", "1110000"), ("LimitMEMLOCK", "134217728")])
    );
}

#[test]
fn edge_10m_on_64gib() {
    let p = plan(
        &Target::new(Role::Edge, 10_000_000)
            .with_memory(Some(64 * GIB))
            .with_shards(32),
    )
    .unwrap();
    assert_eq!(p.reserve_bytes, Some(4_831_838_208));
    assert_eq!(p.connections_allowed, Some(10_064_215));
    assert!(p.fits());
    let get = |k: &str| p.value(k).unwrap().sysctl_text();
    assert_eq!(get("fs.file-max"), "22020000");
    assert_eq!(get("fs.nr_open"), "11010000");
    assert_eq!(get("net.core.somaxconn"), "65535");
    assert_eq!(get("net.ipv4.tcp_max_syn_backlog"), "65535");
    assert_eq!(get("net.core.netdev_max_backlog"), "16383");
    // 64 GiB - 512 MiB - 1e7 x 6348 leaves 4.4 GiB for buffers: below the kernel's default.
    assert_eq!(get("net.ipv4.tcp_mem"), "765398 956747 1148097");
    assert_eq!(get("net.netfilter.nf_conntrack_max"), "12000000");
    assert_eq!(
        limits(&p),
        pairs(&[("LimitNOFILE", "11010000"), ("LimitMEMLOCK", "268435456")])
    );
}

#[test]
fn a_target_the_memory_cannot_carry_is_sized_for_what_fits() {
    let p = plan(
        &Target::new(Role::Edge, 2_000_000)
            .with_memory(Some(8 * GIB))
            .with_shards(8),
    )
    .unwrap();
    assert!(!p.fits());
    // Buffers get only the burst reserve (memory / 16) the allowed connections leave.
    assert_eq!(
        p.value("net.ipv4.tcp_mem").unwrap().sysctl_text(),
        "87381 109226 131072"
    );
    // Cheap limits still follow the asked-for count.
    assert_eq!(p.value("fs.nr_open").unwrap().sysctl_text(), "2210000");
    assert!(p.render_sysctl().contains("# WARNING: the memory does not carry 2,000,000 connections; tcp_mem is sized for 1,184,025"));
}

#[test]
fn per_conn_budget_changes_what_memory_allows() {
    let t = Target::new(Role::Edge, 1_000_000)
        .with_memory(Some(8 * GIB))
        .with_per_conn_bytes(16_384);
    let p = plan(&t).unwrap();
    assert_eq!(p.connections_allowed, Some(458_752));
    assert!(!p.fits());
}

#[test]
fn processor_50k_on_8gib() {
    let p = plan(&Target::new(Role::Processor, 50_000).with_memory(Some(8 * GIB))).unwrap();
    assert_eq!(
        sysctls(&p),
        pairs(&[
            ("fs.file-max", "838860"),
            ("fs.nr_open", "1048576"),
            ("net.ipv4.ip_local_port_range", "10240 65535"),
            ("net.ipv4.tcp_tw_reuse", "1"),
            ("net.ipv4.tcp_fin_timeout", "15"),
            ("net.ipv4.tcp_mem", "131072 163840 196608"),
            ("net.ipv4.tcp_keepalive_time", "300"),
            ("net.ipv4.tcp_keepalive_intvl", "30"),
            ("net.ipv4.tcp_keepalive_probes", "5"),
            ("net.netfilter.nf_conntrack_max", "262144"),
        ])
    );
    assert_eq!(limits(&p), pairs(&[("LimitNOFILE", "65000")]));
}

#[test]
fn rendered_file_parses_back_to_the_settings() {
    let p = plan(
        &Target::new(Role::Edge, 1_000_000)
            .with_memory(Some(8 * GIB))
            .with_shards(2),
    )
    .unwrap();
    let text = p.render_sysctl();
    let entries = sysctl_file::parse(&text).unwrap();
    let parsed: Vec<(String, String)> = entries.into_iter().map(|e| (e.key, e.value)).collect();
    assert_eq!(parsed, sysctls(&p));
    assert!(
        text.starts_with("# /etc/sysctl.d/99-herald-edge.conf, generated by `herald-tune plan`\n")
    );
    assert!(text.contains("# target: edge, 1,000,000 connections, 2 shard(s), 6348 B per connection (2048 user + 4300 kernel)\n"));
    assert!(text.contains("carries 1,184,025 connections"));
    assert!(text.contains("# LimitNOFILE=1110000"));
    assert!(text.contains("# LimitMEMLOCK=16777216"));
    assert!(text.contains("# = 1.1 GiB / 1.3 GiB / 1.6 GiB of socket buffers: max is one queued push (a page) on 416,275 connections at once\n"), "{text}");
    // Every setting line is preceded by a comment saying how it was sized.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with('#') && !l.is_empty() {
            assert!(lines[i - 1].starts_with('#'), "no comment above {l}");
        }
    }
}

#[test]
fn json_plan_shape() {
    let p = plan(
        &Target::new(Role::Edge, 10_000_000)
            .with_memory(Some(64 * GIB))
            .with_shards(4),
    )
    .unwrap();
    let j = p.to_json();
    assert_eq!(j["connections_allowed"], 10_064_215);
    assert_eq!(j["fits"], true);
    assert_eq!(j["target"]["memory_bytes"], 64 * GIB);
    let mem = j["sysctls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "net.ipv4.tcp_mem")
        .unwrap();
    assert_eq!(mem["value"], "765398 956747 1148097");
    assert_eq!(j["limits"][0]["value"], "11010000");
}

#[test]
fn invalid_targets_are_refused() {
    assert!(plan(&Target::new(Role::Edge, 0)).is_err());
    assert!(plan(&Target::new(Role::Edge, 10).with_per_conn_bytes(4299)).is_err());
    assert!(plan(&Target::new(Role::Edge, 10).with_memory(Some(512 << 20))).is_err());
}
