//! One task per socket, the same loop shape as Crier's session
//! (`crier-server/src/session/mod.rs`): wait for a client frame or the queue (which
//! also reports an overflow); then write everything the iteration produced with `feed` and flush once,
//! so a burst of fan-out costs one `write` per socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Poll;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use tokio::time::sleep;

use crate::queue::Queue;
use crate::registry::{Conn, Topic};
use crate::serve::Shared;
use crate::tuning;

/// WebSocket close code 1013, "try again later": what Crier sends a slow consumer.
const TRY_AGAIN_LATER: u16 = 1013;

/// Runs a socket until it closes; dropping the session unsubscribes it everywhere.
pub(crate) async fn run(shared: Arc<Shared>, mut ws: WebSocket) {
    let conn = Arc::new(Conn {
        id: shared.next_conn_id(),
        queue: Queue::new(tuning::QUEUE_BYTES),
    });
    let mut session = Session {
        shared,
        conn,
        topics: HashMap::new(),
        out: Vec::new(),
        needs_flush: false,
    };
    if session.serve(&mut ws).await == End::Slow {
        session.conn.queue.close();
        let close = CloseFrame {
            code: TRY_AGAIN_LATER,
            reason: "slow consumer".into(),
        };
        let _ =
            tokio::time::timeout(tuning::WRITE_TIMEOUT, ws.send(Message::Close(Some(close)))).await;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    ClientGone,
    Slow,
}

struct Session {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    /// The topics this socket subscribes to, to leave them when it closes.
    topics: HashMap<Arc<str>, Arc<Topic>>,
    /// Frames to write at the end of this iteration.
    out: Vec<Message>,
    /// A WebSocket ping arrived; its automatic pong needs a flush.
    needs_flush: bool,
}

impl Session {
    async fn serve(&mut self, ws: &mut WebSocket) -> End {
        let conn = Arc::clone(&self.conn);
        loop {
            tokio::select! {
                frame = ws.recv() => match frame {
                    Some(Ok(frame)) => self.on_frame(frame),
                    Some(Err(_)) | None => return End::ClientGone,
                },
                () = conn.queue.ready() => {
                    if !conn.queue.drain_into(&mut self.out) {
                        return End::Slow;
                    }
                }
            }
            if let Err(end) = self.write(ws).await {
                return end;
            }
        }
    }

    /// Writes everything this iteration produced, then flushes once. A write stalled
    /// past the write timeout, or an overflow meanwhile, ends the session.
    async fn write(&mut self, ws: &mut WebSocket) -> Result<(), End> {
        if self.out.is_empty() && !self.needs_flush {
            return Ok(());
        }
        self.needs_flush = false;
        let mut frames = std::mem::take(&mut self.out);
        let result = {
            let written = async {
                for frame in frames.drain(..) {
                    ws.feed(frame).await?;
                }
                ws.flush().await
            };
            tokio::pin!(written);
            // As in Crier: nearly every write completes at once, so the stall timer is
            // armed only for one that does not (saving a timer per flush).
            let first_poll =
                std::future::poll_fn(|cx| Poll::Ready(written.as_mut().poll(cx))).await;
            match first_poll {
                Poll::Ready(result) => result.map_err(|_| End::ClientGone),
                Poll::Pending => tokio::select! {
                    result = &mut written => result.map_err(|_| End::ClientGone),
                    () = sleep(tuning::WRITE_TIMEOUT) => Err(End::Slow),
                    () = self.conn.queue.slow().cancelled() => Err(End::Slow),
                },
            }
        };
        if frames.capacity() <= 256 {
            self.out = frames;
        }
        result
    }

    fn on_frame(&mut self, frame: Message) {
        let text = match frame {
            Message::Text(text) => text,
            Message::Ping(_) => {
                self.needs_flush = true;
                return;
            }
            Message::Binary(_) => return self.reply("err binary frames are not understood"),
            Message::Pong(_) | Message::Close(_) => return,
        };
        let text = text.as_str();
        if text == "ping" {
            self.reply("pong");
        } else if let Some(topic) = text.strip_prefix("sub ") {
            self.subscribe(topic);
        } else if let Some(rest) = text.strip_prefix("pub ") {
            match rest.split_once(' ') {
                Some((topic, payload)) if !topic.is_empty() => self.publish(topic, payload),
                _ => self.reply("err usage: pub <topic> <payload>"),
            }
        } else {
            self.reply("err unknown command");
        }
    }

    fn subscribe(&mut self, topic: &str) {
        if topic.is_empty() {
            return self.reply("err usage: sub <topic>");
        }
        if !self.topics.contains_key(topic) {
            let joined = self.shared.registry.subscribe(topic, &self.conn);
            self.topics.insert(Arc::from(topic), joined);
        }
        self.out.push(Message::Text(format!("ok {topic}").into()));
    }

    fn publish(&mut self, topic: &str, payload: &str) {
        let Some(topic) = self.shared.registry.get(topic) else {
            return;
        };
        // Encoded once; every subscriber's queue gets a refcounted clone.
        let frame = Message::Text(Utf8Bytes::from(payload));
        topic.deliver(&frame);
    }

    fn reply(&mut self, text: &'static str) {
        self.out.push(Message::Text(Utf8Bytes::from_static(text)));
    }
}

/// Cleanup in `Drop`, so it runs however the task ends.
impl Drop for Session {
    fn drop(&mut self) {
        self.conn.queue.close();
        for (_, topic) in self.topics.drain() {
            topic.remove(self.conn.id);
            self.shared.registry.remove_if_empty(&topic);
        }
    }
}
