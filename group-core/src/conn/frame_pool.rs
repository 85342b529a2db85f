//! Receive buffers for large response frames (fetch responses), kept for reuse.
//!
//! A response is handed on as one `Bytes` whose slices (record keys and values) live as long
//! as the application keeps the records, so the connection cannot read the next response into
//! the same memory. Allocating a fresh buffer of several MiB per fetch response made the
//! allocator map new pages and the kernel fault every one of them in while copying from the
//! socket, then give them back when the records were dropped: about a fifth of a consumer's
//! CPU at 100-byte records (traced with `perf` on `consume_timing`). Here a large frame is
//! read into a buffer taken from a small per-connection pool, and the buffer returns to the
//! pool, its pages still mapped, when the last slice of the response is dropped. Java's and
//! Go's consumers get the same effect from their garbage-collected heaps.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Frames at least this large are read into pooled buffers. Smaller ones share the
/// connection's read buffer, whose 64 KiB allocations come from the allocator's arenas
/// without mapping pages (glibc maps allocations of 128 KiB and more on their own).
pub(crate) const LARGE_FRAME: usize = 128 * 1024;

/// Buffers kept per connection: a consumer holds the response being read, the one its
/// records come from and, while the application lags, one more.
const KEPT: usize = 3;

/// At most this many bytes of idle buffers are kept per connection; larger frames allocate
/// as before, so a rare huge response does not pin its memory for the connection's life.
const KEPT_BYTES: usize = 64 * 1024 * 1024;

#[derive(Default)]
pub(crate) struct FramePool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl FramePool {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty buffer with room for `size` bytes: the smallest idle one that fits, else a
    /// new one.
    pub(crate) fn take(&self, size: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= size)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => free.swap_remove(i),
            None => Vec::with_capacity(size),
        }
    }

    /// Turns a filled buffer into the frame; the buffer comes back when the frame and every
    /// slice of it are dropped.
    pub(crate) fn frame(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::clone(self),
        })
    }

    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let held: usize = free.iter().map(Vec::capacity).sum();
        if held + buf.capacity() <= KEPT_BYTES && free.len() < KEPT {
            free.push(buf);
        } else if let Some(smallest) = free.iter_mut().min_by_key(|b| b.capacity())
            && smallest.capacity() < buf.capacity()
            && held - smallest.capacity() + buf.capacity() <= KEPT_BYTES
        {
            // Sizes drift (a fetch response grows with the partitions it covers): keep the
            // larger buffer, which serves both.
            *smallest = buf;
        }
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: Arc<FramePool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_the_last_slice_is_dropped() {
        let pool = FramePool::new();
        let mut b = pool.take(LARGE_FRAME);
        b.extend_from_slice(&vec![7u8; LARGE_FRAME]);
        let ptr = b.as_ptr();
        let frame = pool.frame(b);
        let slice = frame.slice(10..20);
        drop(frame);
        // Still referenced by the slice: a new frame gets a new buffer.
        let other = pool.take(LARGE_FRAME);
        assert_ne!(other.as_ptr(), ptr);
        drop(other);
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        let again = pool.take(LARGE_FRAME);
        assert_eq!(again.as_ptr(), ptr, "the same memory is reused");
        assert!(again.is_empty());
    }

    #[test]
    fn idle_memory_is_bounded() {
        let pool = FramePool::new();
        let frames: Vec<Bytes> = (0..KEPT + 2)
            .map(|i| {
                let mut b = pool.take(LARGE_FRAME * (i + 1));
                b.push(1);
                pool.frame(b)
            })
            .collect();
        drop(frames);
        let free = pool.free.lock().unwrap();
        assert_eq!(free.len(), KEPT);
        // The largest ones were kept.
        assert!(free.iter().all(|b| b.capacity() >= LARGE_FRAME * 3));
        drop(free);
        let huge = pool.take(KEPT_BYTES + 1);
        let cap = huge.capacity();
        drop(pool.frame(huge));
        assert!(
            pool.free
                .lock()
                .unwrap()
                .iter()
                .all(|b| b.capacity() != cap)
        );
    }
}
