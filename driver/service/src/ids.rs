//! Timer ids and the per-handle slot table that issues them.
//!
//! An id is `handle serial (32 bits) | slot generation (20 bits) | slot index (12 bits)`.
//! The handle serial is unique per open handle (the service never reuses one), so another
//! handle's id can never name a timer of this handle. A slot's generation advances every time
//! its timer is closed, and a slot whose generation is exhausted is retired rather than
//! wrapped, so a stale id can never name a later timer. No id is 0 (serials start at 1).

use ktimer_abi::status::{NtStatus, STATUS_INVALID_HANDLE, STATUS_NOT_FOUND};

/// Bits of the slot index.
const SLOT_BITS: u32 = 12;
/// Bits of the slot generation.
const GENERATION_BITS: u32 = 20;
/// The largest slot count a table can have.
pub const MAX_SLOTS: usize = (1 << SLOT_BITS) - 1;
/// The last generation a slot can reach; a slot closed at this generation is retired.
pub const LAST_GENERATION: u32 = (1 << GENERATION_BITS) - 1;

/// A timer id as the ABI carries it, split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerId {
    /// The serial of the handle that issued it.
    pub serial: u32,
    /// The slot's generation when it was issued.
    pub generation: u32,
    /// The slot index.
    pub slot: u16,
}

impl TimerId {
    /// The ABI form.
    #[must_use]
    pub fn to_raw(self) -> u64 {
        (u64::from(self.serial) << 32)
            | (u64::from(self.generation & LAST_GENERATION) << SLOT_BITS)
            | u64::from(self.slot & 0xFFF)
    }

    /// Splits an ABI id. Any `u64` splits; validation is [`SlotTable::lookup`]'s job.
    #[must_use]
    pub fn from_raw(raw: u64) -> Self {
        let [s0, s1, s2, s3, low0, low1, low2, low3] = raw.to_be_bytes();
        let serial = u32::from_be_bytes([s0, s1, s2, s3]);
        let low = u32::from_be_bytes([low0, low1, low2, low3]);
        let slot_bits = low & 0xFFF;
        Self {
            serial,
            generation: low >> SLOT_BITS,
            // 12 bits always fit in a u16.
            slot: u16::try_from(slot_bits).unwrap_or(0),
        }
    }
}

/// One slot's bookkeeping (what it holds is the caller's business).
#[derive(Clone, Copy, Debug)]
struct SlotMeta {
    generation: u32,
    live: bool,
    retired: bool,
}

/// Issues and validates ids for one handle. Fixed capacity, allocated once (at open).
///
/// Slots are brought into use lazily: the table reserves room for every slot at open but
/// writes a slot's bookkeeping only when it is first issued, so opening a handle costs the
/// same whatever its timer limit, and scans cover only the slots ever used.
#[derive(Debug)]
pub struct SlotTable {
    serial: u32,
    /// The slots issued at least once, in index order (never more than `capacity`).
    slots: alloc::vec::Vec<SlotMeta>,
    /// Released slot indices, used as a stack (no allocation after construction: its
    /// capacity is the slot count). A fresh slot is issued only when it is empty.
    free: alloc::vec::Vec<u16>,
    /// The slot count.
    capacity: usize,
    /// The generation a slot starts at when first issued (0, except after the simulator's
    /// test hook [`SlotTable::skip_to_generation`]).
    fresh_generation: u32,
}

/// Why an id was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdError {
    /// Not issued by this handle: another handle's id, or never issued.
    Foreign,
    /// Issued by this handle, but that timer was closed.
    Stale,
}

impl IdError {
    /// The documented status.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::Foreign => STATUS_INVALID_HANDLE,
            Self::Stale => STATUS_NOT_FOUND,
        }
    }
}

impl SlotTable {
    /// A table of `capacity` slots (clamped to [`MAX_SLOTS`]) for the handle `serial`.
    /// Allocates; `PASSIVE_LEVEL` (open time).
    ///
    /// # Errors
    /// `None` if the allocation fails.
    #[must_use]
    pub fn new(serial: u32, capacity: usize) -> Option<Self> {
        let capacity = capacity.min(MAX_SLOTS);
        let mut slots = alloc::vec::Vec::new();
        slots.try_reserve_exact(capacity).ok()?;
        let mut free = alloc::vec::Vec::new();
        free.try_reserve_exact(capacity).ok()?;
        Some(Self {
            serial,
            slots,
            free,
            capacity,
            fresh_generation: 0,
        })
    }

    /// Reserves a free slot and returns the id it will carry, or `None` if every slot is live
    /// or retired (tell the two apart with [`SlotTable::live_count`]). The most recently
    /// released slot first, then the lowest never-used one, so ids come out in slot order
    /// until timers are closed. Does not allocate; any IRQL.
    pub fn allocate(&mut self) -> Option<TimerId> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => self.issue_fresh_slot()?,
        };
        let meta = self.slots.get_mut(usize::from(slot))?;
        meta.live = true;
        Some(TimerId {
            serial: self.serial,
            generation: meta.generation,
            slot,
        })
    }

    /// Brings the lowest never-used slot into use, if any remains. Stays within the
    /// capacity reserved at open, so it never allocates.
    fn issue_fresh_slot(&mut self) -> Option<u16> {
        let index = self.slots.len();
        if index >= self.capacity || index >= self.slots.capacity() {
            return None;
        }
        let slot = u16::try_from(index).ok()?;
        self.slots.push(SlotMeta {
            generation: self.fresh_generation,
            live: false,
            retired: false,
        });
        Some(slot)
    }

    /// The slot a live id names.
    ///
    /// # Errors
    /// [`IdError::Foreign`] for another handle's id or one never issued;
    /// [`IdError::Stale`] for a closed timer's id.
    pub fn lookup(&self, raw: u64) -> Result<u16, IdError> {
        let id = TimerId::from_raw(raw);
        if id.serial != self.serial {
            return Err(IdError::Foreign);
        }
        let meta = self
            .slots
            .get(usize::from(id.slot))
            .ok_or(IdError::Foreign)?;
        if id.generation == meta.generation && meta.live {
            Ok(id.slot)
        } else if id.generation < meta.generation
            || (id.generation == meta.generation && meta.retired)
        {
            Err(IdError::Stale)
        } else {
            // A generation this slot has not reached yet, or the current one before any
            // timer used it: never issued.
            Err(IdError::Foreign)
        }
    }

    /// Frees a live slot: its id becomes stale. A slot at its last generation is retired
    /// (never issued again). Does not allocate; any IRQL.
    pub fn release(&mut self, slot: u16) {
        let Some(meta) = self.slots.get_mut(usize::from(slot)) else {
            return;
        };
        if !meta.live {
            return;
        }
        meta.live = false;
        if meta.generation >= LAST_GENERATION {
            meta.retired = true;
        } else {
            meta.generation += 1;
            // Cannot exceed capacity: only live slots are released, and they were popped.
            if self.free.len() < self.free.capacity() {
                self.free.push(slot);
            }
        }
    }

    /// Live slots.
    #[must_use]
    pub fn live_count(&self) -> usize {
        self.slots.iter().filter(|meta| meta.live).count()
    }

    /// Whether closing a live timer would free a slot that can be issued again (one whose
    /// generation is not the last): then a failed allocation is the caller's quota, not an
    /// exhausted resource. Any IRQL.
    #[must_use]
    pub fn a_live_slot_can_be_reissued(&self) -> bool {
        self.slots
            .iter()
            .any(|meta| meta.live && meta.generation < LAST_GENERATION)
    }

    /// The slot count.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The handle serial ids of this table carry.
    #[must_use]
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The current id of a live slot.
    #[must_use]
    pub fn id_of(&self, slot: u16) -> Option<TimerId> {
        let meta = self.slots.get(usize::from(slot))?;
        meta.live.then_some(TimerId {
            serial: self.serial,
            generation: meta.generation,
            slot,
        })
    }

    /// Moves every free slot (neither live nor retired) forward to `generation` (clamped
    /// to [`LAST_GENERATION`]), as if its timer had been created and closed that many times.
    /// Never moves a slot back, so no id is issued twice. A test hook of the simulator
    /// build (`ktimer_kmdf::sim_hooks::skip_timer_id_generations`): it lets a test reach the end
    /// of a slot's ids without a million requests. Does not allocate; any IRQL.
    #[cfg(any(test, not(windows)))]
    pub fn skip_to_generation(&mut self, generation: u32) {
        let generation = generation.min(LAST_GENERATION);
        self.fresh_generation = self.fresh_generation.max(generation);
        for meta in &mut self.slots {
            if !meta.live && !meta.retired && meta.generation < generation {
                meta.generation = generation;
            }
        }
    }

    #[cfg(test)]
    fn force_generation(&mut self, slot: u16, generation: u32) {
        // Bring the never-used slots up to `slot` into use, beneath the released ones on the
        // free stack and lowest on top: the order `allocate` would have issued them in.
        while self.slots.len() <= usize::from(slot) {
            let index = u16::try_from(self.slots.len()).unwrap();
            assert!(self.issue_fresh_slot().is_some());
            self.free.insert(0, index);
        }
        if let Some(meta) = self.slots.get_mut(usize::from(slot)) {
            meta.generation = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_the_raw_form() {
        let id = TimerId {
            serial: 0xDEAD_BEEF,
            generation: 0xABCDE,
            slot: 0xFED,
        };
        assert_eq!(id.to_raw(), 0xDEAD_BEEF_ABCD_EFED);
        assert_eq!(TimerId::from_raw(id.to_raw()), id);
    }

    #[test]
    fn a_closed_timers_id_is_stale_and_the_slot_gets_a_new_id() {
        let mut table = SlotTable::new(7, 2).unwrap();
        let first = table.allocate().unwrap();
        assert_eq!(table.lookup(first.to_raw()), Ok(first.slot));
        table.release(first.slot);
        assert_eq!(table.lookup(first.to_raw()), Err(IdError::Stale));
        let again = table.allocate().unwrap();
        assert_eq!(again.slot, first.slot);
        assert_ne!(again.to_raw(), first.to_raw());
        assert_eq!(table.lookup(first.to_raw()), Err(IdError::Stale));
        assert_eq!(table.lookup(again.to_raw()), Ok(again.slot));
    }

    #[test]
    fn released_slots_are_reissued_before_never_used_ones_and_in_slot_order_otherwise() {
        let mut table = SlotTable::new(9, 5).unwrap();
        let slots: alloc::vec::Vec<u16> = (0..3).map(|_| table.allocate().unwrap().slot).collect();
        assert_eq!(slots, [0, 1, 2]);
        table.release(0);
        table.release(2);
        let next: alloc::vec::Vec<u16> = (0..3).map(|_| table.allocate().unwrap().slot).collect();
        assert_eq!(
            next,
            [2, 0, 3],
            "last released first, then the lowest never used"
        );
        assert_eq!(table.allocate().map(|id| id.slot), Some(4));
        assert_eq!(table.allocate(), None);
        assert_eq!((table.live_count(), table.capacity()), (5, 5));
    }

    #[test]
    fn another_handles_id_is_foreign_even_for_the_same_slot_and_generation() {
        let mut mine = SlotTable::new(1, 4).unwrap();
        let mut theirs = SlotTable::new(2, 4).unwrap();
        let my_id = mine.allocate().unwrap();
        let their_id = theirs.allocate().unwrap();
        assert_eq!(
            (my_id.slot, my_id.generation),
            (their_id.slot, their_id.generation)
        );
        assert_eq!(mine.lookup(their_id.to_raw()), Err(IdError::Foreign));
        assert_eq!(theirs.lookup(my_id.to_raw()), Err(IdError::Foreign));
    }

    #[test]
    fn ids_never_issued_are_foreign() {
        let mut table = SlotTable::new(3, 2).unwrap();
        let id = table.allocate().unwrap();
        let beyond = TimerId { slot: 5, ..id };
        assert_eq!(table.lookup(beyond.to_raw()), Err(IdError::Foreign));
        let future = TimerId {
            generation: 9,
            ..id
        };
        assert_eq!(table.lookup(future.to_raw()), Err(IdError::Foreign));
        let unused_slot = TimerId { slot: 1, ..id };
        assert_eq!(table.lookup(unused_slot.to_raw()), Err(IdError::Foreign));
        assert_eq!(table.lookup(0), Err(IdError::Foreign));
        assert_eq!(table.lookup(u64::MAX), Err(IdError::Foreign));
    }

    #[test]
    fn a_full_table_refuses_and_recovers() {
        let mut table = SlotTable::new(3, 2).unwrap();
        let a = table.allocate().unwrap();
        let _b = table.allocate().unwrap();
        assert_eq!(table.allocate(), None);
        assert_eq!(table.live_count(), 2);
        table.release(a.slot);
        assert!(table.allocate().is_some());
    }

    #[test]
    fn an_exhausted_slot_is_retired_not_wrapped() {
        let mut table = SlotTable::new(3, 1).unwrap();
        table.force_generation(0, LAST_GENERATION);
        let last = table.allocate().unwrap();
        assert_eq!(last.generation, LAST_GENERATION);
        table.release(last.slot);
        assert_eq!(table.lookup(last.to_raw()), Err(IdError::Stale));
        assert_eq!(table.allocate(), None, "the retired slot is never reissued");
        let wrapped = TimerId {
            generation: 0,
            ..last
        };
        assert_eq!(table.lookup(wrapped.to_raw()), Err(IdError::Stale));
    }

    #[test]
    fn a_table_with_retired_and_live_slots_is_not_full_of_live_timers() {
        let mut table = SlotTable::new(3, 2).unwrap();
        table.force_generation(0, LAST_GENERATION);
        let last = table.allocate().unwrap();
        table.release(last.slot);
        let live = table.allocate().unwrap();
        assert_eq!(live.slot, 1);
        assert_eq!(table.allocate(), None);
        assert!(
            table.live_count() < table.capacity(),
            "ids used up, not quota"
        );
    }

    #[test]
    fn skipping_generations_moves_only_free_slots_and_only_forward() {
        let mut table = SlotTable::new(3, 3).unwrap();
        let live = table.allocate().unwrap();
        let used = table.allocate().unwrap();
        table.release(used.slot);
        table.skip_to_generation(10);
        assert_eq!(
            table.id_of(live.slot),
            Some(live),
            "a live slot keeps its id"
        );
        table.skip_to_generation(4);
        let after = table.allocate().unwrap();
        assert_eq!(
            (after.slot, after.generation),
            (used.slot, 10),
            "never back"
        );
        assert_eq!(table.lookup(used.to_raw()), Err(IdError::Stale));
        table.skip_to_generation(u32::MAX);
        let last = table.allocate().unwrap();
        assert_eq!(last.generation, LAST_GENERATION, "clamped to the id format");
        table.release(last.slot);
        assert_eq!(table.allocate(), None, "retired at the last generation");
        table.release(live.slot);
        assert_eq!(table.allocate().map(|id| id.generation), Some(1));
    }

    #[test]
    fn releasing_twice_or_out_of_range_changes_nothing() {
        let mut table = SlotTable::new(3, 1).unwrap();
        let id = table.allocate().unwrap();
        table.release(id.slot);
        table.release(id.slot);
        table.release(99);
        let next = table.allocate().unwrap();
        assert_eq!(next.generation, 1);
        assert_eq!(table.allocate(), None);
    }
}
