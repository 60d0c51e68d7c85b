//! Bad input gets a clear answer in a shape clients parse, and breaks nothing else: after
//! every case the offending socket still works (unless the case must close it) and a
//! bystander pair on another connection still exchanges messages.

use bytes::Bytes;
use crier_server::protocol::Vsn;
use crier_testkit::prelude::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// The `reason` of the `phx_error` a frame without a readable ref gets.
async fn phoenix_error(client: &mut Client) -> String {
    let message = client.event("phoenix", "phx_error").await;
    reason(json_payload(&message)).to_owned()
}

#[tokio::test]
async fn undecodable_frames_are_answered_and_the_socket_stays_open() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut v2 = server.connect(Vsn::V2).await;
    let mut v1 = server.connect(Vsn::V1).await;

    let cases: Vec<(Vsn, WsMessage, &str)> = vec![
        (
            Vsn::V2,
            WsMessage::Text("[\"1\", ".into()),
            "MalformedMessage: invalid JSON",
        ),
        (
            Vsn::V1,
            WsMessage::Text("{oops".into()),
            "MalformedMessage: invalid JSON",
        ),
        (
            Vsn::V2,
            WsMessage::Text(r#"{"topic":"realtime:x"}"#.into()),
            "MalformedMessage: expected a JSON array",
        ),
        (
            Vsn::V1,
            WsMessage::Text(r#"["1","2","t","e",{}]"#.into()),
            "MalformedMessage: expected a JSON object",
        ),
        (
            Vsn::V2,
            WsMessage::Binary(Bytes::from_static(&[9, 1, 2])),
            "MalformedMessage: unknown binary frame kind 9",
        ),
        (
            Vsn::V2,
            WsMessage::Binary(Bytes::from_static(&[0, 0, 0, 200, 1, b'a'])),
            "MalformedMessage: binary frame truncated",
        ),
        (
            Vsn::V2,
            WsMessage::Binary(Bytes::new()),
            "MalformedMessage: empty binary frame",
        ),
        (
            Vsn::V1,
            WsMessage::Binary(Bytes::from_static(&[3, 0, 0, 0, 0, 0, 1])),
            "MalformedMessage: binary frames need serializer 2.0.0",
        ),
    ];
    for (vsn, frame, expected) in cases {
        let client = if vsn == Vsn::V1 { &mut v1 } else { &mut v2 };
        client.send_raw(frame).await;
        let reason = phoenix_error(client).await;
        assert!(reason.starts_with(expected), "{reason} vs {expected}");
        client.heartbeat().await;
        bystanders.still_fine().await;
    }
}

#[tokio::test]
async fn a_short_array_with_a_readable_ref_gets_a_reply() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    client
        .send_raw(WsMessage::Text(r#"["1","42","realtime:x"]"#.into()))
        .await;
    let (status, response) = client.reply("42").await;
    assert_eq!(status, "error");
    assert_eq!(
        reason(&response),
        "MalformedMessage: expected a JSON array [join_ref, ref, topic, event, payload]"
    );
    // A topic or event of the wrong type, with a readable ref.
    client
        .send_raw(WsMessage::Text(r#"[null,"43","realtime:x",7,{}]"#.into()))
        .await;
    let (status, response) = client.reply("43").await;
    assert_eq!(status, "error");
    assert!(
        reason(&response).contains("`event` must be a string"),
        "{response}"
    );
    client.heartbeat().await;
    bystanders.still_fine().await;
}

#[tokio::test]
async fn unknown_events_are_refused_with_a_reason() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    let join_ref = client.join_ok("realtime:room", json!({})).await;
    let (status, response) = client
        .push(&join_ref, "realtime:room", "dance", json!({}))
        .await;
    assert_eq!(status, "error");
    assert!(
        reason(&response).starts_with("UnknownEvent: unknown event `dance`"),
        "{response}"
    );
    client.heartbeat().await;
    bystanders.still_fine().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let server = TestServer::start_with(|config| config.limits.max_frame_bytes = 4096).await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    client.join_ok("realtime:room", json!({})).await;
    let huge = format!(
        r#"[null,"1","realtime:room","broadcast",{{"pad":"{}"}}]"#,
        "x".repeat(8192)
    );
    client.send_raw(WsMessage::Text(huge.into())).await;
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);
    bystanders.still_fine().await;
    assert_eq!(
        server.node.subscriber_count("room"),
        0,
        "its channel was left"
    );
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    let mut client = server.connect(Vsn::V2).await;
    let frame = Frame::message(
        Bytes::from_static(&[0xff, 0xfe, 0x80]),
        OpCode::Data(Data::Text),
        true,
    );
    client.send_raw(WsMessage::Frame(frame)).await;
    let frame = client.closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1007);
    bystanders.still_fine().await;
}

#[tokio::test]
async fn an_oversized_frame_is_read_to_its_end_so_the_client_sees_1009_not_a_reset() {
    let server = TestServer::start_with(|config| config.limits.max_frame_bytes = 64 << 10).await;
    let mut bystanders = Bystanders::new(&server).await;
    for vsn in [Vsn::V1, Vsn::V2] {
        let mut client = server.connect(vsn).await;
        client.join_ok("realtime:room", json!({})).await;
        // 4 MB: far more than the socket buffers between the two hold, so the server
        // must read it off the connection for the client's write, and then its read of
        // the close frame, to succeed.
        let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4 << 20));
        client.send_raw(WsMessage::Text(huge.into())).await;
        let frame = client.closed().await.expect("a close frame, not a reset");
        assert_eq!(u16::from(frame.code), 1009);
        bystanders.still_fine().await;
    }
}

/// `depth` levels of arrays around a number.
fn nested(depth: usize) -> serde_json::Value {
    let text = format!("{}7{}", "[".repeat(depth), "]".repeat(depth));
    crier_server::protocol::json::from_str(&text).unwrap()
}

#[tokio::test]
async fn payloads_nested_512_deep_are_delivered_and_deeper_frames_are_refused() {
    let server = TestServer::start().await;
    let mut bystanders = Bystanders::new(&server).await;
    for vsn in [Vsn::V1, Vsn::V2] {
        let mut sender = server.connect(vsn).await;
        let mut receiver = server.connect(vsn).await;
        let join_ref = sender
            .join_ok("realtime:deep", json!({"broadcast": {"ack": true}}))
            .await;
        receiver.join_ok("realtime:deep", json!({})).await;
        let msg_ref = sender
            .broadcast(&join_ref, "realtime:deep", "e", nested(512))
            .await;
        assert_eq!(sender.reply(&msg_ref).await.0, "ok");
        let message = receiver.event("realtime:deep", "broadcast").await;
        assert_eq!(json_payload(&message)["payload"], nested(512));

        // Deeper than the server takes: refused with a reason, the socket stays open.
        let too_deep = format!(
            r#"{{"topic":"realtime:deep","event":"broadcast","ref":"9","join_ref":"{join_ref}","payload":{}}}"#,
            "[".repeat(2000) + &"]".repeat(2000)
        );
        let too_deep = match vsn {
            Vsn::V1 => too_deep,
            Vsn::V2 => format!(
                r#"["{join_ref}","9","realtime:deep","broadcast",{}]"#,
                "[".repeat(2000) + &"]".repeat(2000)
            ),
        };
        sender.send_raw(WsMessage::Text(too_deep.into())).await;
        let error = sender.event("phoenix", "phx_error").await;
        let why = reason(json_payload(&error)).to_owned();
        assert!(
            why.starts_with("MalformedMessage: invalid JSON: JSON nested 2002 levels deep")
                || why.starts_with("MalformedMessage: invalid JSON: JSON nested 2001 levels deep"),
            "{why}"
        );
        sender.heartbeat().await;
        bystanders.still_fine().await;
    }
}
