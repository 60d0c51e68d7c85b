//! The `crier` command. It parses arguments and wires the libraries together; behaviour
//! lives in `crier-server`.

mod serve;
mod settings;
mod token;

use clap::{Parser, Subcommand};

/// Crier: a realtime server that speaks the Supabase Realtime protocol.
#[derive(Debug, Parser)]
#[command(name = "crier", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. With no JWT secret, a development secret and keys are printed.
    Serve(Box<settings::ServeArgs>),
    /// Print a signed JWT (on the last line of output) for clients and tests.
    Token(token::TokenArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve::run(*args))
        }
        Command::Token(args) => token::run(&args),
    }
}
