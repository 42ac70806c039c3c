//! The simulated machine: the control API tests use (`Kernel`, `Config`, `Entered`), thread
//! binding and per-thread IRQL, the kernel's state, and the bug check machinery. The kernel's
//! behaviour lives in the submodules: `timers` (KTIMER, waits), `dpc` (KDPC, queues, flush,
//! watchdog), `clock` (virtual and real-time clocks, expiry), `processor` (running DPCs),
//! `ex_timer` (`ExAllocateTimer` timers) and `pool` (tagged pool, unload checks).
//!
//! Locking: one mutex (`Inner::state`) guards all kernel state and one condition variable
//! (`Inner::changed`, a [`Signal`] that skips the wake-up when nobody sleeps) announces every
//! change. Driver callbacks always run with the mutex released, so a callback may call back
//! into the kernel.
//!
//! Execution ([`Execution`]): with `Inline` the threads that wait for DPCs (`advance`,
//! `run_until_idle`, `KeFlushQueuedDpcs`, `ExDeleteTimer` with `Wait`) run them themselves
//! (`inline`); with `Threaded` each simulated processor is a thread (`processor`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::addr_map::AddrMap;
use crate::bugcheck::{self, BugCheck, codes};
use crate::signal::Signal;
use crate::trace::{Event, ObjectId, TraceEvent};
use crate::types::{
    DISPATCH_LEVEL, EX_TIMER, KDPC, KIRQL, KTIMER, NTSTATUS, STATUS_ACCESS_VIOLATION,
    STATUS_DATATYPE_MISALIGNMENT,
};

mod clock;
mod dpc;
mod ex_timer;
mod inline;
mod pool;
mod processor;
mod timers;

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

/// Where DPC routines and `EX_TIMER` callbacks run (docs/SIMULATOR.md, "Execution modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Execution {
    /// No processor threads: the thread that waits for DPCs (`Kernel::advance`,
    /// `Kernel::run_until_idle`, `KeFlushQueuedDpcs`, `ExDeleteTimer` with `Wait`) runs them
    /// itself, one at a time, each "on" the simulated processor it was queued on (IRQL,
    /// [`current_processor`], [`in_callback`] as on a processor thread). Same order and trace
    /// as `Threaded` with serial dispatch, without a thread hand-off per DPC. A bug check
    /// raised inside a driver callback stops the process (a callback cannot unwind, and the
    /// caller's thread cannot halt). Virtual clock only.
    #[default]
    Inline,
    /// One thread per simulated processor. Needed for true concurrency: DPCs running on two
    /// processors at once (`Config::parallel_dpcs`), a processor halted by a bug check inside
    /// a DPC while the test goes on, the real-time clock.
    Threaded,
}

/// How a kernel is built. `Config::default()`: 2 processors, 15.625 ms tick, virtual clock,
/// inline execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Number of simulated processors (each with its own DPC queue). At least 1.
    pub processors: usize,
    /// Clock tick in 100 ns units (`KeQueryTimeIncrement`). At least 1.
    pub time_increment: u32,
    /// Virtual (deterministic) or real-time clock.
    pub clock: Clock,
    /// Wall-clock budget for one DPC routine before `DPC_WATCHDOG_VIOLATION` (0x133, P1 = 0).
    /// Default 20 s ([`wall_time_budget`]: longer under Miri).
    pub dpc_watchdog: Duration,
    /// Wall-clock budget for one processor running DPCs back to back (a DPC storm) before
    /// `DPC_WATCHDOG_VIOLATION` (0x133, P1 = 1). Default 120 s ([`wall_time_budget`]).
    pub dpc_watchdog_cumulative: Duration,
    /// `false`: one DPC runs at a time, in queuing order (deterministic traces).
    /// `true`: each processor runs its own queue concurrently (inline: a processor may start
    /// a DPC while another processor's runs on another dispatching thread).
    pub parallel_dpcs: bool,
    /// System time at boot (100 ns since 1601-01-01).
    pub boot_system_time: i64,
    /// Keep the event log ([`Kernel::trace`]).
    pub trace: bool,
    /// Also write `kernel_sim::print` lines to stderr.
    pub echo_prints: bool,
    /// Where DPCs run: on the dispatching thread (`Inline`, the default) or on processor
    /// threads (`Threaded`). The real-time clock always uses `Threaded`.
    pub execution: Execution,
}

/// How much longer a wall-clock budget is under Miri: its isolated clock advances 5 µs per
/// interpreted basic block, where native code spends a few nanoseconds on one, so the same
/// work takes about a thousand times more (virtual) wall time.
const MIRI_WALL_TIME_SCALE: u32 = 1000;

/// A wall-clock budget meant for native speed (a watchdog, a removal timeout, a test's
/// "generous" wait), scaled up under Miri so that the interpreter's slowness cannot make it
/// expire where a native run would not. Unchanged natively. Budgets a test sets to make a
/// check fire are used as given.
#[must_use]
pub fn wall_time_budget(native: Duration) -> Duration {
    if cfg!(miri) {
        native.saturating_mul(MIRI_WALL_TIME_SCALE)
    } else {
        native
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            processors: 2,
            time_increment: DEFAULT_TIME_INCREMENT,
            clock: Clock::Virtual,
            dpc_watchdog: wall_time_budget(Duration::from_secs(20)),
            dpc_watchdog_cumulative: wall_time_budget(Duration::from_mins(2)),
            parallel_dpcs: false,
            boot_system_time: DEFAULT_BOOT_SYSTEM_TIME,
            trace: true,
            echo_prints: false,
            execution: Execution::Inline,
        }
    }
}

impl Config {
    /// A real-time kernel ticking every `tick` of wall time, with processor threads running
    /// DPCs concurrently and no event log.
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
            execution: Execution::Threaded,
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

impl<T> SendPtr<T> {
    /// The pointer (a method, so that a closure captures the whole `SendPtr`).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

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

    /// As [`Due::interrupt`], but a system time before boot stays before boot (negative):
    /// the grid of a periodic timer due before boot keeps its phase.
    fn interrupt_signed(self, system_offset: i64) -> i128 {
        match self {
            Due::Interrupt(t) => i128::from(t),
            Due::System(s) => i128::from(s) - i128::from(system_offset),
        }
    }
}

/// The first due time on `due`'s grid of `period` that lies after `limit`, in interrupt
/// time: computed, not stepped, so a large jump of the system clock cannot stall the tick.
/// Later periods are intervals of interrupt time (the model this project follows, not
/// measured on Windows), so an absolute timer's next due time is interrupt time: later clock
/// changes do not move it.
fn next_period(due: Due, period: u64, system_offset: i64, limit: u64) -> Due {
    let current = due.interrupt_signed(system_offset);
    let (period, limit) = (i128::from(period), i128::from(limit));
    let periods = if current > limit {
        1
    } else {
        (limit - current) / period + 1
    };
    let next = current + periods * period;
    Due::Interrupt(u64::try_from(next.max(0)).unwrap_or(u64::MAX))
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

    /// The due time that orders expiries within one tick: as [`TimerSetting::due`], but a
    /// due time before boot keeps its place (earlier due times expire first).
    fn order(&self, system_offset: i64) -> i128 {
        if self.tolerance == 0 {
            self.base.interrupt_signed(system_offset)
        } else {
            i128::from(self.due(system_offset))
        }
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
    timers: AddrMap<TimerRec>,
    dpcs: AddrMap<DpcRec>,
    ex_timers: AddrMap<ExTimerRec>,
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
    pool: AddrMap<PoolBlock>,
    pool_stats: PoolStats,
    next_pool_seq: u64,
    fail_allocations: u64,
    stats: Stats,
    trace: Vec<TraceEvent>,
    bug_check: Option<BugCheck>,
    shutdown: bool,
    scratch: Vec<(i128, u64, usize, EntryKind)>,
    /// `KTIMER` expiries, when [`Kernel::record_expiries`] turned the log on.
    expiry_log: Option<Vec<TimerExpiry>>,
    /// The `KTIMER` initialised last ([`Kernel::last_timer_initialized`]).
    last_timer_initialized: Option<ObjectId>,
}

/// One expiry of a `KTIMER`, as the kernel produced it (the log of
/// [`Kernel::record_expiries`]). Times are interrupt time, 100 ns units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerExpiry {
    /// The timer.
    pub timer: ObjectId,
    /// The clock tick at which it expired.
    pub at: u64,
    /// The latest due time this expiry covered (due times of a periodic timer that passed
    /// within one tick are one expiry); negative for an absolute due time before boot.
    pub due: i64,
}

static NEXT_KERNEL_ID: AtomicU64 = AtomicU64::new(1);
static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static BOUND: RefCell<Option<Arc<Inner>>> = const { RefCell::new(None) };
    static IRQL: Cell<KIRQL> = const { Cell::new(0) };
    static CALLBACK_DEPTH: Cell<u32> = const { Cell::new(0) };
    static PROCESSOR: Cell<Option<usize>> = const { Cell::new(None) };
    static THREAD_TOKEN: Cell<u64> = const { Cell::new(0) };
    static DRIVER_FRAMES: Cell<u32> = const { Cell::new(0) };
    static INLINE_DRIVER_CALLS: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread, until dropped, as calling the driver inline (the KMDF model's
/// `FrameworkConfig::inline_driver_calls`): a bug check raised inside a driver callback then
/// stops the whole process (after printing it), as nothing could observe it otherwise.
pub(crate) struct InlineDriverCalls(bool);

impl InlineDriverCalls {
    pub(crate) fn enter() -> Self {
        Self(INLINE_DRIVER_CALLS.with(|inline| inline.replace(true)))
    }
}

impl Drop for InlineDriverCalls {
    fn drop(&mut self) {
        let _ = INLINE_DRIVER_CALLS.try_with(|inline| inline.set(self.0));
    }
}

/// Marks the calling thread as inside a driver callback the KMDF model called (an
/// `extern "C"` frame that must not be unwound through) until dropped: a bug check raised
/// meanwhile stops this thread, as one on a processor running a DPC does.
pub(crate) struct DriverFrame(());

impl DriverFrame {
    pub(crate) fn enter() -> Self {
        DRIVER_FRAMES.with(|frames| frames.set(frames.get() + 1));
        Self(())
    }
}

impl Drop for DriverFrame {
    fn drop(&mut self) {
        let _ = DRIVER_FRAMES.try_with(|frames| frames.set(frames.get().saturating_sub(1)));
    }
}

fn in_driver_frame() -> bool {
    DRIVER_FRAMES
        .try_with(|frames| frames.get() > 0)
        .unwrap_or(false)
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
    changed: Signal,
    /// DPCs run on the dispatching thread (`Execution::Inline` with the virtual clock).
    inline: bool,
    /// This kernel, for binding a dispatching thread while it runs a DPC inline.
    this: Weak<Inner>,
    crashed: AtomicBool,
    started: Instant,
    id: u64,
    /// `State::last_tick`, published for `KeQueryInterruptTime`, which reads it without the
    /// kernel lock as Windows reads `KUSER_SHARED_DATA.InterruptTime`: a tick-clock read
    /// costs what it costs on Windows (a load), not a lock round trip. Written only with
    /// `last_tick`, under the lock ([`Inner::set_last_tick`]).
    tick_clock: AtomicU64,
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
    /// Boots a kernel: starts its processor threads with [`Execution::Threaded`] (and, for
    /// [`Clock::RealTime`], its clock-interrupt thread). An inline kernel starts no thread.
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
            timers: AddrMap::default(),
            dpcs: AddrMap::default(),
            ex_timers: AddrMap::default(),
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
            pool: AddrMap::default(),
            pool_stats: PoolStats::default(),
            next_pool_seq: 1,
            fail_allocations: 0,
            stats: Stats::default(),
            trace: Vec::with_capacity(if config.trace { 1024 } else { 0 }),
            bug_check: None,
            shutdown: false,
            scratch: Vec::with_capacity(64),
            expiry_log: None,
            last_timer_initialized: None,
        };
        let inline = config.execution == Execution::Inline && config.clock == Clock::Virtual;
        let inner = Arc::new_cyclic(|this| Inner {
            config,
            state: Mutex::new(state),
            changed: Signal::default(),
            inline,
            this: this.clone(),
            crashed: AtomicBool::new(false),
            started: Instant::now(),
            id: NEXT_KERNEL_ID.fetch_add(1, Ordering::Relaxed),
            tick_clock: AtomicU64::new(0),
        });
        let mut threads = Vec::with_capacity(processors + 1);
        let processor_threads = if inline { 0 } else { processors };
        for cpu in 0..processor_threads {
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
        self.inner().interrupt_time()
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

    /// Starts (`true`, with an empty log) or stops (`false`, dropping it) the log of
    /// `KTIMER` expiries: every expiry the kernel produces, with its tick and the latest due
    /// time it covered. Off by default (the log grows with every expiry). Tests compare a
    /// driver's expiration counts with it: the kernel's own events, not a formula.
    pub fn record_expiries(&self, on: bool) {
        self.inner().lock().expiry_log = on.then(Vec::new);
    }

    /// Takes the expiries logged since the last call (empty when the log is off).
    #[must_use]
    pub fn take_expiries(&self) -> Vec<TimerExpiry> {
        self.inner()
            .lock()
            .expiry_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The object id of the `KTIMER` initialised last (`KeInitializeTimer(Ex)`), if any: a
    /// test that made a driver create one timer names it in [`Kernel::take_expiries`] with it.
    #[must_use]
    pub fn last_timer_initialized(&self) -> Option<ObjectId> {
        self.inner().lock().last_timer_initialized
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
        let driver_frame = in_driver_frame();
        if halt.is_some() || driver_frame {
            // A callback running on the thread that drives the kernel (a DPC under
            // `Execution::Inline`, a KMDF callback under `inline_driver_calls`) cannot unwind
            // (`extern "C"`) and must not park (the caller would hang): the process stops.
            if halt.is_some() && self.inline {
                eprintln!(
                    "kernel-sim: {bug_check} inside a driver callback running inline; a \
                     callback cannot unwind, so the process stops (Execution::Threaded halts \
                     the simulated processor instead)"
                );
                std::process::abort();
            }
            if halt.is_none()
                && driver_frame
                && INLINE_DRIVER_CALLS.try_with(Cell::get).unwrap_or(false)
            {
                eprintln!("kernel-sim: {bug_check} inside a driver callback called inline");
                std::process::abort();
            }
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
        self.tick_clock.load(Ordering::Acquire)
    }

    /// Moves the tick clock to `tick` (a later tick than `st.last_tick`) and publishes it
    /// for lock-free readers ([`Inner::interrupt_time`]).
    pub(crate) fn set_last_tick(&self, st: &mut State, tick: u64) {
        st.last_tick = tick;
        self.tick_clock.store(tick, Ordering::Release);
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
}

fn remove_limit(st: &mut State, limit: u64) {
    if let Some(position) = st.dispatch_limits.iter().position(|l| *l == limit) {
        st.dispatch_limits.swap_remove(position);
    }
}

/// `DISPATCH_LEVEL` as a `KIRQL`.
pub(crate) const DISPATCH_IRQL: KIRQL = 2;
const _: () = assert!(DISPATCH_IRQL as u32 == DISPATCH_LEVEL);
