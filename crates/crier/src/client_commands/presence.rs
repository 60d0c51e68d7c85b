//! `crier presence`: track a payload and print the channel's presence state as it changes.

use crier_client::{ChannelEvent, ChannelOptions, PresenceEvent};
use futures_util::StreamExt;
use serde_json::Value;

use super::lines::Line;
use super::{ConnectionArgs, Exit, Shutdown, ended, parse_json, print_line, unless_signalled};

/// `crier presence --help`.
pub(crate) const PRESENCE_LONG_ABOUT: &str = r#"Join a channel with presence, track a payload, and print the channel's presence
state each time it changes, one JSON line each, until interrupted (Ctrl-C or SIGTERM:
exit 0, and the presence leaves):

  {"type":"presence_state","state":{"alice":[{"status":"online"}]}}

"state" maps each presence key to the payloads tracked under it (one per connection).
Without --key the server picks a UUID.

  crier presence room1 --track '{"status":"online"}' --key alice

A server that cannot be reached, a refused key or join, or a --track that is not a
JSON object prints one line on stderr and exits non-zero."#;

/// Arguments of `crier presence`.
#[derive(Debug, clap::Args)]
pub(crate) struct PresenceArgs {
    /// The channel name (without `realtime:`).
    topic: String,
    /// The payload to track, a JSON object (`'{"status":"online"}'`).
    #[arg(long, value_name = "JSON")]
    track: String,
    /// The presence key (the server picks a UUID when unset).
    #[arg(long)]
    key: Option<String>,
    /// A private channel: the server checks its policies (on Supabase and on Crier with
    /// a database: row level security on `realtime.messages`).
    #[arg(long)]
    private: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

pub(super) async fn run(args: PresenceArgs) -> Result<(), Exit> {
    let Value::Object(payload) = parse_json("--track", &args.track)? else {
        return Err(Exit::usage(
            r#"--track must be a JSON object, e.g. '{"status":"online"}'"#,
        ));
    };
    let mut shutdown = Shutdown::install()?;
    let Some(client) = unless_signalled(&mut shutdown, args.connection.connect())
        .await
        .transpose()?
    else {
        return Ok(());
    };

    let mut options = ChannelOptions {
        presence: true,
        private: args.private,
        ..ChannelOptions::default()
    };
    if let Some(key) = &args.key {
        options = options.presence_key(key);
    }
    let channel = client.channel_with(&args.topic, options);
    // Taken before subscribing: the first state is not missed.
    let mut events = channel.events();
    let setup = async {
        channel
            .subscribe()
            .await
            .map_err(|err| Exit::failed(format!("cannot join channel `{}`: {err}", args.topic)))?;
        channel
            .track(&payload)
            .await
            .map_err(|err| Exit::failed(format!("cannot track on `{}`: {err}", args.topic)))
    };
    match unless_signalled(&mut shutdown, setup).await {
        Some(result) => result?,
        None => return Ok(()),
    }

    let mut last_printed = None;
    let mut last_system_error = None;
    loop {
        let event = tokio::select! {
            biased;
            () = shutdown.signalled() => return Ok(()),
            event = events.next() => event.ok_or_else(|| Exit::failed("the client stopped"))?,
        };
        match event {
            ChannelEvent::Presence(presence) if matches!(*presence, PresenceEvent::Sync) => {
                // A sync can arrive after a later change already updated the state: print
                // only what differs from the last line.
                let state = channel.presence_state();
                let line = Line::presence_state(&state);
                let text = serde_json::to_string(&line).unwrap_or_default();
                if last_printed.as_ref() != Some(&text) {
                    print_line(&line)?;
                    last_printed = Some(text);
                }
            }
            ChannelEvent::System(system)
                if system.extension == "system" && system.status == "error" =>
            {
                last_system_error = Some(system.message.clone());
            }
            ChannelEvent::Status(status) => {
                if let Some(exit) = ended(&args.topic, &status, last_system_error.as_deref()) {
                    return Err(exit);
                }
            }
            _ => {}
        }
    }
}
