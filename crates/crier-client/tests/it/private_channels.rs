//! The client on private channels against a real Crier node authorizing with a real
//! PostgreSQL's policies: members subscribe, send and receive; a stranger's subscribe
//! fails with the server's coded reason; a presence track the policy denies is refused.

use std::time::Duration;

use crier_client::{ChannelOptions, Client, Error, ErrorCode};
use crier_server::Config;
use crier_testkit::TestPostgres;
use crier_testkit::prelude::{TestServer, next, token};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn setup() -> (TestPostgres, TestServer) {
    let pg = TestPostgres::start().expect("postgres");
    pg.psql("create role anon nologin; create role authenticated nologin;")
        .unwrap();
    crier_server::authz::prepare_database(&pg.url())
        .await
        .unwrap();
    pg.psql(
        "create policy members on realtime.messages for select to authenticated
             using (realtime.topic() like 'team-%');
         create policy members_send on realtime.messages for insert to authenticated
             with check (realtime.topic() like 'team-%' and extension = 'broadcast');",
    )
    .unwrap();
    let url = pg.url();
    let server = TestServer::start_with(|config: &mut Config| {
        config.authorization.database_url = Some(url.clone());
        let mut changes = crier_server::PostgresChangesConfig::new(url);
        changes.resume_grace = Duration::ZERO;
        config.postgres_changes = Some(changes);
    })
    .await;
    (pg, server)
}

async fn client(server: &TestServer, role: &str) -> Client {
    let client = Client::builder(format!("ws://{}/socket", server.addr))
        .api_key(token(json!({"role": role, "sub": "someone"})))
        .build()
        .unwrap();
    client.connect().await.unwrap();
    client
}

fn private() -> ChannelOptions {
    ChannelOptions::default().private(true).broadcast_ack(true)
}

#[tokio::test]
async fn members_talk_on_a_private_channel_and_strangers_are_told_why_not() {
    let (_pg, server) = setup().await;
    let alice = client(&server, "authenticated").await;
    let bob = client(&server, "authenticated").await;
    let bob_channel = bob.channel_with("team-1", private());
    let mut received = bob_channel.broadcasts();
    bob_channel.subscribe().await.unwrap();
    let alice_channel = alice.channel_with("team-1", private());
    alice_channel.subscribe().await.unwrap();
    alice_channel
        .broadcast("hello", json!({"n": 1}))
        .await
        .unwrap();
    let got = next(WAIT, &mut received).await;
    assert_eq!(got.event, "hello");

    let stranger = client(&server, "anon").await;
    let err = stranger
        .channel_with("team-1", private())
        .subscribe()
        .await
        .unwrap_err();
    let Error::JoinRefused { code, reason } = err else {
        panic!("{err:?}");
    };
    assert_eq!(code, Some(ErrorCode::Unauthorized));
    assert_eq!(
        reason,
        "Unauthorized: You do not have permissions to read from this Channel topic: team-1"
    );
    // The public channel of the same name is another channel: it joins, and hears nothing
    // of the private one. (Alice's broadcast is acknowledged after it was queued to every
    // subscriber, so the witness sent after it would arrive second if it leaked.)
    let public = stranger.channel_with("team-1", ChannelOptions::default().broadcast_ack(true));
    let mut public_received = public.broadcasts();
    public.subscribe().await.unwrap();
    alice_channel
        .broadcast("private", json!({"n": 2}))
        .await
        .unwrap();
    let witness = member_of_public(&server).await;
    witness.broadcast("public", json!({"n": 3})).await.unwrap();
    assert_eq!(next(WAIT, &mut public_received).await.event, "public");
    assert_eq!(next(WAIT, &mut received).await.event, "private");
}

/// A client on the public channel `team-1`, subscribed.
async fn member_of_public(server: &TestServer) -> crier_client::Channel {
    let client = client(server, "anon").await;
    let channel = client.channel_with("team-1", ChannelOptions::default().broadcast_ack(true));
    channel.subscribe().await.unwrap();
    // The channel keeps its client alive.
    channel
}

#[tokio::test]
async fn a_track_the_policy_denies_is_refused() {
    let (_pg, server) = setup().await;
    let member = client(&server, "authenticated").await;
    let channel = member.channel_with("team-2", private().presence_key("me"));
    channel.subscribe().await.unwrap();
    let err = channel.track(json!({"online": true})).await.unwrap_err();
    assert!(
        matches!(&err, Error::PushRefused { response } if response["reason"].as_str().is_some_and(|r| r.starts_with("Unauthorized: "))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_private_channel_replays_what_the_database_sent() {
    let (pg, server) = setup().await;
    pg.psql(
        "select realtime.send('{\"n\": 1}', 'note', 'team-9');
         select realtime.send('{\"n\": 2}', 'note', 'team-9');",
    )
    .unwrap();
    let member = client(&server, "authenticated").await;
    let options = private().replay(0, Some(10)).replication_ready(true);
    let channel = member.channel_with("team-9", options);
    let mut received = channel.broadcasts();
    let mut events = channel.events();
    channel.subscribe().await.unwrap();
    for n in [1, 2] {
        let message = next(WAIT, &mut received).await;
        assert_eq!(message.event, "note");
        assert!(message.is_replayed(), "{message:?}");
        let id = message.id().expect("stored messages have an id").to_owned();
        let crier_client::BroadcastPayload::Json(payload) = message.payload else {
            panic!("a JSON payload");
        };
        assert_eq!(payload["n"], n);
        assert_eq!(payload["id"], id.as_str());
    }
    // Then live, once the server says database broadcasts are streaming.
    loop {
        if let crier_client::ChannelEvent::System(system) = next(WAIT, &mut events).await
            && system.message == "Replication connection established"
        {
            break;
        }
    }
    pg.psql("select realtime.send('{\"n\": 3}', 'note', 'team-9')")
        .unwrap();
    let live = next(WAIT, &mut received).await;
    assert!(!live.is_replayed());
    let stored = pg
        .psql("select id from realtime.messages where payload->>'n' = '3'")
        .unwrap();
    assert!(stored.contains(live.id().expect("an id")), "{stored}");
}
