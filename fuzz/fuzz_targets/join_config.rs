//! A `phx_join` payload, from JSON text (nested as deep as clients may send) to the typed
//! join request with Supabase's casting rules.
#![no_main]

use crier_protocol::JoinRequest;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = crier_protocol::json::from_slice::<Value>(data) {
        let _ = JoinRequest::parse(&payload);
    }
});
