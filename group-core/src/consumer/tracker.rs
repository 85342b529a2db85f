//! Per-partition progress: what is buffered, what was delivered, what the application finished,
//! and hence what may be committed.
//!
//! Acknowledgements may arrive in any order (mistsys/sarama-consumer's out-of-order `Done()`).
//! The committable offset is the lowest offset that is delivered but not yet done, or, when
//! nothing is outstanding, the first buffered record, or else the next offset to fetch. So a
//! commit never passes a record that was not processed, and gaps in offsets (compaction,
//! transaction markers) never hold a commit back.

use std::collections::VecDeque;

/// Fetched records waiting for delivery, kept as the vectors the fetcher decoded them into:
/// appending a response is O(1) (no copy of the records under the consumer's lock, no growth
/// of one big ring buffer), and delivery takes records from the front vector in place. A
/// vector delivery emptied is kept in `exhausted` for the consumer to hand back to the
/// fetcher (`Spare`): a response's vector is often hundreds of KiB, and allocating a fresh
/// one per response made the kernel fault in its pages every time.
#[derive(Debug, Clone)]
pub(crate) struct Buffer<R> {
    chunks: VecDeque<VecDeque<(i64, R)>>,
    len: usize,
    pub(crate) exhausted: Option<Vec<(i64, R)>>,
}

impl<R> Default for Buffer<R> {
    fn default() -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
            exhausted: None,
        }
    }
}

impl<R> Buffer<R> {
    /// Records waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Offset of the first record waiting.
    pub(crate) fn front_offset(&self) -> Option<i64> {
        self.chunks
            .front()
            .and_then(VecDeque::front)
            .map(|(o, _)| *o)
    }

    fn push_back(&mut self, records: Vec<(i64, R)>) {
        if !records.is_empty() {
            self.len += records.len();
            // O(1): the deque takes the vector's allocation as it is.
            self.chunks.push_back(records.into());
        }
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }
}

/// Emptied record vectors on their way back to the fetcher, up to a bound on the memory they
/// hold while idle.
#[derive(Debug)]
pub(crate) struct Spare<R> {
    free: Vec<Vec<(i64, R)>>,
    bytes: usize,
}

impl<R> Default for Spare<R> {
    fn default() -> Self {
        Self {
            free: Vec::new(),
            bytes: 0,
        }
    }
}

impl<R> Spare<R> {
    /// Idle vectors hold at most this much (about a hundred thousand records' slots).
    const MAX_BYTES: usize = 16 * 1024 * 1024;

    /// Keeps an emptied vector if there is room for it.
    pub(crate) fn give(&mut self, v: Vec<(i64, R)>) {
        debug_assert!(v.is_empty());
        let size = v.capacity() * std::mem::size_of::<(i64, R)>();
        if size > 0 && self.bytes + size <= Self::MAX_BYTES {
            self.bytes += size;
            self.free.push(v);
        }
    }

    /// An empty vector, recycled when one is idle.
    pub(crate) fn take(&mut self) -> Vec<(i64, R)> {
        match self.free.pop() {
            Some(v) => {
                self.bytes -= v.capacity() * std::mem::size_of::<(i64, R)>();
                v
            }
            None => Vec::new(),
        }
    }
}

/// The partition's leader epochs as the fetched batches showed them (KIP-320): each entry is
/// the first offset seen with an epoch. Gives the epoch of the record before an offset, which a
/// commit carries and which the fetch position is validated with after a leader change. Epochs
/// change only with leaders, so a short list covers everything still buffered or uncommitted.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaderEpochs {
    changes: VecDeque<(i64, i32)>,
}

/// Epoch changes remembered per partition (older ones only matter for offsets long committed).
const EPOCHS_KEPT: usize = 16;

impl LeaderEpochs {
    /// The batch starting at `offset` was written in leader epoch `epoch` (-1: a batch of a
    /// message format without epochs, which says nothing).
    pub(crate) fn saw(&mut self, offset: i64, epoch: i32) {
        if epoch < 0 || self.changes.back().is_some_and(|&(_, e)| e == epoch) {
            return;
        }
        self.changes.push_back((offset, epoch));
        if self.changes.len() > EPOCHS_KEPT {
            self.changes.pop_front();
        }
    }

    /// The leader epoch of the record before `offset`, if known.
    pub(crate) fn before(&self, offset: i64) -> Option<i32> {
        self.changes
            .iter()
            .rev()
            .find(|&&(first, _)| first < offset)
            .map(|&(_, e)| e)
    }

    /// The position moved to `offset`: what was seen no longer applies; `epoch`, when known, is
    /// that of the record before it (a committed offset's epoch, or a divergence point's).
    pub(crate) fn reset(&mut self, offset: i64, epoch: Option<i32>) {
        self.changes.clear();
        if let Some(e) = epoch.filter(|&e| e >= 0) {
            self.changes.push_back((offset.saturating_sub(1), e));
        }
    }
}

/// Progress of one partition.
#[derive(Debug, Clone)]
pub(crate) struct Tracker<R> {
    /// Next offset to fetch.
    pub(crate) fetch_offset: i64,
    /// Records fetched, not yet delivered.
    pub(crate) buffer: Buffer<R>,
    /// Delivered records in offset order with whether each is done; done records leave from
    /// the front, so the front is the first record not yet done. Deliveries come in offset
    /// order, so this stays sorted and an acknowledgement is a binary search, with no
    /// allocation per record.
    delivered: VecDeque<(i64, bool)>,
    /// Delivered and not done.
    pending: usize,
    /// Last committed offset.
    pub(crate) committed: Option<i64>,
}

impl<R> Tracker<R> {
    pub(crate) fn new(start: i64) -> Self {
        Self {
            fetch_offset: start,
            buffer: Buffer::default(),
            delivered: VecDeque::new(),
            pending: 0,
            committed: None,
        }
    }

    /// Appends one fetched record (offsets must increase); the fetcher uses [`Self::extend`].
    #[cfg(test)]
    pub(crate) fn push(&mut self, offset: i64, r: R) {
        self.extend(vec![(offset, r)]);
    }

    /// Appends fetched records in offset order (a whole response at once, without copying).
    pub(crate) fn extend(&mut self, records: Vec<(i64, R)>) {
        if let Some(&(last, _)) = records.last() {
            self.buffer.push_back(records);
            self.fetch_offset = last + 1;
        }
    }

    /// Moves the fetch position past records that will not be delivered (control records,
    /// records older than the maximum age).
    pub(crate) fn skip_to(&mut self, next: i64) {
        if next > self.fetch_offset {
            self.fetch_offset = next;
        }
    }

    /// Takes the next record for delivery.
    #[cfg(test)]
    pub(crate) fn deliver(&mut self) -> Option<R> {
        let mut out = Vec::new();
        self.deliver_many(1, &mut out);
        out.pop()
    }

    /// Appends up to `limit` records for delivery to `out`, in offset order; returns how many.
    /// Whole runs of a response vector move at once, each record moved once.
    pub(crate) fn deliver_many(&mut self, limit: usize, out: &mut Vec<R>) -> usize {
        let mut n = 0;
        while n < limit {
            let Some(chunk) = self.buffer.chunks.front_mut() else {
                break;
            };
            let k = (limit - n).min(chunk.len());
            self.delivered
                .extend(chunk.iter().take(k).map(|&(offset, _)| (offset, false)));
            out.extend(chunk.drain(..k).map(|(_, r)| r));
            n += k;
            if chunk.is_empty()
                && let Some(empty) = self.buffer.chunks.pop_front()
            {
                // O(1) for an empty deque: the allocation comes back as a vector.
                self.buffer.exhausted = Some(empty.into());
            }
        }
        self.buffer.len -= n;
        self.pending += n;
        n
    }

    /// Marks one delivered record done.
    pub(crate) fn ack(&mut self, offset: i64) {
        // The common case, acknowledging the oldest outstanding record, needs no search.
        if let Some(&(o, false)) = self.delivered.front()
            && o == offset
        {
            self.delivered.pop_front();
            self.pending -= 1;
            while self.delivered.front().is_some_and(|(_, done)| *done) {
                self.delivered.pop_front();
            }
            return;
        }
        if let Ok(i) = self.delivered.binary_search_by_key(&offset, |(o, _)| *o)
            && !self.delivered[i].1
        {
            self.delivered[i].1 = true;
            self.pending -= 1;
            while self.delivered.front().is_some_and(|(_, done)| *done) {
                self.delivered.pop_front();
            }
        }
    }

    /// Marks every delivered record up to and including `offset` done (in-order mode).
    pub(crate) fn ack_through(&mut self, offset: i64) {
        while let Some(&(o, done)) = self.delivered.front() {
            if o > offset && !done {
                break;
            }
            if !done {
                self.pending -= 1;
            }
            self.delivered.pop_front();
        }
    }

    /// Records delivered and not done.
    pub(crate) fn outstanding(&self) -> usize {
        self.pending
    }

    /// The offset a commit may name now.
    pub(crate) fn committable(&self) -> i64 {
        if let Some(&(o, _)) = self.delivered.front() {
            return o;
        }
        if let Some(o) = self.buffer.front_offset() {
            return o;
        }
        self.fetch_offset
    }

    /// Whether the committable offset is ahead of the last commit.
    pub(crate) fn needs_commit(&self) -> bool {
        self.committed.is_none_or(|c| self.committable() > c)
    }

    /// Drops buffered records; the fetch position goes back to the first of them, so the
    /// committable offset does not move past records nobody received.
    pub(crate) fn clear_buffer(&mut self) {
        if let Some(o) = self.buffer.front_offset() {
            self.fetch_offset = o;
        }
        self.buffer.clear();
    }

    /// Moves the fetch position, dropping what was buffered and forgetting what was delivered
    /// (the position is now the caller's decision; acknowledgements of earlier deliveries are
    /// ignored, and the delivered list stays in offset order for the deliveries to come).
    pub(crate) fn seek(&mut self, offset: i64) {
        self.buffer.clear();
        self.delivered.clear();
        self.pending = 0;
        self.fetch_offset = offset;
    }

    /// The offset of the next record to deliver.
    pub(crate) fn position(&self) -> i64 {
        self.buffer.front_offset().unwrap_or(self.fetch_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epochs_give_the_epoch_of_the_record_before_an_offset() {
        let mut e = LeaderEpochs::default();
        assert_eq!(e.before(5), None);
        e.saw(0, 3);
        e.saw(4, 3);
        e.saw(10, 5);
        e.saw(12, -1);
        assert_eq!(e.before(0), None);
        assert_eq!(e.before(1), Some(3));
        assert_eq!(e.before(10), Some(3));
        assert_eq!(e.before(11), Some(5));
        assert_eq!(e.before(100), Some(5));
        e.reset(7, Some(2));
        assert_eq!(e.before(7), Some(2));
        assert_eq!(e.before(6), None);
        e.reset(7, None);
        assert_eq!(e.before(8), None);
    }

    fn fill(t: &mut Tracker<i64>, offsets: &[i64]) {
        for &o in offsets {
            t.push(o, o);
        }
    }

    #[test]
    fn out_of_order_acks_commit_below_the_first_gap() {
        let mut t = Tracker::new(10);
        fill(&mut t, &[10, 11, 12, 13]);
        assert_eq!(t.committable(), 10);
        for _ in 0..4 {
            t.deliver();
        }
        t.ack(12);
        t.ack(11);
        assert_eq!(t.committable(), 10, "10 is not done");
        t.ack(10);
        assert_eq!(t.committable(), 13, "13 is outstanding");
        t.ack(13);
        assert_eq!(t.committable(), 14);
    }

    #[test]
    fn gaps_in_offsets_do_not_hold_commits_back() {
        let mut t = Tracker::new(0);
        fill(&mut t, &[0, 5, 9]);
        t.skip_to(12); // a control batch ends the fetch at 12
        for _ in 0..3 {
            t.deliver();
        }
        t.ack(0);
        t.ack(5);
        assert_eq!(t.committable(), 9);
        t.ack(9);
        assert_eq!(t.committable(), 12);
    }

    #[test]
    fn buffered_records_are_never_skipped() {
        let mut t = Tracker::new(0);
        fill(&mut t, &[0, 1, 2]);
        t.deliver();
        t.ack(0);
        assert_eq!(t.committable(), 1, "1 and 2 are buffered, not delivered");
        t.clear_buffer();
        assert_eq!(
            t.committable(),
            1,
            "dropping the buffer does not skip its records"
        );
    }

    #[test]
    fn delivery_in_runs_spans_response_vectors_and_hands_emptied_ones_back() {
        let mut t: Tracker<i64> = Tracker::new(0);
        let mut first = Vec::with_capacity(64);
        first.extend([(0, 0), (1, 1)]);
        let first_alloc = first.as_ptr();
        t.extend(first);
        t.extend(vec![(2, 2), (3, 3), (4, 4)]);
        let mut out = Vec::new();
        assert_eq!(t.deliver_many(3, &mut out), 3);
        assert_eq!(out, [0, 1, 2]);
        // The first response's vector is empty now: it comes back with its allocation.
        let back = t.buffer.exhausted.take().expect("an emptied vector");
        assert!(back.is_empty() && back.capacity() == 64);
        assert_eq!(back.as_ptr(), first_alloc);
        assert_eq!(t.deliver_many(10, &mut out), 2);
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert_eq!(t.deliver_many(10, &mut out), 0);
        assert_eq!(t.outstanding(), 5);
        t.ack(4);
        t.ack(0);
        assert_eq!(t.committable(), 1, "1 to 3 are delivered, not done");
    }

    #[test]
    fn spare_vectors_are_reused_up_to_a_bound() {
        let mut spare: Spare<[u8; 56]> = Spare::default();
        assert_eq!(
            spare.take().capacity(),
            0,
            "nothing idle: a new empty vector"
        );
        let v: Vec<(i64, [u8; 56])> = Vec::with_capacity(1000);
        let ptr = v.as_ptr();
        spare.give(v);
        let again = spare.take();
        assert_eq!(again.as_ptr(), ptr);
        // 64-byte slots: the bound is 16 MiB, so 262,144 slots; a vector beyond it is freed.
        spare.give(Vec::with_capacity(200_000));
        spare.give(Vec::with_capacity(100_000));
        assert_eq!(spare.free.len(), 1);
        assert!(spare.bytes <= Spare::<[u8; 56]>::MAX_BYTES);
        spare.give(Vec::new());
        assert_eq!(spare.free.len(), 1, "a vector without memory is not kept");
    }

    #[test]
    fn in_order_mode_acknowledges_everything_up_to_a_record() {
        let mut t = Tracker::new(0);
        fill(&mut t, &[0, 1, 2, 3]);
        for _ in 0..4 {
            t.deliver();
        }
        t.ack_through(2);
        assert_eq!(t.committable(), 3);
        assert_eq!(t.outstanding(), 1);
    }

    proptest::proptest! {
        /// Against a model (the set of delivered, not-done offsets): any interleaving of
        /// deliveries, out-of-order acks, in-order acks and repeated acks commits below the
        /// first record not done, and never past a record that was not delivered.
        #[test]
        fn matches_a_set_model(
            gaps in proptest::collection::vec(1i64..4, 1..60),
            ops in proptest::collection::vec((0u8..4, 0usize..60), 0..200),
        ) {
            let mut t = Tracker::new(0);
            let mut offsets = Vec::new();
            let mut o = 0;
            for g in gaps {
                offsets.push(o);
                t.push(o, o);
                o += g;
            }
            let mut model = std::collections::BTreeSet::new();
            let mut delivered = Vec::new();
            for (op, i) in ops {
                match op {
                    0 | 1 => {
                        if let Some(r) = t.deliver() {
                            model.insert(r);
                            delivered.push(r);
                        }
                    }
                    2 => {
                        if let Some(&r) = delivered.get(i % delivered.len().max(1)) {
                            t.ack(r);
                            model.remove(&r);
                        }
                    }
                    _ => {
                        if let Some(&r) = delivered.get(i % delivered.len().max(1)) {
                            t.ack_through(r);
                            model.retain(|x| *x > r);
                        }
                    }
                }
                proptest::prop_assert_eq!(t.outstanding(), model.len());
                let want = model
                    .first()
                    .copied()
                    .or_else(|| t.buffer.front_offset())
                    .unwrap_or(t.fetch_offset);
                proptest::prop_assert_eq!(t.committable(), want);
            }
        }
    }
}
