//! The typed `phx_join` payload.
//!
//! realtime-js sends:
//!
//! ```json
//! {"config":{"broadcast":{"ack":false,"self":false},
//!            "presence":{"key":"","enabled":false},
//!            "postgres_changes":[{"event":"INSERT","schema":"public","table":"todos"}],
//!            "private":false},
//!  "access_token":"<jwt>"}
//! ```
//!
//! Parsing follows the Elixir server's casting rules so every payload a real SDK sends is
//! accepted: booleans may be `"true"`/`"false"` strings, `null` means "absent", unknown
//! keys are ignored, `null` entries in `postgres_changes` are dropped, and `presence.key`
//! may be any JSON value. What the Elixir server only logs (a field of the wrong type) is
//! an error here, so a hand-written client learns about its mistake at once.

use std::fmt;

use serde_json::{Map, Value, json};

/// A parsed `phx_join` payload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JoinRequest {
    /// The channel configuration. `None` for a legacy join (no `config` key at all), which
    /// older clients use to subscribe to postgres changes named by the topic.
    pub config: Option<JoinConfig>,
    /// The JWT for this channel (`user_token` wins over `access_token`). `None` when absent,
    /// empty, or an `sb_...` API key, in which case the socket's connect token applies.
    pub access_token: Option<String>,
}

/// The `config` object of a join.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JoinConfig {
    /// Broadcast options.
    pub broadcast: BroadcastConfig,
    /// Presence options.
    pub presence: PresenceConfig,
    /// Postgres change subscriptions, in the order the client sent them.
    pub postgres_changes: Vec<PostgresChangeBinding>,
    /// A private channel, authorized by database policies.
    pub private: bool,
    /// How the join treats its postgres changes.
    pub postgres_changes_options: PostgresChangesOptions,
}

/// `config.postgres_changes_options`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostgresChangesOptions {
    /// Answer the join only once its postgres changes are live (or refuse it), instead of
    /// at once with a `system` message later.
    pub wait: bool,
    /// How long the server may take to make them live, in milliseconds (`None`: its
    /// default).
    pub timeout_ms: Option<u64>,
}

/// `config.broadcast`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BroadcastConfig {
    /// Reply `ok` to every broadcast push.
    pub ack: bool,
    /// Deliver the sender's own broadcasts back to it (`self`).
    pub self_broadcast: bool,
    /// Replay stored messages at join (private channels only).
    pub replay: Option<ReplayConfig>,
    /// Notify with a `system` message once replication is ready.
    pub replication_ready: bool,
    /// Resume the topic's stream after this position: the broadcasts missed since are
    /// sent right after the join reply.
    pub resume: Option<ResumeFrom>,
}

/// `config.broadcast.resume`: the last position a subscriber received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeFrom {
    /// The stream's epoch, as the server sent it.
    pub epoch: String,
    /// The offset of the last broadcast received (0: none yet).
    pub offset: u64,
}

/// `config.broadcast.replay`, as sent. Whether it is usable is the server's question
/// ([`ReplayConfig::checked`]): Supabase answers every unusable one with the same
/// reason, so a wrong type is not a payload error here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayConfig {
    /// Unix milliseconds; messages inserted at or after this time are replayed. `None`
    /// when absent or not an integer.
    pub since: Option<i64>,
    /// How many messages at most. `None` when absent.
    pub limit: Option<i64>,
    /// A field had the wrong type (`since: "yesterday"`, `limit: "5"`).
    pub malformed: bool,
}

impl ReplayConfig {
    /// The most messages a replay returns, and the default.
    pub const MAX_LIMIT: i64 = 25;

    /// `(since, limit)` when usable: `since` present and not negative; `limit` clamped
    /// to 1..=25, 25 when absent.
    pub fn checked(&self) -> Option<(i64, i64)> {
        match self.since {
            Some(since) if since >= 0 && !self.malformed => Some((
                since,
                self.limit
                    .unwrap_or(Self::MAX_LIMIT)
                    .clamp(1, Self::MAX_LIMIT),
            )),
            _ => None,
        }
    }
}

/// `config.presence`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresenceConfig {
    /// Receive `presence_state` and `presence_diff`.
    pub enabled: bool,
    /// The presence key; `None` when absent, null or empty (the server then picks a UUID).
    pub key: Option<String>,
}

/// One entry of `config.postgres_changes`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PostgresChangeBinding {
    /// `*`, `INSERT`, `UPDATE` or `DELETE` (any case).
    pub event: Option<String>,
    /// Schema name; `*` is a wildcard.
    pub schema: Option<String>,
    /// Table name; `*` is a wildcard.
    pub table: Option<String>,
    /// `column=op.value` filter.
    pub filter: Option<String>,
    /// The map exactly as the client sent it. The join reply echoes it verbatim, because
    /// realtime-js compares the echo field by field and fails the subscription on a mismatch.
    pub raw: Map<String, Value>,
}

impl PostgresChangeBinding {
    /// A binding from its parts, as a client would build it.
    pub fn new(event: &str, schema: &str, table: Option<&str>, filter: Option<&str>) -> Self {
        let mut raw = Map::new();
        raw.insert("event".into(), event.into());
        raw.insert("schema".into(), schema.into());
        if let Some(table) = table {
            raw.insert("table".into(), table.into());
        }
        if let Some(filter) = filter {
            raw.insert("filter".into(), filter.into());
        }
        PostgresChangeBinding {
            event: Some(event.to_owned()),
            schema: Some(schema.to_owned()),
            table: table.map(str::to_owned),
            filter: filter.map(str::to_owned),
            raw,
        }
    }

    /// A stable identifier for this binding: the same map always gets the same id, on every
    /// node and across restarts, so clients can route changes by it. It is a 31-bit FNV-1a
    /// hash of the map's canonical JSON (serde_json orders keys), which keeps it a positive
    /// 32-bit integer for every SDK.
    pub fn id(&self) -> u32 {
        let canonical = serde_json::to_string(&self.raw).unwrap_or_default();
        fnv1a_32(canonical.as_bytes()) & 0x7fff_ffff
    }

    /// The map echoed in the join reply: the client's map plus `"id"`.
    pub fn echo(&self) -> Value {
        let mut map = self.raw.clone();
        map.insert("id".into(), self.id().into());
        Value::Object(map)
    }
}

/// FNV-1a: five lines, stable across Rust versions (unlike `std`'s `DefaultHasher`).
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// A join payload field of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct JoinError {
    /// The dotted path of the field, e.g. `config.broadcast.self`.
    pub path: String,
    /// What was expected.
    pub expected: &'static str,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: unable to parse, expected {}",
            self.path, self.expected
        )
    }
}

fn error(path: impl Into<String>, expected: &'static str) -> JoinError {
    JoinError {
        path: path.into(),
        expected,
    }
}

impl JoinRequest {
    /// Parses a `phx_join` payload. `null` counts as an empty payload.
    pub fn parse(payload: &Value) -> Result<JoinRequest, JoinError> {
        let root = match payload {
            Value::Null => return Ok(JoinRequest::default()),
            Value::Object(map) => map,
            _ => return Err(error("payload", "a map")),
        };
        let token = |field: &str| -> Result<Option<String>, JoinError> {
            match root.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(error(field, "a string")),
            }
        };
        let user_token = token("user_token")?;
        let access_token = token("access_token")?;
        let access_token = user_token
            .or(access_token)
            .filter(|token| !token.is_empty() && !token.starts_with("sb_"));

        let config = match root.get("config") {
            None => None,
            Some(Value::Null) => Some(JoinConfig::default()),
            Some(Value::Object(map)) => Some(parse_config(map)?),
            Some(_) => return Err(error("config", "a map")),
        };
        Ok(JoinRequest {
            config,
            access_token,
        })
    }

    /// The payload realtime-js would send for this request.
    pub fn to_payload(&self) -> Value {
        let mut root = Map::new();
        if let Some(config) = &self.config {
            root.insert("config".into(), config.to_json());
        }
        if let Some(token) = &self.access_token {
            root.insert("access_token".into(), token.clone().into());
        }
        Value::Object(root)
    }
}

impl JoinConfig {
    /// The `config` object in realtime-js's shape.
    pub fn to_json(&self) -> Value {
        let mut broadcast =
            json!({"ack": self.broadcast.ack, "self": self.broadcast.self_broadcast});
        if let Some(replay) = &self.broadcast.replay {
            broadcast["replay"] = json!({"since": replay.since, "limit": replay.limit});
        }
        if self.broadcast.replication_ready {
            broadcast["replication_ready"] = true.into();
        }
        if let Some(resume) = &self.broadcast.resume {
            broadcast["resume"] = json!({"epoch": resume.epoch, "offset": resume.offset});
        }
        let mut config = json!({
            "broadcast": broadcast,
            "presence": {"enabled": self.presence.enabled, "key": self.presence.key.clone().unwrap_or_default()},
            "postgres_changes": self.postgres_changes.iter().map(|b| Value::Object(b.raw.clone())).collect::<Vec<_>>(),
            "private": self.private,
        });
        if self.postgres_changes_options.wait {
            let mut options = json!({"wait": true});
            if let Some(timeout) = self.postgres_changes_options.timeout_ms {
                options["timeout"] = timeout.into();
            }
            config["postgres_changes_options"] = options;
        }
        config
    }
}

fn parse_config(map: &Map<String, Value>) -> Result<JoinConfig, JoinError> {
    let broadcast = match sub_map(map, "broadcast", "config.broadcast")? {
        None => BroadcastConfig::default(),
        Some(b) => BroadcastConfig {
            ack: flexible_bool(b, "ack", "config.broadcast.ack")?,
            self_broadcast: flexible_bool(b, "self", "config.broadcast.self")?,
            replication_ready: flexible_bool(
                b,
                "replication_ready",
                "config.broadcast.replication_ready",
            )?,
            resume: match sub_map(b, "resume", "config.broadcast.resume")? {
                None => None,
                Some(r) => Some(parse_resume(r)?),
            },
            replay: match sub_map(b, "replay", "config.broadcast.replay")? {
                None => None,
                Some(r) => {
                    let since = integer(r, "since", "config.broadcast.replay.since");
                    let limit = integer(r, "limit", "config.broadcast.replay.limit");
                    Some(ReplayConfig {
                        malformed: since.is_err() || limit.is_err(),
                        since: since.ok().flatten(),
                        limit: limit.ok().flatten(),
                    })
                }
            },
        },
    };
    let presence = match sub_map(map, "presence", "config.presence")? {
        None => PresenceConfig::default(),
        Some(p) => PresenceConfig {
            enabled: flexible_bool(p, "enabled", "config.presence.enabled")?,
            key: p.get("key").and_then(presence_key),
        },
    };
    let postgres_changes = match map.get("postgres_changes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter(|(_, item)| !item.is_null())
            .map(|(i, item)| parse_binding(item, i))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(error("config.postgres_changes", "an array of maps")),
    };
    let postgres_changes_options = match sub_map(
        map,
        "postgres_changes_options",
        "config.postgres_changes_options",
    )? {
        None => PostgresChangesOptions::default(),
        Some(o) => PostgresChangesOptions {
            wait: flexible_bool(o, "wait", "config.postgres_changes_options.wait")?,
            timeout_ms: match integer(o, "timeout", "config.postgres_changes_options.timeout")? {
                None => None,
                Some(ms) => Some(u64::try_from(ms).map_err(|_| {
                    error(
                        "config.postgres_changes_options.timeout",
                        "non-negative integer",
                    )
                })?),
            },
        },
    };
    Ok(JoinConfig {
        broadcast,
        presence,
        postgres_changes,
        private: flexible_bool(map, "private", "config.private")?,
        postgres_changes_options,
    })
}

fn parse_binding(item: &Value, index: usize) -> Result<PostgresChangeBinding, JoinError> {
    let Value::Object(raw) = item else {
        return Err(error("config.postgres_changes", "an array of maps"));
    };
    let field = |name: &'static str| -> Result<Option<String>, JoinError> {
        match raw.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(error(
                format!("config.postgres_changes[{index}].{name}"),
                "string",
            )),
        }
    };
    Ok(PostgresChangeBinding {
        event: field("event")?,
        schema: field("schema")?,
        table: field("table")?,
        filter: field("filter")?,
        raw: raw.clone(),
    })
}

fn sub_map<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, JoinError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(_) => Err(error(path, "a map")),
    }
}

/// `{"epoch": "<string>", "offset": <integer, 0 or more>}`.
fn parse_resume(map: &Map<String, Value>) -> Result<ResumeFrom, JoinError> {
    let epoch = match map.get("epoch") {
        Some(Value::String(epoch)) if !epoch.is_empty() => epoch.clone(),
        _ => return Err(error("config.broadcast.resume.epoch", "a non-empty string")),
    };
    let offset = match map.get("offset") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    let offset =
        offset.ok_or_else(|| error("config.broadcast.resume.offset", "an integer of 0 or more"))?;
    Ok(ResumeFrom { epoch, offset })
}

fn flexible_bool(map: &Map<String, Value>, key: &str, path: &str) -> Result<bool, JoinError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(error(path, "boolean")),
    }
}

fn integer(map: &Map<String, Value>, key: &str, path: &str) -> Result<Option<i64>, JoinError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| error(path, "integer")),
        Some(_) => Err(error(path, "integer")),
    }
}

/// Any JSON value can be a presence key; non-strings use their JSON text.
fn presence_key(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn realtime_js_payload_parses() {
        let payload = json!({
            "config": {
                "broadcast": {"ack": false, "self": true},
                "presence": {"key": "", "enabled": true},
                "postgres_changes": [{"event": "INSERT", "schema": "public", "table": "todos", "filter": "id=eq.1"}],
                "private": false
            },
            "access_token": "jwt"
        });
        let join = JoinRequest::parse(&payload).unwrap();
        let config = join.config.unwrap();
        assert!(config.broadcast.self_broadcast);
        assert!(!config.broadcast.ack);
        assert!(config.presence.enabled);
        assert_eq!(config.presence.key, None);
        assert_eq!(config.postgres_changes.len(), 1);
        assert_eq!(config.postgres_changes[0].table.as_deref(), Some("todos"));
        assert_eq!(join.access_token.as_deref(), Some("jwt"));
    }

    #[test]
    fn string_booleans_and_nulls_are_accepted() {
        let payload = json!({"config": {"broadcast": {"ack": "TRUE", "self": null}, "private": "false",
                                        "postgres_changes": [null]}});
        let config = JoinRequest::parse(&payload).unwrap().config.unwrap();
        assert!(config.broadcast.ack);
        assert!(!config.broadcast.self_broadcast);
        assert!(config.postgres_changes.is_empty());
    }

    #[test]
    fn resume_needs_an_epoch_and_a_whole_offset() {
        let config = |resume: Value| json!({"config": {"broadcast": {"resume": resume}}});
        let parsed = JoinRequest::parse(&config(json!({"epoch": "e1", "offset": 7}))).unwrap();
        assert_eq!(
            parsed.config.unwrap().broadcast.resume,
            Some(ResumeFrom {
                epoch: "e1".into(),
                offset: 7
            })
        );
        for (resume, path) in [
            (json!({"offset": 7}), "config.broadcast.resume.epoch"),
            (
                json!({"epoch": "", "offset": 7}),
                "config.broadcast.resume.epoch",
            ),
            (
                json!({"epoch": 5, "offset": 7}),
                "config.broadcast.resume.epoch",
            ),
            (json!({"epoch": "e1"}), "config.broadcast.resume.offset"),
            (
                json!({"epoch": "e1", "offset": -1}),
                "config.broadcast.resume.offset",
            ),
            (
                json!({"epoch": "e1", "offset": 1.5}),
                "config.broadcast.resume.offset",
            ),
            (
                json!({"epoch": "e1", "offset": "7"}),
                "config.broadcast.resume.offset",
            ),
            (json!("e1:7"), "config.broadcast.resume"),
        ] {
            let err = JoinRequest::parse(&config(resume.clone())).unwrap_err();
            assert_eq!(err.path, path, "{resume}");
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err =
            JoinRequest::parse(&json!({"config": {"broadcast": {"self": "yes"}}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.broadcast.self: unable to parse, expected boolean"
        );
        let err = JoinRequest::parse(&json!({"config": {"postgres_changes": [{"table": 5}]}}))
            .unwrap_err();
        assert_eq!(err.path, "config.postgres_changes[0].table");
        for (options, path) in [
            (json!("yes"), "config.postgres_changes_options"),
            (json!({"wait": 1}), "config.postgres_changes_options.wait"),
            (
                json!({"timeout": -5}),
                "config.postgres_changes_options.timeout",
            ),
            (
                json!({"timeout": "5s"}),
                "config.postgres_changes_options.timeout",
            ),
        ] {
            let payload = json!({"config": {"postgres_changes_options": options}});
            assert_eq!(JoinRequest::parse(&payload).unwrap_err().path, path);
        }
        let err = JoinRequest::parse(&json!("nope")).unwrap_err();
        assert_eq!(err.path, "payload");
    }

    #[test]
    fn sb_keys_and_user_token() {
        let join = JoinRequest::parse(&json!({"access_token": "sb_publishable_x"})).unwrap();
        assert_eq!(join.access_token, None);
        let join = JoinRequest::parse(&json!({"access_token": "a", "user_token": "u"})).unwrap();
        assert_eq!(join.access_token.as_deref(), Some("u"));
        assert_eq!(
            JoinRequest::parse(&json!({})).unwrap().config,
            None,
            "legacy join has no config"
        );
    }

    #[test]
    fn presence_key_of_any_type() {
        let config = JoinRequest::parse(&json!({"config": {"presence": {"key": 42}}}))
            .unwrap()
            .config
            .unwrap();
        assert_eq!(config.presence.key.as_deref(), Some("42"));
    }

    #[test]
    fn binding_ids_are_stable_and_echo_verbatim() {
        let payload = json!({"event": "*", "schema": "public", "table": "t", "select": ["a"]});
        let a = parse_binding(&payload, 0).unwrap();
        let b = parse_binding(&payload, 0).unwrap();
        assert_eq!(a.id(), b.id());
        assert!(a.id() <= 0x7fff_ffff);
        let echo = a.echo();
        assert_eq!(echo["select"], json!(["a"]));
        assert_eq!(echo["id"], json!(a.id()));
        let other = parse_binding(
            &json!({"event": "INSERT", "schema": "public", "table": "t"}),
            0,
        )
        .unwrap();
        assert_ne!(a.id(), other.id());
    }

    #[test]
    fn to_payload_round_trips() {
        let request = JoinRequest {
            config: Some(JoinConfig {
                broadcast: BroadcastConfig {
                    ack: true,
                    self_broadcast: true,
                    ..Default::default()
                },
                presence: PresenceConfig {
                    enabled: true,
                    key: Some("me".into()),
                },
                postgres_changes: vec![PostgresChangeBinding::new("*", "public", Some("t"), None)],
                private: false,
                postgres_changes_options: PostgresChangesOptions {
                    wait: true,
                    timeout_ms: Some(20_000),
                },
            }),
            access_token: Some("jwt".into()),
        };
        assert_eq!(JoinRequest::parse(&request.to_payload()).unwrap(), request);
    }
}
