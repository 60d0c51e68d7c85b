//! The 2.0.0 binary frames (kinds 0-4), as a server and as a client reads them.
#![no_main]

use crier_protocol::Vsn;
use crier_protocol::serializer::{self, FrameRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serializer::decode_from_client(Vsn::V2, FrameRef::Binary(data));
    let _ = serializer::decode_from_server(Vsn::V2, FrameRef::Binary(data));
});
