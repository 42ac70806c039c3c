//! ktimer's test hooks of the simulator build (absent from the Windows driver): what tests,
//! the fuzzer and the benchmarks need beyond the IOCTL interface when they drive the driver
//! through `DriverEntry` on kernel-sim's KMDF model, built on the shell's
//! (`ktimer_shell::sim`). Every hook is called on a thread bound to the simulated kernel
//! (`kernel_sim::Kernel::enter`).
//!
//! - [`set_service_config`]: the service limits the next `EvtDriverDeviceAdd` on this
//!   kernel uses (the real driver always uses the defaults).
//! - [`handle_counts`] and [`open_handle_count`]: read-only counts of the service's state
//!   behind a file object or a device, for assertions no IOCTL answers.
//! - [`skip_timer_id_generations`]: moves a handle's free timer slots to a later id
//!   generation, so a test reaches the end of the id space without a million requests.

use crate::TimerLogic;
use ktimer_seam::wdf::{WDFDEVICE, WDFFILEOBJECT};
use ktimer_service::ServiceConfig;
use ktimer_shell::sim;

/// Makes every later `EvtDriverDeviceAdd` on the calling thread's kernel create its
/// service with `config`. `PASSIVE_LEVEL`.
pub fn set_service_config(config: ServiceConfig) {
    sim::set_config::<TimerLogic>(config);
}

/// What the service holds for one open handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandleCounts {
    /// Live timers.
    pub timers: usize,
    /// Expiry records ready in the handle's event ring.
    pub ready_records: usize,
    /// Waits pending.
    pub pending_waits: usize,
    /// DPC runs counted since the handle opened, read under one lock with `ring_records`
    /// and `unreported_overruns` (`FileHandle::accounting`).
    pub counted_runs: u64,
    /// Records in the ring at that moment.
    pub ring_records: usize,
    /// Overruns not yet reported by a wait at that moment.
    pub unreported_overruns: u64,
}

/// The counts of the service handle behind `file`, or `None` if it has none (its create
/// failed or it was closed).
///
/// # Safety
///
/// `file` is a ktimer file object that is not closed during the call (the caller holds
/// the handle open).
pub unsafe fn handle_counts(file: WDFFILEOBJECT) -> Option<HandleCounts> {
    // SAFETY: a live file object whose close does not overlap (our contract).
    let handle = unsafe { sim::handle::<TimerLogic>(file) }?;
    let (counted_runs, ring_records, unreported_overruns) = handle.accounting();
    Some(HandleCounts {
        timers: handle.timer_count(),
        ready_records: handle.ready_records(),
        pending_waits: handle.pending_waits(),
        counted_runs,
        ring_records,
        unreported_overruns,
    })
}

/// The handles open in `device`'s service (0 if it has none).
///
/// # Safety
///
/// `device` is a ktimer device that is not deleted during the call.
pub unsafe fn open_handle_count(device: WDFDEVICE) -> usize {
    // SAFETY: a live device (our contract).
    unsafe { sim::logic::<TimerLogic>(device) }.map_or(0, |logic| logic.open_handle_count())
}

/// Moves every free timer slot of the handle behind `file` forward to id generation
/// `generation` (clamped to the id format's last, `ktimer_service::ids::LAST_GENERATION`),
/// as if each slot's timer had been created and closed that many times. Never moves a slot
/// back, so no id is issued twice. Returns `false` if `file` has no service handle.
///
/// # Safety
///
/// `file` is a ktimer file object that is not closed during the call (the caller holds
/// the handle open).
pub unsafe fn skip_timer_id_generations(file: WDFFILEOBJECT, generation: u32) -> bool {
    // SAFETY: a live file object whose close does not overlap (our contract).
    let Some(handle) = (unsafe { sim::handle::<TimerLogic>(file) }) else {
        return false;
    };
    handle.skip_timer_id_generations(generation);
    true
}
