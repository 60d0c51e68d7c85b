//! The `crier` command. It parses arguments and wires the libraries together; behaviour
//! lives in `crier-server` and `crier-client`.

mod bench;
mod client_commands;
mod serve;
mod settings;
mod token;

use std::process::ExitCode;

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
    /// Print a channel's messages as JSON lines until interrupted.
    #[command(long_about = client_commands::LISTEN_LONG_ABOUT)]
    Listen(client_commands::ListenArgs),
    /// Send one broadcast to a channel.
    #[command(long_about = client_commands::SEND_LONG_ABOUT)]
    Send(client_commands::SendArgs),
    /// Track a presence and print the channel's presence state as it changes.
    #[command(long_about = client_commands::PRESENCE_LONG_ABOUT)]
    Presence(client_commands::PresenceArgs),
    /// Load-test Crier or a peer server (throughput, latency, memory).
    #[command(long_about = bench::BENCH_LONG_ABOUT)]
    Bench(bench::BenchArgs),
    /// A worker process of a split `crier bench` run (started by `crier bench` itself).
    #[command(hide = true)]
    BenchWorker,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve::run(*args))?;
        }
        Command::Token(args) => token::run(&args)?,
        Command::Listen(args) => return Ok(client_commands::listen(args)),
        Command::Send(args) => return Ok(client_commands::send(args)),
        Command::Presence(args) => return Ok(client_commands::presence(args)),
        Command::Bench(args) => return bench::run(args),
        Command::BenchWorker => return bench::worker(),
    }
    Ok(ExitCode::SUCCESS)
}
