use std::time::Duration;

use super::*;

/// A ledger with room for anything these tests queue.
fn ledger() -> Arc<Ledger> {
    Ledger::new(usize::MAX)
}

fn queue(room_mark: usize, budget: usize) -> OutboundQueue {
    OutboundQueue::new(room_mark, budget, ledger(), Arc::default())
}

fn frame(len: usize) -> Outbound {
    Outbound::Frame(Frame::text("x".repeat(len)))
}

/// The cost of a queued frame of `len` bytes.
fn cost(len: usize) -> usize {
    len + SLOT_BYTES
}

/// Drains into fresh vectors.
fn drain(queue: &OutboundQueue) -> (Drained, Vec<Frame>, Vec<(usize, Outbound)>, Unwritten) {
    let (mut frames, mut instructions, mut unwritten) =
        (Vec::new(), Vec::new(), Unwritten::default());
    let drained = queue.drain_into(&mut frames, &mut instructions, &mut unwritten);
    (drained, frames, instructions, unwritten)
}

#[test]
fn the_budget_is_in_bytes_and_an_overflow_is_reported_once_then_closed() {
    let queue = queue(usize::MAX, 2 * cost(100));
    assert_eq!(queue.push(frame(100)), Ok(Pushed::Room));
    assert_eq!(queue.push(frame(100)), Ok(Pushed::Room));
    assert_eq!(queue.push(frame(1)), Err(PushError::Overflow));
    assert!(queue.has_overflowed());
    assert_eq!(queue.push(frame(1)), Err(PushError::Closed));
}

#[test]
fn many_small_frames_fit_where_a_count_bound_would_have_refused_them() {
    // 10,000 frames of 40 bytes, the burst a frame count of 1,024 used to refuse.
    let queue = queue(usize::MAX, 1 << 20);
    for _ in 0..10_000 {
        queue.push(frame(40)).unwrap();
    }
    let (drained, frames, _, unwritten) = drain(&queue);
    assert_eq!((drained, frames.len()), (Drained::Open, 10_000));
    assert_eq!(unwritten.bytes, 10_000 * cost(40));
}

#[test]
fn slots_count_so_tiny_frames_weigh_what_they_cost() {
    let queue = queue(usize::MAX, 10 * SLOT_BYTES);
    for _ in 0..10 {
        queue.push(frame(0)).unwrap();
    }
    assert_eq!(queue.push(frame(0)), Err(PushError::Overflow));
}

#[test]
fn instructions_count_towards_the_budget() {
    let queue = queue(usize::MAX, cost(1) + SLOT_BYTES);
    queue.push(frame(1)).unwrap();
    queue.push(Outbound::Shutdown).unwrap();
    assert_eq!(queue.push(frame(0)), Err(PushError::Overflow));
}

#[test]
fn a_push_over_the_room_mark_says_the_queue_is_lagging() {
    let queue = queue(cost(10), 1 << 20);
    assert_eq!(queue.push(frame(10)), Ok(Pushed::Room), "at the mark");
    assert_eq!(queue.push(frame(1)), Ok(Pushed::Lagging), "over it");
}

#[test]
fn drained_bytes_count_until_they_are_written() {
    let queue = queue(cost(10), 2 * cost(10));
    queue.push(frame(10)).unwrap();
    let (_, _, _, unwritten) = drain(&queue);
    // Drained but not written: still in the queue's count, for room and budget alike.
    assert_eq!(queue.push(frame(10)), Ok(Pushed::Lagging));
    assert!(matches!(
        queue.room(Duration::from_secs(1)),
        Room::Full { .. }
    ));
    queue.written(unwritten);
    assert_eq!(queue.room(Duration::from_secs(1)), Room::Free);
    let (_, frames, _, unwritten) = drain(&queue);
    assert_eq!(frames.len(), 1);
    assert_eq!(unwritten.bytes, cost(10), "only what this drain moved");
}

#[tokio::test(start_paused = true)]
async fn a_socket_whose_write_waits_past_the_patience_is_no_longer_waited_for() {
    let patience = Duration::from_millis(50);
    let queue = queue(0, 1 << 20);
    queue.push(frame(1)).unwrap();
    let (_, _, _, unwritten) = drain(&queue);
    let before = Instant::now();
    assert_eq!(
        queue.room(patience),
        Room::Full {
            recheck_at: before + patience
        },
        "not stalled: look again after the patience"
    );
    queue.write_stalled();
    tokio::time::advance(Duration::from_millis(30)).await;
    assert_eq!(
        queue.room(patience),
        Room::Full {
            recheck_at: before + patience
        },
        "stalled for 30 ms"
    );
    tokio::time::advance(Duration::from_millis(20)).await;
    assert_eq!(
        queue.room(patience),
        Room::NotWaitedFor,
        "stalled for 50 ms"
    );
    queue.written(unwritten);
    assert_eq!(queue.room(patience), Room::Free, "the write went through");
}

#[tokio::test(start_paused = true)]
async fn a_write_that_completes_clears_the_stall_even_with_nothing_drained() {
    let patience = Duration::from_millis(50);
    let queue = queue(0, 1 << 20);
    queue.push(frame(1)).unwrap();
    // A write of the task's own replies waited, then went through.
    queue.write_stalled();
    tokio::time::advance(patience).await;
    queue.written(Unwritten::default());
    assert!(
        matches!(queue.room(patience), Room::Full { .. }),
        "not taken for stalled by an old mark"
    );
}

#[test]
fn a_closed_queue_is_not_waited_for() {
    let queue = queue(0, 1 << 20);
    queue.push(frame(1)).unwrap();
    queue.close();
    assert_eq!(queue.room(Duration::from_secs(1)), Room::NotWaitedFor);
}

#[test]
fn slot_memory_reaches_the_node_ledger_in_chunks_and_leaves_it_when_written_or_closed() {
    let ledger = Ledger::new(usize::MAX);
    let queue = OutboundQueue::new(usize::MAX, 1 << 30, Arc::clone(&ledger), Arc::default());
    queue.push(frame(1)).unwrap();
    assert_eq!(ledger.queued(), 0, "a few frames never touch the ledger");
    let entries = 10_000;
    for _ in 1..entries {
        queue.push(frame(1)).unwrap();
    }
    // The buffer's capacity counts (at most twice its length), in whole chunks.
    let counted = ledger.queued();
    assert_eq!(counted % SLOT_CHUNK, 0);
    assert!(
        (entries * SLOT_BYTES - SLOT_CHUNK..=2 * entries * SLOT_BYTES).contains(&counted),
        "{counted}"
    );
    let (_, _, _, unwritten) = drain(&queue);
    assert!(
        ledger.queued() >= entries * SLOT_BYTES - SLOT_CHUNK,
        "drained but not written still counts"
    );
    queue.written(unwritten);
    // An empty drain gives the burst's buffer back: nothing is held any more.
    drain(&queue);
    assert_eq!(ledger.queued(), 0);
    for _ in 0..entries {
        queue.push(frame(1)).unwrap();
    }
    assert!(ledger.queued() > 0);
    queue.close();
    assert_eq!(ledger.queued(), 0, "a closed queue gives everything back");
    for _ in 0..entries {
        let _ = queue.push(frame(1));
    }
    drop(queue);
    assert_eq!(ledger.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_overflow_wakes_the_socket_task_and_its_drain_reports_it() {
    let queue = queue(usize::MAX, cost(1));
    queue.push(frame(1)).unwrap();
    let (drained, frames, _, unwritten) = drain(&queue);
    assert_eq!((drained, frames.len()), (Drained::Open, 1));
    queue.written(unwritten);
    queue.push(frame(1)).unwrap();
    // Take the wakeups the pushes left behind, so the next one must come from the
    // overflow.
    queue.ready().await;
    assert_eq!(queue.push(frame(1)), Err(PushError::Overflow));
    let woken = tokio::time::timeout(Duration::from_secs(1), queue.ready()).await;
    assert!(woken.is_ok(), "the overflow did not wake the socket's task");
    let (drained, frames, _, _) = drain(&queue);
    assert_eq!(drained, Drained::Overflowed);
    assert!(frames.is_empty(), "an overflowed queue hands nothing out");
}

#[test]
fn drain_takes_everything_in_order() {
    let queue = queue(usize::MAX, 1000);
    queue.push(frame(1)).unwrap();
    queue.push(frame(2)).unwrap();
    let (drained, frames, instructions, _) = drain(&queue);
    assert_eq!(drained, Drained::Open);
    assert_eq!(frames.iter().map(Frame::len).collect::<Vec<_>>(), [1, 2]);
    assert!(instructions.is_empty());
}

#[test]
fn instructions_keep_their_place_among_the_frames() {
    let queue = queue(usize::MAX, 10_000);
    let mut frames = vec![Frame::text("already in the batch".into())];
    let (mut instructions, mut unwritten) = (Vec::new(), Unwritten::default());
    queue.push(Outbound::Shutdown).unwrap();
    queue.push(frame(1)).unwrap();
    queue.push(frame(2)).unwrap();
    queue.push(Outbound::Shutdown).unwrap();
    queue.push(frame(3)).unwrap();
    queue.push(Outbound::Shutdown).unwrap();
    queue.drain_into(&mut frames, &mut instructions, &mut unwritten);
    assert_eq!(
        frames.iter().skip(1).map(Frame::len).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let positions: Vec<usize> = instructions.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        positions,
        [1, 3, 4],
        "before frame 1, before frame 3, after it"
    );
}

#[test]
fn a_burst_keeps_its_memory_while_it_lasts_and_gives_it_back_after() {
    let queue = queue(usize::MAX, 1 << 20);
    let (mut frames, mut instructions, mut unwritten) =
        (Vec::new(), Vec::new(), Unwritten::default());
    let burst = |n: usize| {
        for _ in 0..n {
            queue.push(frame(1)).unwrap();
        }
    };
    burst(200);
    queue.drain_into(&mut frames, &mut instructions, &mut unwritten);
    burst(200);
    let capacity = queue.state.lock().frames.capacity();
    assert!(capacity >= 200, "no regrowth inside a burst");
    queue.drain_into(&mut frames, &mut instructions, &mut unwritten);
    burst(1);
    queue.drain_into(&mut frames, &mut instructions, &mut unwritten);
    assert_eq!(
        queue.state.lock().frames.capacity(),
        0,
        "freed once it is over"
    );
    assert_eq!(frames.len(), 401);
}

#[test]
fn own_frames_bypass_the_budget() {
    let queue = queue(usize::MAX, cost(1));
    queue.push(frame(1)).unwrap();
    queue.push_own(frame(1));
    let (_, frames, _, _) = drain(&queue);
    assert_eq!(frames.len(), 2);
}
