//! `crier send`: one broadcast, over the socket (acknowledged) or the REST API.

use crier_client::ChannelOptions;

use super::{ConnectionArgs, Exit, parse_json};

/// `crier send --help`.
pub(crate) const SEND_LONG_ABOUT: &str = r#"Send one broadcast to a channel, then exit.

Over the WebSocket (the default) the broadcast is acknowledged: the command exits 0
only once the server has accepted it. With --http it goes through the REST API
(POST /api/broadcast/:topic/events/:event), which answers once it has accepted it.

  crier send room1 cursor '{"x":1}'
  crier send room1 cursor '{"x":1}' --http

A server that cannot be reached, a refused key or join, or a payload that is not
valid JSON prints one line on stderr and exits non-zero.

With --private, a broadcast the channel's write policy denies is dropped by the server
without a reply (Supabase does the same), so over the WebSocket the command fails when
its wait for the acknowledgement times out; --http is told at once (403)."#;

/// Arguments of `crier send`.
#[derive(Debug, clap::Args)]
pub(crate) struct SendArgs {
    /// The channel name (without `realtime:`).
    topic: String,
    /// The broadcast event.
    event: String,
    /// The payload, as JSON (`'{"x":1}'`).
    #[arg(value_name = "JSON")]
    payload: String,
    /// Send through the REST API instead of the WebSocket.
    #[arg(long)]
    http: bool,
    /// A private channel: the server checks its policies (on Supabase and on Crier with
    /// a database: row level security on `realtime.messages`).
    #[arg(long)]
    private: bool,
    #[command(flatten)]
    connection: ConnectionArgs,
}

pub(super) async fn run(args: SendArgs) -> Result<(), Exit> {
    let payload = parse_json("the payload", &args.payload)?;
    if args.http {
        let client = args.connection.client()?;
        return client
            .channel_with(&args.topic, ChannelOptions::default().private(args.private))
            .http_send(&args.event, &payload)
            .await
            .map_err(|err| {
                Exit::failed(format!("the REST API did not accept the broadcast: {err}"))
            });
    }
    let client = args.connection.connect().await?;
    let options = ChannelOptions::default()
        .broadcast_ack(true)
        .private(args.private);
    let channel = client.channel_with(&args.topic, options);
    channel
        .subscribe()
        .await
        .map_err(|err| Exit::failed(format!("cannot join channel `{}`: {err}", args.topic)))?;
    channel
        .broadcast(&args.event, &payload)
        .await
        .map_err(|err| Exit::failed(format!("the server did not accept the broadcast: {err}")))?;
    client.disconnect().await;
    Ok(())
}
