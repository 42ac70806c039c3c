//! The seed corpus: short scripts that reach each interesting state of the service in a few
//! steps, so the fuzzer starts from deep states rather than from garbage. Written in the
//! interpreter's byte format by a small builder. `cargo test -p ktimer-fuzz --test replay --
//! --ignored write_seed_corpus` writes them to `tests/fuzz/corpus/ioctl/seed-*`; a test checks
//! the committed files are that command's output.

/// Step opcodes of the interpreter (`op % 16`).
mod op {
    pub const STRUCTURED: u8 = 0;
    pub const MUTATED: u8 = 4;
    pub const RAW: u8 = 5;
    pub const WAIT: u8 = 6;
    pub const CANCEL_PENDING: u8 = 8;
    pub const ADVANCE: u8 = 9;
    pub const ADVANCE_WITHOUT_DPCS: u8 = 11;
    pub const CLOSE_HANDLE: u8 = 12;
    pub const OPEN_HANDLE: u8 = 13;
    pub const RUN_UNTIL_IDLE: u8 = 14;
    pub const UNLOAD: u8 = 15;
}

/// Index of each code in `ALL_CODES` (the interpreter's code selector).
mod code {
    pub const GET_INFO: u8 = 0;
    pub const CREATE: u8 = 1;
    pub const SET: u8 = 2;
    pub const CANCEL: u8 = 3;
    pub const QUERY: u8 = 4;
    pub const CLOSE: u8 = 6;
}

/// A script under construction.
#[derive(Default)]
struct Script(Vec<u8>);

/// Header selector: a correct header.
const GOOD_HEADER: u8 = 3;
/// Output selector: exactly the response's size.
const EXACT_OUTPUT: u8 = 0;
/// Timer-id selector: this handle's `n`th timer.
const fn own_timer(n: u8) -> u8 {
    n << 2
}

impl Script {
    fn new(config: u8) -> Self {
        Self(vec![config])
    }

    fn bytes(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A schedule: periodic or one-shot, relative due in ms, period in ms (< 12).
    fn schedule(self, periodic: bool, due_ms: u8, period_ms: u8) -> Self {
        let selector = if periodic { 4 } else { 0 };
        let period_selector = if period_ms == 0 {
            0
        } else {
            1 | (period_ms << 2)
        };
        self.bytes(&[selector, due_ms, period_selector, 0])
    }

    fn create(self, slot: u8, periodic: bool, due_ms: u8, period_ms: u8) -> Self {
        self.bytes(&[op::STRUCTURED, slot, code::CREATE, GOOD_HEADER, 0])
            .schedule(periodic, due_ms, period_ms)
            .bytes(&[EXACT_OUTPUT])
    }

    fn set(self, slot: u8, timer: u8, periodic: bool, due_ms: u8, period_ms: u8) -> Self {
        self.bytes(&[
            op::STRUCTURED,
            slot,
            code::SET,
            GOOD_HEADER,
            own_timer(timer),
        ])
        .schedule(periodic, due_ms, period_ms)
        .bytes(&[EXACT_OUTPUT])
    }

    fn by_id(self, slot: u8, code: u8, timer: u8) -> Self {
        self.bytes(&[
            op::STRUCTURED,
            slot,
            code,
            GOOD_HEADER,
            own_timer(timer),
            EXACT_OUTPUT,
        ])
    }

    /// A wait for `min_records` with room for `capacity` records.
    fn wait(self, slot: u8, min_records: u8, capacity: u8) -> Self {
        self.bytes(&[op::WAIT, slot, min_records << 3, GOOD_HEADER, capacity])
    }

    fn advance(self, millis: u8) -> Self {
        self.bytes(&[op::ADVANCE, 0, millis])
    }
}

/// Service-limit selectors (the script's first byte).
const SMALL: u8 = 1;
const MEDIUM: u8 = 2;
const LARGE: u8 = 3;

/// The seed scripts, named.
#[must_use]
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    let mut all = timer_seeds();
    all.extend(lifecycle_seeds());
    all
}

/// Seeds about one handle's timers and waits.
fn timer_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "info-on-both-handles",
            Script::new(LARGE)
                .bytes(&[op::STRUCTURED, 0, code::GET_INFO, EXACT_OUTPUT])
                .bytes(&[op::STRUCTURED, 1, code::GET_INFO, EXACT_OUTPUT])
                .0,
        ),
        (
            "periodic-with-pending-wait",
            Script::new(LARGE)
                .create(0, true, 2, 1)
                .wait(0, 3, 4)
                .advance(10)
                .by_id(0, code::QUERY, 0)
                .0,
        ),
        (
            "one-shot-cancel-query-close",
            Script::new(MEDIUM)
                .create(1, false, 5, 0)
                .by_id(1, code::CANCEL, 0)
                .by_id(1, code::QUERY, 0)
                .by_id(1, code::CLOSE, 0)
                .by_id(1, code::QUERY, 0)
                .0,
        ),
        (
            "rearm-and-wait-cancelled",
            Script::new(LARGE)
                .create(0, true, 1, 2)
                .wait(0, 5, 8)
                .advance(3)
                .set(0, 0, false, 7, 0)
                .bytes(&[op::CANCEL_PENDING, 0, 0])
                .advance(10)
                .0,
        ),
    ]
}

/// Seeds about handles, limits, unload and malformed input.
fn lifecycle_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "handle-close-with-pending-waits",
            Script::new(LARGE)
                .create(0, true, 1, 1)
                .create(1, true, 1, 3)
                .wait(0, 4, 4)
                .wait(1, 4, 4)
                .advance(2)
                .bytes(&[op::CLOSE_HANDLE, 0])
                .advance(5)
                .bytes(&[op::OPEN_HANDLE, 0])
                .create(0, false, 1, 0)
                .advance(5)
                .0,
        ),
        (
            "quota-and-overrun",
            Script::new(SMALL)
                .create(0, true, 1, 1)
                .create(0, true, 1, 1)
                .create(0, true, 1, 1)
                .wait(0, 1, 1)
                .wait(0, 1, 1)
                .advance(20)
                .wait(0, 1, 4)
                .0,
        ),
        (
            "dpc-across-ticks",
            Script::new(LARGE)
                .create(0, true, 1, 1)
                .bytes(&[op::ADVANCE_WITHOUT_DPCS, 0, 6])
                .by_id(0, code::CLOSE, 0)
                .bytes(&[op::RUN_UNTIL_IDLE, 0])
                .0,
        ),
        (
            "unload-mid-flight",
            Script::new(LARGE)
                .create(0, true, 1, 1)
                .create(1, true, 1, 2)
                .wait(0, 2, 4)
                .wait(1, 8, 8)
                .advance(3)
                .bytes(&[op::UNLOAD, 0, 0])
                .create(0, false, 1, 0)
                .wait(1, 1, 1)
                .advance(5)
                .0,
        ),
        (
            "raw-and-mutated",
            Script::new(MEDIUM)
                .bytes(&[op::RAW, 0, 15, 0x11, 0x22, 0x33, 0x44, 16])
                .bytes(&[
                    1,
                    0,
                    0,
                    0,
                    16,
                    0,
                    0,
                    0,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    EXACT_OUTPUT,
                ])
                .bytes(&[op::MUTATED, 1, code::CREATE, GOOD_HEADER, 0])
                .schedule(true, 1, 1)
                .bytes(&[0, 0x80, EXACT_OUTPUT])
                .0,
        ),
        (
            "cross-handle-ids",
            Script::new(LARGE)
                .create(0, true, 1, 1)
                .bytes(&[op::STRUCTURED, 1, code::QUERY, GOOD_HEADER, 5, EXACT_OUTPUT])
                .bytes(&[op::STRUCTURED, 1, code::CLOSE, GOOD_HEADER, 5, EXACT_OUTPUT])
                .advance(4)
                .0,
        ),
    ]
}
