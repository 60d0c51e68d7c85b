//! The bounded buffer of pushes made while a channel cannot send (offline, or rejoining).
//!
//! It holds at most `capacity` pushes (100 by default, as realtime-js); when full, the
//! oldest is dropped and handed back so its sender learns it was never sent. Unbounded
//! buffers are how long offline periods turn into memory growth and a flood on reconnect.

use std::collections::VecDeque;

/// Pushes waiting for their channel to be joined.
#[derive(Debug)]
pub(crate) struct PushBuffer<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> PushBuffer<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        PushBuffer {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Buffers `item`; returns the oldest item if it had to make room.
    pub(crate) fn push(&mut self, item: T) -> Option<T> {
        let evicted = if self.items.len() >= self.capacity {
            self.items.pop_front()
        } else {
            None
        };
        self.items.push_back(item);
        evicted
    }

    /// Removes and returns, in order, the items `belongs` selects.
    pub(crate) fn take(&mut self, mut belongs: impl FnMut(&T) -> bool) -> Vec<T> {
        let (taken, kept): (VecDeque<T>, VecDeque<T>) =
            self.items.drain(..).partition(|item| belongs(item));
        self.items = kept;
        taken.into()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_dropped_and_returned_when_full() {
        let mut buffer = PushBuffer::new(3);
        for n in 0..3 {
            assert_eq!(buffer.push(n), None);
        }
        assert_eq!(buffer.push(3), Some(0));
        assert_eq!(buffer.push(4), Some(1));
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.take(|_| true), vec![2, 3, 4]);
    }

    #[test]
    fn take_keeps_order_and_leaves_the_rest() {
        let mut buffer = PushBuffer::new(10);
        for item in [("a", 1), ("b", 2), ("a", 3)] {
            buffer.push(item);
        }
        assert_eq!(
            buffer.take(|(topic, _)| *topic == "a"),
            vec![("a", 1), ("a", 3)]
        );
        assert_eq!(buffer.len(), 1);
    }
}
