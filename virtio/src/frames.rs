//! Fixed-capacity queues of Ethernet frames, allocated once at creation: moving a frame
//! through the net device, the switch and the gateway allocates nothing.

use alloc::boxed::Box;
use alloc::vec;
use core::fmt;

/// Largest Ethernet frame the network path carries without GSO (1500-byte MTU, 14-byte
/// header, 802.1Q tag; virtio 1.2 §5.1.6.3.1: buffers need not hold more without GSO).
pub const MAX_FRAME: usize = 1518;

/// A buffer that holds any frame.
pub type FrameBuf = [u8; MAX_FRAME];

/// A FIFO of at most `capacity` frames of at most [`MAX_FRAME`] bytes, stored in one
/// allocation made by [`FrameRing::new`] (`capacity * MAX_FRAME` bytes plus 2 bytes per
/// slot). Pushing to a full ring fails; the caller drops and counts the frame.
pub struct FrameRing {
    data: Box<[u8]>,
    lens: Box<[u16]>,
    head: usize,
    len: usize,
}

impl fmt::Debug for FrameRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameRing")
            .field("capacity", &self.capacity())
            .field("len", &self.len)
            .finish()
    }
}

impl FrameRing {
    /// A ring of `capacity` frame slots (allocated now).
    pub fn new(capacity: usize) -> Self {
        FrameRing {
            data: vec![0; capacity * MAX_FRAME].into_boxed_slice(),
            lens: vec![0; capacity].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    /// Heap bytes a ring of `capacity` slots holds.
    pub const fn heap_bytes(capacity: usize) -> usize {
        capacity * (MAX_FRAME + 2)
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every slot is taken.
    pub fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    fn slot(&self, i: usize) -> usize {
        (self.head + i) % self.capacity().max(1)
    }

    /// Appends a copy of `frame`; false if the ring is full or the frame longer than
    /// [`MAX_FRAME`].
    pub fn push(&mut self, frame: &[u8]) -> bool {
        self.push_with(|slot| {
            let dst = slot.get_mut(..frame.len())?;
            dst.copy_from_slice(frame);
            Some(frame.len())
        })
        .is_some()
    }

    /// Appends a frame written in place by `fill`, which returns its length (at most
    /// [`MAX_FRAME`]) or `None` to append nothing. Returns the length appended; `None` if
    /// the ring is full (then `fill` is not called) or `fill` gave up.
    pub fn push_with(
        &mut self,
        fill: impl FnOnce(&mut FrameBuf) -> Option<usize>,
    ) -> Option<usize> {
        if self.is_full() {
            return None;
        }
        let i = self.slot(self.len);
        let at = i * MAX_FRAME;
        let slot: &mut FrameBuf = self.data.get_mut(at..at + MAX_FRAME)?.try_into().ok()?;
        let n = fill(slot).filter(|&n| n <= MAX_FRAME)?;
        *self.lens.get_mut(i)? = n as u16;
        self.len += 1;
        Some(n)
    }

    /// The oldest frame.
    pub fn front(&self) -> Option<&[u8]> {
        if self.is_empty() {
            return None;
        }
        let at = self.head * MAX_FRAME;
        let n = usize::from(*self.lens.get(self.head)?);
        self.data.get(at..at + n)
    }

    /// Removes the oldest frame; false if there was none.
    pub fn pop(&mut self) -> bool {
        if self.is_empty() {
            return false;
        }
        self.head = self.slot(1);
        self.len -= 1;
        true
    }

    /// Moves the oldest frame into `buf`; its length, or `None` if the ring is empty.
    pub fn pop_into(&mut self, buf: &mut FrameBuf) -> Option<usize> {
        let frame = self.front()?;
        let n = frame.len();
        buf.get_mut(..n)?.copy_from_slice(frame);
        self.pop();
        Some(n)
    }

    /// Drops every frame.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_wraps_and_refuses_when_full() {
        let mut r = FrameRing::new(3);
        assert_eq!(FrameRing::heap_bytes(3), 3 * 1520);
        assert!(r.push(&[1; 60]) && r.push(&[2; 1518]) && r.push(&[3; 14]));
        assert!(r.is_full());
        assert!(!r.push(&[4; 60]), "full");
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(r.pop_into(&mut buf), Some(60));
        assert_eq!(&buf[..60], &[1; 60]);
        assert!(r.push(&[5; 100]), "the freed slot is reused");
        assert_eq!(r.front(), Some(&[2u8; 1518][..]));
        assert!(r.pop());
        assert_eq!(r.pop_into(&mut buf), Some(14));
        assert_eq!(r.pop_into(&mut buf), Some(100));
        assert_eq!(&buf[..100], &[5; 100]);
        assert_eq!(r.pop_into(&mut buf), None);
        assert!(!r.pop());
        assert!(!r.push(&[0; MAX_FRAME + 1]), "longer than MAX_FRAME");
        assert_eq!(r.push_with(|_| None), None);
        assert!(r.is_empty());
        let mut empty = FrameRing::new(0);
        assert!(!empty.push(&[1; 14]));
        assert_eq!(empty.front(), None);
    }
}
