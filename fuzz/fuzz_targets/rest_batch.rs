//! The body of `POST /api/broadcast`, parsed and validated. Valid messages must name a
//! topic a join would accept and carry an object payload within the limit.
#![no_main]

use crier_protocol::events::is_valid_topic;
use crier_protocol::rest::parse_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_batch(data, 1000) {
        Ok(messages) => {
            for message in messages {
                assert!(is_valid_topic(&message.full_topic()));
                assert!(serde_json::to_string(&message.payload).unwrap().len() <= 1000);
            }
        }
        Err(err) => {
            let _ = err.errors();
            let _ = err.to_string();
        }
    }
});
