//! Nodes whose bus keeps one history for all of them (`MemoryBus::sharing_history`, as a
//! Redis cluster does): every broadcast has one position on every node, and a client
//! resumes on any node with exactly what it missed.

use crier_server::broker::MemoryBus;
use crier_server::protocol::{Message, Vsn};
use crier_server::{Config, Node};
use crier_testkit::prelude::*;
use serde_json::{Value, json};

const TOPIC: &str = "realtime:feed";

/// Two nodes on one bus that shares history, keeping `size` broadcasts per topic.
async fn two_nodes(size: usize) -> (TestServer, TestServer) {
    let bus = MemoryBus::sharing_history();
    let node = || {
        let mut config = Config::new(SECRET);
        config.history.size = size;
        config.limits.max_events_per_second = 1_000_000;
        Node::builder(config).broker(bus.broker()).build().unwrap()
    };
    (
        TestServer::start_node(node()).await,
        TestServer::start_node(node()).await,
    )
}

/// Joins [`TOPIC`], resuming from `resume` when given; returns the reply's position.
async fn join(client: &mut Client, config: Value) -> Value {
    let (_, status, response) = client
        .join(TOPIC, json!({"config": {"broadcast": config}}))
        .await;
    assert_eq!(status, "ok", "{response}");
    response["broadcast"].clone()
}

/// The next broadcast or system message on [`TOPIC`].
async fn next(client: &mut Client) -> Message {
    client
        .until(|m| m.topic == TOPIC && (m.event == "broadcast" || m.event == "system"))
        .await
}

/// `(meta.offset, payload.n)`.
fn offset_and_n(message: &Message) -> (u64, i64) {
    let body = json_payload(message);
    assert_eq!(message.event, "broadcast", "{body}");
    (
        body["meta"]["offset"].as_u64().unwrap(),
        body["payload"]["n"].as_i64().unwrap(),
    )
}

fn send(server: &TestServer, n: i64) {
    server
        .node
        .broadcast("feed", "e", &json!({"n": n}))
        .expect("published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_the_other_node_while_both_publish() {
    let (a, b) = two_nodes(10_000).await;
    let mut first = a.connect(Vsn::V2).await;
    let start = join(&mut first, json!({})).await;
    let epoch = start["epoch"].as_str().unwrap().to_owned();
    assert_eq!(start["offset"], 0);
    for n in 1..=20 {
        send(if n % 2 == 0 { &b } else { &a }, n);
    }
    for n in 1..=20 {
        assert_eq!(offset_and_n(&next(&mut first).await), (n as u64, n));
    }
    drop(first);
    // Both nodes keep publishing while the client comes back on node B, where nobody
    // subscribed: what node B's copy of the stream does not have comes from the bus.
    let (node_a, node_b) = (a.node.clone(), b.node.clone());
    let publisher = tokio::spawn(async move {
        for n in 21..=1000 {
            let node = if n % 2 == 0 { &node_b } else { &node_a };
            node.broadcast_async("feed", "e", &json!({"n": n}))
                .await
                .unwrap();
            if n % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut back = b.connect(Vsn::V2).await;
    join(&mut back, json!({"resume": {"epoch": epoch, "offset": 5}})).await;
    publisher.await.unwrap();
    let mut expected = 6;
    let mut reported = false;
    while expected <= 1000 || !reported {
        let message = next(&mut back).await;
        if message.event == "system" {
            assert_eq!(json_payload(&message)["resume"]["recovered"], true);
            reported = true;
            continue;
        }
        assert_eq!(offset_and_n(&message), (expected as u64, expected as i64));
        expected += 1;
    }
    back.heartbeat().await;
}

#[tokio::test]
async fn a_resume_past_what_the_shared_history_keeps_says_so() {
    let (a, b) = two_nodes(3).await;
    let mut keeper = a.connect(Vsn::V2).await;
    let epoch = join(&mut keeper, json!({})).await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=6 {
        send(&a, n);
    }
    for n in 1..=6 {
        assert_eq!(offset_and_n(&next(&mut keeper).await).1, n);
    }
    let mut late = b.connect(Vsn::V2).await;
    let position = join(&mut late, json!({"resume": {"epoch": epoch, "offset": 1}})).await;
    assert_eq!(position["offset"], 6, "the join says where the stream is");
    let report = next(&mut late).await;
    assert_eq!(
        json_payload(&report),
        &json!({"extension": "broadcast", "status": "error",
                "message": "Resume gap: history no longer reaches offset 2",
                "resume": {"recovered": false, "epoch": epoch, "offset": 6}})
    );
    // The channel stays, and receives from there on.
    send(&a, 7);
    assert_eq!(offset_and_n(&next(&mut late).await), (7, 7));
    // From what is still kept, on either node.
    for on in [&a, &b] {
        let mut client = on.connect(Vsn::V1).await;
        join(
            &mut client,
            json!({"resume": {"epoch": epoch, "offset": 4}}),
        )
        .await;
        let missed: Vec<_> = [
            next(&mut client).await,
            next(&mut client).await,
            next(&mut client).await,
        ]
        .iter()
        .map(offset_and_n)
        .collect();
        assert_eq!(missed, [(5, 5), (6, 6), (7, 7)]);
        let report = next(&mut client).await;
        assert_eq!(json_payload(&report)["resume"]["missed"], 3);
    }
}

#[tokio::test]
async fn self_false_and_the_history_api_hold_across_nodes() {
    let (a, b) = two_nodes(100).await;
    let mut sender = a.connect(Vsn::V2).await;
    let sender_ref = sender
        .join_ok(TOPIC, json!({"broadcast": {"self": false, "ack": true}}))
        .await;
    let mut witness = a.connect(Vsn::V2).await;
    witness
        .join_ok(TOPIC, json!({"broadcast": {"self": true}}))
        .await;
    let msg_ref = sender
        .broadcast(&sender_ref, TOPIC, "e", json!({"n": 1}))
        .await;
    assert_eq!(sender.reply(&msg_ref).await.0, "ok");
    let msg_ref = sender
        .broadcast(&sender_ref, TOPIC, "e", json!({"n": 2}))
        .await;
    assert_eq!(sender.reply(&msg_ref).await.0, "ok");
    assert_eq!(offset_and_n(&next(&mut witness).await), (1, 1));
    assert_eq!(offset_and_n(&next(&mut witness).await), (2, 2));
    // The sender got neither: the next thing it hears is another client's broadcast.
    send(&b, 3);
    assert_eq!(offset_and_n(&next(&mut sender).await), (3, 3));

    // Node B has no subscriber; its history API reads the shared stream.
    drop(sender);
    let response = reqwest::Client::new()
        .get(b.http("/api/broadcast/feed/history?after=1"))
        .bearer_auth(token(json!({"role": "service_role"})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["offset"], 3);
    let ns: Vec<_> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["meta"]["offset"].clone(), m["payload"]["n"].clone()))
        .collect();
    assert_eq!(ns, [(json!(2), json!(2)), (json!(3), json!(3))]);
}
