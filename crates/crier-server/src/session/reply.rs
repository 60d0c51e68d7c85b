//! What a session writes to its own socket outside fan-out: replies to pushes, pushes to
//! one channel, and `phx_close`, each encoded for this socket's serializer.

use crier_protocol::Message;
use crier_protocol::events::{PHX_CLOSE, PHX_REPLY};
use crier_protocol::serializer::Envelope;
use serde::Serialize;
use serde_json::json;

use super::Session;
use crate::fanout::encode_one;

impl Session {
    /// Queues a reply to a push: `[join_ref, ref, topic, "phx_reply", {status, response}]`.
    pub(super) fn reply(&mut self, to: &ReplyAddress, status: &str, response: &impl Serialize) {
        #[derive(Serialize)]
        struct Reply<'a, R: Serialize> {
            status: &'a str,
            response: &'a R,
        }
        let envelope = Envelope {
            join_ref: to.join_ref.as_deref(),
            msg_ref: to.msg_ref.as_deref(),
            topic: &to.topic,
            event: PHX_REPLY,
        };
        self.out
            .push(encode_one(self.vsn, &envelope, &Reply { status, response }));
    }

    /// Queues a channel push: `[join_ref, null, topic, event, payload]`.
    pub(super) fn push(
        &mut self,
        join_ref: Option<&str>,
        topic: &str,
        event: &str,
        payload: &impl Serialize,
    ) {
        let envelope = Envelope {
            join_ref,
            msg_ref: None,
            topic,
            event,
        };
        self.out.push(encode_one(self.vsn, &envelope, payload));
    }

    /// Queues `[join_ref, join_ref, topic, "phx_close", {}]`, as Phoenix sends it.
    pub(super) fn push_close(&mut self, join_ref: Option<&str>, topic: &str) {
        let envelope = Envelope {
            join_ref,
            msg_ref: join_ref,
            topic,
            event: PHX_CLOSE,
        };
        self.out.push(encode_one(self.vsn, &envelope, &json!({})));
    }
}

/// Where a reply goes: the `join_ref`, `ref` and topic of the push it answers.
#[derive(Debug, Clone)]
pub(crate) struct ReplyAddress {
    pub(super) join_ref: Option<String>,
    pub(super) msg_ref: Option<String>,
    pub(super) topic: String,
}

impl ReplyAddress {
    pub(super) fn of(message: &Message) -> Self {
        ReplyAddress {
            join_ref: message.join_ref.clone(),
            msg_ref: message.msg_ref.clone(),
            topic: message.topic.clone(),
        }
    }
}
