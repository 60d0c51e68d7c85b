//! The client commands: `crier listen`, `crier send`, `crier presence`.
//!
//! They parse arguments and wire `crier-client` to stdout: every line printed is one JSON
//! object ([`lines`]), every failure one line on stderr and a non-zero exit ([`Exit`]).

mod lines;
mod listen;
mod presence;
mod send;

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use crier_client::{ChannelStatus, Client};
use serde::Serialize;

pub(crate) use listen::{LISTEN_LONG_ABOUT, ListenArgs};
pub(crate) use presence::{PRESENCE_LONG_ABOUT, PresenceArgs};
pub(crate) use send::{SEND_LONG_ABOUT, SendArgs};

/// The server and the credentials, shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectionArgs {
    /// The server's socket URL (a Supabase project URL works too).
    #[arg(long, env = "CRIER_URL", default_value = "ws://127.0.0.1:4000/socket")]
    url: String,
    /// The API key: a JWT signed with the server's secret (`crier token`), or a
    /// Supabase project's anon key.
    #[arg(long, env = "CRIER_APIKEY", hide_env_values = true)]
    apikey: Option<String>,
}

impl ConnectionArgs {
    /// A client for these settings (not connected yet).
    fn client(&self) -> Result<Client, Exit> {
        // A command prints everything it is sent, so its streams get room for a large
        // burst (64k events) rather than the library's default, which skips the oldest
        // events of a reader that falls 1,024 behind.
        let mut builder = Client::builder(&self.url).stream_capacity(1 << 16);
        if let Some(key) = self.apikey.as_deref().filter(|key| !key.is_empty()) {
            builder = builder.api_key(key);
        }
        builder
            .build()
            .map_err(|err| Exit::usage(format!("--url {}: {err}", self.url)))
    }

    /// A client, connected: a server that is down or refuses the key is reported now,
    /// not retried in the background.
    async fn connect(&self) -> Result<Client, Exit> {
        let client = self.client()?;
        client
            .connect()
            .await
            .map_err(|err| Exit::failed(format!("cannot connect to {}: {err}", self.url)))?;
        Ok(client)
    }
}

/// How a command ends when it does not simply succeed: an exit code and the one line
/// printed on stderr (none when stdout was closed by its reader: that ends a command
/// quietly, as `crier listen room | head -1` expects).
#[derive(Debug)]
pub(crate) struct Exit {
    code: u8,
    message: Option<String>,
}

impl Exit {
    /// A bad argument: exit 2, like the argument parser's own errors.
    fn usage(message: impl Into<String>) -> Self {
        Exit {
            code: 2,
            message: Some(message.into()),
        }
    }

    /// Anything else that went wrong: exit 1.
    fn failed(message: impl Into<String>) -> Self {
        Exit {
            code: 1,
            message: Some(message.into()),
        }
    }

    /// Stdout is gone: nothing more to do, nothing to say.
    fn stdout_closed() -> Self {
        Exit {
            code: 0,
            message: None,
        }
    }
}

/// `crier listen`.
pub(crate) fn listen(args: ListenArgs) -> ExitCode {
    run(listen::run(args))
}

/// `crier send`.
pub(crate) fn send(args: SendArgs) -> ExitCode {
    run(send::run(args))
}

/// `crier presence`.
pub(crate) fn presence(args: PresenceArgs) -> ExitCode {
    run(presence::run(args))
}

/// Runs a client command on its own runtime and turns its outcome into the exit code.
fn run(command: impl Future<Output = Result<(), Exit>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(command),
        Err(err) => Err(Exit::failed(format!("cannot start the runtime: {err}"))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            if let Some(message) = exit.message {
                // One line, whatever the error's text holds.
                eprintln!("error: {}", message.replace(['\r', '\n'], " "));
            }
            ExitCode::from(exit.code)
        }
    }
}

/// Prints `line` as one JSON object on its own line of stdout, flushed at once so a
/// reader of a pipe sees it as it happens.
fn print_line(line: &impl Serialize) -> Result<(), Exit> {
    let mut text = serde_json::to_vec(line)
        .map_err(|err| Exit::failed(format!("cannot encode a line: {err}")))?;
    text.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&text).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(Exit::stdout_closed()),
        Err(err) => Err(Exit::failed(format!("cannot write to stdout: {err}"))),
    }
}

/// A JSON argument, or one clear line naming the argument.
fn parse_json(name: &str, text: &str) -> Result<serde_json::Value, Exit> {
    serde_json::from_str(text)
        .map_err(|err| Exit::usage(format!("{name} is not valid JSON: {err}")))
}

/// The exit for a channel status that means the channel will not come back by itself
/// (closed by the server, or refused with no retry), once it was subscribed.
fn ended(topic: &str, status: &ChannelStatus, last_system: Option<&str>) -> Option<Exit> {
    match status {
        ChannelStatus::Closed => Some(Exit::failed(match last_system {
            Some(reason) => format!("the server closed channel `{topic}`: {reason}"),
            None => format!("the server closed channel `{topic}`"),
        })),
        ChannelStatus::Errored {
            error,
            retrying: false,
        } => Some(Exit::failed(format!("channel `{topic}` stopped: {error}"))),
        _ => None,
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the moment this is created: a signal
/// that arrives while connecting still ends the command with exit 0.
pub(crate) struct Shutdown {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Installs the handlers (inside the runtime).
    fn install() -> Result<Self, Exit> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind| {
                signal(kind)
                    .map_err(|err| Exit::failed(format!("cannot listen for signals: {err}")))
            };
            Ok(Shutdown {
                interrupt: listen(SignalKind::interrupt())?,
                terminate: listen(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Shutdown {})
    }

    /// Resolves at the next signal. Cancel-safe: call it again in every loop turn.
    async fn signalled(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs `work` unless a signal comes first (then `None`).
async fn unless_signalled<T>(shutdown: &mut Shutdown, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        output = work => Some(output),
        () = shutdown.signalled() => None,
    }
}
