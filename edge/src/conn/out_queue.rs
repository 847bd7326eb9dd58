//! A connection's outbound queue: encoded frames waiting for the socket, with their
//! invariants in one place.
//!
//! Frames are `Rc<[u8]>`, shared by every connection a broadcast or a canned control frame
//! goes to. The queue knows how much of its front frame the socket already took (`off`) and
//! how many bytes are still to be written (`bytes`); every byte counts against the
//! connection's cap, control frames included — the one exception is a single frame on an
//! empty queue, so a message larger than the cap can still be delivered to a reader that keeps
//! up. An idle queue holds no allocation ([`OutQueue::release`]).

use std::collections::VecDeque;
use std::rc::Rc;

/// The frames waiting for one connection's socket.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Frames, oldest first.
    items: VecDeque<Rc<[u8]>>,
    /// Bytes of the front frame already written.
    off: u32,
    /// Unwritten bytes in all frames.
    bytes: u32,
}

impl OutQueue {
    /// Appends `frame` unless the unwritten bytes would then exceed `cap` (an empty queue takes
    /// any one frame). Returns false, queuing nothing, on overflow.
    pub fn push(&mut self, frame: Rc<[u8]>, cap: usize) -> bool {
        let len = frame.len() as u64;
        if !self.items.is_empty() && u64::from(self.bytes) + len > cap as u64 {
            return false;
        }
        self.bytes = self
            .bytes
            .saturating_add(len.min(u64::from(u32::MAX)) as u32);
        self.items.push_back(frame);
        true
    }

    /// The front frame and how much of it is written already.
    pub fn front(&self) -> Option<(&Rc<[u8]>, usize)> {
        self.items.front().map(|f| (f, self.off as usize))
    }

    /// The unwritten part of the front frame.
    pub fn unwritten(&self) -> Option<&[u8]> {
        self.items.front().map(|f| &f[self.off as usize..])
    }

    /// The socket took `n` more bytes of the front frame.
    pub fn advance(&mut self, n: usize) {
        let Some(front) = self.items.front() else {
            return;
        };
        let n = n.min(front.len() - self.off as usize);
        self.off += n as u32;
        self.bytes = self.bytes.saturating_sub(n as u32);
        if self.off as usize >= front.len() {
            self.items.pop_front();
            self.off = 0;
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Unwritten bytes.
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    /// Whether the socket is in the middle of a frame (a new frame cannot be slipped in
    /// before the rest of it).
    pub fn mid_frame(&self) -> bool {
        self.off > 0
    }

    /// Drops every frame except the rest of a partly written front one (which must be
    /// finished for the byte stream to stay well-formed): room for a last frame.
    pub fn keep_partial_front(&mut self) {
        if self.off > 0 {
            let front = self
                .items
                .pop_front()
                .expect("off > 0 implies a front frame");
            self.items.clear();
            self.bytes = (front.len() - self.off as usize) as u32;
            self.items.push_back(front);
        } else {
            self.clear();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.items = VecDeque::new();
        self.off = 0;
        self.bytes = 0;
    }

    /// Frees the allocation of an empty queue (idle connections hold none).
    pub fn release(&mut self) {
        if self.items.is_empty() && self.items.capacity() > 0 {
            self.items = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Rc<[u8]> {
        Rc::from(vec![7u8; n])
    }

    #[test]
    fn every_byte_counts_against_the_cap_but_one_frame_always_fits() {
        let mut q = OutQueue::default();
        assert!(q.push(frame(100), 10), "an empty queue takes one frame");
        assert!(!q.push(frame(1), 10));
        assert_eq!(q.bytes(), 100);
        let mut q = OutQueue::default();
        assert!(q.push(frame(4), 10));
        assert!(q.push(frame(6), 10));
        assert!(!q.push(frame(1), 10), "control frames count too");
    }

    #[test]
    fn partial_writes_advance_through_frames() {
        let mut q = OutQueue::default();
        q.push(frame(5), 100);
        q.push(frame(3), 100);
        q.advance(2);
        assert!(q.mid_frame());
        assert_eq!(q.unwritten().unwrap().len(), 3);
        assert_eq!(q.bytes(), 6);
        q.advance(3);
        assert!(!q.mid_frame());
        assert_eq!(q.unwritten().unwrap().len(), 3);
        q.advance(10);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        q.release();
        assert_eq!(q.items.capacity(), 0, "an idle queue holds no allocation");
    }

    #[test]
    fn room_for_a_last_frame_keeps_the_partial_front() {
        let mut q = OutQueue::default();
        q.push(frame(10), 100);
        q.push(frame(10), 100);
        q.advance(4);
        q.keep_partial_front();
        assert_eq!(q.bytes(), 6);
        assert!(q.push(frame(2), 8));
        q.advance(6);
        assert_eq!(q.unwritten().unwrap().len(), 2);
        let mut q = OutQueue::default();
        q.push(frame(10), 100);
        q.keep_partial_front();
        assert!(q.is_empty());
    }
}
