//! `herald` — the command line of Herald. Subcommands live in their own modules.

mod demo;
mod dev;
mod send;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Herald: push messaging to millions of always-on WebSocket/SSE connections.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a client JWT (HS256) for connecting to an edge.
    Token(token::TokenArgs),
    /// Publish one push through Kafka.
    Send(send::SendArgs),
    /// Run the whole system in one process on embedded defaults (Kafka, registry, edge, processor).
    Dev(dev::DevArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Token(args) => token::run(&args),
        Command::Send(args) => send::run(&args),
        Command::Dev(args) => dev::run(&args),
    }
}
