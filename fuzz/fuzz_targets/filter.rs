//! Supabase's postgres-changes filter grammar: parsed, evaluated against a few rows, and
//! on failure turned into Supabase's error text.
#![no_main]

use crier_postgres::filter::{Filter, supabase_error_message};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Filter::parse(text) {
        Ok(filter) => {
            let _ = filter.columns();
            for row in rows() {
                let _ = filter.matches(&row);
            }
        }
        Err(_) => {
            let _ = supabase_error_message(text);
        }
    }
});

fn rows() -> Vec<Map<String, Value>> {
    [
        json!({"id": 1, "name": "a", "score": 1.5, "done": true, "tags": ["x"], "meta": {"k": "v"}}),
        json!({"id": "2", "name": null, "score": "NaN", "done": false, "body": "%_\\\u{1F600}"}),
        json!({}),
    ]
    .into_iter()
    .map(|row| row.as_object().cloned().unwrap())
    .collect()
}
