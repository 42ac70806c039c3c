//! Hooks of the simulator build (absent from the Windows driver): what tests, the fuzzer
//! and the benchmarks need beyond the IOCTL interface when they drive a driver through
//! `DriverEntry` on kernel-sim's KMDF model. Every hook is called on a thread bound to the
//! simulated kernel (`kernel_sim::Kernel::enter`).
//!
//! - [`set_config`]: the settings the next `EvtDriverDeviceAdd` on this kernel makes the
//!   logic with (the real driver always uses the defaults).
//! - [`logic`] and [`handle`]: the logic behind a device and the handle value behind a file
//!   object, for a driver's own read-only hooks (the timer driver's `sim_hooks`, for
//!   example).

use core::any::{Any, TypeId};
use core::mem::ManuallyDrop;
use std::boxed::Box;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::contexts;
use crate::logic::DriverLogic;
use crate::sys::{WDFDEVICE, WDFFILEOBJECT, kernel_instance};

/// Settings by simulated kernel and logic type.
static CONFIGS: Mutex<BTreeMap<(u64, TypeId), Box<dyn Any + Send>>> = Mutex::new(BTreeMap::new());

/// Makes every later `EvtDriverDeviceAdd` of a driver hosting `L` on the calling thread's
/// kernel create its logic with `config`. `PASSIVE_LEVEL`.
pub fn set_config<L: DriverLogic>(config: L::Config) {
    CONFIGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((kernel_instance(), TypeId::of::<L>()), Box::new(config));
}

/// The settings set for `L` on the calling thread's kernel, if any.
pub(crate) fn configured<L: DriverLogic>() -> Option<L::Config> {
    CONFIGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(kernel_instance(), TypeId::of::<L>()))
        .and_then(|config| config.downcast_ref::<L::Config>())
        .copied()
}

/// The logic of `device`, or `None` if it has none (its creation failed, or it was
/// cleaned up).
///
/// # Safety
///
/// `device` is a device of a driver hosting `L`, not deleted while the reference is used.
pub unsafe fn logic<'a, L: DriverLogic>(device: WDFDEVICE) -> Option<&'a L> {
    // SAFETY: a live device of a driver hosting `L` (our contract).
    unsafe { contexts::logic::<L>(device) }
}

/// The handle value behind `file`, borrowed, or `None` if it has none (its create failed or
/// it was closed).
///
/// # Safety
///
/// `file` is a file object of a driver hosting `L`, not closed while the borrow is used
/// (the caller holds the handle open).
pub unsafe fn handle<L: DriverLogic>(file: WDFFILEOBJECT) -> Option<ManuallyDrop<L::Handle>> {
    // SAFETY: a live file object whose close does not overlap (our contract).
    unsafe { contexts::handle::<L>(file) }
}
