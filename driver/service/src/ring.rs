//! The per-handle event ring: a bounded FIFO of expiry records, allocated once at open.
//!
//! When full it keeps the oldest records and drops the new one, counting it in an overrun
//! counter that the next wait response reports and resets. Push and pop never allocate, so
//! the expiry path (`DISPATCH_LEVEL`) can use them.

use alloc::vec::Vec;

use ktimer_abi::ExpiryRecord;

/// A bounded FIFO of [`ExpiryRecord`]s with an overrun counter.
///
/// The storage for every record is reserved at open, but a slot is written only when a record
/// first lands in it: opening a handle does not touch the whole ring.
#[derive(Debug)]
pub struct EventRing {
    /// The slots written so far: they grow (within the reservation) until the ring first
    /// wraps. Invariant: `head + len <= records.len()`, or `records.len() == capacity`.
    records: Vec<ExpiryRecord>,
    /// Records the ring holds at most.
    capacity: usize,
    /// Index of the oldest record.
    head: usize,
    /// Records held.
    len: usize,
    /// Records dropped since the last [`EventRing::take_overruns`].
    overruns: u64,
}

impl EventRing {
    /// A ring of `capacity` records (at least 1). Allocates; `PASSIVE_LEVEL` (open time).
    ///
    /// # Errors
    /// `None` if the allocation fails.
    #[must_use]
    pub fn new(capacity: usize) -> Option<Self> {
        let capacity = capacity.max(1);
        let mut records = Vec::new();
        records.try_reserve_exact(capacity).ok()?;
        Some(Self {
            records,
            capacity,
            head: 0,
            len: 0,
            overruns: 0,
        })
    }

    /// Appends a record, or counts an overrun if the ring is full. Any IRQL; no allocation.
    #[expect(
        clippy::inline_always,
        reason = "the expiry path: as a call it copied the record once more, 7 instructions \
                  per expiry in the callgrind benchmark (BENCHMARKS.md)"
    )]
    #[inline(always)]
    pub fn push(&mut self, record: ExpiryRecord) {
        let capacity = self.capacity;
        if self.len >= capacity {
            self.overruns = self.overruns.saturating_add(1);
            return;
        }
        // head < capacity and len < capacity, so the sum is below 2 * capacity: no overflow.
        let index = (self.head + self.len) % capacity;
        if let Some(slot) = self.records.get_mut(index) {
            // A handle's steady state: the slot was written before.
            *slot = record;
        } else if index == self.records.len() && index < self.records.capacity() {
            // The first record to land in this slot (by the invariant, the next unwritten
            // one), inside the reservation: `push` does not allocate.
            self.records.push(record);
        } else {
            // Unreachable by the invariant; dropping is the ring's answer to no room.
            self.overruns = self.overruns.saturating_add(1);
            return;
        }
        self.len += 1;
    }

    /// Removes and returns the oldest record. Any IRQL; no allocation.
    pub fn pop(&mut self) -> Option<ExpiryRecord> {
        if self.len == 0 {
            return None;
        }
        let record = *self.records.get(self.head)?;
        self.head = (self.head + 1) % self.capacity;
        self.len -= 1;
        Some(record)
    }

    /// Records held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records the ring can hold.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Returns the overrun count and resets it.
    pub fn take_overruns(&mut self) -> u64 {
        core::mem::take(&mut self.overruns)
    }

    /// The overrun count, unchanged.
    #[must_use]
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Drops every record and the overrun count.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.overruns = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64) -> ExpiryRecord {
        ExpiryRecord {
            timer_id: 1,
            sequence,
            expirations: 1,
            ..ExpiryRecord::default()
        }
    }

    #[test]
    fn keeps_fifo_order_across_the_wrap() {
        let mut ring = EventRing::new(3).unwrap();
        for round in 0..5u64 {
            ring.push(record(2 * round));
            ring.push(record(2 * round + 1));
            assert_eq!(ring.pop().map(|r| r.sequence), Some(2 * round));
            assert_eq!(ring.pop().map(|r| r.sequence), Some(2 * round + 1));
        }
        assert!(ring.is_empty());
        assert_eq!(ring.pop(), None);
    }

    #[test]
    fn a_full_ring_drops_new_records_and_counts_them() {
        let mut ring = EventRing::new(2).unwrap();
        for sequence in 1..=5 {
            ring.push(record(sequence));
        }
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.take_overruns(), 3);
        assert_eq!(ring.take_overruns(), 0);
        assert_eq!(ring.pop().map(|r| r.sequence), Some(1));
        assert_eq!(ring.pop().map(|r| r.sequence), Some(2));
        ring.push(record(6));
        assert_eq!(ring.pop().map(|r| r.sequence), Some(6));
    }

    #[test]
    fn clear_empties_and_resets() {
        let mut ring = EventRing::new(1).unwrap();
        ring.push(record(1));
        ring.push(record(2));
        ring.clear();
        assert_eq!((ring.len(), ring.overruns(), ring.capacity()), (0, 0, 1));
    }

    #[test]
    fn behaves_as_a_bounded_fifo_under_any_mix_of_push_pop_and_clear() {
        // A reference VecDeque against the lazily written ring, over pseudo-random operation
        // sequences (xorshift, fixed seeds) on small capacities, so every wrap position and
        // the first-write path are crossed many times.
        for capacity in 1..=5usize {
            let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ capacity as u64;
            let mut ring = EventRing::new(capacity).unwrap();
            let reserved = ring.records.capacity();
            let mut model = std::collections::VecDeque::new();
            let mut model_overruns = 0u64;
            for sequence in 0..2_000u64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 8 {
                    0..=3 => {
                        ring.push(record(sequence));
                        if model.len() < capacity {
                            model.push_back(sequence);
                        } else {
                            model_overruns += 1;
                        }
                    }
                    4..=6 => assert_eq!(ring.pop().map(|r| r.sequence), model.pop_front()),
                    _ => {
                        if seed % 64 == 7 {
                            ring.clear();
                            model.clear();
                            model_overruns = 0;
                        } else {
                            assert_eq!(ring.take_overruns(), model_overruns);
                            model_overruns = 0;
                        }
                    }
                }
                assert_eq!(ring.len(), model.len());
                assert!(ring.records.len() <= capacity);
                assert_eq!(ring.records.capacity(), reserved, "never reallocates");
            }
        }
    }
}
