//! The service's limits, its version and its pool tag.

use ktimer_kernel::pool::PoolTag;

/// The driver's version, reported by get-info.
pub const DRIVER_VERSION: (u16, u16, u16) = (0, 1, 0);

/// Pool tag of the service's kernel timers (`KTsv`).
pub const POOL_TAG: PoolTag = PoolTag::new(*b"KTsv");

/// The service's limits. [`Default`] is what the driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Handles open at once.
    pub max_handles: usize,
    /// Live timers per handle (at most 4,095, the id format's slot count).
    pub max_timers_per_handle: usize,
    /// Pending waits per handle.
    pub max_pending_waits_per_handle: usize,
    /// Records per handle's event ring.
    pub event_ring_capacity: usize,
    /// The smallest period accepted, in milliseconds (at least 1). With the timer limit it
    /// bounds the DPC rate one handle can cause.
    pub min_period_ms: u32,
    /// Pool tag of the kernel timers.
    pub pool_tag: PoolTag,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_handles: 64,
            max_timers_per_handle: 1024,
            max_pending_waits_per_handle: 16,
            event_ring_capacity: 4096,
            min_period_ms: 1,
            pool_tag: POOL_TAG,
        }
    }
}
