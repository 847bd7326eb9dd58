//! The `herald-tune` command line: argument parsing (clap) and the four commands, writing to
//! the given streams and returning the exit code so tests can drive it in-process.
//! Exit codes: 0 fine; 1 a fatal shortfall (`check`), a target the memory cannot carry
//! (`plan`) or a failed write/load (`apply`); 64 a usage error.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::apply::{self, limit_shortfalls};
use crate::check::check;
use crate::plan::plan;
use crate::script;
use crate::size::parse_size;
use crate::sysroot::{LimitsOf, SysRoot};
use crate::target::{Role, Target, DEFAULT_PER_CONN_BYTES};

/// Exit code for bad usage (EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// Kernel and process-limit tuning for Herald hosts.
#[derive(Debug, Parser)]
#[command(name = "herald-tune", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare this host with what the target needs; exit 1 when something fatal is short.
    Check(CheckArgs),
    /// Compute the settings for N connections on a host with the given memory.
    Plan(PlanArgs),
    /// Write the short sysctls to /etc/sysctl.d/99-herald-<role>.conf and load them (root).
    Apply(ApplyArgs),
    /// Print a reviewable bash script making the changes `apply` would make.
    Script(ScriptArgs),
}

/// The target as given on a host: defaults filled from the host.
#[derive(Debug, Args)]
struct HostTarget {
    /// Which Herald service this host runs.
    #[arg(long, value_enum, default_value_t = Role::Edge)]
    role: Role,
    /// Connections to carry (edge: clients; processor: outbound). Default: 100000 for an
    /// edge, 10000 for a processor.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    connections: Option<u64>,
    /// Host memory (8GiB, 512MiB, 1.5GB, bytes). Default: MemTotal under --root.
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Bytes per connection, user space + kernel (the kernel's share is 4300).
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_PER_CONN_BYTES)]
    per_conn_bytes: u64,
    /// Edge shards (one per core). Default: CPUs available to this process.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    shards: Option<u32>,
    /// Directory standing for / (its proc/ is read); for tests and offline trees.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    target: HostTarget,
    /// Read resource limits from /proc/<PID>/limits (a running service) instead of this process.
    #[arg(long)]
    pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// Which Herald service the host runs.
    #[arg(long, value_enum, default_value_t = Role::Edge)]
    role: Role,
    /// Connections to carry.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Host memory (8GiB, 512MiB, 1.5GB, bytes).
    #[arg(long, value_parser = parse_size)]
    memory: u64,
    /// Bytes per connection, user space + kernel (the kernel's share is 4300).
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_PER_CONN_BYTES)]
    per_conn_bytes: u64,
    /// Edge shards (one per core). Default: CPUs available to this process.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    shards: Option<u32>,
    /// Print JSON instead of a sysctl.d file.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    #[command(flatten)]
    target: HostTarget,
    /// Directory standing for /etc (where sysctl.d/ is written).
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    etc: PathBuf,
    /// Show what would change; write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct ScriptArgs {
    #[command(flatten)]
    target: HostTarget,
    /// Directory standing for /etc in the script's paths.
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    etc: PathBuf,
}

fn default_shards() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

impl HostTarget {
    fn resolve(&self, root: &SysRoot) -> Target {
        Target::new(
            self.role,
            self.connections
                .unwrap_or_else(|| self.role.default_connections()),
        )
        .with_memory(self.memory.or_else(|| root.memory_bytes()))
        .with_per_conn_bytes(self.per_conn_bytes)
        .with_shards(self.shards.unwrap_or_else(default_shards))
    }
}

/// Parse `args` (including the program name) and run the command.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            return if e.use_stderr() {
                let _ = write!(err, "{text}");
                EXIT_USAGE
            } else {
                let _ = write!(out, "{text}");
                0
            };
        }
    };
    match execute(cli.command, out, err) {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            let _ = writeln!(err, "herald-tune: {message}");
            code
        }
    }
}

/// A command that could not finish.
struct Failure {
    code: i32,
    message: String,
}

fn usage(message: impl ToString) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.to_string(),
    }
}

fn failed(message: impl ToString) -> Failure {
    Failure {
        code: 1,
        message: message.to_string(),
    }
}

fn io_failed(e: std::io::Error) -> Failure {
    failed(format!("cannot write output: {e}"))
}

fn execute(command: Command, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, Failure> {
    match command {
        Command::Check(a) => {
            let mut root = SysRoot::new(&a.target.root);
            if let Some(pid) = a.pid {
                root = root.with_limits_of(LimitsOf::Pid(pid));
            }
            let target = a.target.resolve(&root);
            target.validate().map_err(usage)?;
            let report = check(&root, &target);
            if a.json {
                let text = serde_json::to_string_pretty(&report.to_json()).map_err(failed)?;
                writeln!(out, "{text}").map_err(io_failed)?;
            } else {
                write!(out, "{}", report.render_table()).map_err(io_failed)?;
            }
            Ok(report.exit_code())
        }
        Command::Plan(a) => {
            let target = Target::new(a.role, a.connections)
                .with_memory(Some(a.memory))
                .with_per_conn_bytes(a.per_conn_bytes)
                .with_shards(a.shards.unwrap_or_else(default_shards));
            let p = plan(&target).map_err(usage)?;
            if a.json {
                let text = serde_json::to_string_pretty(&p.to_json()).map_err(failed)?;
                writeln!(out, "{text}").map_err(io_failed)?;
            } else {
                write!(out, "{}", p.render_sysctl()).map_err(io_failed)?;
            }
            if !p.fits() {
                let _ = writeln!(
                    err,
                    "herald-tune: the memory carries {} connections, fewer than --connections {}",
                    p.connections_allowed.unwrap_or(0),
                    a.connections
                );
                return Ok(1);
            }
            Ok(0)
        }
        Command::Apply(a) => {
            let root = SysRoot::new(&a.target.root);
            let target = a.target.resolve(&root);
            target.validate().map_err(usage)?;
            let report = check(&root, &target);
            let change = apply::prepare(&report, &a.etc).map_err(failed)?;
            let limits = limit_shortfalls(&report);
            let limit_note = |out: &mut dyn Write| -> std::io::Result<()> {
                for f in &limits {
                    writeln!(
                        out,
                        "note: {} is short ({}, required {}); not set by apply. Fix: {}",
                        f.id,
                        f.current_text(),
                        f.required,
                        f.fix
                    )?;
                }
                Ok(())
            };
            if change.is_noop() {
                writeln!(
                    out,
                    "nothing to change: every sysctl meets the target ({} is left as it is)",
                    change.path.display()
                )
                .map_err(io_failed)?;
                limit_note(out).map_err(io_failed)?;
                return Ok(0);
            }
            write!(out, "{}", change.diff()).map_err(io_failed)?;
            if a.dry_run {
                writeln!(out, "\ndry run: nothing written").map_err(io_failed)?;
                limit_note(out).map_err(io_failed)?;
                return Ok(0);
            }
            if root.is_host() && apply::effective_uid() != Some(0) {
                return Err(failed(
                    "apply changes the running kernel and needs root; preview with --dry-run or review `herald-tune script`",
                ));
            }
            change
                .write()
                .map_err(|e| failed(format!("cannot write {}: {e}", change.path.display())))?;
            writeln!(out, "\nwrote {}", change.path.display()).map_err(io_failed)?;
            if root.is_host() {
                let text = apply::load(&change.path).map_err(failed)?;
                write!(out, "{text}").map_err(io_failed)?;
            } else {
                writeln!(
                    out,
                    "not loaded: --root is not /, so the running kernel is not the one checked"
                )
                .map_err(io_failed)?;
            }
            limit_note(out).map_err(io_failed)?;
            Ok(0)
        }
        Command::Script(a) => {
            let root = SysRoot::new(&a.target.root);
            let target = a.target.resolve(&root);
            target.validate().map_err(usage)?;
            let report = check(&root, &target);
            write!(out, "{}", script::render(&report, &a.etc)).map_err(io_failed)?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(
            std::iter::once("herald-tune").chain(args.iter().copied()),
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn usage_errors_exit_64_and_name_the_flag() {
        let (code, _, err) = run_args(&["plan", "--connections", "1000", "--memory", "8XB"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("--memory"), "{err}");
        let (code, _, err) = run_args(&["plan", "--connections", "0", "--memory", "8GiB"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("--connections"), "{err}");
        let (code, _, err) = run_args(&[
            "plan",
            "--connections",
            "10",
            "--memory",
            "8GiB",
            "--per-conn-bytes",
            "100",
        ]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("--per-conn-bytes"), "{err}");
        let (code, _, err) = run_args(&["plan", "--connections", "10", "--memory", "100MiB"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(err.contains("--memory"), "{err}");
        let (code, _, _) = run_args(&["check", "--role", "router"]);
        assert_eq!(code, EXIT_USAGE);
        let (code, _, _) = run_args(&["frobnicate"]);
        assert_eq!(code, EXIT_USAGE);
    }

    #[test]
    fn help_goes_to_stdout_with_exit_0() {
        let (code, out, _) = run_args(&["--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("plan"));
    }

    #[test]
    fn plan_that_does_not_fit_exits_1_but_prints() {
        let (code, out, err) = run_args(&[
            "plan",
            "--connections",
            "5000000",
            "--memory",
            "8GiB",
            "--shards",
            "4",
        ]);
        assert_eq!(code, 1);
        assert!(out.contains("WARNING"), "{out}");
        assert!(err.contains("1184025"), "{err}");
    }
}
