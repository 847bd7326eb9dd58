//! `herald-bench`: see the library's documentation and `docs/benchmarks.md`.

fn main() -> std::process::ExitCode {
    herald_bench::cli::main()
}
