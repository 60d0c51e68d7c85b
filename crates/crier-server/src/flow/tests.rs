use std::time::Duration;

use crier_protocol::Vsn;
use tokio::time::Instant;

use super::*;
use crate::outbound::{Outbound, OutboundQueue, Pushed, Unwritten};

const PATIENCE: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(10);

fn conn(ledger: &Arc<Ledger>, room_mark: usize) -> Arc<ConnHandle> {
    let queue = OutboundQueue::new(room_mark, 1 << 30, Arc::clone(ledger), Arc::default());
    ConnHandle::new(1, Vsn::V2, queue)
}

/// Pushes one shared frame of `len` bytes and drains it, as a socket's task would before
/// writing; returns what to report written.
fn queue_and_drain(conn: &ConnHandle, len: usize) -> Unwritten {
    let frame = conn.ledger().shared_text("x".repeat(len));
    assert_eq!(conn.queue.push(Outbound::Frame(frame)), Ok(Pushed::Lagging));
    let (mut frames, mut instructions, mut unwritten) =
        (Vec::new(), Vec::new(), Unwritten::default());
    conn.queue
        .drain_into(&mut frames, &mut instructions, &mut unwritten);
    unwritten
}

#[test]
fn a_shared_frame_counts_once_until_its_last_holder_lets_go() {
    let ledger = Ledger::new(usize::MAX);
    let frame = ledger.shared_text("x".repeat(1000));
    let copies: Vec<Frame> = (0..100).map(|_| frame.clone()).collect();
    assert_eq!(ledger.queued(), 1000, "one buffer, however many holders");
    drop(frame);
    drop(copies);
    assert_eq!(ledger.queued(), 0);
    let binary = ledger.shared_binary(vec![0; 10]);
    assert_eq!((binary.len(), ledger.queued()), (10, 10));
}

#[tokio::test(start_paused = true)]
async fn nothing_lagging_and_under_budget_means_no_wait() {
    let ledger = Ledger::new(1 << 20);
    let start = Instant::now();
    assert_eq!(ledger.wait_for_room(&[], PATIENCE, LIMIT).await, Ok(()));
    assert_eq!(Instant::now(), start);
}

#[tokio::test(start_paused = true)]
async fn a_publisher_waits_for_a_lagging_queue_until_it_is_written() {
    let ledger = Ledger::new(usize::MAX);
    let conn = conn(&ledger, 0);
    let unwritten = queue_and_drain(&conn, 10);
    let start = Instant::now();
    let waiter = {
        let (ledger, conn) = (Arc::clone(&ledger), Arc::clone(&conn));
        tokio::spawn(async move { ledger.wait_for_room(&[conn], PATIENCE, LIMIT).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "the queue is still full");
    conn.queue.written(unwritten);
    assert_eq!(waiter.await.unwrap(), Ok(()));
    assert_eq!(Instant::now(), start, "woken by the write, not by a timer");
}

#[tokio::test(start_paused = true)]
async fn a_queue_whose_socket_takes_nothing_holds_a_publisher_for_the_patience_only() {
    let ledger = Ledger::new(usize::MAX);
    let conn = conn(&ledger, 0);
    let _unwritten = queue_and_drain(&conn, 10);
    conn.queue.write_stalled();
    let start = Instant::now();
    assert_eq!(ledger.wait_for_room(&[conn], PATIENCE, LIMIT).await, Ok(()));
    assert_eq!(Instant::now() - start, PATIENCE);
}

#[tokio::test(start_paused = true)]
async fn a_queue_that_stalls_while_waited_on_is_given_up_on_after_the_patience() {
    let ledger = Ledger::new(usize::MAX);
    let conn = conn(&ledger, 0);
    let _unwritten = queue_and_drain(&conn, 10);
    let start = Instant::now();
    let waiter = {
        let (ledger, conn) = (Arc::clone(&ledger), Arc::clone(&conn));
        tokio::spawn(async move { ledger.wait_for_room(&[conn], PATIENCE, LIMIT).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    conn.queue.write_stalled();
    assert_eq!(waiter.await.unwrap(), Ok(()));
    // Looked again after the patience (50 ms), saw a stall of 30 ms, and waited out the
    // rest of the patience from the stall's start.
    assert_eq!(Instant::now() - start, Duration::from_millis(70));
}

#[tokio::test(start_paused = true)]
async fn over_the_node_budget_publishers_wait_until_frames_are_released() {
    let ledger = Ledger::new(100);
    let frame = ledger.shared_text("x".repeat(101));
    let start = Instant::now();
    let waiter = {
        let ledger = Arc::clone(&ledger);
        tokio::spawn(async move { ledger.wait_for_room(&[], PATIENCE, LIMIT).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "over budget");
    drop(frame);
    assert_eq!(waiter.await.unwrap(), Ok(()));
    assert_eq!(Instant::now(), start, "woken by the release");
}

#[tokio::test(start_paused = true)]
async fn a_node_over_budget_for_the_whole_limit_is_overloaded() {
    let ledger = Ledger::new(100);
    let _frame = ledger.shared_text("x".repeat(101));
    let start = Instant::now();
    assert_eq!(
        ledger.wait_for_room(&[], PATIENCE, LIMIT).await,
        Err(Overloaded)
    );
    assert_eq!(Instant::now() - start, LIMIT);
}

#[tokio::test(start_paused = true)]
async fn a_wait_given_up_mid_way_stops_counting_as_a_waiter() {
    let ledger = Ledger::new(100);
    let frame = ledger.shared_text("x".repeat(101));
    let waiter = {
        let ledger = Arc::clone(&ledger);
        tokio::spawn(async move { ledger.wait_for_room(&[], PATIENCE, LIMIT).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(ledger.waiters.load(Ordering::SeqCst), 1);
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(ledger.waiters.load(Ordering::SeqCst), 0);
    drop(frame);
}
