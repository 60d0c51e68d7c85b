//! Property tests: every frame one side encodes, the other side decodes to the same
//! message; and no input, however malformed, makes a decoder panic.

use bytes::Bytes;
use crier_protocol::serializer::{self, Direction, FrameRef};
use crier_protocol::{Message, Payload, PayloadEncoding, UserBroadcast, Vsn, WireFrame};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Header fields of binary frames are at most 255 bytes; these stay well inside.
fn short_string() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn non_empty_short_string() -> impl Strategy<Value = String> {
    ".{1,40}"
}

fn vsn() -> impl Strategy<Value = Vsn> {
    prop_oneof![Just(Vsn::V1), Just(Vsn::V2)]
}

fn json_message() -> impl Strategy<Value = Message> {
    (
        proptest::option::of(short_string()),
        proptest::option::of(short_string()),
        short_string(),
        short_string(),
        json_value(),
    )
        .prop_map(|(join_ref, msg_ref, topic, event, payload)| Message {
            join_ref,
            msg_ref,
            topic,
            event,
            payload: Payload::Json(payload),
        })
}

fn user_broadcast() -> impl Strategy<Value = UserBroadcast> {
    (
        short_string(),
        prop_oneof![Just(String::new()), Just(r#"{"persist":true}"#.to_owned())],
        prop_oneof![Just(PayloadEncoding::Binary), Just(PayloadEncoding::Json)],
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(event, metadata, encoding, payload)| UserBroadcast {
            event,
            metadata: Bytes::from(metadata),
            encoding,
            payload: Bytes::from(payload),
        })
}

fn decode(vsn: Vsn, direction: Direction, frame: &WireFrame) -> Message {
    let frame = match frame {
        WireFrame::Text(text) => FrameRef::Text(text),
        WireFrame::Binary(bytes) => FrameRef::Binary(bytes),
    };
    match direction {
        Direction::ToServer => serializer::decode_from_client(vsn, frame),
        Direction::ToClient => serializer::decode_from_server(vsn, frame),
    }
    .expect("an encoded frame decodes")
}

proptest! {
    #[test]
    fn json_messages_round_trip_to_server(vsn in vsn(), message in json_message()) {
        let frame = serializer::encode(vsn, Direction::ToServer, &message).unwrap();
        prop_assert_eq!(decode(vsn, Direction::ToServer, &frame), message);
    }

    #[test]
    fn json_messages_round_trip_to_client(vsn in vsn(), mut message in json_message()) {
        let frame = serializer::encode(vsn, Direction::ToClient, &message).unwrap();
        if vsn == Vsn::V1 {
            // Phoenix's 1.0.0 serializer never sends join_ref to clients.
            message.join_ref = None;
        }
        prop_assert_eq!(decode(vsn, Direction::ToClient, &frame), message);
    }

    #[test]
    fn user_broadcast_push_round_trips(
        join_ref in proptest::option::of(non_empty_short_string()),
        msg_ref in proptest::option::of(non_empty_short_string()),
        topic in short_string(),
        broadcast in user_broadcast(),
    ) {
        let message = Message { join_ref, msg_ref, topic, event: "broadcast".into(), payload: Payload::UserBroadcast(broadcast) };
        let frame = serializer::encode(Vsn::V2, Direction::ToServer, &message).unwrap();
        prop_assert!(matches!(frame, WireFrame::Binary(ref b) if b[0] == 3));
        prop_assert_eq!(decode(Vsn::V2, Direction::ToServer, &frame), message);
    }

    #[test]
    fn user_broadcast_round_trips(topic in short_string(), broadcast in user_broadcast()) {
        let message = Message { join_ref: None, msg_ref: None, topic, event: "broadcast".into(), payload: Payload::UserBroadcast(broadcast) };
        let frame = serializer::encode(Vsn::V2, Direction::ToClient, &message).unwrap();
        prop_assert!(matches!(frame, WireFrame::Binary(ref b) if b[0] == 4));
        prop_assert_eq!(decode(Vsn::V2, Direction::ToClient, &frame), message);
    }

    #[test]
    fn binary_pushes_round_trip(
        join_ref in proptest::option::of(non_empty_short_string()),
        msg_ref in proptest::option::of(non_empty_short_string()),
        topic in short_string(),
        event in short_string(),
        data in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let push = Message { join_ref: join_ref.clone(), msg_ref, topic: topic.clone(), event: event.clone(), payload: Payload::Binary(Bytes::from(data.clone())) };
        let frame = serializer::encode(Vsn::V2, Direction::ToServer, &push).unwrap();
        prop_assert_eq!(decode(Vsn::V2, Direction::ToServer, &frame), push);

        // To clients, a binary push keeps its join_ref (kind 0) and a fan-out has none (kind 2).
        let to_client = Message { join_ref, msg_ref: None, topic, event, payload: Payload::Binary(Bytes::from(data)) };
        let frame = serializer::encode(Vsn::V2, Direction::ToClient, &to_client).unwrap();
        prop_assert_eq!(decode(Vsn::V2, Direction::ToClient, &frame), to_client);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(vsn in vsn(), bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = serializer::decode_from_client(vsn, FrameRef::Binary(&bytes));
        let _ = serializer::decode_from_server(vsn, FrameRef::Binary(&bytes));
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = serializer::decode_from_client(vsn, FrameRef::Text(text));
            let _ = serializer::decode_from_server(vsn, FrameRef::Text(text));
        }
    }

    #[test]
    fn decoding_binary_frames_with_valid_kinds_never_panics(
        kind in 0u8..6,
        lengths in prop::collection::vec(any::<u8>(), 0..8),
        rest in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut frame = vec![kind];
        frame.extend(lengths);
        frame.extend(rest);
        let _ = serializer::decode_from_client(Vsn::V2, FrameRef::Binary(&frame));
        let _ = serializer::decode_from_server(Vsn::V2, FrameRef::Binary(&frame));
    }

    #[test]
    fn decoding_arbitrary_json_never_panics(vsn in vsn(), value in json_value()) {
        let text = value.to_string();
        let _ = serializer::decode_from_client(vsn, FrameRef::Text(&text));
        let _ = serializer::decode_from_server(vsn, FrameRef::Text(&text));
    }
}

#[test]
fn binary_payload_on_v1_is_an_encode_error() {
    let message = Message {
        join_ref: None,
        msg_ref: None,
        topic: "realtime:t".into(),
        event: "broadcast".into(),
        payload: Payload::Binary(Bytes::from_static(b"x")),
    };
    assert!(serializer::encode(Vsn::V1, Direction::ToClient, &message).is_err());
}
