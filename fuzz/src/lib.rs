//! What the fuzz targets share.

use crier_protocol::serializer::{self, Direction, FrameRef, WireFrame};
use crier_protocol::{Message, Vsn};

fn decode(vsn: Vsn, direction: Direction, text: &str) -> Result<Message, serializer::DecodeError> {
    match direction {
        Direction::ToServer => serializer::decode_from_client(vsn, FrameRef::Text(text)),
        Direction::ToClient => serializer::decode_from_server(vsn, FrameRef::Text(text)),
    }
}

/// Decodes `data` as a text frame of `vsn` in both directions; whatever decodes must
/// encode again and decode to the same message, less the `join_ref` that 1.0.0 frames
/// towards a client do not carry (as in Phoenix).
pub fn text_round_trip(vsn: Vsn, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for direction in [Direction::ToServer, Direction::ToClient] {
        let Ok(mut message) = decode(vsn, direction, text) else {
            continue;
        };
        let Ok(WireFrame::Text(again)) = serializer::encode(vsn, direction, &message) else {
            continue;
        };
        let again = decode(vsn, direction, &again).expect("re-encoded frames decode");
        if vsn == Vsn::V1 && direction == Direction::ToClient {
            message.join_ref = None;
        }
        assert_eq!(again, message);
    }
}
