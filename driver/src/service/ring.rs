//! The per-handle event ring: a bounded FIFO of expiry records, allocated once at open.
//!
//! When full it keeps the oldest records and drops the new one, counting it in an overrun
//! counter that the next wait response reports and resets. Push and pop never allocate, so
//! the expiry path (`DISPATCH_LEVEL`) can use them.

use alloc::vec::Vec;

use ktimer_abi::ExpiryRecord;

/// A bounded FIFO of [`ExpiryRecord`]s with an overrun counter.
#[derive(Debug)]
pub struct EventRing {
    records: Vec<ExpiryRecord>,
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
        records.resize(capacity, ExpiryRecord::default());
        Some(Self {
            records,
            head: 0,
            len: 0,
            overruns: 0,
        })
    }

    /// Appends a record, or counts an overrun if the ring is full. Any IRQL; no allocation.
    pub fn push(&mut self, record: ExpiryRecord) {
        let capacity = self.records.len();
        if self.len >= capacity {
            self.overruns = self.overruns.saturating_add(1);
            return;
        }
        // head < capacity and len < capacity, so the sum is below 2 * capacity: no overflow.
        let index = (self.head + self.len) % capacity;
        if let Some(slot) = self.records.get_mut(index) {
            *slot = record;
            self.len += 1;
        }
    }

    /// Removes and returns the oldest record. Any IRQL; no allocation.
    pub fn pop(&mut self) -> Option<ExpiryRecord> {
        if self.len == 0 {
            return None;
        }
        let record = *self.records.get(self.head)?;
        self.head = (self.head + 1) % self.records.len();
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
        self.records.len()
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
}
