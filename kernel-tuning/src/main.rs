//! `herald-tune`: check, plan, apply or script kernel settings for a Herald host.

fn main() {
    let code = herald_tune::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
