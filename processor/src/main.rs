//! `herald-processor`: see [`herald_processor::cli`] for flags, environment and exit codes.

fn main() {
    std::process::exit(herald_processor::cli::main());
}
