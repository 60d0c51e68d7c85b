//! The 2.0.0 text serializer (JSON arrays), in both directions, round-tripped.
#![no_main]

use crier_protocol::Vsn;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crier_fuzz::text_round_trip(Vsn::V2, data));
