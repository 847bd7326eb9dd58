fn main() -> std::process::ExitCode {
    herald_edge::cli::main()
}
