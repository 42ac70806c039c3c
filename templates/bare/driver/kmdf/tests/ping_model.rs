//! Random sequences of opens, closes, pings (valid or with one fault) and allocation
//! failures, through `DriverEntry` on kernel-sim's KMDF model, against a reference model of
//! the documented rules (`ktimer_abi::ping`'s table; counts per handle and per device, and
//! only for pings that succeed). A template for the model-based test your own logic will
//! want once it has state: generate, run both, compare every answer.
//!
//! Seeded and reproducible: `KTIMER_MODEL_SEED=<n>` replays one seed.

#![cfg(not(windows))]

use kernel_sim::wdf::{Framework, FrameworkConfig, UserHandle};
use kernel_sim::{Config, Kernel};
use ktimer_abi::ioctl::{FILE_DEVICE_KTIMER, IOCTL_KTIMER_PING, METHOD_NEITHER, ctl_code};
use ktimer_abi::ping::{PING_RESPONSE_SIZE, PingRequest, PingResponse};
use ktimer_abi::status::{
    NtStatus, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_REVISION_MISMATCH,
};

/// splitmix64: every seed gives a full-period stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

/// What can be wrong with a ping; `None` in [`Step::Ping`] is a valid one.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Short,
    Long,
    Size,
    Version,
    Reserved,
    SmallOutput,
    UnknownCode,
    Neither,
}

const FAULTS: [Fault; 8] = [
    Fault::Short,
    Fault::Long,
    Fault::Size,
    Fault::Version,
    Fault::Reserved,
    Fault::SmallOutput,
    Fault::UnknownCode,
    Fault::Neither,
];

#[derive(Clone, Copy, Debug)]
enum Step {
    Open {
        out_of_memory: bool,
    },
    Close(usize),
    Ping {
        handle: usize,
        cookie: u64,
        fault: Option<Fault>,
    },
}

fn generate(rng: &mut Rng, length: usize) -> Vec<Step> {
    (0..length)
        .map(|_| match rng.below(10) {
            0 | 1 => Step::Open {
                out_of_memory: rng.below(8) == 0,
            },
            2 => Step::Close(rng.below(8)),
            _ => Step::Ping {
                handle: rng.below(8),
                cookie: rng.next(),
                fault: (rng.below(3) == 0).then(|| FAULTS[rng.below(FAULTS.len())]),
            },
        })
        .collect()
}

/// The reference model: the documented statuses and counts.
#[derive(Default)]
struct Model {
    handle_pings: Vec<u64>,
    device_pings: u64,
}

impl Model {
    fn ping(&mut self, handle: usize, fault: Option<Fault>) -> Result<(u64, u64), NtStatus> {
        let status = match fault {
            None => {
                self.handle_pings[handle] += 1;
                self.device_pings += 1;
                return Ok((self.handle_pings[handle], self.device_pings));
            }
            Some(Fault::Short | Fault::Long | Fault::Size) => STATUS_INFO_LENGTH_MISMATCH,
            Some(Fault::Version) => STATUS_REVISION_MISMATCH,
            Some(Fault::Reserved) => STATUS_INVALID_PARAMETER,
            Some(Fault::SmallOutput) => STATUS_BUFFER_TOO_SMALL,
            Some(Fault::UnknownCode | Fault::Neither) => STATUS_INVALID_DEVICE_REQUEST,
        };
        Err(status)
    }
}

/// The request a step sends: code, input, output room.
fn request(cookie: u64, fault: Option<Fault>) -> (u32, Vec<u8>, usize) {
    let mut ping = PingRequest::new(cookie);
    let mut room = PING_RESPONSE_SIZE;
    let mut code = IOCTL_KTIMER_PING;
    match fault {
        Some(Fault::Size) => ping.size += 8,
        Some(Fault::Version) => ping.version ^= 0x100,
        Some(Fault::Reserved) => ping.reserved = cookie | 1,
        Some(Fault::SmallOutput) => room -= 1,
        Some(Fault::UnknownCode) => code += 4,
        Some(Fault::Neither) => code = ctl_code(FILE_DEVICE_KTIMER, 0x800, METHOD_NEITHER, 1),
        _ => {}
    }
    let mut input = ping.to_bytes().to_vec();
    match fault {
        Some(Fault::Short) => {
            input.pop();
        }
        Some(Fault::Long) => input.push(0),
        _ => {}
    }
    (code, input, room)
}

fn run(seed: u64) {
    let mut rng = Rng(seed);
    let steps = generate(&mut rng, 60);
    let kernel = Kernel::new(Config::default());
    let framework = Framework::new(&kernel, &FrameworkConfig::default());
    framework.load(ktimer_kmdf::DRIVER_ENTRY).unwrap();
    let device = framework.add_device().unwrap();
    let mut model = Model::default();
    // Open handles, each with its index in the model.
    let mut handles: Vec<(UserHandle, usize)> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let context = format!("seed {seed}, step {index}: {step:?}");
        match *step {
            Step::Open { out_of_memory } => {
                if out_of_memory {
                    kernel.fail_next_pool_allocations(1);
                    let refused = framework.open(device, None).err();
                    assert_eq!(refused, Some(STATUS_INSUFFICIENT_RESOURCES), "{context}");
                } else {
                    let file = framework.open(device, None).expect(&context);
                    model.handle_pings.push(0);
                    handles.push((file, model.handle_pings.len() - 1));
                }
            }
            Step::Close(which) => {
                if !handles.is_empty() {
                    let (file, _) = handles.swap_remove(which % handles.len());
                    file.close();
                }
            }
            Step::Ping {
                handle,
                cookie,
                fault,
            } => {
                if handles.is_empty() {
                    continue;
                }
                let (file, slot) = &handles[handle % handles.len()];
                let (code, input, room) = request(cookie, fault);
                let mut output = vec![0; room];
                let actual = file.control(code, &input, &mut output).map(|written| {
                    let response = PingResponse::decode(&output[..written]).expect(&context);
                    assert_eq!(response.cookie, cookie, "{context}");
                    (response.handle_pings, response.device_pings)
                });
                assert_eq!(actual, model.ping(*slot, fault), "{context}");
            }
        }
    }
    drop(handles);
    framework.remove_device(device);
    framework
        .unload()
        .unwrap_or_else(|bug_check| panic!("seed {seed}: unload: {bug_check}"));
    assert_eq!(framework.live_objects(), 0, "seed {seed}");
}

#[test]
fn random_sequences_answer_exactly_as_the_model() {
    if let Some(seed) = std::env::var("KTIMER_MODEL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
    {
        run(seed);
        return;
    }
    for seed in 0..200 {
        run(seed);
    }
}
