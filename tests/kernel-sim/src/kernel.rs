//! The simulated machine: the kernel's state (timers, DPC queues, pool, waiters), the
//! simulated processors that run DPCs, the two clocks, and the control API tests use.
//!
//! Locking: one mutex (`Inner::state`) guards all kernel state and one condition variable
//! (`Inner::changed`) announces every change. Driver callbacks always run with the mutex
//! released, so a callback may call back into the kernel.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bugcheck::{self, BugCheck, codes, routine};
use crate::trace::{Event, ObjectId, TraceEvent};
use crate::types::{
    DISPATCH_LEVEL, EX_TIMER, KDPC, KIRQL, KTIMER, NTSTATUS, STATUS_ACCESS_VIOLATION,
    STATUS_DATATYPE_MISALIGNMENT, STATUS_SUCCESS, STATUS_TIMEOUT,
};

/// 100 ns units per millisecond.
pub(crate) const UNITS_PER_MS: u64 = 10_000;
/// The default clock tick: 15.625 ms in 100 ns units.
pub const DEFAULT_TIME_INCREMENT: u32 = 156_250;
/// The default system time at boot: 2026-01-01T00:00:00Z in 100 ns units since 1601.
pub const DEFAULT_BOOT_SYSTEM_TIME: i64 = 134_116_992_000_000_000;
/// The performance counter frequency the simulator reports (10 MHz: one count = 100 ns).
pub const PERFORMANCE_FREQUENCY: i64 = 10_000_000;

/// Which clock drives expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// Time moves only when a test calls [`Kernel::advance`]: deterministic.
    #[default]
    Virtual,
    /// A clock-interrupt thread ticks every `time_increment` of wall time (demo, benchmarks).
    RealTime,
}

/// How a kernel is built. `Config::default()`: 2 processors, 15.625 ms tick, virtual clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Number of simulated processors (each with its own DPC queue). At least 1.
    pub processors: usize,
    /// Clock tick in 100 ns units (`KeQueryTimeIncrement`). At least 1.
    pub time_increment: u32,
    /// Virtual (deterministic) or real-time clock.
    pub clock: Clock,
    /// Wall-clock budget for one DPC routine before `DPC_WATCHDOG_VIOLATION` (0x133, P1 = 0).
    pub dpc_watchdog: Duration,
    /// Wall-clock budget for one processor running DPCs back to back (a DPC storm) before
    /// `DPC_WATCHDOG_VIOLATION` (0x133, P1 = 1).
    pub dpc_watchdog_cumulative: Duration,
    /// `false`: one DPC runs at a time, in queuing order (deterministic traces).
    /// `true`: each processor runs its own queue concurrently.
    pub parallel_dpcs: bool,
    /// System time at boot (100 ns since 1601-01-01).
    pub boot_system_time: i64,
    /// Keep the event log ([`Kernel::trace`]).
    pub trace: bool,
    /// Also write `kernel_sim::print` lines to stderr.
    pub echo_prints: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            processors: 2,
            time_increment: DEFAULT_TIME_INCREMENT,
            clock: Clock::Virtual,
            dpc_watchdog: Duration::from_secs(20),
            dpc_watchdog_cumulative: Duration::from_secs(120),
            parallel_dpcs: false,
            boot_system_time: DEFAULT_BOOT_SYSTEM_TIME,
            trace: true,
            echo_prints: false,
        }
    }
}

impl Config {
    /// A real-time kernel ticking every `tick` of wall time, with processors running DPCs
    /// concurrently and no event log.
    ///
    /// # Panics
    /// If `tick` is zero or does not fit a `u32` count of 100 ns units.
    #[must_use]
    pub fn real_time(tick: Duration) -> Self {
        let increment = u32::try_from(tick.as_nanos() / 100).expect("tick must fit a ULONG");
        assert!(increment > 0, "tick must be at least 100 ns");
        Self {
            time_increment: increment,
            clock: Clock::RealTime,
            parallel_dpcs: true,
            trace: false,
            ..Self::default()
        }
    }
}

/// Pool accounting ([`Kernel::pool_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Successful `ExAllocatePool2` calls.
    pub allocations: u64,
    /// `ExFreePoolWithTag` calls that freed a block.
    pub frees: u64,
    /// `ExAllocatePool2` calls that returned NULL (injected failures).
    pub failed_allocations: u64,
    /// Blocks allocated and not freed.
    pub outstanding_allocations: usize,
    /// Bytes allocated and not freed.
    pub outstanding_bytes: usize,
}

/// Outstanding pool for one tag ([`Kernel::pool_by_tag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TagUsage {
    /// The pool tag (as passed to `ExAllocatePool2`).
    pub tag: u32,
    /// Blocks outstanding.
    pub allocations: usize,
    /// Bytes outstanding.
    pub bytes: usize,
}

/// Counters of what the kernel did ([`Kernel::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Clock ticks processed.
    pub ticks: u64,
    /// KTIMER expirations.
    pub timer_expirations: u64,
    /// `EX_TIMER` expirations.
    pub ex_timer_expirations: u64,
    /// Successful queuings (DPCs and `EX_TIMER` callbacks).
    pub dpcs_queued: u64,
    /// Queuings refused because the object was already queued.
    pub dpcs_already_queued: u64,
    /// DPC routines run.
    pub dpc_runs: u64,
    /// `EX_TIMER` callbacks run.
    pub ex_callback_runs: u64,
}

/// A raw pointer the kernel stores and hands back to driver callbacks.
#[derive(Debug)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}

// SAFETY: the kernel never dereferences these pointers itself except where the ntddk
// contract makes the caller guarantee validity; it only stores them and passes them back to
// the driver's callbacks, exactly as the real kernel does across processors.
unsafe impl<T> Send for SendPtr<T> {}

/// A timer due time in one of the two time bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Interrupt time (relative settings): unaffected by system clock changes.
    Interrupt(u64),
    /// System time (absolute settings): follows system clock changes.
    System(i64),
}

impl Due {
    fn interrupt(self, system_offset: i64) -> u64 {
        match self {
            Due::Interrupt(t) => t,
            Due::System(s) => u64::try_from(s.saturating_sub(system_offset)).unwrap_or(0),
        }
    }

    fn plus(self, delta: u64) -> Self {
        match self {
            Due::Interrupt(t) => Due::Interrupt(t.saturating_add(delta)),
            Due::System(s) => {
                Due::System(s.saturating_add(i64::try_from(delta).unwrap_or(i64::MAX)))
            }
        }
    }
}

/// The first due time on `due`'s grid of `period` that lies after `limit` (interrupt time):
/// computed, not stepped, so a large jump of the system clock cannot stall the tick.
fn next_period(due: Due, period: u64, system_offset: i64, limit: u64) -> Due {
    let current = due.interrupt(system_offset);
    let periods = if current > limit {
        1
    } else {
        (limit - current) / period + 1
    };
    due.plus(periods.saturating_mul(period))
}

/// The coalescing grid of `KeSetCoalescableTimer`: the largest of these boundaries (in ms)
/// that fits in the tolerable delay is the one the expiry is rounded up to.
pub const COALESCING_BOUNDARIES_MS: [u64; 5] = [1000, 500, 250, 100, 50];

/// Rounds `due` up to the coalescing boundary that fits in `tolerance` (both 100 ns units).
pub(crate) fn coalesce(due: u64, tolerance: u64) -> u64 {
    let Some(boundary) = COALESCING_BOUNDARIES_MS
        .iter()
        .map(|ms| ms * UNITS_PER_MS)
        .find(|boundary| *boundary <= tolerance)
    else {
        return due;
    };
    due.div_ceil(boundary).saturating_mul(boundary)
}

#[derive(Debug)]
struct TimerSetting {
    base: Due,
    period: u64,
    tolerance: u64,
    dpc: Option<usize>,
    seq: u64,
}

impl TimerSetting {
    fn due(&self, system_offset: i64) -> u64 {
        coalesce(self.base.interrupt(system_offset), self.tolerance)
    }
}

#[derive(Debug)]
struct TimerRec {
    id: ObjectId,
    signature: u64,
    synchronization: bool,
    signaled: bool,
    set: Option<TimerSetting>,
}

type DeferredRoutine = unsafe extern "C" fn(*mut KDPC, *mut c_void, *mut c_void, *mut c_void);
type ExCallback = unsafe extern "C" fn(*mut EX_TIMER, *mut c_void);

#[derive(Debug)]
struct DpcRec {
    id: ObjectId,
    signature: u64,
    ptr: SendPtr<KDPC>,
    routine: DeferredRoutine,
    context: SendPtr<c_void>,
    arguments: (SendPtr<c_void>, SendPtr<c_void>),
    queued: Option<(usize, u64)>,
    running: u32,
}

#[derive(Debug)]
struct ExSetting {
    due: Due,
    period: u64,
    seq: u64,
}

#[derive(Debug)]
struct ExTimerRec {
    id: ObjectId,
    ptr: SendPtr<ExTimerStorage>,
    callback: Option<ExCallback>,
    context: SendPtr<c_void>,
    high_resolution: bool,
    set: Option<ExSetting>,
    queued: Option<(usize, u64)>,
    running: u32,
    deleted: bool,
}

/// The storage behind a `PEX_TIMER` (the driver never looks inside).
#[derive(Debug, Default)]
pub(crate) struct ExTimerStorage {
    _reserved: [u64; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EntryKind {
    Dpc,
    ExTimer,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: EntryKind,
    addr: usize,
    id: ObjectId,
    seq: u64,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    entry: Entry,
    started: Instant,
    thread: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    timer: usize,
    deadline: Option<Due>,
    outcome: Option<NTSTATUS>,
}

#[derive(Debug)]
struct PoolBlock {
    ptr: SendPtr<u8>,
    layout: std::alloc::Layout,
    tag: u32,
    seq: u64,
}

/// Everything the kernel knows, under one lock.
#[derive(Debug)]
pub(crate) struct State {
    now: u64,
    last_tick: u64,
    system_offset: i64,
    timers: HashMap<usize, TimerRec>,
    dpcs: HashMap<usize, DpcRec>,
    ex_timers: HashMap<usize, ExTimerRec>,
    queues: Vec<VecDeque<Entry>>,
    running: Vec<Option<Running>>,
    busy_since: Vec<Option<Instant>>,
    halted: Vec<bool>,
    next_cpu: usize,
    next_queue_seq: u64,
    next_set_seq: u64,
    next_object: u32,
    waiters: Vec<Waiter>,
    next_waiter: u64,
    dispatch_limits: Vec<u64>,
    pool: HashMap<usize, PoolBlock>,
    pool_stats: PoolStats,
    next_pool_seq: u64,
    fail_allocations: u64,
    stats: Stats,
    trace: Vec<TraceEvent>,
    bug_check: Option<BugCheck>,
    shutdown: bool,
    scratch: Vec<(u64, u64, usize, EntryKind)>,
}

static NEXT_KERNEL_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static BOUND: RefCell<Option<Arc<Inner>>> = const { RefCell::new(None) };
    static IRQL: Cell<KIRQL> = const { Cell::new(0) };
    static CALLBACK_DEPTH: Cell<u32> = const { Cell::new(0) };
    static PROCESSOR: Cell<Option<usize>> = const { Cell::new(None) };
    static THREAD_TOKEN: Cell<u64> = const { Cell::new(0) };
}

/// The calling thread's IRQL.
pub(crate) fn irql() -> KIRQL {
    IRQL.with(Cell::get)
}

/// Sets the calling thread's IRQL.
pub(crate) fn set_irql(irql: KIRQL) {
    IRQL.with(|cell| cell.set(irql));
}

/// A non-zero number unique to the calling thread (spin lock ownership).
pub(crate) fn thread_token() -> u64 {
    THREAD_TOKEN.with(|cell| {
        if cell.get() == 0 {
            cell.set(NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed));
        }
        cell.get()
    })
}

/// Whether the calling thread is running a DPC routine or an `EX_TIMER` callback right now.
///
/// Never allocates and never panics, so a test's counting global allocator can call it to
/// attribute heap allocations to the driver's expiry path.
#[must_use]
pub fn in_callback() -> bool {
    CALLBACK_DEPTH
        .try_with(|depth| depth.get() > 0)
        .unwrap_or(false)
}

/// The identity of the kernel the calling thread is bound to (0 if it is not bound).
///
/// On Windows a driver image lives in one kernel; here many kernels share one process, so
/// driver code that keeps process-wide state (the driver's list of timers awaiting
/// deferred teardown) uses this to keep each kernel's state apart. Never allocates.
#[must_use]
pub fn current_kernel_id() -> u64 {
    BOUND
        .try_with(|bound| bound.borrow().as_ref().map_or(0, |kernel| kernel.id))
        .unwrap_or(0)
}

/// The simulated processor the calling thread is, if it is one.
#[must_use]
pub fn current_processor() -> Option<usize> {
    PROCESSOR.try_with(Cell::get).ok().flatten()
}

/// The kernel the calling thread is bound to.
///
/// # Panics
/// If the thread is not bound (`Kernel::enter`): a test bug, not a simulated bug check.
pub(crate) fn current() -> Arc<Inner> {
    BOUND
        .with(|bound| bound.borrow().clone())
        .expect("kernel-sim: this thread is not bound to a kernel (call Kernel::enter first)")
}

/// Appends a line to the bound kernel's trace (the simulator's `DbgPrint`); on an unbound
/// thread it goes to stderr.
pub fn print(args: std::fmt::Arguments<'_>) {
    let bound = BOUND
        .try_with(|bound| bound.borrow().clone())
        .ok()
        .flatten();
    match bound {
        Some(kernel) => {
            let line = args.to_string();
            if kernel.config.echo_prints {
                eprintln!("{line}");
            }
            let mut st = kernel.lock();
            kernel.trace(&mut st, Event::Print(line));
        }
        None => eprintln!("{args}"),
    }
}

/// Shared kernel internals (one per [`Kernel`]).
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    state: Mutex<State>,
    changed: Condvar,
    crashed: AtomicBool,
    started: Instant,
    id: u64,
}

/// A simulated machine. Cheap to clone (a shared handle); when the last clone is dropped its
/// processor and clock threads stop. Independent kernels share nothing, so tests can run in
/// parallel.
#[derive(Debug, Clone)]
pub struct Kernel {
    handle: Arc<Handle>,
}

#[derive(Debug)]
struct Handle {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Binds the calling thread to a kernel (at `PASSIVE_LEVEL`) until dropped; then the
/// previous binding and IRQL come back.
#[derive(Debug)]
#[must_use = "the thread is bound only while this guard lives"]
pub struct Entered {
    previous: Option<Arc<Inner>>,
    previous_irql: KIRQL,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // Ignore a thread-local already destroyed at thread exit: nothing left to restore.
        let _ = BOUND.try_with(|bound| *bound.borrow_mut() = previous);
        let _ = IRQL.try_with(|cell| cell.set(self.previous_irql));
    }
}

fn to_units(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos() / 100).unwrap_or(u64::MAX)
}

fn units_to_duration(units: u64) -> Duration {
    Duration::from_nanos(units.saturating_mul(100))
}

impl Kernel {
    /// Boots a kernel: starts its processor threads (and, for [`Clock::RealTime`], its
    /// clock-interrupt thread).
    ///
    /// # Panics
    /// If `config.processors` or `config.time_increment` is zero, or a thread cannot start.
    #[must_use]
    pub fn new(config: Config) -> Self {
        assert!(config.processors > 0, "kernel-sim: at least one processor");
        assert!(
            config.time_increment > 0,
            "kernel-sim: time increment must be > 0"
        );
        bugcheck::install_quiet_hook();
        let processors = config.processors;
        let state = State {
            now: 0,
            last_tick: 0,
            system_offset: config.boot_system_time,
            timers: HashMap::new(),
            dpcs: HashMap::new(),
            ex_timers: HashMap::new(),
            queues: (0..processors)
                .map(|_| VecDeque::with_capacity(64))
                .collect(),
            running: vec![None; processors],
            busy_since: vec![None; processors],
            halted: vec![false; processors],
            next_cpu: 0,
            next_queue_seq: 1,
            next_set_seq: 1,
            next_object: 1,
            waiters: Vec::new(),
            next_waiter: 1,
            dispatch_limits: Vec::with_capacity(8),
            pool: HashMap::new(),
            pool_stats: PoolStats::default(),
            next_pool_seq: 1,
            fail_allocations: 0,
            stats: Stats::default(),
            trace: Vec::with_capacity(if config.trace { 1024 } else { 0 }),
            bug_check: None,
            shutdown: false,
            scratch: Vec::with_capacity(64),
        };
        let inner = Arc::new(Inner {
            config,
            state: Mutex::new(state),
            changed: Condvar::new(),
            crashed: AtomicBool::new(false),
            started: Instant::now(),
            id: NEXT_KERNEL_ID.fetch_add(1, Ordering::Relaxed),
        });
        let mut threads = Vec::with_capacity(processors + 1);
        for cpu in 0..processors {
            let inner = Arc::clone(&inner);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("kernel-sim cpu{cpu}"))
                    .spawn(move || inner.processor_main(cpu))
                    .expect("kernel-sim: cannot start a processor thread"),
            );
        }
        if inner.config.clock == Clock::RealTime {
            let clock = Arc::clone(&inner);
            threads.push(
                std::thread::Builder::new()
                    .name("kernel-sim clock".into())
                    .spawn(move || clock.clock_main())
                    .expect("kernel-sim: cannot start the clock thread"),
            );
        }
        Self {
            handle: Arc::new(Handle {
                inner,
                threads: Mutex::new(threads),
            }),
        }
    }

    fn inner(&self) -> &Inner {
        &self.handle.inner
    }

    /// The configuration the kernel was built with.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner().config
    }

    /// Binds the calling thread to this kernel at `PASSIVE_LEVEL` until the guard drops.
    /// Every `ntddk` routine needs a bound thread.
    pub fn enter(&self) -> Entered {
        let previous =
            BOUND.with(|bound| bound.borrow_mut().replace(Arc::clone(&self.handle.inner)));
        let previous_irql = irql();
        set_irql(0);
        Entered {
            previous,
            previous_irql,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Virtual clock: moves time forward by `duration`, tick by tick (and to the exact due
    /// time of each high-resolution `EX_TIMER`). At each tick due timers expire in due order,
    /// their DPCs are queued round-robin over the processors, and this call waits until
    /// every queued DPC has run before the next tick. Ticks where nothing is due are skipped
    /// in one step (nothing observable happens in them).
    ///
    /// May be called from a helper thread while the test thread holds a DPC mid-run (see
    /// docs/SIMULATOR.md); it returns once that DPC has finished.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks (now or earlier); with a message
    /// if the kernel uses the real-time clock or if called from a DPC routine.
    pub fn advance(&self, duration: Duration) {
        self.inner().advance(duration, true);
    }

    /// Like [`Kernel::advance`], but queued DPCs are not run: time moves and DPCs are queued
    /// while earlier ones may still be running. Models a DPC that runs across clock ticks
    /// (a periodic timer's DPC queued again while it is still running). The DPCs run at the
    /// next `advance`, `run_until_idle` or `KeFlushQueuedDpcs`.
    ///
    /// # Panics
    /// As [`Kernel::advance`].
    pub fn advance_without_running_dpcs(&self, duration: Duration) {
        self.inner().advance(duration, false);
    }

    /// Runs every queued DPC (and whatever those queue) until no DPC is queued or running.
    /// Time does not move.
    ///
    /// # Panics
    /// With a [`BugCheck`] payload if the machine bug-checks; with a message if called from
    /// a DPC routine.
    pub fn run_until_idle(&self) {
        let inner = self.inner();
        assert!(
            current_processor().is_none(),
            "kernel-sim: run_until_idle from a simulated processor would wait for itself"
        );
        let st = inner.lock();
        let st = inner.wait_idle(st, u64::MAX, true);
        drop(st);
    }

    /// Interrupt time (100 ns units since boot) at the last clock tick
    /// (`KeQueryInterruptTime`).
    #[must_use]
    pub fn interrupt_time(&self) -> u64 {
        self.inner().lock().last_tick
    }

    /// Precise interrupt time (`KeQueryInterruptTimePrecise`).
    #[must_use]
    pub fn interrupt_time_precise(&self) -> u64 {
        let inner = self.inner();
        let st = inner.lock();
        inner.precise_now(&st)
    }

    /// Current system time (100 ns since 1601-01-01).
    #[must_use]
    pub fn system_time(&self) -> i64 {
        let inner = self.inner();
        let st = inner.lock();
        inner.system_now(&st)
    }

    /// Sets the system clock. Absolute timers follow (a now-past one expires at the next
    /// tick); relative timers and interrupt time do not move.
    pub fn set_system_time(&self, system_time: i64) {
        let inner = self.inner();
        let mut st = inner.lock();
        let now = i64::try_from(inner.precise_now(&st)).unwrap_or(i64::MAX);
        st.system_offset = system_time.saturating_sub(now);
        inner.trace(&mut st, Event::SystemTimeSet { system_time });
        drop(st);
        inner.changed.notify_all();
    }

    /// Clock ticks since boot.
    #[must_use]
    pub fn ticks(&self) -> u64 {
        self.inner().lock().last_tick / u64::from(self.config().time_increment)
    }

    /// The bug check the machine stopped with, if any.
    #[must_use]
    pub fn bug_check(&self) -> Option<BugCheck> {
        self.inner().lock().bug_check
    }

    /// The driver-unload verifier pass: a KTIMER still set, a KDPC still queued or running,
    /// an `EX_TIMER` not deleted (0xCE), or pool still allocated (0xC4, P1 = 0x62, P2 = the
    /// oldest leaked block's tag, P3 = bytes, P4 = blocks) is a bug check, recorded in the
    /// kernel and returned. After an earlier bug check, returns that one.
    ///
    /// # Errors
    /// The bug check the unload raised (or the earlier one).
    pub fn unload(&self) -> Result<(), BugCheck> {
        self.inner().unload()
    }

    /// Pool accounting.
    #[must_use]
    pub fn pool_stats(&self) -> PoolStats {
        self.inner().lock().pool_stats
    }

    /// Outstanding pool by tag, sorted by tag.
    #[must_use]
    pub fn pool_by_tag(&self) -> Vec<TagUsage> {
        let st = self.inner().lock();
        let mut usage: Vec<TagUsage> = Vec::new();
        for block in st.pool.values() {
            match usage.iter_mut().find(|u| u.tag == block.tag) {
                Some(u) => {
                    u.allocations += 1;
                    u.bytes += block.layout.size();
                }
                None => usage.push(TagUsage {
                    tag: block.tag,
                    allocations: 1,
                    bytes: block.layout.size(),
                }),
            }
        }
        usage.sort_unstable();
        usage
    }

    /// Makes the next `count` `ExAllocatePool2` calls fail (return NULL).
    pub fn fail_next_pool_allocations(&self, count: u64) {
        self.inner().lock().fail_allocations = count;
    }

    /// Counters of expirations, queuings and DPC runs.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.inner().lock().stats
    }

    /// A copy of the event log (empty unless `Config::trace`).
    #[must_use]
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.inner().lock().trace.clone()
    }

    /// Takes the event log, leaving it empty.
    #[must_use]
    pub fn take_trace(&self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.inner().lock().trace)
    }

    /// Whether `timer` (an initialised KTIMER of this kernel) is in the timer queue.
    #[must_use]
    pub fn timer_is_set(&self, timer: *const KTIMER) -> bool {
        self.inner()
            .lock()
            .timers
            .get(&timer.addr())
            .is_some_and(|t| t.set.is_some())
    }

    /// Whether `dpc` (an initialised KDPC of this kernel) is queued.
    #[must_use]
    pub fn dpc_is_queued(&self, dpc: *const KDPC) -> bool {
        self.inner()
            .lock()
            .dpcs
            .get(&dpc.addr())
            .is_some_and(|d| d.queued.is_some())
    }

    /// On how many processors `dpc`'s routine is running right now.
    #[must_use]
    pub fn dpc_running(&self, dpc: *const KDPC) -> u32 {
        self.inner()
            .lock()
            .dpcs
            .get(&dpc.addr())
            .map_or(0, |d| d.running)
    }

    /// The number of DPCs (and `EX_TIMER` callbacks) queued and not yet started.
    #[must_use]
    pub fn queued_dpcs(&self) -> usize {
        self.inner().lock().queues.iter().map(VecDeque::len).sum()
    }

    /// The number of DPC routines and `EX_TIMER` callbacks running right now.
    #[must_use]
    pub fn running_dpcs(&self) -> usize {
        self.inner()
            .lock()
            .running
            .iter()
            .filter(|r| r.is_some())
            .count()
    }

    /// The number of threads blocked in `KeWaitForSingleObject`.
    #[must_use]
    pub fn waiting_threads(&self) -> usize {
        self.inner()
            .lock()
            .waiters
            .iter()
            .filter(|w| w.outcome.is_none())
            .count()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        {
            let mut st = self.inner.lock();
            st.shutdown = true;
        }
        self.inner.changed.notify_all();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        let halted = self.inner.lock().halted.clone();
        for (index, thread) in threads.into_iter().enumerate() {
            let is_halted = halted.get(index).copied().unwrap_or(false);
            if is_halted || thread.thread().id() == std::thread::current().id() {
                // A processor halted by a bug check never returns; detach it.
                continue;
            }
            let _ = thread.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        for (_, block) in st.pool.drain() {
            // SAFETY: `block.ptr` came from `std::alloc::alloc(block.layout)` and was not
            // freed (it is still in the pool map); nothing can use it after the kernel is gone.
            unsafe { std::alloc::dealloc(block.ptr.0, block.layout) };
        }
        for (_, timer) in st.ex_timers.drain() {
            // SAFETY: `timer.ptr` came from `Box::into_raw` in ExAllocateTimer and is freed
            // only when its record is removed, which has not happened for this one.
            drop(unsafe { Box::from_raw(timer.ptr.0) });
        }
    }
}

/// Signature magic words (xor-ed with the object's address, so a copied object is invalid).
pub(crate) const TIMER_SIGNATURE: u64 = 0x4B54_494D_4552_5F53;
/// See [`TIMER_SIGNATURE`].
pub(crate) const DPC_SIGNATURE: u64 = 0x4B44_5043_5F53_494D;

/// Which kind of object a pointer check is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ObjectKind {
    Timer,
    Dpc,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let poll = (self.config.dpc_watchdog / 4)
            .clamp(Duration::from_millis(1), Duration::from_millis(250));
        self.changed
            .wait_timeout(st, poll)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Whether the machine has stopped.
    pub(crate) fn crashed(&self) -> bool {
        self.crashed.load(Ordering::Acquire)
    }

    pub(crate) fn signature(&self, kind: ObjectKind, addr: usize) -> u64 {
        let magic = match kind {
            ObjectKind::Timer => TIMER_SIGNATURE,
            ObjectKind::Dpc => DPC_SIGNATURE,
        };
        magic ^ (addr as u64) ^ self.id.rotate_left(40)
    }

    pub(crate) fn trace(&self, st: &mut State, event: Event) {
        if self.config.trace {
            let at = st.now;
            st.trace.push(TraceEvent { at, event });
        }
    }

    fn record(&self, st: &mut State, bug_check: BugCheck) {
        if st.bug_check.is_none() {
            st.bug_check = Some(bug_check);
            self.trace(st, Event::BugCheck(bug_check));
        }
        self.crashed.store(true, Ordering::Release);
    }

    /// Raises a bug check in the calling thread (see the `bugcheck` module for how).
    pub(crate) fn fail(&self, mut st: MutexGuard<'_, State>, bug_check: BugCheck) -> ! {
        self.record(&mut st, bug_check);
        let halt = if in_callback() {
            current_processor()
        } else {
            None
        };
        if let Some(cpu) = halt
            && let Some(flag) = st.halted.get_mut(cpu)
        {
            *flag = true;
        }
        drop(st);
        self.changed.notify_all();
        if halt.is_some() {
            // Unwinding out of the driver's `extern "C"` callback would abort the process:
            // this processor stops here, as the machine would.
            loop {
                std::thread::park();
            }
        }
        std::panic::panic_any(bug_check)
    }

    /// [`Inner::fail`] without a held lock.
    pub(crate) fn fail_now(&self, bug_check: BugCheck) -> ! {
        let st = self.lock();
        self.fail(st, bug_check)
    }

    /// Bug-checks if the calling thread's IRQL is above `max`.
    pub(crate) fn require_irql_at_most(&self, max: u32, object: usize, routine: u64) {
        let current = irql();
        if u32::from(current) > max {
            self.fail_now(BugCheck::new(
                codes::IRQL_NOT_LESS_OR_EQUAL,
                [object as u64, u64::from(current), u64::from(max), routine],
            ));
        }
    }

    /// Bug-checks if the calling thread's IRQL is below `min`.
    pub(crate) fn require_irql_at_least(&self, min: u32, object: usize, routine: u64) {
        let current = irql();
        if u32::from(current) < min {
            self.fail_now(BugCheck::new(
                codes::IRQL_NOT_GREATER_OR_EQUAL,
                [object as u64, u64::from(current), u64::from(min), routine],
            ));
        }
    }

    /// Bug-checks a null or misaligned object pointer.
    pub(crate) fn require_pointer(&self, addr: usize, align: usize, routine: u64) {
        let status = if addr == 0 {
            STATUS_ACCESS_VIOLATION
        } else if !addr.is_multiple_of(align) {
            STATUS_DATATYPE_MISALIGNMENT
        } else {
            return;
        };
        self.fail_now(BugCheck::new(
            codes::SYSTEM_THREAD_EXCEPTION_NOT_HANDLED,
            [u64::from(status.cast_unsigned()), 0, addr as u64, routine],
        ));
    }

    /// `KERNEL_SECURITY_CHECK_FAILURE` with the given fast-fail code.
    pub(crate) fn security_failure(
        &self,
        st: MutexGuard<'_, State>,
        fast_fail: u64,
        object: usize,
        value: u64,
        routine: u64,
    ) -> ! {
        self.fail(
            st,
            BugCheck::new(
                codes::KERNEL_SECURITY_CHECK_FAILURE,
                [fast_fail, object as u64, value, routine],
            ),
        )
    }

    fn allocate_id(st: &mut State) -> ObjectId {
        let id = ObjectId(st.next_object);
        st.next_object = st.next_object.wrapping_add(1);
        id
    }

    pub(crate) fn precise_now(&self, st: &State) -> u64 {
        match self.config.clock {
            Clock::Virtual => st.now,
            Clock::RealTime => to_units(self.started.elapsed()).max(st.now),
        }
    }

    /// `KeQueryInterruptTime`: interrupt time at the last tick.
    pub(crate) fn interrupt_time(&self) -> u64 {
        self.lock().last_tick
    }

    /// `KeQueryInterruptTimePrecise`.
    pub(crate) fn interrupt_time_precise(&self) -> u64 {
        let st = self.lock();
        self.precise_now(&st)
    }

    /// `KeQuerySystemTimePrecise`.
    pub(crate) fn system_time(&self) -> i64 {
        let st = self.lock();
        self.system_now(&st)
    }

    pub(crate) fn system_now(&self, st: &State) -> i64 {
        let now = i64::try_from(self.precise_now(st)).unwrap_or(i64::MAX);
        st.system_offset.saturating_add(now)
    }

    fn increment(&self) -> u64 {
        u64::from(self.config.time_increment)
    }

    // ----- timers -------------------------------------------------------------------------

    /// `KeInitializeTimerEx` after pointer, IRQL and type checks. Returns the signature to
    /// write into the object.
    pub(crate) fn initialize_timer(&self, addr: usize, synchronization: bool) -> u64 {
        let signature = self.signature(ObjectKind::Timer, addr);
        let mut st = self.lock();
        if let Some(existing) = st.timers.get(&addr)
            && existing.set.is_some()
        {
            self.security_failure(
                st,
                codes::FAST_FAIL_CORRUPT_LIST_ENTRY,
                addr,
                0,
                routine::KE_INITIALIZE_TIMER,
            );
        }
        let id = Self::allocate_id(&mut st);
        st.timers.insert(
            addr,
            TimerRec {
                id,
                signature,
                synchronization,
                signaled: false,
                set: None,
            },
        );
        self.trace(
            &mut st,
            Event::TimerInitialized {
                timer: id,
                synchronization,
            },
        );
        signature
    }

    /// Looks up an initialised timer; bug-checks on an uninitialised one.
    fn timer_checked<'a>(
        &self,
        st: MutexGuard<'a, State>,
        addr: usize,
        signature: u64,
        routine: u64,
    ) -> MutexGuard<'a, State> {
        let valid = st
            .timers
            .get(&addr)
            .is_some_and(|t| t.signature == signature);
        if !valid {
            self.security_failure(st, codes::FAST_FAIL_CORRUPT_LIST_ENTRY, addr, 0, routine);
        }
        st
    }

    fn dpc_checked<'a>(
        &self,
        st: MutexGuard<'a, State>,
        addr: usize,
        signature: u64,
        routine: u64,
    ) -> MutexGuard<'a, State> {
        let valid = st.dpcs.get(&addr).is_some_and(|d| d.signature == signature);
        if !valid {
            self.security_failure(st, codes::FAST_FAIL_CORRUPT_LIST_ENTRY, addr, 0, routine);
        }
        st
    }

    /// `KeSetTimerEx` / `KeSetCoalescableTimer` after pointer and IRQL checks.
    pub(crate) fn set_timer(
        &self,
        addr: usize,
        signature: u64,
        due_time: i64,
        period_ms: i64,
        tolerable_delay_ms: u32,
        dpc: Option<(usize, u64)>,
    ) -> bool {
        let st = self.lock();
        let mut st = self.timer_checked(st, addr, signature, routine::KE_SET_TIMER);
        let Ok(period_ms) = u32::try_from(period_ms) else {
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                period_ms.cast_unsigned(),
                routine::KE_SET_TIMER,
            );
        };
        if period_ms > crate::types::MAXLONG {
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                u64::from(period_ms),
                routine::KE_SET_TIMER,
            );
        }
        let dpc_addr = match dpc {
            Some((dpc_addr, dpc_signature)) => {
                st = self.dpc_checked(st, dpc_addr, dpc_signature, routine::KE_SET_TIMER);
                Some(dpc_addr)
            }
            None => None,
        };
        let now = self.precise_now(&st);
        let base = match due_time {
            d if d < 0 => Due::Interrupt(now.saturating_add(d.unsigned_abs())),
            0 => Due::Interrupt(now),
            d => Due::System(d),
        };
        let seq = st.next_set_seq;
        st.next_set_seq += 1;
        let setting = TimerSetting {
            base,
            period: u64::from(period_ms) * UNITS_PER_MS,
            tolerance: u64::from(tolerable_delay_ms) * UNITS_PER_MS,
            dpc: dpc_addr,
            seq,
        };
        let due = setting.due(st.system_offset);
        let dpc_id = dpc_addr.and_then(|a| st.dpcs.get(&a)).map(|d| d.id);
        let Some(timer) = st.timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let was_set = timer.set.replace(setting).is_some();
        timer.signaled = false;
        let id = timer.id;
        self.trace(
            &mut st,
            Event::TimerSet {
                timer: id,
                due,
                period_ms,
                dpc: dpc_id,
                was_set,
            },
        );
        drop(st);
        self.changed.notify_all();
        was_set
    }

    /// `KeCancelTimer` after pointer and IRQL checks.
    pub(crate) fn cancel_timer(&self, addr: usize, signature: u64) -> bool {
        let st = self.lock();
        let mut st = self.timer_checked(st, addr, signature, routine::KE_CANCEL_TIMER);
        let Some(timer) = st.timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let was_set = timer.set.take().is_some();
        let id = timer.id;
        self.trace(&mut st, Event::TimerCancelled { timer: id, was_set });
        was_set
    }

    /// `KeReadStateTimer` after pointer and IRQL checks.
    pub(crate) fn read_state_timer(&self, addr: usize, signature: u64) -> bool {
        let st = self.lock();
        let st = self.timer_checked(st, addr, signature, routine::KE_READ_STATE_TIMER);
        st.timers.get(&addr).is_some_and(|t| t.signaled)
    }

    // ----- DPCs ---------------------------------------------------------------------------

    /// `KeInitializeDpc` after pointer checks. Returns the signature to write.
    pub(crate) fn initialize_dpc(
        &self,
        ptr: *mut KDPC,
        routine: DeferredRoutine,
        context: *mut c_void,
    ) -> u64 {
        let addr = ptr.addr();
        let signature = self.signature(ObjectKind::Dpc, addr);
        let mut st = self.lock();
        if let Some(existing) = st.dpcs.get(&addr)
            && existing.queued.is_some()
        {
            self.security_failure(
                st,
                codes::FAST_FAIL_CORRUPT_LIST_ENTRY,
                addr,
                0,
                routine::KE_INITIALIZE_DPC,
            );
        }
        let id = Self::allocate_id(&mut st);
        let null = SendPtr(std::ptr::null_mut());
        st.dpcs.insert(
            addr,
            DpcRec {
                id,
                signature,
                ptr: SendPtr(ptr),
                routine,
                context: SendPtr(context),
                arguments: (null, null),
                queued: None,
                running: 0,
            },
        );
        self.trace(&mut st, Event::DpcInitialized { dpc: id });
        signature
    }

    fn next_cpu(&self, st: &mut State) -> usize {
        if let Some(cpu) = current_processor() {
            return cpu;
        }
        let cpu = st.next_cpu;
        st.next_cpu = (cpu + 1) % self.config.processors;
        cpu
    }

    fn round_robin_cpu(&self, st: &mut State) -> usize {
        let cpu = st.next_cpu;
        st.next_cpu = (cpu + 1) % self.config.processors;
        cpu
    }

    /// Queues a DPC on `cpu` unless it is already queued.
    fn queue_dpc(
        &self,
        st: &mut State,
        addr: usize,
        arguments: (*mut c_void, *mut c_void),
        cpu: usize,
    ) -> bool {
        let seq = st.next_queue_seq;
        let Some(dpc) = st.dpcs.get_mut(&addr) else {
            return false;
        };
        let id = dpc.id;
        if dpc.queued.is_some() {
            st.stats.dpcs_already_queued += 1;
            self.trace(st, Event::DpcAlreadyQueued { dpc: id });
            return false;
        }
        dpc.queued = Some((cpu, seq));
        dpc.arguments = (SendPtr(arguments.0), SendPtr(arguments.1));
        st.next_queue_seq += 1;
        st.queues[cpu].push_back(Entry {
            kind: EntryKind::Dpc,
            addr,
            id,
            seq,
        });
        st.stats.dpcs_queued += 1;
        self.trace(st, Event::DpcQueued { dpc: id, cpu });
        true
    }

    /// `KeInsertQueueDpc` after pointer checks.
    pub(crate) fn insert_queue_dpc(
        &self,
        addr: usize,
        signature: u64,
        arguments: (*mut c_void, *mut c_void),
    ) -> bool {
        let st = self.lock();
        let mut st = self.dpc_checked(st, addr, signature, routine::KE_INSERT_QUEUE_DPC);
        let already = st.dpcs.get(&addr).is_some_and(|d| d.queued.is_some());
        let cpu = if already { 0 } else { self.next_cpu(&mut st) };
        let queued = self.queue_dpc(&mut st, addr, arguments, cpu);
        drop(st);
        self.changed.notify_all();
        queued
    }

    /// `KeRemoveQueueDpc` after pointer checks.
    pub(crate) fn remove_queue_dpc(&self, addr: usize, signature: u64) -> bool {
        let st = self.lock();
        let mut st = self.dpc_checked(st, addr, signature, routine::KE_REMOVE_QUEUE_DPC);
        let Some(dpc) = st.dpcs.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let Some((cpu, seq)) = dpc.queued.take() else {
            return false;
        };
        let id = dpc.id;
        if let Some(position) = st.queues[cpu].iter().position(|e| e.seq == seq) {
            st.queues[cpu].remove(position);
        }
        self.trace(&mut st, Event::DpcRemoved { dpc: id });
        drop(st);
        self.changed.notify_all();
        true
    }

    /// `KeFlushQueuedDpcs` after the IRQL check: waits until every DPC queued before the
    /// call has run.
    pub(crate) fn flush_queued_dpcs(&self) {
        let st = self.lock();
        let limit = st.next_queue_seq;
        let st = self.wait_idle(st, limit, false);
        drop(st);
    }

    /// Whether no DPC with a queuing number below `limit` is queued or running.
    fn drained_below(st: &State, limit: u64) -> bool {
        let queued = st.queues.iter().any(|q| q.iter().any(|e| e.seq < limit));
        let running = st.running.iter().flatten().any(|r| r.entry.seq < limit);
        !queued && !running
    }

    fn dispatch_limit(&self, st: &State) -> u64 {
        match self.config.clock {
            Clock::RealTime => u64::MAX,
            Clock::Virtual => st.dispatch_limits.iter().copied().max().unwrap_or(0),
        }
    }

    /// Lets processors run DPCs queued below `limit` and waits until those have run.
    /// `panic_on_crash`: control-API callers unwind with the bug check; kernel routines
    /// (flush) return inertly.
    fn wait_idle<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        limit: u64,
        panic_on_crash: bool,
    ) -> MutexGuard<'a, State> {
        st.dispatch_limits.push(limit);
        self.changed.notify_all();
        loop {
            if let Some(bug_check) = st.bug_check {
                remove_limit(&mut st, limit);
                if panic_on_crash && !std::thread::panicking() {
                    drop(st);
                    std::panic::panic_any(bug_check);
                }
                return st;
            }
            // A full dispatch also lets every waiter released so far leave its wait, so what
            // follows the call does not race with the released threads' return.
            let waiters_pending =
                limit == u64::MAX && st.waiters.iter().any(|w| w.outcome.is_some());
            if st.shutdown || (Self::drained_below(&st, limit) && !waiters_pending) {
                break;
            }
            if let Some(bug_check) = self.watchdog(&st) {
                remove_limit(&mut st, limit);
                if panic_on_crash {
                    self.fail(st, bug_check);
                }
                self.record(&mut st, bug_check);
                drop(st);
                self.changed.notify_all();
                return self.lock();
            }
            st = self.wait(st);
        }
        remove_limit(&mut st, limit);
        self.changed.notify_all();
        st
    }

    /// A `DPC_WATCHDOG_VIOLATION` if some DPC (or some processor's run of DPCs) has
    /// exceeded the budget.
    fn watchdog(&self, st: &State) -> Option<BugCheck> {
        let budget = self.config.dpc_watchdog;
        let ticks = |d: Duration| to_units(d) / self.increment();
        for running in st.running.iter().flatten() {
            let spent = running.started.elapsed();
            if spent > budget {
                return Some(BugCheck::new(
                    codes::DPC_WATCHDOG_VIOLATION,
                    [0, ticks(spent), ticks(budget), 0],
                ));
            }
        }
        let cumulative = self.config.dpc_watchdog_cumulative;
        for since in st.busy_since.iter().flatten() {
            let spent = since.elapsed();
            if spent > cumulative {
                return Some(BugCheck::new(
                    codes::DPC_WATCHDOG_VIOLATION,
                    [1, ticks(spent), ticks(cumulative), 0],
                ));
            }
        }
        None
    }

    // ----- waiting ------------------------------------------------------------------------

    /// `KeWaitForSingleObject` on a timer, after pointer and IRQL checks.
    /// `timeout`: `None` = forever; `Some(t)` as the DDI's `*Timeout`.
    pub(crate) fn wait_for_timer(
        &self,
        addr: usize,
        signature: u64,
        timeout: Option<i64>,
    ) -> NTSTATUS {
        let st = self.lock();
        let mut st = self.timer_checked(st, addr, signature, routine::KE_WAIT_FOR_SINGLE_OBJECT);
        let Some(timer) = st.timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let id = timer.id;
        if timer.signaled {
            if timer.synchronization {
                timer.signaled = false;
            }
            self.trace(&mut st, Event::WaitSatisfied { timer: id });
            return STATUS_SUCCESS;
        }
        if timeout == Some(0) {
            self.trace(&mut st, Event::WaitTimedOut { timer: id });
            return STATUS_TIMEOUT;
        }
        let now = self.precise_now(&st);
        let deadline = timeout.map(|t| {
            if t < 0 {
                Due::Interrupt(now.saturating_add(t.unsigned_abs()))
            } else {
                Due::System(t)
            }
        });
        let waiter = st.next_waiter;
        st.next_waiter += 1;
        st.waiters.push(Waiter {
            id: waiter,
            timer: addr,
            deadline,
            outcome: None,
        });
        self.changed.notify_all();
        loop {
            let position = st.waiters.iter().position(|w| w.id == waiter);
            let outcome = position.and_then(|p| st.waiters[p].outcome);
            if let (Some(position), Some(status)) = (position, outcome) {
                st.waiters.swap_remove(position);
                drop(st);
                // `advance` waits for released waiters to leave.
                self.changed.notify_all();
                return status;
            }
            if position.is_none() || st.shutdown || st.bug_check.is_some() {
                if let Some(position) = position {
                    st.waiters.swap_remove(position);
                }
                return STATUS_TIMEOUT;
            }
            st = self.wait(st);
        }
    }

    fn release_waiters(&self, st: &mut State, addr: usize) {
        let Some(timer) = st.timers.get(&addr) else {
            return;
        };
        let synchronization = timer.synchronization;
        let id = timer.id;
        let mut released = 0_u32;
        // Oldest waiter first (ids grow), so a synchronization timer releases in FIFO order.
        while let Some(waiter) = st
            .waiters
            .iter_mut()
            .filter(|w| w.timer == addr && w.outcome.is_none())
            .min_by_key(|w| w.id)
        {
            waiter.outcome = Some(STATUS_SUCCESS);
            released += 1;
            if synchronization {
                break;
            }
        }
        for _ in 0..released {
            self.trace(st, Event::WaitSatisfied { timer: id });
        }
        if synchronization
            && released > 0
            && let Some(timer) = st.timers.get_mut(&addr)
        {
            timer.signaled = false;
        }
    }

    // ----- clock --------------------------------------------------------------------------

    fn advance(&self, duration: Duration, run_dpcs: bool) {
        assert!(
            self.config.clock == Clock::Virtual,
            "kernel-sim: advance needs the virtual clock"
        );
        assert!(
            current_processor().is_none(),
            "kernel-sim: advance from a simulated processor would wait for itself"
        );
        let mut st = self.lock();
        if let Some(bug_check) = st.bug_check {
            drop(st);
            std::panic::panic_any(bug_check);
        }
        if run_dpcs {
            // DPCs queued since the last dispatch (e.g. by KeInsertQueueDpc) run first.
            st = self.wait_idle(st, u64::MAX, true);
        }
        let increment = self.increment();
        let target = st.now.saturating_add(to_units(duration));
        loop {
            match self.next_event(&st) {
                Some(event) if event <= target => {
                    st.now = st.now.max(event);
                    let tick = event / increment * increment;
                    if tick > st.last_tick {
                        st.stats.ticks += (tick - st.last_tick) / increment;
                        st.last_tick = tick;
                    }
                    self.expire_due(&mut st);
                    self.changed.notify_all();
                    if run_dpcs {
                        st = self.wait_idle(st, u64::MAX, true);
                    }
                }
                _ => break,
            }
        }
        st.now = st.now.max(target);
        let tick = target / increment * increment;
        if tick > st.last_tick {
            st.stats.ticks += (tick - st.last_tick) / increment;
            st.last_tick = tick;
        }
        drop(st);
        self.changed.notify_all();
    }

    /// The next interrupt time at which something is due: the first tick at or after the
    /// earliest tick-granular due time (KTIMERs, normal `EX_TIMERs`, wait deadlines), or the
    /// exact due time of a high-resolution `EX_TIMER`.
    fn next_event(&self, st: &State) -> Option<u64> {
        let increment = self.increment();
        let offset = st.system_offset;
        let tick_due = st
            .timers
            .values()
            .filter_map(|t| t.set.as_ref().map(|s| s.due(offset)))
            .chain(
                st.ex_timers
                    .values()
                    .filter(|t| !t.high_resolution)
                    .filter_map(|t| t.set.as_ref().map(|s| s.due.interrupt(offset))),
            )
            .chain(
                st.waiters
                    .iter()
                    .filter(|w| w.outcome.is_none())
                    .filter_map(|w| w.deadline.map(|d| d.interrupt(offset))),
            )
            .min()
            .map(|due| {
                due.div_ceil(increment)
                    .saturating_mul(increment)
                    .max(st.last_tick + increment)
            });
        let exact_due = st
            .ex_timers
            .values()
            .filter(|t| t.high_resolution)
            .filter_map(|t| t.set.as_ref().map(|s| s.due.interrupt(offset).max(st.now)))
            .min();
        match (tick_due, exact_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires everything due at the current time, in due order (ties: setting order).
    fn expire_due(&self, st: &mut State) {
        let offset = st.system_offset;
        let tick = st.last_tick;
        let now = st.now;
        let mut due = std::mem::take(&mut st.scratch);
        due.clear();
        for (addr, timer) in &st.timers {
            if let Some(setting) = &timer.set {
                let at = setting.due(offset);
                if at <= tick {
                    due.push((at, setting.seq, *addr, EntryKind::Dpc));
                }
            }
        }
        for (addr, timer) in &st.ex_timers {
            if let Some(setting) = &timer.set {
                let at = setting.due.interrupt(offset);
                let limit = if timer.high_resolution { now } else { tick };
                if at <= limit {
                    due.push((at, setting.seq, *addr, EntryKind::ExTimer));
                }
            }
        }
        due.sort_unstable();
        for &(_, _, addr, kind) in &due {
            match kind {
                EntryKind::Dpc => self.expire_timer(st, addr),
                EntryKind::ExTimer => self.expire_ex_timer(st, addr),
            }
        }
        st.scratch = due;
        // Waits time out on clock ticks.
        let mut index = 0;
        while index < st.waiters.len() {
            let waiter = &mut st.waiters[index];
            index += 1;
            if waiter.outcome.is_none()
                && waiter.deadline.is_some_and(|d| d.interrupt(offset) <= tick)
            {
                waiter.outcome = Some(STATUS_TIMEOUT);
                let timer = waiter.timer;
                if let Some(id) = st.timers.get(&timer).map(|t| t.id) {
                    self.trace(st, Event::WaitTimedOut { timer: id });
                }
            }
        }
    }

    fn expire_timer(&self, st: &mut State, addr: usize) {
        let offset = st.system_offset;
        let tick = st.last_tick;
        let system_now = self.system_now(st);
        let Some(timer) = st.timers.get_mut(&addr) else {
            return;
        };
        let Some(setting) = timer.set.as_mut() else {
            return;
        };
        timer.signaled = true;
        let id = timer.id;
        let dpc = setting.dpc;
        if setting.period > 0 {
            // Re-arm from the previous due time (no drift); expirations that fell entirely
            // within one tick are coalesced into this one.
            setting.base = next_period(setting.base, setting.period, offset, tick);
        } else {
            timer.set = None;
        }
        st.stats.timer_expirations += 1;
        self.trace(st, Event::TimerExpired { timer: id });
        self.release_waiters(st, addr);
        if let Some(dpc) = dpc {
            // The system arguments carry the expiry time's low and high halves.
            let bits = system_now.cast_unsigned();
            let low = std::ptr::without_provenance_mut::<c_void>((bits & 0xFFFF_FFFF) as usize);
            let high = std::ptr::without_provenance_mut::<c_void>((bits >> 32) as usize);
            let cpu = self.round_robin_cpu(st);
            let already = st.dpcs.get(&dpc).is_some_and(|d| d.queued.is_some());
            if already {
                // Give the processor back: nothing was queued on it.
                st.next_cpu = cpu;
            }
            self.queue_dpc(st, dpc, (low, high), cpu);
        }
    }

    fn expire_ex_timer(&self, st: &mut State, addr: usize) {
        let now = st.now;
        let offset = st.system_offset;
        let seq = st.next_queue_seq;
        let cpu = st.next_cpu;
        let Some(timer) = st.ex_timers.get_mut(&addr) else {
            return;
        };
        let Some(setting) = timer.set.as_mut() else {
            return;
        };
        let id = timer.id;
        if setting.period > 0 {
            let limit = if timer.high_resolution {
                now
            } else {
                st.last_tick
            };
            setting.due = next_period(setting.due, setting.period, offset, limit);
        } else {
            timer.set = None;
        }
        st.stats.ex_timer_expirations += 1;
        let has_callback = timer.callback.is_some();
        let queued = if timer.queued.is_some() || !has_callback {
            false
        } else {
            timer.queued = Some((cpu, seq));
            true
        };
        self.trace(st, Event::ExTimerExpired { timer: id });
        if queued {
            st.next_cpu = (cpu + 1) % self.config.processors;
            st.next_queue_seq += 1;
            st.queues[cpu].push_back(Entry {
                kind: EntryKind::ExTimer,
                addr,
                id,
                seq,
            });
            st.stats.dpcs_queued += 1;
            self.trace(st, Event::DpcQueued { dpc: id, cpu });
        } else if has_callback {
            st.stats.dpcs_already_queued += 1;
            self.trace(st, Event::DpcAlreadyQueued { dpc: id });
        }
    }

    // ----- processors ---------------------------------------------------------------------

    /// Dequeues the next DPC `cpu` may run now, if any.
    fn pick(&self, st: &mut State, cpu: usize) -> Option<Entry> {
        let head = *st.queues[cpu].front()?;
        if head.seq >= self.dispatch_limit(st) {
            return None;
        }
        if !self.config.parallel_dpcs {
            if st.running.iter().any(Option::is_some) {
                return None;
            }
            let earlier = st
                .queues
                .iter()
                .any(|q| q.front().is_some_and(|e| e.seq < head.seq));
            if earlier {
                return None;
            }
        }
        st.queues[cpu].pop_front()
    }

    fn processor_main(self: Arc<Self>, cpu: usize) {
        BOUND.with(|bound| *bound.borrow_mut() = Some(Arc::clone(&self)));
        PROCESSOR.with(|p| p.set(Some(cpu)));
        set_irql(0);
        let mut st = self.lock();
        loop {
            if st.shutdown || st.bug_check.is_some() {
                break;
            }
            let Some(entry) = self.pick(&mut st, cpu) else {
                if st.queues[cpu].is_empty() {
                    st.busy_since[cpu] = None;
                }
                st = self
                    .changed
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            st = self.run_entry(st, cpu, entry);
        }
        drop(st);
        BOUND.with(|bound| *bound.borrow_mut() = None);
    }

    /// Runs one dequeued DPC or `EX_TIMER` callback on `cpu` (lock released meanwhile).
    fn run_entry<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        cpu: usize,
        entry: Entry,
    ) -> MutexGuard<'a, State> {
        enum Call {
            Dpc(
                DeferredRoutine,
                SendPtr<KDPC>,
                SendPtr<c_void>,
                (SendPtr<c_void>, SendPtr<c_void>),
            ),
            Ex(ExCallback, SendPtr<ExTimerStorage>, SendPtr<c_void>),
        }
        let call = match entry.kind {
            EntryKind::Dpc => match st.dpcs.get_mut(&entry.addr) {
                Some(dpc) if dpc.id == entry.id => {
                    dpc.queued = None;
                    dpc.running += 1;
                    let call = Call::Dpc(dpc.routine, dpc.ptr, dpc.context, dpc.arguments);
                    st.stats.dpc_runs += 1;
                    call
                }
                _ => return st,
            },
            EntryKind::ExTimer => match st.ex_timers.get_mut(&entry.addr) {
                Some(timer) if timer.id == entry.id => {
                    let Some(callback) = timer.callback else {
                        timer.queued = None;
                        return st;
                    };
                    timer.queued = None;
                    timer.running += 1;
                    let call = Call::Ex(callback, timer.ptr, timer.context);
                    st.stats.ex_callback_runs += 1;
                    call
                }
                _ => return st,
            },
        };
        let started = Instant::now();
        st.running[cpu] = Some(Running {
            entry,
            started,
            thread: thread_token(),
        });
        if st.busy_since[cpu].is_none() {
            st.busy_since[cpu] = Some(started);
        }
        self.trace(&mut st, Event::DpcStarted { dpc: entry.id, cpu });
        drop(st);

        set_irql(DISPATCH_IRQL);
        CALLBACK_DEPTH.with(|depth| depth.set(depth.get() + 1));
        let routine_address = match call {
            Call::Dpc(routine, dpc, context, (argument1, argument2)) => {
                // SAFETY: the routine and its arguments are what the driver registered with
                // KeInitializeDpc / KeInsertQueueDpc; the kernel contract (which the verifier
                // checks enforce) keeps the KDPC and context valid while it is queued/running.
                unsafe { routine(dpc.0, context.0, argument1.0, argument2.0) };
                routine as usize
            }
            Call::Ex(callback, timer, context) => {
                // SAFETY: as above, for the callback registered with ExAllocateTimer; the
                // `EX_TIMER` storage is owned by the kernel and freed only after the last run.
                unsafe { callback(timer.0.cast::<EX_TIMER>(), context.0) };
                callback as usize
            }
        };
        CALLBACK_DEPTH.with(|depth| depth.set(depth.get() - 1));
        let returned_irql = irql();
        set_irql(0);

        let st = self.lock();
        self.finish_run(st, cpu, entry, returned_irql, routine_address, started)
    }

    /// Bookkeeping and checks after a DPC routine or callback returned.
    fn finish_run<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        cpu: usize,
        entry: Entry,
        returned_irql: KIRQL,
        routine_address: usize,
        started: Instant,
    ) -> MutexGuard<'a, State> {
        st.running[cpu] = None;
        match entry.kind {
            EntryKind::Dpc => {
                if let Some(dpc) = st.dpcs.get_mut(&entry.addr).filter(|d| d.id == entry.id) {
                    dpc.running = dpc.running.saturating_sub(1);
                }
            }
            EntryKind::ExTimer => self.finish_ex_callback(&mut st, entry),
        }
        self.trace(&mut st, Event::DpcFinished { dpc: entry.id, cpu });
        if u32::from(returned_irql) != DISPATCH_LEVEL && st.bug_check.is_none() {
            let expected = u64::from(DISPATCH_LEVEL);
            self.record(
                &mut st,
                BugCheck::new(
                    codes::IRQL_UNEXPECTED_VALUE,
                    [
                        (u64::from(returned_irql) << 16) | expected,
                        routine_address as u64,
                        0,
                        0,
                    ],
                ),
            );
        }
        let spent = started.elapsed();
        if spent > self.config.dpc_watchdog && st.bug_check.is_none() {
            let ticks = |d: Duration| to_units(d) / self.increment();
            self.record(
                &mut st,
                BugCheck::new(
                    codes::DPC_WATCHDOG_VIOLATION,
                    [0, ticks(spent), ticks(self.config.dpc_watchdog), 0],
                ),
            );
        }
        if let Some(bug_check) = self.watchdog(&st)
            && st.bug_check.is_none()
        {
            self.record(&mut st, bug_check);
        }
        if st.queues[cpu].is_empty() {
            st.busy_since[cpu] = None;
        }
        drop(st);
        self.changed.notify_all();
        self.lock()
    }

    // ----- real-time clock ----------------------------------------------------------------

    fn clock_main(self: Arc<Self>) {
        let increment = self.increment();
        let mut st = self.lock();
        loop {
            if st.shutdown || st.bug_check.is_some() {
                break;
            }
            let now = to_units(self.started.elapsed());
            st.now = st.now.max(now);
            let tick = now / increment * increment;
            if tick > st.last_tick {
                st.stats.ticks += (tick - st.last_tick) / increment;
                st.last_tick = tick;
            }
            self.expire_due(&mut st);
            if let Some(bug_check) = self.watchdog(&st) {
                self.record(&mut st, bug_check);
            }
            self.changed.notify_all();
            let next_tick = st.last_tick + increment;
            let next = self.next_event(&st).map_or(next_tick, |e| e.min(next_tick));
            let sleep = units_to_duration(next.saturating_sub(to_units(self.started.elapsed())));
            st = self
                .changed
                .wait_timeout(st, sleep.max(Duration::from_micros(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    // ----- `EX_TIMER` -----------------------------------------------------------------------

    /// `ExAllocateTimer` after IRQL and argument checks.
    pub(crate) fn allocate_ex_timer(
        &self,
        callback: Option<ExCallback>,
        context: *mut c_void,
        attributes: u32,
    ) -> *mut EX_TIMER {
        let storage = Box::into_raw(Box::new(ExTimerStorage::default()));
        let mut st = self.lock();
        let id = Self::allocate_id(&mut st);
        st.ex_timers.insert(
            storage.addr(),
            ExTimerRec {
                id,
                ptr: SendPtr(storage),
                callback,
                context: SendPtr(context),
                high_resolution: attributes & crate::types::EX_TIMER_HIGH_RESOLUTION != 0,
                set: None,
                queued: None,
                running: 0,
                deleted: false,
            },
        );
        self.trace(
            &mut st,
            Event::ExTimerAllocated {
                timer: id,
                attributes,
            },
        );
        storage.cast::<EX_TIMER>()
    }

    fn ex_timer_checked<'a>(
        &self,
        st: MutexGuard<'a, State>,
        addr: usize,
        routine: u64,
    ) -> MutexGuard<'a, State> {
        let valid = st.ex_timers.get(&addr).is_some_and(|t| !t.deleted);
        if !valid {
            self.security_failure(st, codes::FAST_FAIL_CORRUPT_LIST_ENTRY, addr, 0, routine);
        }
        st
    }

    /// `ExSetTimer` after pointer and IRQL checks.
    pub(crate) fn set_ex_timer(&self, addr: usize, due_time: i64, period: i64) -> bool {
        let st = self.lock();
        let mut st = self.ex_timer_checked(st, addr, routine::EX_SET_TIMER);
        let Ok(period) = u64::try_from(period) else {
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                period.cast_unsigned(),
                routine::EX_SET_TIMER,
            );
        };
        let high_resolution = st.ex_timers.get(&addr).is_some_and(|t| t.high_resolution);
        if high_resolution && due_time > 0 {
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                due_time.cast_unsigned(),
                routine::EX_SET_TIMER,
            );
        }
        let now = self.precise_now(&st);
        let due = match due_time {
            d if d <= 0 => Due::Interrupt(now.saturating_add(d.unsigned_abs())),
            d => Due::System(d),
        };
        let seq = st.next_set_seq;
        st.next_set_seq += 1;
        let interrupt_due = due.interrupt(st.system_offset);
        let Some(timer) = st.ex_timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let was_set = timer.set.replace(ExSetting { due, period, seq }).is_some();
        let id = timer.id;
        self.trace(
            &mut st,
            Event::ExTimerSet {
                timer: id,
                due: interrupt_due,
                period,
                was_set,
            },
        );
        drop(st);
        self.changed.notify_all();
        was_set
    }

    /// `ExCancelTimer` after pointer and IRQL checks.
    pub(crate) fn cancel_ex_timer(&self, addr: usize) -> bool {
        let st = self.lock();
        let mut st = self.ex_timer_checked(st, addr, routine::EX_CANCEL_TIMER);
        let Some(timer) = st.ex_timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let was_set = timer.set.take().is_some();
        let id = timer.id;
        self.trace(&mut st, Event::ExTimerCancelled { timer: id, was_set });
        was_set
    }

    /// `ExDeleteTimer` after pointer and IRQL checks.
    pub(crate) fn delete_ex_timer(&self, addr: usize, cancel: bool, wait: bool) -> bool {
        let st = self.lock();
        let mut st = self.ex_timer_checked(st, addr, routine::EX_DELETE_TIMER);
        let Some(timer) = st.ex_timers.get_mut(&addr) else {
            unreachable!("checked above");
        };
        let id = timer.id;
        let mut cancelled = false;
        if cancel {
            cancelled = timer.set.take().is_some();
            self.trace(
                &mut st,
                Event::ExTimerCancelled {
                    timer: id,
                    was_set: cancelled,
                },
            );
        } else if timer.set.as_ref().is_some_and(|s| s.period > 0) {
            // A periodic timer that is not cancelled would never finish expiring.
            self.security_failure(
                st,
                codes::FAST_FAIL_INVALID_ARG,
                addr,
                0,
                routine::EX_DELETE_TIMER,
            );
        }
        if let Some(timer) = st.ex_timers.get_mut(&addr) {
            timer.deleted = true;
        }
        if wait {
            loop {
                let busy = st
                    .ex_timers
                    .get(&addr)
                    .is_some_and(|t| t.queued.is_some() || t.running > 0);
                if !busy || st.shutdown || st.bug_check.is_some() {
                    break;
                }
                if let Some(bug_check) = self.watchdog(&st) {
                    self.fail(st, bug_check);
                }
                st = self.wait_dispatching(st);
            }
        }
        self.release_ex_timer_if_done(&mut st, addr);
        cancelled
    }

    /// Waits for a change while letting processors run everything queued (virtual clock).
    fn wait_dispatching<'a>(&self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.dispatch_limits.push(u64::MAX);
        self.changed.notify_all();
        let mut st = self.wait(st);
        remove_limit(&mut st, u64::MAX);
        st
    }

    fn finish_ex_callback(&self, st: &mut State, entry: Entry) {
        if let Some(timer) = st
            .ex_timers
            .get_mut(&entry.addr)
            .filter(|t| t.id == entry.id)
        {
            timer.running = timer.running.saturating_sub(1);
        }
        self.release_ex_timer_if_done(st, entry.addr);
    }

    fn release_ex_timer_if_done(&self, st: &mut State, addr: usize) {
        let done = st
            .ex_timers
            .get(&addr)
            .is_some_and(|t| t.deleted && t.queued.is_none() && t.running == 0 && t.set.is_none());
        if done && let Some(timer) = st.ex_timers.remove(&addr) {
            self.trace(st, Event::ExTimerDeleted { timer: timer.id });
            // SAFETY: the storage came from `Box::into_raw` in `allocate_ex_timer` and its
            // record, now removed, was the only owner; no callback is queued or running.
            drop(unsafe { Box::from_raw(timer.ptr.0) });
        }
    }

    // ----- pool ---------------------------------------------------------------------------

    /// `ExAllocatePool2` after IRQL checks.
    pub(crate) fn allocate_pool(&self, flags: u64, bytes: u64, tag: u32) -> *mut c_void {
        let mut st = self.lock();
        if bytes == 0 {
            self.fail(
                st,
                BugCheck::new(
                    codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [0, u64::from(irql()), flags, 0],
                ),
            );
        }
        if st.fail_allocations > 0 {
            st.fail_allocations -= 1;
            st.pool_stats.failed_allocations += 1;
            return std::ptr::null_mut();
        }
        let align = if flags & crate::types::POOL_FLAG_CACHE_ALIGNED != 0 {
            64
        } else {
            16
        };
        let Some(layout) = usize::try_from(bytes)
            .ok()
            .and_then(|size| std::alloc::Layout::from_size_align(size, align).ok())
        else {
            st.pool_stats.failed_allocations += 1;
            return std::ptr::null_mut();
        };
        let uninitialized = flags & crate::types::POOL_FLAG_UNINITIALIZED != 0;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            st.pool_stats.failed_allocations += 1;
            return std::ptr::null_mut();
        }
        if uninitialized {
            // SAFETY: `ptr` is a fresh allocation of `layout.size()` bytes.
            unsafe { ptr.write_bytes(0xCD, layout.size()) };
        }
        let seq = st.next_pool_seq;
        st.next_pool_seq += 1;
        st.pool.insert(
            ptr.addr(),
            PoolBlock {
                ptr: SendPtr(ptr),
                layout,
                tag,
                seq,
            },
        );
        st.pool_stats.allocations += 1;
        st.pool_stats.outstanding_allocations += 1;
        st.pool_stats.outstanding_bytes += layout.size();
        self.trace(
            &mut st,
            Event::PoolAllocated {
                tag,
                bytes: layout.size(),
            },
        );
        ptr.cast()
    }

    /// `ExFreePoolWithTag` after IRQL checks.
    pub(crate) fn free_pool(&self, addr: usize, tag: u32) {
        let mut st = self.lock();
        let Some(block) = st.pool.get(&addr) else {
            self.fail(
                st,
                BugCheck::new(codes::BAD_POOL_CALLER, [0x07, 0, 0, addr as u64]),
            );
        };
        if tag != 0 && tag != block.tag {
            let block_tag = block.tag;
            self.fail(
                st,
                BugCheck::new(
                    codes::BAD_POOL_CALLER,
                    [0x0A, addr as u64, u64::from(block_tag), u64::from(tag)],
                ),
            );
        }
        let end = addr + block.layout.size();
        let range = addr..end;
        let set_timer = st
            .timers
            .iter()
            .filter(|(a, t)| range.contains(*a) && t.set.is_some())
            .map(|(a, _)| *a)
            .min();
        if let Some(timer) = set_timer {
            self.fail(
                st,
                BugCheck::new(
                    codes::TIMER_OR_DPC_INVALID,
                    [0, timer as u64, addr as u64, end as u64],
                ),
            );
        }
        let own_thread = thread_token();
        let busy_dpc = st
            .dpcs
            .iter()
            .filter(|(a, d)| {
                if !range.contains(*a) {
                    return false;
                }
                // A DPC routine may free its own KDPC: only other runs count.
                let own_runs = st
                    .running
                    .iter()
                    .flatten()
                    .filter(|r| {
                        r.entry.kind == EntryKind::Dpc
                            && r.entry.addr == **a
                            && r.thread == own_thread
                    })
                    .count();
                d.queued.is_some() || d.running as usize > own_runs
            })
            .map(|(a, _)| *a)
            .min();
        if let Some(dpc) = busy_dpc {
            self.fail(
                st,
                BugCheck::new(
                    codes::TIMER_OR_DPC_INVALID,
                    [1, dpc as u64, addr as u64, end as u64],
                ),
            );
        }
        self.release_block(&mut st, addr);
    }

    /// Frees a pool block and forgets the kernel objects that lived in it.
    fn release_block(&self, st: &mut State, addr: usize) {
        let Some(block) = st.pool.remove(&addr) else {
            return;
        };
        let range = addr..addr + block.layout.size();
        st.timers.retain(|a, _| !range.contains(a));
        st.dpcs.retain(|a, _| !range.contains(a));
        st.pool_stats.frees += 1;
        st.pool_stats.outstanding_allocations -= 1;
        st.pool_stats.outstanding_bytes -= block.layout.size();
        self.trace(
            st,
            Event::PoolFreed {
                tag: block.tag,
                bytes: block.layout.size(),
            },
        );
        // SAFETY: `block.ptr` came from `std::alloc::alloc_zeroed(block.layout)` and has just
        // been removed from the pool map, so it is freed exactly once.
        unsafe { std::alloc::dealloc(block.ptr.0, block.layout) };
    }

    /// `ExFreePoolWithTag` after the machine stopped: free the memory, check nothing.
    pub(crate) fn free_pool_inert(&self, addr: usize) {
        let mut st = self.lock();
        self.release_block(&mut st, addr);
    }

    // ----- unload -------------------------------------------------------------------------

    fn unload(&self) -> Result<(), BugCheck> {
        let mut st = self.lock();
        if let Some(bug_check) = st.bug_check {
            return Err(bug_check);
        }
        let pending = |address: usize, kind: u64| {
            BugCheck::new(
                codes::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
                [address as u64, kind, 0, 0],
            )
        };
        let mut found = st
            .timers
            .iter()
            .filter(|(_, t)| t.set.is_some())
            .min_by_key(|(_, t)| t.id)
            .map(|(a, _)| pending(*a, 0));
        if found.is_none() {
            found = st
                .dpcs
                .iter()
                .filter(|(_, d)| d.queued.is_some() || d.running > 0)
                .min_by_key(|(_, d)| d.id)
                .map(|(a, _)| pending(*a, 1));
        }
        if found.is_none() {
            found = st
                .ex_timers
                .iter()
                .min_by_key(|(_, t)| t.id)
                .map(|(a, _)| pending(*a, 3));
        }
        if found.is_none() {
            found = st.pool.values().min_by_key(|b| b.seq).map(|oldest| {
                BugCheck::new(
                    codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [
                        codes::VERIFIER_POOL_LEAK,
                        u64::from(oldest.tag),
                        st.pool_stats.outstanding_bytes as u64,
                        st.pool_stats.outstanding_allocations as u64,
                    ],
                )
            });
        }
        match found {
            Some(bug_check) => {
                self.record(&mut st, bug_check);
                drop(st);
                self.changed.notify_all();
                Err(bug_check)
            }
            None => Ok(()),
        }
    }
}

fn remove_limit(st: &mut State, limit: u64) {
    if let Some(position) = st.dispatch_limits.iter().position(|l| *l == limit) {
        st.dispatch_limits.swap_remove(position);
    }
}

/// `DISPATCH_LEVEL` as a `KIRQL`.
pub(crate) const DISPATCH_IRQL: KIRQL = 2;
const _: () = assert!(DISPATCH_IRQL as u32 == DISPATCH_LEVEL);
