//! The body of the broadcast REST API's batch call, `POST /api/broadcast`:
//! `{"messages":[{"topic","event","payload","private"?,"id"?}]}`.
//!
//! Validation follows Supabase's changeset: every message is checked, and a body with any
//! invalid message is refused whole, with one error map per message (empty for the valid
//! ones) in the order given, each field's errors as a list of texts. Topics are held to
//! the rule a WebSocket join applies ([`crate::events::is_valid_topic`]), so nothing is
//! accepted over HTTP that no socket could have joined.

use serde_json::{Map, Value, json};

use crate::Reason;
use crate::events::{TOPIC_PREFIX, is_valid_topic};
use crate::json::{self, JsonError};

/// One message of a valid batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMessage {
    /// The channel name, without `realtime:`.
    pub topic: String,
    /// The broadcast event.
    pub event: String,
    /// The payload object.
    pub payload: Map<String, Value>,
    /// For a private channel.
    pub private: bool,
    /// Given by the caller; delivered as `meta.id`.
    pub id: Option<Value>,
}

impl BatchMessage {
    /// The full topic, `realtime:<topic>`.
    pub fn full_topic(&self) -> String {
        format!("{TOPIC_PREFIX}{}", self.topic)
    }
}

/// Why a batch body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Not JSON (HTTP 400).
    #[error("The body is not valid JSON: {0}")]
    NotJson(#[from] JsonError),
    /// `messages` is missing, not a list, or empty (HTTP 422,
    /// `{"errors":{"messages":["can't be blank"]}}`).
    #[error("messages can't be blank")]
    Blank,
    /// Some messages are invalid (HTTP 422, `{"errors":{"messages":[...]}}`): one error
    /// map per message, empty for the valid ones.
    #[error("invalid messages")]
    Invalid(Vec<Map<String, Value>>),
}

impl BatchError {
    /// The `errors` object Supabase answers 422 with; `None` for a body that is not JSON.
    pub fn errors(&self) -> Option<Value> {
        match self {
            BatchError::NotJson(_) => None,
            BatchError::Blank => Some(json!({"messages": ["can't be blank"]})),
            BatchError::Invalid(messages) => Some(json!({"messages": messages})),
        }
    }
}

/// Parses and validates a batch body. `payload_limit` is the largest payload, in bytes
/// of compact JSON.
pub fn parse_batch(body: &[u8], payload_limit: usize) -> Result<Vec<BatchMessage>, BatchError> {
    let body: Value = json::from_slice(body)?;
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Err(BatchError::Blank);
    };
    let mut valid = Vec::with_capacity(messages.len());
    let mut errors = Vec::with_capacity(messages.len());
    for message in messages {
        match validate(message, payload_limit) {
            Ok(message) => {
                valid.push(message);
                errors.push(Map::new());
            }
            Err(fields) => errors.push(fields),
        }
    }
    if valid.len() != messages.len() {
        return Err(BatchError::Invalid(errors));
    }
    Ok(valid)
}

fn validate(message: &Value, payload_limit: usize) -> Result<BatchMessage, Map<String, Value>> {
    let mut errors = Map::new();
    let mut fail = |field: &str, text: &str| {
        errors.insert(field.to_owned(), json!([text]));
    };
    let Some(map) = message.as_object() else {
        fail("message", "is invalid");
        return Err(errors);
    };
    let string = |field: &str| match map.get(field) {
        None | Some(Value::Null) => Err("can't be blank"),
        Some(Value::String(s)) if s.is_empty() => Err("can't be blank"),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("is invalid"),
    };
    let topic = string("topic").map_err(|e| fail("topic", e)).ok();
    if let Some(topic) = &topic
        && !is_valid_topic(&format!("{TOPIC_PREFIX}{topic}"))
    {
        fail("topic", &Reason::invalid_topic().to_string());
    }
    let event = string("event").map_err(|e| fail("event", e)).ok();
    let payload = match map.get("payload") {
        None | Some(Value::Null) => {
            fail("payload", "can't be blank");
            None
        }
        Some(Value::Object(payload)) => {
            let size = serde_json::to_string(payload).map_or(usize::MAX, |text| text.len());
            if size > payload_limit {
                fail("payload", "Payload size exceeds tenant limit");
                None
            } else {
                Some(payload.clone())
            }
        }
        Some(_) => {
            fail("payload", "is invalid");
            None
        }
    };
    let private = match map.get("private") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            fail("private", "is invalid");
            false
        }
    };
    match (topic, event, payload) {
        (Some(topic), Some(event), Some(payload)) if errors.is_empty() => Ok(BatchMessage {
            topic,
            event,
            payload,
            private,
            id: map.get("id").cloned().filter(|id| !id.is_null()),
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_batch_keeps_its_order_and_fields() {
        let body = br#"{"messages":[
            {"topic":"a","event":"e","payload":{"x":1},"id":"m1"},
            {"topic":"b","event":"f","payload":{},"private":true}]}"#;
        let batch = parse_batch(body, 1000).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].full_topic(), "realtime:a");
        assert_eq!(batch[0].id, Some(json!("m1")));
        assert!(batch[1].private);
    }

    #[test]
    fn invalid_messages_get_supabase_shaped_errors_in_order() {
        let body = br#"{"messages":[
            {"topic":"a","event":"e","payload":{}},
            {"topic":"","event":3,"payload":[1]},
            {"topic":"a\u0000b","event":"e","payload":{"pad":"xxxxxxxxxxxx"}}]}"#;
        let err = parse_batch(body, 10).unwrap_err();
        assert_eq!(
            err.errors().unwrap(),
            json!({"messages": [
                {},
                {"topic": ["can't be blank"], "event": ["is invalid"], "payload": ["is invalid"]},
                {"topic": ["InvalidTopic: a topic is at most 255 bytes with no control characters"],
                 "payload": ["Payload size exceeds tenant limit"]}
            ]})
        );
    }

    #[test]
    fn topics_a_join_would_refuse_are_refused() {
        let long = "x".repeat(255 - TOPIC_PREFIX.len());
        let body = format!(r#"{{"messages":[{{"topic":"{long}","event":"e","payload":{{}}}}]}}"#);
        assert!(
            parse_batch(body.as_bytes(), 1000).is_ok(),
            "255 bytes with the prefix"
        );
        let body = body.replace(&long, &format!("{long}x"));
        assert!(matches!(
            parse_batch(body.as_bytes(), 1000),
            Err(BatchError::Invalid(_))
        ));
    }

    #[test]
    fn blank_and_broken_bodies() {
        assert!(matches!(parse_batch(b"{}", 10), Err(BatchError::Blank)));
        assert!(matches!(
            parse_batch(br#"{"messages":[]}"#, 10),
            Err(BatchError::Blank)
        ));
        assert!(matches!(parse_batch(b"{", 10), Err(BatchError::NotJson(_))));
        assert!(
            BatchError::NotJson(crate::json::from_slice::<Value>(b"{").unwrap_err())
                .errors()
                .is_none()
        );
    }
}
