//! The JSON lines the client commands print: one object per line, `type` first.
//!
//! These shapes are the commands' interface (documented in `crier listen --help` and the
//! README), so they are spelled out here as types rather than built ad hoc.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crier_client::{
    Broadcast, BroadcastPayload, ChannelStatus, PostgresChange, PresenceEvent, PresenceMeta,
    PresenceState, RoutedChange, SystemMessage,
};
use serde::Serialize;
use serde_json::{Map, Value};

/// One line of output.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Line<'a> {
    /// `{"type":"broadcast","event":"cursor","payload":{...}}`; binary payloads as
    /// `payload_base64`; `meta` when the message carries one.
    Broadcast {
        event: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        payload_base64: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        meta: Option<&'a Value>,
    },
    /// `{"type":"presence","event":"join","key":"alice","meta":{...}}` (join, leave),
    /// `old` and `new` for an update, nothing more for a sync.
    Presence {
        event: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        meta: Option<&'a PresenceMeta>,
        #[serde(skip_serializing_if = "Option::is_none")]
        old: Option<&'a PresenceMeta>,
        #[serde(skip_serializing_if = "Option::is_none")]
        new: Option<&'a PresenceMeta>,
    },
    /// `{"type":"postgres_changes","event":"INSERT","schema":..,"table":..,"new":..,"old":..}`:
    /// `new` is null for a delete, `old` null for an insert.
    PostgresChanges {
        event: &'static str,
        schema: &'a str,
        table: &'a str,
        commit_timestamp: &'a str,
        new: Option<&'a Value>,
        old: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        errors: Option<&'a [String]>,
    },
    /// A change that did not decode: the server's `data` as it came, and why.
    #[serde(rename = "postgres_changes")]
    PostgresChangesRaw { error: String, data: &'a Value },
    /// `{"type":"system","extension":"postgres_changes","status":"error","message":".."}`.
    System {
        extension: &'a str,
        status: &'a str,
        message: &'a str,
    },
    /// `{"type":"status","status":"joined"}`; `error` and `retrying` when errored;
    /// `gap_ms`, `recovered` and `missed` when resumed.
    Status {
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retrying: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        gap_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        missed: Option<u64>,
    },
    /// `{"type":"presence_state","state":{"alice":[{"status":"online"}]}}`: every key
    /// with the payloads tracked under it.
    PresenceState {
        state: BTreeMap<&'a str, Vec<&'a Map<String, Value>>>,
    },
}

impl<'a> Line<'a> {
    pub(super) fn broadcast(message: &'a Broadcast) -> Self {
        let (payload, payload_base64) = match &message.payload {
            BroadcastPayload::Json(value) => (Some(value), None),
            BroadcastPayload::Binary(bytes) => (None, Some(STANDARD.encode(bytes))),
        };
        Line::Broadcast {
            event: &message.event,
            payload,
            payload_base64,
            meta: message.meta.as_ref(),
        }
    }

    pub(super) fn presence(event: &'a PresenceEvent) -> Self {
        let line = |event, key: &'a String, meta, old, new| Line::Presence {
            event,
            key: Some(key.as_str()),
            meta,
            old,
            new,
        };
        match event {
            PresenceEvent::Sync => Line::Presence {
                event: "sync",
                key: None,
                meta: None,
                old: None,
                new: None,
            },
            PresenceEvent::Join { key, meta } => line("join", key, Some(meta), None, None),
            PresenceEvent::Leave { key, meta } => line("leave", key, Some(meta), None, None),
            PresenceEvent::Update { key, old, new } => {
                line("update", key, None, Some(old), Some(new))
            }
        }
    }

    /// A postgres change, decoded by the client library (`decoded` is
    /// `PostgresChange::from_data(&routed.data)`).
    pub(super) fn postgres_change(
        routed: &'a RoutedChange,
        decoded: &'a Result<PostgresChange<Value>, crier_client::Error>,
    ) -> Self {
        let change = match decoded {
            Ok(change) => change,
            Err(err) => {
                return Line::PostgresChangesRaw {
                    error: err.to_string(),
                    data: &routed.data,
                };
            }
        };
        let (event, new, old) = match change {
            PostgresChange::Insert { new, .. } => ("INSERT", Some(new), None),
            PostgresChange::Update { new, old, .. } => ("UPDATE", Some(new), Some(old)),
            PostgresChange::Delete { old, .. } => ("DELETE", None, Some(old)),
        };
        let meta = change.meta();
        Line::PostgresChanges {
            event,
            schema: &meta.schema,
            table: &meta.table,
            commit_timestamp: &meta.commit_timestamp,
            new,
            old,
            errors: meta.errors.as_deref(),
        }
    }

    pub(super) fn system(message: &'a SystemMessage) -> Self {
        Line::System {
            extension: &message.extension,
            status: &message.status,
            message: &message.message,
        }
    }

    pub(super) fn status(status: &ChannelStatus) -> Self {
        let plain = |status| Line::Status {
            status,
            error: None,
            retrying: None,
            gap_ms: None,
            recovered: None,
            missed: None,
        };
        match status {
            ChannelStatus::Closed => plain("closed"),
            ChannelStatus::Joining => plain("joining"),
            ChannelStatus::Joined => plain("joined"),
            ChannelStatus::Leaving => plain("leaving"),
            ChannelStatus::Errored { error, retrying } => Line::Status {
                status: "errored",
                error: Some(error.to_string()),
                retrying: Some(*retrying),
                gap_ms: None,
                recovered: None,
                missed: None,
            },
        }
    }

    pub(super) fn resumed(gap: std::time::Duration, recovered: bool, missed: u64) -> Self {
        Line::Status {
            status: "resumed",
            error: None,
            retrying: None,
            gap_ms: Some(u64::try_from(gap.as_millis()).unwrap_or(u64::MAX)),
            recovered: Some(recovered),
            missed: Some(missed),
        }
    }

    pub(super) fn presence_state(state: &'a PresenceState) -> Self {
        Line::PresenceState {
            state: state
                .iter()
                .map(|(key, metas)| (key.as_str(), metas.iter().map(|m| &m.payload).collect()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    fn text(line: &Line<'_>) -> String {
        serde_json::to_string(line).unwrap()
    }

    fn meta(payload: Value, phx_ref: &str) -> PresenceMeta {
        PresenceMeta {
            phx_ref: phx_ref.into(),
            phx_ref_prev: None,
            payload: payload.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn broadcasts_print_json_or_base64_with_the_type_first() {
        let json = Broadcast {
            event: "cursor".into(),
            payload: BroadcastPayload::Json(json!({"x": 1})),
            meta: None,
        };
        assert_eq!(
            text(&Line::broadcast(&json)),
            r#"{"type":"broadcast","event":"cursor","payload":{"x":1}}"#
        );
        let binary = Broadcast {
            event: "blob".into(),
            payload: BroadcastPayload::Binary(Bytes::from_static(&[0, 1, 2, 255])),
            meta: Some(json!({"id": "m1"})),
        };
        assert_eq!(
            text(&Line::broadcast(&binary)),
            r#"{"type":"broadcast","event":"blob","payload_base64":"AAEC/w==","meta":{"id":"m1"}}"#
        );
    }

    #[test]
    fn presence_events_carry_key_and_meta() {
        let join = PresenceEvent::Join {
            key: "alice".into(),
            meta: meta(json!({"n": 1}), "r1"),
        };
        assert_eq!(
            text(&Line::presence(&join)),
            r#"{"type":"presence","event":"join","key":"alice","meta":{"n":1,"phx_ref":"r1"}}"#
        );
        let update = PresenceEvent::Update {
            key: "alice".into(),
            old: meta(json!({"n": 1}), "r1"),
            new: meta(json!({"n": 2}), "r2"),
        };
        assert_eq!(
            text(&Line::presence(&update)),
            r#"{"type":"presence","event":"update","key":"alice","old":{"n":1,"phx_ref":"r1"},"new":{"n":2,"phx_ref":"r2"}}"#
        );
        assert_eq!(
            text(&Line::presence(&PresenceEvent::Sync)),
            r#"{"type":"presence","event":"sync"}"#
        );
    }

    #[test]
    fn presence_state_lists_payloads_by_key() {
        let mut state = PresenceState::new();
        state.insert(
            "bob".into(),
            vec![meta(json!({"n": 2}), "r2"), meta(json!({"n": 3}), "r3")],
        );
        state.insert("alice".into(), vec![meta(json!({"n": 1}), "r1")]);
        assert_eq!(
            text(&Line::presence_state(&state)),
            r#"{"type":"presence_state","state":{"alice":[{"n":1}],"bob":[{"n":2},{"n":3}]}}"#
        );
    }

    #[test]
    fn postgres_changes_print_new_and_old() {
        let routed = RoutedChange {
            filters: vec![0],
            data: json!({"schema": "public", "table": "todos", "type": "DELETE",
                "commit_timestamp": "2026-01-02T03:04:05Z", "old_record": {"id": 1}}),
        };
        let decoded = PostgresChange::from_data(&routed.data);
        assert_eq!(
            text(&Line::postgres_change(&routed, &decoded)),
            r#"{"type":"postgres_changes","event":"DELETE","schema":"public","table":"todos","commit_timestamp":"2026-01-02T03:04:05Z","new":null,"old":{"id":1}}"#
        );
        let odd = RoutedChange {
            filters: vec![0],
            data: json!({"type": "TRUNCATE"}),
        };
        let decoded = PostgresChange::from_data(&odd.data);
        let line = text(&Line::postgres_change(&odd, &decoded));
        assert!(
            line.starts_with(r#"{"type":"postgres_changes","error":"#),
            "{line}"
        );
        assert!(line.ends_with(r#""data":{"type":"TRUNCATE"}}"#), "{line}");
    }

    #[test]
    fn statuses_and_system_messages() {
        let errored = ChannelStatus::Errored {
            error: crier_client::Error::Timeout,
            retrying: true,
        };
        assert_eq!(
            text(&Line::status(&errored)),
            r#"{"type":"status","status":"errored","error":"timed out waiting for the server","retrying":true}"#
        );
        assert_eq!(
            text(&Line::resumed(
                std::time::Duration::from_millis(1500),
                true,
                3
            )),
            r#"{"type":"status","status":"resumed","gap_ms":1500,"recovered":true,"missed":3}"#
        );
        let system = SystemMessage {
            extension: "postgres_changes".into(),
            status: "error".into(),
            message: "no database".into(),
        };
        assert_eq!(
            text(&Line::system(&system)),
            r#"{"type":"system","extension":"postgres_changes","status":"error","message":"no database"}"#
        );
    }
}
