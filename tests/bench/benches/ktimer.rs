//! Benchmarks of the driver on the simulator, printed as the tables of `BENCHMARKS.md`:
//! `cargo bench -p ktimer-bench`. Every ratio comes from one run of this program.
//!
//! 1. Instructions per expiry in the driver's expiry path at 1, 100 and 10,000 live timers:
//!    this program re-runs itself under `valgrind --tool=callgrind` with collection toggled on
//!    only inside the DPC routine (`--toggle-collect=*timer_dpc*`), so only the expiry path is
//!    counted (the driver's code and the simulated kernel routines it calls, e.g. the spin
//!    lock and the precise clock), divided by the DPC runs the simulator counted.
//! 2. Heap allocations per expiry: a counting global allocator attributes allocations made
//!    while a simulated processor runs a DPC routine (`kernel_sim::in_callback`).
//! 3. Events per second delivered end to end in virtual time: 1,000 live 1 ms timers on 4
//!    handles; each tick is advanced, then the records are read by waits that take everything
//!    ready at once (batched) or by one wait per record. Next to it, the simulator alone (the
//!    same 1,000 timers with an empty DPC routine and no driver), in both execution modes
//!    (`kernel_sim::Execution`): inline, which every other figure uses, and threaded (a
//!    thread hand-off per DPC), so the simulator's share of each figure is visible.
//! 4. The fuzz harness's own rate: `ktimer_fuzz::Fuzzer::run` over its seed corpus and a
//!    fixed set of pseudo-random inputs, natively (no libFuzzer, no sanitizer), as the fuzzer
//!    runs it (inline execution, inline driver calls) and as the threaded replay does
//!    (processor threads, driver calls on the KMDF model's driver threads).
//! 5. The libFuzzer process's rate (`tests/fuzz/rate.sh`): the threaded rig with cargo-fuzz's
//!    default address-sanitizer build (the rate before inline execution), the same build
//!    inline, and the long campaign's build (no sanitizer, no compare tracing), alternating.
//!    Skipped with a note when cargo-fuzz or the nightly toolchain is missing.
//! 6. IOCTL dispatch cost: `ktimer_service::dispatch::dispatch` called directly with an allocation-free
//!    request type, and the same IOCTL through the driver's `DriverEntry` on kernel-sim's KMDF
//!    model (`kernel_sim::wdf::Framework` with inline driver calls: the KMDF shell and the model).
//! 7. Under Wine (`tests/wine/run.sh`, docs/WINE.md): the Windows build of ktimer-test
//!    against the driver's WDM test front end loaded by Wine's `ntoskrnl.exe` — the get-info
//!    IOCTL round trip (p50/p99, timed in the app) and the driver's periodic timer lateness
//!    next to a user-mode high-resolution waitable timer's, in one run. Wine on Linux, not
//!    Windows. Skipped with a note when the rig cannot run.
//!
//! Wall-clock figures depend on the machine and its load; instruction and allocation counts
//! do not. Nothing here asserts a timing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::hint::black_box;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kernel_sim::wdf::{DeviceNode, Framework, FrameworkConfig, UserHandle};
use kernel_sim::{Config, Execution, KDPC, KTIMER, Kernel, LARGE_INTEGER, PVOID, ntddk};
use ktimer_abi::codec::{Decode, Encode, WaitBatch, wait_response_len};
use ktimer_abi::ioctl::{
    IOCTL_KTIMER_CREATE, IOCTL_KTIMER_GET_INFO, IOCTL_KTIMER_QUERY, IOCTL_KTIMER_WAIT,
};
use ktimer_abi::status::{NtStatus, STATUS_SUCCESS};
use ktimer_abi::{
    CreateRequest, CreateResponse, Header, MODE_PERIODIC, Schedule, TIMER_TYPE_NOTIFICATION,
    TimerRequest, WaitRequest,
};
use ktimer_kernel::irql::PassiveLevel;
use ktimer_service::dispatch::{CancelableRequest, IoRequest, Pended, dispatch};
use ktimer_service::{Service, ServiceConfig};

/// Heap allocations made while a simulated processor runs a DPC routine.
static EXPIRY_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct CountingAllocator;

// SAFETY: forwards to the system allocator unchanged; the bookkeeping neither allocates nor
// panics (`in_callback` reads a thread-local flag).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if kernel_sim::in_callback() {
            EXPIRY_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Timers per handle (the service's default limit is 1,024).
const TIMERS_PER_HANDLE: usize = 1000;
/// 1 ms in 100 ns units.
const MS: i64 = 10_000;

/// A virtual-time kernel with a 1 ms tick, no event log and inline execution (DPCs run on
/// the thread that advances time).
fn kernel() -> Kernel {
    kernel_with(Execution::Inline)
}

/// As [`kernel`], with the given execution mode.
fn kernel_with(execution: Execution) -> Kernel {
    Kernel::new(Config {
        time_increment: 10_000,
        trace: false,
        execution,
        ..Config::default()
    })
}

fn encode<T: Encode>(message: &T) -> Vec<u8> {
    let mut out = vec![0u8; 128];
    let len = message.encode(&mut out).expect("fits");
    out.truncate(len);
    out
}

fn periodic_1ms() -> CreateRequest {
    CreateRequest {
        header: Header::of::<CreateRequest>(),
        timer_type: TIMER_TYPE_NOTIFICATION,
        flags: 0,
        schedule: Schedule {
            mode: MODE_PERIODIC,
            flags: 0,
            due_time: MS,
            period_ms: 1,
            tolerable_delay_ms: 0,
        },
    }
}

fn wait_input(min_records: u32) -> Vec<u8> {
    encode(&WaitRequest {
        header: Header::of::<WaitRequest>(),
        min_records,
        reserved: 0,
    })
}

/// The driver loaded through `DriverEntry` on the KMDF model, with one device. Dropping it
/// removes the device and unloads the driver (handles must be closed first).
struct Driver {
    framework: Framework,
    device: DeviceNode,
}

impl Driver {
    fn load(kernel: &Kernel, config: ServiceConfig) -> Self {
        {
            let _entered = kernel.enter();
            ktimer_kmdf::sim_hooks::set_service_config(config);
        }
        // Inline driver calls: the cost measured is the shell's and the model's, not a
        // thread hand-off per request.
        let framework = Framework::new(
            kernel,
            &FrameworkConfig {
                inline_driver_calls: true,
                ..FrameworkConfig::default()
            },
        );
        framework.load(ktimer_kmdf::DRIVER_ENTRY).expect("loads");
        let device = framework.add_device().expect("the device starts");
        Self { framework, device }
    }

    fn open(&self) -> UserHandle {
        self.framework.open(self.device, None).expect("opens")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.framework.remove_device(self.device);
        assert_eq!(self.framework.unload(), Ok(()), "a clean unload");
    }
}

/// `live` 1 ms periodic timers, `TIMERS_PER_HANDLE` per handle, all due at the next tick.
struct Load {
    kernel: Kernel,
    host: Driver,
    handles: Vec<UserHandle>,
}

impl Load {
    fn new(live: usize, ring: usize) -> Self {
        let kernel = kernel();
        let config = ServiceConfig {
            max_timers_per_handle: TIMERS_PER_HANDLE,
            event_ring_capacity: ring,
            ..ServiceConfig::default()
        };
        let host = Driver::load(&kernel, config);
        let mut handles = Vec::new();
        let create = encode(&periodic_1ms());
        for index in 0..live {
            if index % TIMERS_PER_HANDLE == 0 {
                handles.push(host.open());
            }
            let handle = handles.last().expect("opened above");
            let done = handle
                .submit(IOCTL_KTIMER_CREATE, &create, 16)
                .result()
                .expect("completes at once");
            assert_eq!(done.status, STATUS_SUCCESS);
        }
        Self {
            kernel,
            host,
            handles,
        }
    }

    fn tick(&self) {
        self.kernel.advance(Duration::from_millis(1));
    }
}

/// Ring capacity of the callgrind child's "wrapped" run: small, so the ring wraps at once.
const WRAPPED_RING: usize = 4;
/// Ticks of the "wrapped" run: all but the first `WRAPPED_RING` records overwrite a slot.
const WRAPPED_TICKS: usize = 100;

/// The callgrind child: `live` timers, 5 ticks (every record is the first in its ring slot),
/// or with `wrapped` a ring of `WRAPPED_RING` records drained by a wait after each of
/// `WRAPPED_TICKS` ticks (records overwrite slots, a handle's steady state). Prints the DPC
/// runs and exits without teardown (tearing down 10,000 timers under valgrind would take
/// longer than the run). Only the DPC routine is counted: the waits run outside it.
fn callgrind_child(live: usize, wrapped: bool) -> ExitCode {
    let load = if wrapped {
        let load = Load::new(live, WRAPPED_RING);
        let wait = wait_input(1);
        let room = wait_response_len(WRAPPED_RING).unwrap_or(0);
        for _ in 0..WRAPPED_TICKS {
            load.tick();
            for handle in &load.handles {
                let drained = handle.submit(IOCTL_KTIMER_WAIT, &wait, room).result();
                assert!(
                    drained.is_some(),
                    "records were ready: the wait completes at once"
                );
            }
        }
        load
    } else {
        let load = Load::new(live, 8192);
        for _ in 0..5 {
            load.tick();
        }
        load
    };
    println!("dpc_runs={}", load.kernel.stats().dpc_runs);
    std::process::exit(0);
}

/// Instructions per expiry from one callgrind run of the child with `live` timers (and, with
/// `wrapped`, a ring that has wrapped: see [`callgrind_child`]).
fn instructions_per_expiry(live: usize, wrapped: bool) -> Option<(f64, u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let out = std::env::temp_dir().join(format!("ktimer-callgrind-{live}-{}", std::process::id()));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--toggle-collect=*timer_dpc*")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .arg("callgrind-child")
        .arg(live.to_string())
        .args(wrapped.then_some("wrapped"))
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let runs: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("dpc_runs="))?
        .trim()
        .parse()
        .ok()?;
    let profile = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    let total: u64 = profile
        .lines()
        .find_map(|line| line.strip_prefix("summary:"))?
        .trim()
        .parse()
        .ok()?;
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let per_expiry = total as f64 / runs as f64;
    Some((per_expiry, total, runs))
}

fn expiry_instructions() {
    println!("## Instructions per expiry (callgrind, DPC routine inclusive)\n");
    println!(
        "| live timers | instructions in the expiry path | DPC runs | per expiry | vs 1 timer |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    let mut base = None;
    let wrapped_label = format!(
        "1, ring wrapped ({WRAPPED_RING} records, drained after each of {WRAPPED_TICKS} ticks)"
    );
    for (live, wrapped) in [(1, false), (100, false), (10_000, false), (1, true)] {
        let label = if wrapped {
            wrapped_label.clone()
        } else {
            live.to_string()
        };
        match instructions_per_expiry(live, wrapped) {
            Some((per_expiry, total, runs)) => {
                let base = *base.get_or_insert(per_expiry);
                println!(
                    "| {label} | {total} | {runs} | {per_expiry:.1} | {:.3}x |",
                    per_expiry / base
                );
            }
            None => println!("| {label} | (valgrind unavailable or failed) | | | |"),
        }
    }
    println!(
        "\nThe first three rows: 5 ticks, every record the first in its ring slot (a ring of \
         8,192). The last: a handle's steady state, records overwriting slots.\n"
    );
}

fn expiry_allocations() {
    println!("## Heap allocations per expiry (counting allocator)\n");
    println!("| live timers | parked waits | DPC runs | allocations in DPCs | per expiry |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for (live, with_waits) in [(10_000, false), (10_000, true)] {
        let load = Load::new(live, 8192);
        load.tick();
        // Parked waits: each completes after one tick's records of its handle.
        let waits: Vec<_> = if with_waits {
            load.handles
                .iter()
                .flat_map(|handle| {
                    (0..4).map(move |_| {
                        handle.submit(
                            IOCTL_KTIMER_WAIT,
                            &wait_input(1000),
                            wait_response_len(1000).unwrap_or(0),
                        )
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let runs_before = load.kernel.stats().dpc_runs;
        let allocations_before = EXPIRY_ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..4 {
            load.tick();
        }
        let runs = load.kernel.stats().dpc_runs - runs_before;
        let allocations = EXPIRY_ALLOCATIONS.load(Ordering::SeqCst) - allocations_before;
        let parked = waits.len();
        let completed = waits.iter().filter(|io| io.result().is_some()).count();
        assert_eq!(
            completed, parked,
            "every parked wait completed in the measured ticks"
        );
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let per_expiry = allocations as f64 / runs as f64;
        println!("| {live} | {parked} | {runs} | {allocations} | {per_expiry} |");
        drop(waits);
        drop(load.handles);
        drop(load.host);
    }
    println!();
}

/// How the records are read after each tick.
#[derive(Clone, Copy)]
enum Reading {
    /// One wait per handle takes every ready record.
    Batched,
    /// One wait per record.
    OnePerWait,
}

/// Returns (records, total seconds, seconds in the wait IOCTLs).
fn deliver(reading: Reading, ticks: usize) -> (u64, f64, f64) {
    const LIVE: usize = 1000;
    const HANDLES: usize = 4;
    let kernel = kernel();
    let host = Driver::load(
        &kernel,
        ServiceConfig {
            event_ring_capacity: 1024,
            ..ServiceConfig::default()
        },
    );
    let handles: Vec<_> = (0..HANDLES).map(|_| host.open()).collect();
    let create = encode(&periodic_1ms());
    for index in 0..LIVE {
        let done = handles[index % HANDLES]
            .submit(IOCTL_KTIMER_CREATE, &create, 16)
            .result()
            .expect("completes");
        assert_eq!(done.status, STATUS_SUCCESS);
    }
    let per_handle = LIVE / HANDLES;
    let wait_one = wait_input(1);
    let mut records = 0u64;
    let mut in_waits = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..ticks {
        kernel.advance(Duration::from_millis(1));
        let reading_started = Instant::now();
        for handle in &handles {
            let (waits, capacity) = match reading {
                Reading::Batched => (1, per_handle),
                Reading::OnePerWait => (per_handle, 1),
            };
            for _ in 0..waits {
                let done = handle
                    .submit(
                        IOCTL_KTIMER_WAIT,
                        &wait_one,
                        wait_response_len(capacity).unwrap_or(0),
                    )
                    .result()
                    .expect("records were ready");
                let batch = WaitBatch::decode(&done.output).expect("a wait response");
                records += u64::from(batch.response.record_count);
            }
        }
        in_waits += reading_started.elapsed();
    }
    let total = started.elapsed();
    assert_eq!(records, u64::try_from(LIVE * ticks).unwrap_or(u64::MAX));
    drop(handles);
    drop(host);
    (records, total.as_secs_f64(), in_waits.as_secs_f64())
}

/// The simulator alone: 1,000 periodic 1 ms KTIMERs whose DPC routine does nothing, set
/// through the simulated kernel directly (no driver). Returns (DPC runs, seconds).
fn simulator_floor(execution: Execution, ticks: usize) -> (u64, f64) {
    unsafe extern "C" fn empty_dpc(
        _dpc: *mut KDPC,
        _context: PVOID,
        _argument1: PVOID,
        _argument2: PVOID,
    ) {
    }
    let kernel = kernel_with(execution);
    let entered = kernel.enter();
    let mut objects: Vec<Box<(KTIMER, KDPC)>> = (0..1000).map(|_| Box::default()).collect();
    for pair in &mut objects {
        let (timer, dpc) = &mut **pair;
        // SAFETY: a valid, exclusively borrowed KTIMER that outlives its use (freed below,
        // after it is cancelled and the DPCs are flushed).
        unsafe { ntddk::KeInitializeTimer(timer) };
        // SAFETY: as above, for the KDPC; the routine ignores its arguments.
        unsafe { ntddk::KeInitializeDpc(dpc, Some(empty_dpc), std::ptr::null_mut()) };
        let due = LARGE_INTEGER { QuadPart: -MS };
        // SAFETY: both objects were initialised above and stay valid until cancelled.
        unsafe { ntddk::KeSetTimerEx(timer, due, 1, dpc) };
    }
    let runs_before = kernel.stats().dpc_runs;
    let started = Instant::now();
    for _ in 0..ticks {
        kernel.advance(Duration::from_millis(1));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let runs = kernel.stats().dpc_runs - runs_before;
    for pair in &mut objects {
        // SAFETY: an initialised KTIMER.
        unsafe { ntddk::KeCancelTimer(&raw mut pair.0) };
    }
    // SAFETY: PASSIVE_LEVEL on a bound thread; waits for every queued DPC.
    unsafe { ntddk::KeFlushQueuedDpcs() };
    drop(objects);
    drop(entered);
    (runs, elapsed)
}

/// One delivery measurement: records, total seconds, seconds in the wait IOCTLs.
#[derive(Clone, Copy)]
struct Delivery {
    records: u64,
    total: f64,
    in_waits: f64,
}

impl Delivery {
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn end_to_end(self) -> f64 {
        self.records as f64 / self.total
    }

    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn delivery_only(self) -> f64 {
        self.records as f64 / self.in_waits
    }

    /// Nanoseconds per record outside the waits (advancing time: expiry, DPC, recording).
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn expiry_ns(self) -> f64 {
        (self.total - self.in_waits) * 1e9 / self.records as f64
    }

    /// Nanoseconds per record in the waits.
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn wait_ns(self) -> f64 {
        self.in_waits * 1e9 / self.records as f64
    }
}

fn met(condition: bool) -> &'static str {
    if condition { "met" } else { "not met" }
}

/// The per-record cost split and the goal lines, from the delivery figures.
fn per_record_and_goals(batched: Delivery, single: Delivery, inline_floor: f64) {
    let end_to_end_ratio = batched.end_to_end() / single.end_to_end();
    let delivery_ratio = batched.delivery_only() / single.delivery_only();
    println!(
        "Per record (ns): outside the waits (advancing time: expiry, DPC, record) and in the waits\n"
    );
    println!("| reading | outside the waits | in the waits |");
    println!("| --- | ---: | ---: |");
    println!(
        "| batched | {:.0} | {:.0} |",
        batched.expiry_ns(),
        batched.wait_ns()
    );
    println!(
        "| one record per wait | {:.0} | {:.0} |\n",
        single.expiry_ns(),
        single.wait_ns()
    );
    println!("Goals (from the figures above):\n");
    println!(
        "- simulator alone >= 10^6 empty DPCs/s: {inline_floor:.0}/s inline: {}",
        met(inline_floor >= 1e6)
    );
    println!(
        "- batched >= 10^6 events/s end to end: {:.0}/s: {}",
        batched.end_to_end(),
        met(batched.end_to_end() >= 1e6)
    );
    println!(
        "- batched >= 10x one event per wait: {end_to_end_ratio:.1}x end to end: {}; {delivery_ratio:.1}x delivery only: {}",
        met(end_to_end_ratio >= 10.0),
        met(delivery_ratio >= 10.0)
    );
    // Both readings pay the same expiry per record; only the wait part differs. So the
    // end-to-end ratio cannot exceed (expiry + one-record wait) / expiry, whatever batching
    // saves.
    let bound = (batched.expiry_ns() + single.wait_ns()) / batched.expiry_ns();
    println!(
        "- the end-to-end ratio's ceiling with this expiry cost, (outside + one-record wait) / outside: {bound:.1}x\n"
    );
}

fn delivery() {
    /// Ticks of 1,000 expirations each for the inline figures (2 million events).
    const TICKS: usize = 2000;
    /// The threaded simulator takes a thread hand-off per DPC: fewer ticks.
    const THREADED_TICKS: usize = 200;
    println!("## Events delivered per second (virtual time, 1,000 live 1 ms timers, 4 handles)\n");
    println!("Each row: the faster of two runs.\n");
    println!(
        "| reading | records | total s | events/s end to end | s in waits | events/s delivery only |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut rates = Vec::new();
    for (name, reading) in [
        ("batched (one wait per handle per tick)", Reading::Batched),
        ("one record per wait", Reading::OnePerWait),
    ] {
        // The faster of two runs: the machine is shared, and load only ever slows a run.
        let run = (0..2)
            .map(|_| {
                let (records, total, in_waits) = deliver(reading, TICKS);
                Delivery {
                    records,
                    total,
                    in_waits,
                }
            })
            .min_by(|a, b| a.total.total_cmp(&b.total))
            .expect("two runs");
        let Delivery {
            records,
            total,
            in_waits,
        } = run;
        rates.push(run);
        println!(
            "| {name} | {records} | {total:.3} | {:.0} | {in_waits:.3} | {:.0} |",
            run.end_to_end(),
            run.delivery_only()
        );
    }
    let mut floors = Vec::new();
    for (name, execution, ticks) in [
        ("inline", Execution::Inline, TICKS),
        (
            "threaded (a thread hand-off per DPC)",
            Execution::Threaded,
            THREADED_TICKS,
        ),
    ] {
        let (runs, seconds) = (0..2)
            .map(|_| simulator_floor(execution, ticks))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("two runs");
        #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let floor = runs as f64 / seconds;
        floors.push(floor);
        println!(
            "| simulator alone, {name}: 1,000 KTIMERs, empty DPC routine, no driver | {runs} DPCs | {seconds:.3} | {floor:.0} | | |"
        );
    }
    let ([batched, single], [inline_floor, threaded_floor]) = (rates.as_slice(), floors.as_slice())
    else {
        return;
    };
    let end_to_end_ratio = batched.end_to_end() / single.end_to_end();
    let delivery_ratio = batched.delivery_only() / single.delivery_only();
    println!(
        "\nbatched / one per wait: {end_to_end_ratio:.1}x end to end, {delivery_ratio:.1}x delivery only"
    );
    println!(
        "simulator alone, inline / threaded: {:.1}x\n",
        inline_floor / threaded_floor
    );
    per_record_and_goals(*batched, *single, *inline_floor);
}

/// `count` pseudo-random inputs of 0-511 bytes (xorshift64, fixed seed): the same inputs in
/// every run and mode.
fn pseudo_random_inputs(count: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = usize::try_from(next() % 512).unwrap_or(0);
            (0..len).map(|_| next().to_le_bytes()[0]).collect()
        })
        .collect()
}

/// Inputs per second through the fuzz harness with `execution` (each input run `rounds`
/// times).
fn fuzz_rate(execution: Execution, inputs: &[Vec<u8>], rounds: usize) -> (usize, f64) {
    let fuzzer = ktimer_fuzz::Fuzzer::with_execution(execution);
    let started = Instant::now();
    for _ in 0..rounds {
        for input in inputs {
            black_box(fuzzer.run(input));
        }
    }
    (inputs.len() * rounds, started.elapsed().as_secs_f64())
}

fn fuzz_harness() {
    println!("## Fuzz harness inputs per second (native, no libFuzzer, no sanitizer)\n");
    println!(
        "Each set is run with inline and with threaded execution, alternately, twice; the \
         better of the two runs of each is shown.\n"
    );
    let seeds: Vec<Vec<u8>> = ktimer_fuzz::seeds::all()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let random = pseudo_random_inputs(1000);
    println!("| inputs | execution | inputs run | s | inputs/s | inline / threaded |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (set, inputs, inline_rounds, threaded_rounds) in [
        (
            "the 10 seed scripts (deep states: timers, waits, advances)",
            &seeds,
            300,
            30,
        ),
        (
            "1,000 pseudo-random inputs of 0-511 bytes (fixed seed)",
            &random,
            3,
            1,
        ),
    ] {
        let mut best = [0.0_f64; 2];
        let mut shown = [(0, 0.0); 2];
        for _ in 0..2 {
            for (index, (execution, rounds)) in [
                (Execution::Inline, inline_rounds),
                (Execution::Threaded, threaded_rounds),
            ]
            .into_iter()
            .enumerate()
            {
                let (runs, seconds) = fuzz_rate(execution, inputs, rounds);
                #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
                let rate = runs as f64 / seconds;
                if rate > best[index] {
                    best[index] = rate;
                    shown[index] = (runs, seconds);
                }
            }
        }
        println!(
            "| {set} | inline | {} | {:.3} | {:.0} | {:.1}x |",
            shown[0].0,
            shown[0].1,
            best[0],
            best[0] / best[1]
        );
        println!(
            "| | threaded (processor and KMDF driver threads: a hand-off per DPC and per \
             request) | {} | {:.3} | {:.0} | |",
            shown[1].0, shown[1].1, best[1]
        );
    }
    println!();
}

thread_local! {
    /// The last completion of a [`DirectRequest`]: status, bytes and the output.
    static COMPLETED: RefCell<(NtStatus, usize, [u8; 128])> = const { RefCell::new((0, 0, [0; 128])) };
}

/// An allocation-free request for calling `dispatch` directly.
struct DirectRequest {
    input: [u8; 64],
    input_len: usize,
    output: [u8; 128],
    output_len: usize,
}

impl DirectRequest {
    fn new(input: &[u8], output_len: usize) -> Self {
        let mut request = Self {
            input: [0; 64],
            input_len: input.len(),
            output: [0; 128],
            output_len,
        };
        request.input[..input.len()].copy_from_slice(input);
        request
    }
}

impl IoRequest for DirectRequest {
    fn input(&self) -> &[u8] {
        &self.input[..self.input_len]
    }

    fn output(&mut self) -> &mut [u8] {
        &mut self.output[..self.output_len]
    }

    fn complete(self, status: NtStatus, information: usize) {
        COMPLETED.with(|cell| *cell.borrow_mut() = (status, information, self.output));
    }
}

impl CancelableRequest for DirectRequest {
    fn key(&self) -> usize {
        0
    }

    fn mark_cancelable(&mut self) -> bool {
        true
    }

    fn claim(&mut self) -> bool {
        true
    }
}

fn time_per_op(iterations: u32, mut op: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        op();
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(iterations)
}

/// A request to time: name, code, input for the direct service, input for the driver
/// loaded on the KMDF model (its own timer id), output length.
type DispatchCase<'a> = (&'static str, u32, &'a [u8], &'a [u8], usize);

fn dispatch_cost() {
    const ITERATIONS: u32 = 200_000;
    println!("## IOCTL dispatch cost (ns per request)\n");
    println!("| request | `ioctl::dispatch` direct | through `DriverEntry` on the KMDF model |");
    println!("| --- | ---: | ---: |");
    let kernel = kernel();
    let _entered = kernel.enter();
    let passive = PassiveLevel::current().expect("a bound thread is at PASSIVE_LEVEL");
    let service: Service<Pended<DirectRequest>> =
        Service::new(ServiceConfig::default(), &passive).expect("loads");
    let file = service.open(&passive).expect("opens");
    let create = encode(&periodic_1ms());
    let status = dispatch(
        &service,
        &file,
        IOCTL_KTIMER_CREATE,
        DirectRequest::new(&create, 16),
        &passive,
    );
    assert_eq!(status, STATUS_SUCCESS);
    let timer_id = COMPLETED.with(|cell| {
        CreateResponse::decode(&cell.borrow().2[..16])
            .expect("a create response")
            .timer_id
    });
    let query = encode(&TimerRequest {
        header: Header::of::<TimerRequest>(),
        timer_id,
    });

    let host = Driver::load(&kernel, ServiceConfig::default());
    let handle = host.open();
    let host_timer = handle
        .submit(IOCTL_KTIMER_CREATE, &create, 16)
        .result()
        .expect("completes");
    let host_query = encode(&TimerRequest {
        header: Header::of::<TimerRequest>(),
        timer_id: CreateResponse::decode(&host_timer.output)
            .expect("a create response")
            .timer_id,
    });

    let cases: [DispatchCase<'_>; 3] = [
        ("GET_INFO", IOCTL_KTIMER_GET_INFO, &[], &[], 72),
        (
            "QUERY (live timer)",
            IOCTL_KTIMER_QUERY,
            &query,
            &host_query,
            104,
        ),
        ("unknown code (rejected)", 0x1234, &[], &[], 0),
    ];
    for (name, code, input, host_input, output_len) in cases {
        let direct = time_per_op(ITERATIONS, || {
            let status = dispatch(
                &service,
                &file,
                code,
                DirectRequest::new(input, output_len),
                &passive,
            );
            black_box(status);
        });
        let through_host = time_per_op(ITERATIONS, || {
            black_box(handle.submit(code, host_input, output_len).result());
        });
        println!("| {name} | {direct:.0} | {through_host:.0} |");
    }
    println!();
    drop(handle);
    // The direct service first: the driver's unload runs the kernel's unload checks, which
    // see every timer of this kernel.
    service.close(file, &passive);
    service.unload(&passive);
    drop(host);
}

/// The number after `"key":` in `json`, searching from the start.
fn number_after(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `"key":"` in `json`.
fn string_after<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &json[at..];
    Some(&rest[..rest.find('"')?])
}

/// One timer line of the periodic comparison: name, p50, p99, max (µs), samples.
fn timer_line(json: &str) -> Option<(String, f64, f64, f64, f64)> {
    Some((
        string_after(json, "timer")?.to_owned(),
        number_after(json, "p50")?,
        number_after(json, "p99")?,
        number_after(json, "max")?,
        number_after(json, "samples")?,
    ))
}

/// Runs the Wine rig with the handshake (round trip) and periodic (comparison) scenarios and
/// returns its JSON report, or why not.
fn wine_report() -> Result<String, String> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("bash")
        .arg(repo.join("tests/wine/run.sh"))
        .args([
            "--",
            "--scenario",
            "handshake",
            "--scenario",
            "periodic",
            "--json",
            "--quiet",
        ])
        .output()
        .map_err(|error| format!("cannot start bash: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let run_dir = stdout
        .lines()
        .find_map(|line| {
            line.split_once("run directory: ")
                .map(|(_, dir)| dir.trim())
        })
        .ok_or_else(|| format!("the rig printed no run directory: {stdout}"))?;
    if !output.status.success() {
        return Err(format!("the rig failed ({}); see {run_dir}", output.status));
    }
    let session = std::fs::read_to_string(std::path::Path::new(run_dir).join("session.log"))
        .map_err(|error| format!("no session log in {run_dir}: {error}"))?;
    session
        .lines()
        .find(|line| line.starts_with("{\"backend\""))
        .map(str::to_owned)
        .ok_or_else(|| format!("no JSON report in {run_dir}/session.log"))
}

fn wine() {
    println!(
        "## Under Wine: IOCTL round trip and periodic lateness (Wine on Linux, not Windows)\n"
    );
    let report = match wine_report() {
        Ok(report) => report,
        Err(why) => {
            println!("(not measured: {why})\n");
            return;
        }
    };
    let wine_version = Command::new("wine")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "{wine_version}; `tests/wine/run.sh -- --scenario handshake --scenario periodic --json`: \
         ktimer-test.exe (x86_64-pc-windows-gnu) against ktimer.sys (the WDM test front end) \
         in Wine's ntoskrnl.exe.\n"
    );
    match report.find("get-info round trip over") {
        Some(at) => {
            let text = &report[at..];
            let text = &text[..text.find('"').unwrap_or(text.len())];
            println!("- {text} (wall time in the app: DeviceIoControl to completion)");
        }
        None => println!("- get-info round trip: not in the report"),
    }
    let comparison = report.find("\"comparison\"").map(|at| &report[at..]);
    let lines = comparison.and_then(|json| {
        let kernel = json.find("\"kernel\"").map(|at| &json[at..])?;
        let user = json.find("\"user\"").map(|at| &json[at..])?;
        Some((timer_line(kernel)?, timer_line(user)?))
    });
    match lines {
        Some((kernel, user)) => {
            println!(
                "- periodic 10 ms, lateness per expiration in one run (µs):\n\n\
                 | timer | samples | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |"
            );
            for (name, p50, p99, max, samples) in [kernel, user] {
                println!("| {name} | {samples:.0} | {p50:.1} | {p99:.1} | {max:.1} |");
            }
        }
        None => println!("- periodic comparison: not in the report"),
    }
    println!();
}

/// The libFuzzer process's rate in each configuration (`tests/fuzz/rate.sh`: the threaded
/// rig as before inline execution, the default address-sanitizer build, the campaign
/// build), 20 s per run, two alternating rounds. Skipped with a note when cargo-fuzz or
/// nightly is missing.
fn libfuzzer() {
    println!("## libFuzzer process: inputs per second, before and after inline execution\n");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("bash")
        .arg(repo.join("tests/fuzz/rate.sh"))
        .args(["20", "2"])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            println!(
                "`bash tests/fuzz/rate.sh 20 2`: one libFuzzer process per row, from a scratch \
                 copy of the committed corpus, `-seed=1`.\n"
            );
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        Ok(out) => println!(
            "(not measured: tests/fuzz/rate.sh failed ({}); it needs cargo-fuzz and nightly, \
             docs/EVIDENCE.md section 1)\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(error) => println!("(not measured: cannot start bash: {error})"),
    }
    println!();
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!("machine: {cores} logical CPUs, {cpu}\n");
}

pub(crate) fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, live, rest @ ..] = args.as_slice()
        && mode == "callgrind-child"
    {
        return callgrind_child(
            live.parse().unwrap_or(1),
            rest.iter().any(|arg| arg == "wrapped"),
        );
    }
    // `cargo bench -p ktimer-bench -- delivery fuzz` runs only those sections (cargo passes
    // `--bench` itself); no section named: all of them, which is what BENCHMARKS.md shows.
    let sections: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.contains(&name);
    machine();
    let all: [(&str, fn()); 7] = [
        ("instructions", expiry_instructions),
        ("allocations", expiry_allocations),
        ("delivery", delivery),
        ("fuzz", fuzz_harness),
        ("libfuzzer", libfuzzer),
        ("dispatch", dispatch_cost),
        ("wine", wine),
    ];
    for (name, section) in all {
        if wanted(name) {
            section();
        }
    }
    ExitCode::SUCCESS
}
