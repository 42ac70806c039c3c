//! Test fixtures: kernel objects in stable boxed storage, and a DPC routine ("probe") that
//! records every run and can run a test-supplied hook (to block, call the kernel, free...).
//!
//! Fixture rule: under the virtual clock nothing runs unless the test advances time, so
//! fixtures are created after `kernel.enter()` (their constructors call the kernel) and may be
//! dropped before the kernel. Real-time tests cancel and flush before the fixtures go.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the shared fixtures"
)]

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use kernel_sim::{
    _KWAIT_REASON, _MODE, KDPC, KPROCESSOR_MODE, KTIMER, LARGE_INTEGER, NTSTATUS, PVOID,
    TIMER_TYPE, ntddk,
};

/// The default configuration with processor threads (`Execution::Threaded`): for the tests
/// that need true concurrency (two DPCs running at once, a processor halted by a bug check
/// inside a DPC while the test goes on, a DPC blocked past the watchdog while the test's
/// thread watches).
pub fn threaded() -> kernel_sim::Config {
    kernel_sim::Config {
        execution: kernel_sim::Execution::Threaded,
        ..kernel_sim::Config::default()
    }
}

/// Milliseconds in 100 ns units.
pub const MS: i64 = 10_000;
/// The default tick (15.625 ms) in 100 ns units.
pub const TICK: u64 = 156_250;

/// A relative due time of `ms` milliseconds.
pub fn relative_ms(ms: i64) -> LARGE_INTEGER {
    LARGE_INTEGER { QuadPart: -ms * MS }
}

/// A due time with the given raw value.
pub fn due(value: i64) -> LARGE_INTEGER {
    LARGE_INTEGER { QuadPart: value }
}

/// One run of a probe DPC, as seen from inside the routine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The processor it ran on.
    pub cpu: Option<usize>,
    /// IRQL inside the routine.
    pub irql: u8,
    /// `KeQueryInterruptTime` inside the routine.
    pub at: u64,
    /// The KDPC pointer the routine received.
    pub dpc: usize,
    /// `SystemArgument1` / `SystemArgument2` as integers.
    pub arguments: (usize, usize),
    /// Whether `kernel_sim::in_callback()` said so.
    pub in_callback: bool,
}

type Hook = Box<dyn Fn(&Run) + Send + Sync>;

/// Records the runs of a DPC routine and runs an optional hook inside it.
#[derive(Default)]
pub struct Probe {
    runs: AtomicU32,
    log: Mutex<Vec<Run>>,
    hook: Option<Hook>,
}

impl Probe {
    /// A probe without a hook.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A probe whose routine also runs `hook`.
    pub fn with_hook(hook: impl Fn(&Run) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            hook: Some(Box::new(hook)),
            ..Self::default()
        })
    }

    /// Completed-or-started runs so far.
    pub fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }

    /// Every run so far.
    pub fn log(&self) -> Vec<Run> {
        self.log.lock().unwrap().clone()
    }
}

/// The DPC routine every probe DPC uses.
pub unsafe extern "C" fn probe_routine(
    dpc: *mut KDPC,
    context: PVOID,
    argument1: PVOID,
    argument2: PVOID,
) {
    // SAFETY: `context` is `Arc::as_ptr` of the Probe that the `Dpc` fixture keeps alive for
    // as long as the DPC can run (fixtures outlive the kernel).
    let probe = unsafe { &*context.cast::<Probe>() };
    let run = Run {
        cpu: kernel_sim::current_processor(),
        // SAFETY: no preconditions beyond a bound thread (processor threads are bound).
        irql: unsafe { ntddk::KeGetCurrentIrql() },
        // SAFETY: as above.
        at: unsafe { ntddk::KeQueryInterruptTime() },
        dpc: dpc.addr(),
        arguments: (argument1.addr(), argument2.addr()),
        in_callback: kernel_sim::in_callback(),
    };
    probe.runs.fetch_add(1, Ordering::SeqCst);
    probe.log.lock().unwrap().push(run);
    if let Some(hook) = &probe.hook {
        hook(&run);
    }
}

/// A KTIMER in boxed storage.
pub struct Timer {
    storage: Box<UnsafeCell<KTIMER>>,
}

// SAFETY: the storage is only touched through the kernel routines, which synchronise on the
// kernel's lock; the one write into it (the signature, at initialisation) happens before the
// object is shared with other threads in these tests.
unsafe impl Sync for Timer {}

impl Timer {
    /// Uninitialised (all-zero) storage.
    pub fn new() -> Self {
        Self {
            storage: Box::new(UnsafeCell::new(KTIMER::default())),
        }
    }

    /// An initialised notification timer.
    pub fn notification() -> Self {
        let timer = Self::new();
        timer.init();
        timer
    }

    /// An initialised synchronization timer.
    pub fn synchronization() -> Self {
        let timer = Self::new();
        timer.init_ex(kernel_sim::_TIMER_TYPE::SynchronizationTimer);
        timer
    }

    /// The object pointer.
    pub fn ptr(&self) -> *mut KTIMER {
        self.storage.get()
    }

    /// `KeInitializeTimer`.
    pub fn init(&self) {
        // SAFETY: boxed storage that lives as long as the fixture (which outlives the kernel).
        unsafe { ntddk::KeInitializeTimer(self.ptr()) };
    }

    /// `KeInitializeTimerEx`.
    pub fn init_ex(&self, timer_type: TIMER_TYPE) {
        // SAFETY: as in `init`.
        unsafe { ntddk::KeInitializeTimerEx(self.ptr(), timer_type) };
    }

    /// `KeSetTimerEx`.
    pub fn set(&self, due_time: LARGE_INTEGER, period_ms: i32, dpc: Option<&Dpc>) -> bool {
        let dpc = dpc.map_or(std::ptr::null_mut(), Dpc::ptr);
        // SAFETY: as in `init`; the Dpc fixture likewise.
        unsafe { ntddk::KeSetTimerEx(self.ptr(), due_time, period_ms, dpc) != 0 }
    }

    /// `KeSetCoalescableTimer`.
    pub fn set_coalescable(
        &self,
        due_time: LARGE_INTEGER,
        period_ms: u32,
        tolerable_delay_ms: u32,
        dpc: Option<&Dpc>,
    ) -> bool {
        let dpc = dpc.map_or(std::ptr::null_mut(), Dpc::ptr);
        // SAFETY: as in `set`.
        unsafe {
            ntddk::KeSetCoalescableTimer(self.ptr(), due_time, period_ms, tolerable_delay_ms, dpc)
                != 0
        }
    }

    /// `KeCancelTimer`.
    pub fn cancel(&self) -> bool {
        // SAFETY: as in `init`.
        unsafe { ntddk::KeCancelTimer(self.ptr()) != 0 }
    }

    /// `KeReadStateTimer`.
    pub fn signaled(&self) -> bool {
        // SAFETY: as in `init`.
        unsafe { ntddk::KeReadStateTimer(self.ptr()) != 0 }
    }

    /// `KeWaitForSingleObject` with the given timeout (`None` = forever).
    pub fn wait(&self, timeout: Option<i64>) -> NTSTATUS {
        let mut timeout_value = LARGE_INTEGER {
            QuadPart: timeout.unwrap_or(0),
        };
        let timeout_ptr = if timeout.is_some() {
            &raw mut timeout_value
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: as in `init`; the timeout lives on this stack frame for the call.
        unsafe {
            ntddk::KeWaitForSingleObject(
                self.ptr().cast::<c_void>(),
                _KWAIT_REASON::Executive,
                KPROCESSOR_MODE::try_from(_MODE::KernelMode).unwrap(),
                0,
                timeout_ptr,
            )
        }
    }
}

/// A KDPC in boxed storage, with the probe its routine reports to.
pub struct Dpc {
    storage: Box<UnsafeCell<KDPC>>,
    /// What the routine saw.
    pub probe: Arc<Probe>,
}

// SAFETY: as for `Timer`.
unsafe impl Sync for Dpc {}

impl Dpc {
    /// Uninitialised storage with a fresh probe.
    pub fn uninitialized() -> Self {
        Self {
            storage: Box::new(UnsafeCell::new(KDPC::default())),
            probe: Probe::new(),
        }
    }

    /// An initialised DPC reporting to a fresh probe.
    pub fn new() -> Self {
        Self::with_probe(Probe::new())
    }

    /// An initialised DPC reporting to `probe`.
    pub fn with_probe(probe: Arc<Probe>) -> Self {
        let dpc = Self {
            storage: Box::new(UnsafeCell::new(KDPC::default())),
            probe,
        };
        dpc.init();
        dpc
    }

    /// An initialised DPC whose routine runs `hook`.
    pub fn with_hook(hook: impl Fn(&Run) + Send + Sync + 'static) -> Self {
        Self::with_probe(Probe::with_hook(hook))
    }

    /// The object pointer.
    pub fn ptr(&self) -> *mut KDPC {
        self.storage.get()
    }

    /// `KeInitializeDpc` with the probe routine.
    pub fn init(&self) {
        let context = Arc::as_ptr(&self.probe).cast_mut().cast::<c_void>();
        // SAFETY: boxed storage and an Arc'd probe, both living as long as the fixture.
        unsafe { ntddk::KeInitializeDpc(self.ptr(), Some(probe_routine), context) };
    }

    /// `KeInsertQueueDpc` with the given system arguments.
    pub fn insert(&self, argument1: usize, argument2: usize) -> bool {
        let argument1 = std::ptr::without_provenance_mut(argument1);
        let argument2 = std::ptr::without_provenance_mut(argument2);
        // SAFETY: as in `init`.
        unsafe { ntddk::KeInsertQueueDpc(self.ptr(), argument1, argument2) != 0 }
    }

    /// `KeRemoveQueueDpc`.
    pub fn remove(&self) -> bool {
        // SAFETY: as in `init`.
        unsafe { ntddk::KeRemoveQueueDpc(self.ptr()) != 0 }
    }

    /// Runs of the routine so far.
    pub fn runs(&self) -> u32 {
        self.probe.runs()
    }
}

/// `KeFlushQueuedDpcs`.
pub fn flush() {
    // SAFETY: no pointer arguments; the calling thread is bound.
    unsafe { ntddk::KeFlushQueuedDpcs() };
}

/// A one-way gate a DPC hook can block on: the hook calls `arrive_and_wait`, the test calls
/// `wait_arrived` (the DPC is now mid-run) and later `open`.
#[derive(Default)]
pub struct Gate {
    state: Mutex<(u32, bool)>,
    changed: Condvar,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Called inside the DPC: announce arrival, then block until the gate opens.
    pub fn arrive_and_wait(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Called by the test: block until `count` arrivals have happened.
    pub fn wait_arrived(&self, count: u32) {
        let mut state = self.state.lock().unwrap();
        while state.0 < count {
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Opens the gate for everyone, now and later.
    pub fn open(&self) {
        // Also called while unwinding from a failed assertion: ignore poisoning.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.1 = true;
        self.changed.notify_all();
    }

    /// A guard that opens the gate when dropped, so a failing assertion cannot leave a DPC
    /// blocked (and the test hanging).
    pub fn opener(&self) -> Opener<'_> {
        Opener(self)
    }
}

/// See [`Gate::opener`].
pub struct Opener<'a>(&'a Gate);

impl Drop for Opener<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// The pool tag the tests use ("kSim" read as a little-endian ULONG).
pub const TAG: u32 = u32::from_le_bytes(*b"kSim");

/// A KTIMER and a KDPC living in one non-paged pool block (the layout a driver uses), with
/// the DPC reporting to `probe`.
pub struct PoolObjects {
    /// The pool block.
    pub block: PVOID,
    /// The KTIMER at offset 0.
    pub timer: *mut KTIMER,
    /// The KDPC at offset 64.
    pub dpc: *mut KDPC,
    /// What the DPC routine saw.
    pub probe: Arc<Probe>,
}

// SAFETY: the pointers refer to pool memory owned by the kernel; every access goes through the
// kernel routines, which synchronise on the kernel's lock.
unsafe impl Send for PoolObjects {}
// SAFETY: as above.
unsafe impl Sync for PoolObjects {}

impl PoolObjects {
    /// Allocates the block and initialises both objects.
    pub fn new(probe: Arc<Probe>) -> Self {
        let bytes = (std::mem::size_of::<KTIMER>() + std::mem::size_of::<KDPC>()) as u64;
        // SAFETY: no pointer arguments.
        let block = unsafe { ntddk::ExAllocatePool2(kernel_sim::POOL_FLAG_NON_PAGED, bytes, TAG) };
        assert!(!block.is_null());
        let timer = block.cast::<KTIMER>();
        // The KDPC follows the KTIMER inside the same allocation.
        let dpc = timer.wrapping_add(1).cast::<KDPC>();
        let objects = Self {
            block,
            timer,
            dpc,
            probe,
        };
        // SAFETY: both pointers are inside the live pool block, aligned to 8.
        unsafe { ntddk::KeInitializeTimer(objects.timer) };
        let context = Arc::as_ptr(&objects.probe).cast_mut().cast::<c_void>();
        // SAFETY: as above; the probe lives as long as `objects`.
        unsafe { ntddk::KeInitializeDpc(objects.dpc, Some(probe_routine), context) };
        objects
    }

    /// `KeSetTimerEx` with the block's DPC.
    pub fn set(&self, due_time: LARGE_INTEGER, period_ms: i32) -> bool {
        // SAFETY: live pool block (until `free`).
        unsafe { ntddk::KeSetTimerEx(self.timer, due_time, period_ms, self.dpc) != 0 }
    }

    /// `KeCancelTimer`.
    pub fn cancel(&self) -> bool {
        // SAFETY: live pool block (until `free`).
        unsafe { ntddk::KeCancelTimer(self.timer) != 0 }
    }

    /// `KeInsertQueueDpc`.
    pub fn insert(&self) -> bool {
        let null = std::ptr::null_mut();
        // SAFETY: live pool block (until `free`).
        unsafe { ntddk::KeInsertQueueDpc(self.dpc, null, null) != 0 }
    }

    /// `KeRemoveQueueDpc`.
    pub fn remove(&self) -> bool {
        // SAFETY: live pool block (until `free`).
        unsafe { ntddk::KeRemoveQueueDpc(self.dpc) != 0 }
    }

    /// `ExFreePoolWithTag` (the objects are gone afterwards unless it bug-checked).
    pub fn free(&self) {
        // SAFETY: the block came from ExAllocatePool2 with TAG; the test does not use the
        // objects after a successful free.
        unsafe { ntddk::ExFreePoolWithTag(self.block, TAG) };
    }
}

/// A raw pointer a DPC hook may hold (hooks must be `Send + Sync`).
#[derive(Clone, Copy)]
pub struct SharedPtr(pub PVOID);

// SAFETY: the pointer is only passed back to kernel routines, which synchronise internally.
unsafe impl Send for SharedPtr {}
// SAFETY: as above.
unsafe impl Sync for SharedPtr {}

/// After a bug check a routine that was already running still finishes; its fixtures must
/// outlive it. Waits (by yielding) until no routine is running.
pub fn wait_until_no_dpc_runs(kernel: &kernel_sim::Kernel) {
    while kernel.running_dpcs() > 0 {
        std::thread::yield_now();
    }
}
