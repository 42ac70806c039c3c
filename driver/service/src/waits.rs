//! The per-handle list of pending wait requests: bounded, allocated once at open, oldest
//! first. Insert, remove and take never allocate, so the expiry path (`DISPATCH_LEVEL`) and
//! the cancel path can use them under the handle's spin lock.

use alloc::vec::Vec;

/// A wait request parked until enough records are ready.
#[derive(Debug)]
pub struct Parked<R> {
    /// The front end's request.
    pub request: R,
    /// Its cancel key ([`crate::dispatch::IoRequest::key`]).
    pub key: usize,
    /// Complete once this many records are ready.
    pub min_records: usize,
}

/// Pending waits of one handle, oldest first.
#[derive(Debug)]
pub struct WaitList<R> {
    entries: Vec<Parked<R>>,
}

impl<R> WaitList<R> {
    /// A list holding at most `capacity` waits. Allocates; `PASSIVE_LEVEL` (open time).
    ///
    /// # Errors
    /// `None` if the allocation fails.
    #[must_use]
    pub fn new(capacity: usize) -> Option<Self> {
        let mut entries = Vec::new();
        entries.try_reserve_exact(capacity).ok()?;
        Some(Self { entries })
    }

    /// Whether another wait would exceed the limit.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.entries.capacity()
    }

    /// Parks a wait, or gives it back if the list is full. Never allocates.
    ///
    /// # Errors
    /// The entry itself when the list is full.
    pub fn push(&mut self, parked: Parked<R>) -> Result<(), Parked<R>> {
        if self.is_full() {
            return Err(parked);
        }
        // Within the reserved capacity: `push` does not reallocate.
        self.entries.push(parked);
        Ok(())
    }

    /// Removes the wait with this cancel key.
    pub fn remove_key(&mut self, key: usize) -> Option<Parked<R>> {
        let index = self.entries.iter().position(|parked| parked.key == key)?;
        Some(self.entries.remove(index))
    }

    /// Removes the oldest wait that `ready` records satisfy.
    pub fn take_satisfied(&mut self, ready: usize) -> Option<Parked<R>> {
        let index = self
            .entries
            .iter()
            .position(|parked| parked.min_records <= ready)?;
        Some(self.entries.remove(index))
    }

    /// Removes the oldest wait.
    pub fn pop_oldest(&mut self) -> Option<Parked<R>> {
        if self.entries.is_empty() {
            None
        } else {
            Some(self.entries.remove(0))
        }
    }

    /// Waits parked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is parked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(key: usize, min_records: usize) -> Parked<&'static str> {
        Parked {
            request: "request",
            key,
            min_records,
        }
    }

    #[test]
    fn bounded_and_oldest_first() {
        let mut list = WaitList::new(2).unwrap();
        assert!(list.push(parked(1, 3)).is_ok());
        assert!(list.push(parked(2, 1)).is_ok());
        assert!(list.is_full());
        assert_eq!(list.push(parked(3, 1)).map_err(|p| p.key), Err(3));
        // Two records satisfy the second wait but not the first.
        assert_eq!(list.take_satisfied(2).map(|p| p.key), Some(2));
        assert_eq!(list.take_satisfied(2).map(|p| p.key), None);
        assert_eq!(list.take_satisfied(3).map(|p| p.key), Some(1));
        assert!(list.is_empty());
    }

    #[test]
    fn remove_by_key_and_pop() {
        let mut list = WaitList::new(3).unwrap();
        for key in 1..=3 {
            assert!(list.push(parked(key, 1)).is_ok());
        }
        assert_eq!(list.remove_key(2).map(|p| p.key), Some(2));
        assert_eq!(list.remove_key(2).map(|p| p.key), None);
        assert_eq!(list.pop_oldest().map(|p| p.key), Some(1));
        assert_eq!(list.len(), 1);
        assert_eq!(list.pop_oldest().map(|p| p.key), Some(3));
        assert_eq!(list.pop_oldest().map(|p| p.key), None);
    }
}
