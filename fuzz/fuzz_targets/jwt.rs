//! The JWT verifier's handling of what a client sends as a token: splitting, base64,
//! header and claims JSON, algorithm choice, time claims. Signatures almost never verify
//! here, so the first bytes can also be used as a "valid token" body: a fuzzed claims
//! object signed with the right key reaches the claim checks.
#![no_main]

use crier_server::auth::{JwtVerifier, sign_token};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const SECRET: &str = "fuzz-secret-0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let verifier = JwtVerifier::new(SECRET);
    let now = 1_700_000_000;
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verifier.verify(text, now);
    }
    if let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(data) {
        let claims: Map<String, Value> = claims;
        let token = sign_token(SECRET, &claims);
        let _ = verifier.verify(&token, now);
    }
});
