//! The timer service: open handles, the timers each owns, their event rings and pending
//! waits. Portable: it reaches the kernel only through the safe kernel layer.
//!
//! Ownership: the [`Service`] keeps a registry of open handles ([`FileHandle`]); a handle's
//! spin-locked state holds its id table, its timers (kernel timer + schedule + statistics),
//! its event ring and its pending waits. Each timer's callback holds the handle (a shared
//! [`PoolArc`](ktimer_kernel::pool::PoolArc)), so
//! the expiry path reaches the ring and the waits without a lookup; handle cleanup and unload
//! break that cycle by destroying the timers.
//!
//! Allocation happens only at `PASSIVE_LEVEL`: when the service is created, when a handle is
//! opened (id table, ring, wait list, all at their limits) and when a timer is created (its
//! kernel storage). The expiry path (`DISPATCH_LEVEL`) allocates nothing: it updates the
//! timer's statistics, pushes one record into the ring and completes satisfied waits
//! (`driver/kmdf/tests/service_no_allocation.rs` counts). Every allocation is fallible and maps to
//! `STATUS_INSUFFICIENT_RESOURCES`, the handle's shared core included: it is a [`PoolArc`](ktimer_kernel::pool::PoolArc)
//! (pool block + owner count), because stable Rust has no fallible `Arc::new` and an
//! infallible allocation's failure would reach the allocation-error handler.
//!
//! Locks: the registry lock and a handle's lock are never held together, and nothing is
//! completed while a lock is held. A timer dropped under a handle's lock (cleanup) is only
//! stopped there; the safe kernel layer defers its flush and free to `reclaim_deferred`, which
//! cleanup and unload call at `PASSIVE_LEVEL` after releasing the lock.
//!
//! The service answers with values: each operation returns its typed response or the status
//! to fail with, and never encodes a response or completes a request. The IOCTL dispatcher
//! ([`dispatch`], in this crate, above the service) decodes, validates, calls the service,
//! encodes and completes. The one request the service completes itself is a wait it parked,
//! later, through the narrow port [`waits::PendingWait`].
//!
//! | module | owns |
//! | --- | --- |
//! | `config` | the limits ([`ServiceConfig`]), the version, the pool tag |
//! | `state` | the state types the other modules share: the service, its registry, a handle's core and locked state, a timer's DPC callback |
//! | `registry` | the service's life and its open handles: new, open, cleanup, close, unload |
//! | `operations` | per-handle operations: get-info, create, set, cancel, query, close, wait |
//! | `expiry` | the expiry path: what a timer's DPC runs (counting, the record, waking waits) |
//! | `handle` | the front end's [`FileHandle`], a handle's lock for waits, its teardown |
//! | [`timer_entry`], [`stats`], [`ids`], [`ring`], [`waits`] | one timer entry, its accounting, timer ids, the event ring, the wait protocol |
//! | [`dispatch`] | the IOCTL dispatcher (above the service: it imports the service, not the reverse) |
#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod config;
pub mod dispatch;
mod expiry;
mod handle;
mod operations;
mod registry;
mod state;

pub mod ids;
pub mod ring;
pub mod stats;
pub mod timer_entry;
pub mod waits;

pub use self::config::{DRIVER_VERSION, POOL_TAG, ServiceConfig};
pub use self::state::{FileHandle, Service};
