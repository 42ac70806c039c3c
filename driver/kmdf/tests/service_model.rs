//! Model-based random test: seeded random sequences of create / set / cancel / query / close
//! / wait / `CancelIoEx` / handle close, virtual-time advances, DPCs left queued across
//! ticks, system-clock jumps forward and back (also inside the window between a timer's
//! expiry and its DPC run), and absolute due times in the past (minutes to centuries), run
//! against the driver (through [`adapter`]) and against a reference model of the documented
//! semantics ([`reference`]). After every step every observable is compared: statuses,
//! `was_armed`, query responses (state, signaled, due time, counts, lateness), the records
//! each wait completes with and their order, overruns, which waits are still pending.
//!
//! Expiration counts are checked against the **simulated kernel's own expiry events**
//! (`Kernel::record_expiries`): after every step the kernel's expiries must be exactly the
//! model's kernel expiries, the model's service takes each run's count and due time from
//! those expiries (only an absolute arming whose clock moved before its first run uses
//! PROTOCOL.md's conservative count), no record or query counts more expirations than the
//! kernel produced, and no record is dated after its run outside that documented case.
//!
//! `cargo test` runs a bounded number of cases (a few seconds). A long run:
//! `KTIMER_MODEL_CASES=20000 KTIMER_MODEL_SEED=1 cargo test --release -p ktimer --test
//! service_model -- --nocapture` (counts in docs/EVIDENCE.md). A failure prints the seed,
//! the case, the steps that led to it and the first difference; `KTIMER_MODEL_TRACE=1` also
//! prints the model's kernel expiries and DPC runs; `KTIMER_MODEL_WITHOUT=...` narrows the
//! operations (see `Case::generate`); `KTIMER_MODEL_CASE=n` runs only case `n`. Both tests
//! read `KTIMER_MODEL_CASES` (cases per test, default 250) and `KTIMER_MODEL_SEED`;
//! docs/EVIDENCE.md §6 records long runs.
#![cfg(not(windows))]
#![allow(
    clippy::too_many_lines,
    reason = "`Case::step` is one match over the operations, each arm short"
)]

#[path = "model/adapter.rs"]
mod adapter;
#[path = "model/reference.rs"]
mod reference;
mod rng;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use kernel_sim::{Config, DEFAULT_BOOT_SYSTEM_TIME, Kernel, ObjectId};
use ktimer_abi::codec::{WaitBatch, wait_response_len};
use ktimer_abi::ioctl::{
    IOCTL_KTIMER_CANCEL, IOCTL_KTIMER_CLOSE, IOCTL_KTIMER_CREATE, IOCTL_KTIMER_GET_INFO,
    IOCTL_KTIMER_QUERY, IOCTL_KTIMER_SET, IOCTL_KTIMER_WAIT,
};
use ktimer_abi::status::{NtStatus, STATUS_SUCCESS};
use ktimer_abi::{
    ArmResponse, CreateRequest, CreateResponse, Decode, Encode, Header, InfoResponse,
    MODE_ONE_SHOT, MODE_PERIODIC, QueryResponse, SCHEDULE_ABSOLUTE, Schedule, SetRequest,
    TIMER_TYPE_NOTIFICATION, TIMER_TYPE_SYNCHRONIZATION, TimerRequest, WaitRequest,
};
use ktimer_service::ServiceConfig;
use rng::Rng;

use adapter::{Driver, Handle, Io};
use reference::{Limits, MS, Model, WaitOutcome};

/// Handles open at once.
const HANDLES: usize = 2;

/// One step of a sequence.
#[derive(Clone, Debug)]
enum Op {
    Create {
        handle: usize,
        timer_type: u32,
        schedule: Schedule,
    },
    Set {
        handle: usize,
        id: u64,
        schedule: Schedule,
    },
    Cancel {
        handle: usize,
        id: u64,
    },
    Query {
        handle: usize,
        id: u64,
    },
    Close {
        handle: usize,
        id: u64,
    },
    GetInfo {
        handle: usize,
    },
    Wait {
        handle: usize,
        min_records: usize,
        capacity: usize,
    },
    CancelIo {
        io: usize,
    },
    ReopenHandle {
        handle: usize,
    },
    Advance {
        ms: i64,
    },
    AdvanceDpcsQueued {
        ms: i64,
    },
    SetSystemTime {
        delta: i64,
    },
    /// Time moves with DPCs left queued (timers expire, their DPCs wait), then the system
    /// clock moves: a clock change inside the window between an expiry and its DPC run.
    ExpireThenSetClock {
        ms: i64,
        delta: i64,
    },
}

/// One run: the kernel, the driver on it, the model, and the waits in flight.
struct Case {
    kernel: Kernel,
    driver: Driver,
    handles: Vec<Option<Handle>>,
    model: Model,
    ios: Vec<Io>,
    log: Vec<String>,
    without: Option<String>,
    /// The kernel's timer objects, by the driver timer id whose create initialised them.
    kernel_timers: HashMap<ObjectId, u64>,
}

fn encode<T: Encode>(message: &T) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    let len = message.encode(&mut out).expect("encodes");
    out.truncate(len);
    out
}

fn timer_request(id: u64) -> Vec<u8> {
    encode(&TimerRequest {
        header: Header::of::<TimerRequest>(),
        timer_id: id,
    })
}

fn status_name(status: NtStatus) -> String {
    format!("{:#010x}", status.cast_unsigned())
}

fn wait_outcome(status: NtStatus, output: &[u8]) -> Result<WaitOutcome, String> {
    if status != STATUS_SUCCESS {
        return Ok(WaitOutcome {
            status,
            overruns: 0,
            records: Vec::new(),
        });
    }
    let batch = WaitBatch::decode(output).map_err(|error| format!("bad wait output: {error:?}"))?;
    Ok(WaitOutcome {
        status,
        overruns: batch.response.overruns,
        records: batch.records().collect(),
    })
}

impl Case {
    fn new(tick: u32, limits: Limits, config: ServiceConfig) -> Self {
        let kernel = Kernel::new(Config {
            processors: 1,
            time_increment: tick,
            trace: false,
            ..Config::default()
        });
        kernel.record_expiries(true);
        let driver = Driver::load(&kernel, config);
        let handles = (0..HANDLES)
            .map(|_| Some(driver.open().expect("a handle opens")))
            .collect();
        Self {
            kernel,
            driver,
            handles,
            model: Model::new(limits, DEFAULT_BOOT_SYSTEM_TIME, HANDLES),
            ios: Vec::new(),
            log: Vec::new(),
            without: std::env::var("KTIMER_MODEL_WITHOUT").ok(),
            kernel_timers: HashMap::new(),
        }
    }

    fn handle(&self, index: usize) -> &Handle {
        self.handles[index].as_ref().expect("open handle")
    }

    fn control(
        &self,
        handle: usize,
        code: u32,
        input: &[u8],
        output: usize,
    ) -> (NtStatus, Vec<u8>) {
        self.handle(handle)
            .submit(code, input, output)
            .result()
            .expect("completes at once")
    }

    /// A random schedule the driver accepts.
    fn schedule(&self, rng: &mut Rng) -> Schedule {
        let periodic = rng.chance(40);
        let (flags, due_time) = if rng.chance(35) && !self.without("absolute") {
            let now = self.model.system_now();
            let due = if rng.chance(25) && !self.without("past") {
                // In the past: minutes, hours, years or centuries ago (down to 100 ns after
                // 1601, the earliest time accepted).
                let minute = 60 * 1_000 * MS;
                let year = 365 * 24 * 60 * minute;
                match rng.below(4) {
                    0 => now - rng.range(1, 59) * minute,
                    1 => now - rng.range(60, 60 * 24) * minute,
                    2 => now - rng.range(1, 99) * year,
                    _ => now - rng.range(100, 500) * year,
                }
            } else {
                now + rng.range(-20, 40) * MS
            };
            (SCHEDULE_ABSOLUTE, due.max(1))
        } else {
            (0, rng.range(0, 40) * MS)
        };
        Schedule {
            mode: if periodic {
                MODE_PERIODIC
            } else {
                MODE_ONE_SHOT
            },
            flags,
            due_time,
            period_ms: if periodic {
                i32::try_from(rng.range(1, 25)).unwrap()
            } else {
                0
            },
            tolerable_delay_ms: 0,
        }
    }

    /// An id to name: mostly a live one of the handle, sometimes a closed one, another
    /// handle's, or one never issued.
    fn id(&self, rng: &mut Rng, handle: usize) -> u64 {
        let choice = rng.below(100);
        let live = self.model.live_ids(handle);
        let closed = self.model.closed_ids(handle);
        let other = self.model.live_ids((handle + 1) % HANDLES);
        let picked = if choice < 75 {
            rng.pick(live)
        } else if choice < 87 {
            rng.pick(closed)
        } else if choice < 95 {
            rng.pick(other)
        } else {
            Some(rng.next() & 0xFFFF_FFFF_FFFF)
        };
        picked.or_else(|| rng.pick(live)).unwrap_or(0)
    }

    fn generate(&self, rng: &mut Rng) -> Op {
        let handle = usize::try_from(rng.below(HANDLES as u64)).unwrap();
        let op = self.generate_any(rng, handle);
        // `KTIMER_MODEL_WITHOUT=clock,delay,absolute,crowd` (any of them) narrows a run to a
        // class of behaviour: no system-clock changes, no DPC left queued across ticks, no
        // absolute due times, at most one live timer at a time.
        match op {
            Op::SetSystemTime { .. } if self.without("clock") => Op::Advance { ms: 1 },
            Op::AdvanceDpcsQueued { .. } if self.without("delay") => Op::Advance { ms: 1 },
            Op::ExpireThenSetClock { .. } if self.without("window") => Op::Advance { ms: 1 },
            Op::Create { .. }
                if self.without("crowd")
                    && (0..HANDLES).any(|other| !self.model.live_ids(other).is_empty()) =>
            {
                Op::Advance { ms: 1 }
            }
            _ => op,
        }
    }

    fn without(&self, class: &str) -> bool {
        self.without
            .as_deref()
            .is_some_and(|list| list.split(',').any(|item| item == class))
    }

    fn generate_any(&self, rng: &mut Rng, handle: usize) -> Op {
        match rng.below(100) {
            0..=13 => Op::Create {
                handle,
                timer_type: if rng.chance(30) {
                    TIMER_TYPE_SYNCHRONIZATION
                } else {
                    TIMER_TYPE_NOTIFICATION
                },
                schedule: self.schedule(rng),
            },
            14..=27 => Op::Set {
                handle,
                id: self.id(rng, handle),
                schedule: self.schedule(rng),
            },
            28..=34 => Op::Cancel {
                handle,
                id: self.id(rng, handle),
            },
            35..=43 => Op::Query {
                handle,
                id: self.id(rng, handle),
            },
            44..=47 => Op::Close {
                handle,
                id: self.id(rng, handle),
            },
            48..=49 => Op::GetInfo { handle },
            50..=59 => Op::Wait {
                handle,
                min_records: usize::try_from(rng.range(1, 3)).unwrap(),
                capacity: usize::try_from(rng.range(1, 4)).unwrap(),
            },
            60..=63 => match rng.pick(&self.model.pending_ios()) {
                Some(io) => Op::CancelIo { io },
                None => Op::Advance { ms: 1 },
            },
            64..=65 => Op::ReopenHandle { handle },
            66..=81 => Op::Advance {
                ms: rng.range(1, 40),
            },
            82..=88 => Op::AdvanceDpcsQueued {
                ms: rng.range(1, 40),
            },
            89..=92 => Op::ExpireThenSetClock {
                ms: rng.range(1, 40),
                delta: match rng.below(3) {
                    0 => 10_000 * MS,
                    1 => -10_000 * MS,
                    _ => rng.range(-30, 30) * MS,
                },
            },
            _ => Op::SetSystemTime {
                delta: match rng.below(4) {
                    0 => 10_000 * MS,
                    1 => -10_000 * MS,
                    _ => rng.range(-30, 30) * MS,
                },
            },
        }
    }

    /// Runs one step on both sides and compares what can be observed right after it.
    fn step(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Create {
                handle,
                timer_type,
                schedule,
            } => {
                let request = CreateRequest {
                    header: Header::of::<CreateRequest>(),
                    timer_type,
                    flags: 0,
                    schedule,
                };
                let (status, output) =
                    self.control(handle, IOCTL_KTIMER_CREATE, &encode(&request), 16);
                let issued = (status == STATUS_SUCCESS)
                    .then(|| CreateResponse::decode(&output).map(|r| r.timer_id))
                    .transpose()
                    .map_err(|error| format!("bad create output: {error:?}"))?;
                let expected = self.model.create(handle, timer_type, schedule, issued)?;
                compare(
                    "create status",
                    &status_name(expected),
                    &status_name(status),
                )?;
                if let Some(id) = issued {
                    self.log.push(format!("    -> id {id:#x}"));
                    let object = self
                        .kernel
                        .last_timer_initialized()
                        .ok_or("create initialised no KTIMER")?;
                    self.kernel_timers.insert(object, id);
                }
            }
            Op::Set {
                handle,
                id,
                schedule,
            } => {
                let request = SetRequest {
                    header: Header::of::<SetRequest>(),
                    timer_id: id,
                    schedule,
                };
                let (status, output) =
                    self.control(handle, IOCTL_KTIMER_SET, &encode(&request), 16);
                let expected = self.model.set(handle, id, schedule);
                compare_arm("set", expected, status, &output)?;
            }
            Op::Cancel { handle, id } => {
                let (status, output) =
                    self.control(handle, IOCTL_KTIMER_CANCEL, &timer_request(id), 16);
                let expected = self.model.cancel(handle, id);
                compare_arm("cancel", expected, status, &output)?;
            }
            Op::Query { handle, id } => {
                let (status, output) =
                    self.control(handle, IOCTL_KTIMER_QUERY, &timer_request(id), 104);
                let actual = if status == STATUS_SUCCESS {
                    Ok(QueryResponse::decode(&output)
                        .map_err(|error| format!("bad query output: {error:?}"))?)
                } else {
                    Err(status)
                };
                let expected = self.model.query(handle, id);
                compare("query", &format!("{expected:?}"), &format!("{actual:?}"))?;
            }
            Op::Close { handle, id } => {
                let (status, _) = self.control(handle, IOCTL_KTIMER_CLOSE, &timer_request(id), 0);
                let expected = self.model.close_timer(handle, id);
                compare("close status", &status_name(expected), &status_name(status))?;
            }
            Op::GetInfo { handle } => {
                let (status, output) = self.control(handle, IOCTL_KTIMER_GET_INFO, &[], 72);
                compare(
                    "get-info status",
                    &status_name(STATUS_SUCCESS),
                    &status_name(status),
                )?;
                let info = InfoResponse::decode(&output)
                    .map_err(|error| format!("bad info output: {error:?}"))?;
                compare(
                    "get-info clocks (interrupt, system)",
                    // Interrupt time as of the last tick (`KeQueryInterruptTime`), system
                    // time precise (`KeQuerySystemTimePrecise`).
                    &format!("{:?}", (self.model.last_tick, self.model.system_now())),
                    &format!(
                        "{:?}",
                        (
                            i64::try_from(info.interrupt_time).unwrap(),
                            info.system_time
                        )
                    ),
                )?;
            }
            Op::Wait {
                handle,
                min_records,
                capacity,
            } => {
                let request = encode(&WaitRequest {
                    header: Header::of::<WaitRequest>(),
                    min_records: u32::try_from(min_records).unwrap(),
                    reserved: 0,
                });
                let io = self.handle(handle).submit(
                    IOCTL_KTIMER_WAIT,
                    &request,
                    wait_response_len(capacity).unwrap(),
                );
                let number = self.model.wait(handle, min_records, capacity);
                assert_eq!(number, self.ios.len());
                self.ios.push(io);
                self.log.push(format!("    -> io {number}"));
            }
            Op::CancelIo { io } => {
                self.ios[io].cancel();
                self.model.cancel_io(io);
            }
            Op::ReopenHandle { handle } => {
                if let Some(open) = self.handles[handle].take() {
                    open.close();
                }
                self.handles[handle] = Some(
                    self.driver
                        .open()
                        .map_err(|status| format!("reopen failed with {}", status_name(status)))?,
                );
                self.model.reopen_handle(handle);
            }
            Op::Advance { ms } => {
                self.kernel
                    .advance(Duration::from_millis(ms.unsigned_abs()));
                self.model.advance(ms * MS, true);
            }
            Op::AdvanceDpcsQueued { ms } => {
                self.kernel
                    .advance_without_running_dpcs(Duration::from_millis(ms.unsigned_abs()));
                self.model.advance(ms * MS, false);
            }
            Op::SetSystemTime { delta } => {
                let to = self.model.system_now() + delta;
                self.kernel.set_system_time(to);
                self.model.set_system_time(to);
            }
            Op::ExpireThenSetClock { ms, delta } => {
                self.kernel
                    .advance_without_running_dpcs(Duration::from_millis(ms.unsigned_abs()));
                self.model.advance(ms * MS, false);
                self.compare_expiries()?;
                let to = self.model.system_now() + delta;
                self.kernel.set_system_time(to);
                self.model.set_system_time(to);
            }
        }
        self.compare_expiries()?;
        self.compare_waits()?;
        if let Some(record) = self.model.sign_violations.first() {
            return Err(format!("a record is dated after its run: {record:?}"));
        }
        if let Some(invented) = self.model.invented.first() {
            return Err(format!(
                "more expirations than the kernel produced: {invented}"
            ));
        }
        Ok(())
    }

    /// The simulated kernel's own expiries since the last step, against the model's kernel.
    fn compare_expiries(&mut self) -> Result<(), String> {
        let mut kernel: Vec<(u64, i64, i64)> = self
            .kernel
            .take_expiries()
            .into_iter()
            .map(|expiry| {
                let id = self.kernel_timers.get(&expiry.timer).copied().unwrap_or(0);
                (id, i64::try_from(expiry.at).unwrap(), expiry.due)
            })
            .collect();
        let mut model = self.model.take_expiries();
        kernel.sort_unstable();
        model.sort_unstable();
        compare(
            "kernel expiries (timer, tick, latest due covered)",
            &format!("{model:?}"),
            &format!("{kernel:?}"),
        )
    }

    /// Every submitted wait: pending on both sides, or completed identically.
    fn compare_waits(&self) -> Result<(), String> {
        for (number, io) in self.ios.iter().enumerate() {
            let expected = self.model.completions[number].clone();
            let actual = io
                .result()
                .map(|(status, output)| wait_outcome(status, &output))
                .transpose()?;
            if expected != actual {
                return Err(format!(
                    "wait io {number}:\n  model:  {}\n  driver: {}",
                    describe(expected.as_ref()),
                    describe(actual.as_ref())
                ));
            }
        }
        Ok(())
    }

    /// Unload: the device is removed with the handles open, so every pending wait completes
    /// with `STATUS_CANCELLED`; then the handles close (the last close deletes the device,
    /// whose cleanup unloads the service), the driver unloads, and nothing leaks. The
    /// waits' completions are kept until the end: a completed request holds nothing of the
    /// driver.
    fn finish(mut self) -> Result<(), String> {
        self.driver.remove();
        self.model.remove_device();
        self.compare_waits()?;
        for handle in self.handles.drain(..).flatten() {
            handle.close();
        }
        if let Some(bug_check) = self.kernel.bug_check() {
            return Err(format!("bug check: {bug_check:?}"));
        }
        self.driver
            .unload()
            .map_err(|bug_check| format!("unload verifier: {bug_check:?}"))?;
        let pool = self.kernel.pool_stats();
        if pool.outstanding_allocations != 0 {
            return Err(format!("pool left after unload: {pool:?}"));
        }
        Ok(())
    }
}

fn describe(outcome: Option<&WaitOutcome>) -> String {
    match outcome {
        None => "pending".into(),
        Some(outcome) if outcome.status != STATUS_SUCCESS => status_name(outcome.status),
        Some(outcome) => {
            let mut text = format!("SUCCESS, overruns {}, records [", outcome.overruns);
            for record in &outcome.records {
                let _ = write!(
                    text,
                    "\n    id {:#x} seq {} due {} fire {} late {} exp {}",
                    record.timer_id,
                    record.sequence,
                    record.due_time,
                    record.fire_time,
                    record.lateness,
                    record.expirations
                );
            }
            text.push(']');
            text
        }
    }
}

fn compare(what: &str, expected: &str, actual: &str) -> Result<(), String> {
    if expected == actual {
        Ok(())
    } else {
        Err(format!("{what}:\n  model:  {expected}\n  driver: {actual}"))
    }
}

fn compare_arm(
    what: &str,
    (expected_status, expected_was_armed): (NtStatus, bool),
    status: NtStatus,
    output: &[u8],
) -> Result<(), String> {
    compare(
        &format!("{what} status"),
        &status_name(expected_status),
        &status_name(status),
    )?;
    if status == STATUS_SUCCESS {
        let response =
            ArmResponse::decode(output).map_err(|error| format!("bad {what} output: {error:?}"))?;
        compare(
            &format!("{what} was_armed"),
            &expected_was_armed.to_string(),
            &(response.was_armed == 1).to_string(),
        )?;
    }
    Ok(())
}

/// Runs `cases` random cases of `steps` steps from `seed`; panics with the first divergence.
fn run(name: &str, tick: u32, seed: u64, cases: u64, steps: usize) -> (u64, u64) {
    let config = ServiceConfig {
        max_timers_per_handle: 4,
        max_pending_waits_per_handle: 2,
        event_ring_capacity: 6,
        ..ServiceConfig::default()
    };
    let limits = Limits {
        tick: i64::from(tick),
        max_timers_per_handle: config.max_timers_per_handle,
        max_pending_waits_per_handle: config.max_pending_waits_per_handle,
        ring_capacity: config.event_ring_capacity,
    };
    let mut total_steps = 0;
    let only = std::env::var("KTIMER_MODEL_CASE")
        .ok()
        .and_then(|value| value.parse::<u64>().ok());
    for case in 0..cases {
        if only.is_some_and(|only| only != case) {
            continue;
        }
        let case_seed = seed.wrapping_mul(0x1_0000_0001).wrapping_add(case);
        let mut rng = Rng(case_seed);
        let mut run = Case::new(tick, limits, config);
        for step in 0..steps {
            let op = run.generate(&mut rng);
            run.log.push(format!("{step:3}: {op:?}"));
            if let Err(difference) = run.step(&op) {
                let tail = run.log.len().saturating_sub(60);
                panic!(
                    "{name}: seed {seed} case {case} (case seed {case_seed:#x}) step {step}: \
                     {difference}\nlast steps:\n{}",
                    run.log[tail..].join("\n")
                );
            }
            total_steps += 1;
        }
        if let Err(difference) = run.finish() {
            panic!("{name}: seed {seed} case {case}: at unload: {difference}");
        }
    }
    (cases, total_steps)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_sequences_match_the_reference_model_with_a_1_ms_tick() {
    let seed = env_or("KTIMER_MODEL_SEED", 0x5EED);
    let cases = env_or("KTIMER_MODEL_CASES", 250);
    let (cases, steps) = run("1 ms tick", 10_000, seed, cases, 80);
    println!("1 ms tick: {cases} cases, {steps} steps, no difference");
}

#[test]
fn random_sequences_match_the_reference_model_with_the_default_tick() {
    let seed = env_or("KTIMER_MODEL_SEED", 0x5EED);
    let cases = env_or("KTIMER_MODEL_CASES", 250);
    let (cases, steps) = run("15.625 ms tick", 156_250, seed, cases, 80);
    println!("15.625 ms tick: {cases} cases, {steps} steps, no difference");
}
