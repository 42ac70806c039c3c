//! Typed operations on one handle: each encodes a `ktimer-abi` request, sends it through the
//! [`Handle`], and decodes and validates the response with the ABI's own decoders. Scenarios
//! use this for well-formed traffic and [`Client::handle`] for deliberately malformed bytes.

use std::fmt;
use std::mem::size_of;

use ktimer_abi::codec::{WaitBatch, wait_response_len};
use ktimer_abi::ioctl::{
    Cancel, Close, Create, Empty, GetInfo, IOCTL_KTIMER_WAIT, Ioctl, Query, Set,
};
use ktimer_abi::status::{NtStatus, name_of};
use ktimer_abi::{
    CreateRequest, Decode, DecodeError, Encode, ExpiryRecord, Header, InfoResponse, MODE_ONE_SHOT,
    MODE_PERIODIC, QueryResponse, SCHEDULE_ABSOLUTE, Schedule, SetRequest, TimerRequest,
    WaitRequest, WaitResponse,
};

use crate::device::{Device, Handle, IoFailure, OpenError, PendingRequest, Reply};

/// Why a typed operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The driver failed the request.
    Io(IoFailure),
    /// The driver's response did not decode (wrong version, size or field values).
    Response(DecodeError),
}

impl ClientError {
    /// Whether the driver failed the request with `status`.
    #[must_use]
    pub fn is(&self, status: NtStatus) -> bool {
        matches!(self, Self::Io(failure) if failure.is(status))
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(failure) => write!(f, "{}", describe_failure(*failure)),
            Self::Response(error) => write!(f, "malformed response: {error:?}"),
        }
    }
}

impl From<IoFailure> for ClientError {
    fn from(failure: IoFailure) -> Self {
        Self::Io(failure)
    }
}

impl From<DecodeError> for ClientError {
    fn from(error: DecodeError) -> Self {
        Self::Response(error)
    }
}

/// A failure with the status's ABI name when it has one.
#[must_use]
pub fn describe_failure(failure: IoFailure) -> String {
    match failure {
        IoFailure::Status(status) => match name_of(status) {
            Some(name) => format!("{name} ({failure})"),
            None => failure.to_string(),
        },
        IoFailure::Win32(_) => failure.to_string(),
    }
}

/// A status's ABI name, or its hex value.
#[must_use]
pub fn status_name(status: NtStatus) -> String {
    name_of(status).map_or_else(|| IoFailure::Status(status).to_string(), str::to_owned)
}

/// Encodes a request into a fresh buffer of exactly its size.
#[must_use]
pub fn encode<T: Encode>(message: &T) -> Vec<u8> {
    let mut bytes = vec![0; size_of::<T>()];
    // The buffer has the message's exact size, which is all the encoder needs.
    let written = message.encode(&mut bytes).unwrap_or(0);
    bytes.truncate(written);
    bytes
}

/// A one-shot schedule due `due_100ns` after now.
#[must_use]
pub fn one_shot(due_100ns: i64) -> Schedule {
    Schedule {
        mode: MODE_ONE_SHOT,
        flags: 0,
        due_time: due_100ns,
        period_ms: 0,
        tolerable_delay_ms: 0,
    }
}

/// A one-shot schedule due at the absolute system time `system_time`.
#[must_use]
pub fn one_shot_at(system_time: i64) -> Schedule {
    Schedule {
        flags: SCHEDULE_ABSOLUTE,
        ..one_shot(system_time)
    }
}

/// A periodic schedule: first due `due_100ns` after now, then every `period_ms`.
#[must_use]
pub fn periodic(due_100ns: i64, period_ms: i32) -> Schedule {
    Schedule {
        mode: MODE_PERIODIC,
        flags: 0,
        due_time: due_100ns,
        period_ms,
        tolerable_delay_ms: 0,
    }
}

/// A create request for `schedule`.
#[must_use]
pub fn create_request(timer_type: u32, flags: u32, schedule: Schedule) -> CreateRequest {
    CreateRequest {
        header: Header::of::<CreateRequest>(),
        timer_type,
        flags,
        schedule,
    }
}

/// One batch of expiry records returned by a wait.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The records, in delivery order.
    pub records: Vec<ExpiryRecord>,
    /// Records the driver dropped since the previous response (ring full).
    pub overruns: u64,
}

/// Decodes a completed wait.
///
/// # Errors
/// The failure status, or a malformed response.
pub fn decode_wait(completion: Reply) -> Result<Batch, ClientError> {
    match completion {
        Reply::Done(bytes) => {
            let batch = WaitBatch::decode(&bytes)?;
            Ok(Batch {
                records: batch.records().collect(),
                overruns: batch.response.overruns,
            })
        }
        Reply::Failed(failure) => Err(ClientError::Io(failure)),
    }
}

/// A typed client on one open handle.
pub struct Client {
    handle: Box<dyn Handle>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Client")
    }
}

impl Client {
    /// Opens a new handle on `device`.
    ///
    /// # Errors
    /// The open failure.
    pub fn open(device: &dyn Device) -> Result<Self, OpenError> {
        Ok(Self {
            handle: device.open()?,
        })
    }

    /// The raw handle, for malformed requests.
    #[must_use]
    pub fn handle(&self) -> &dyn Handle {
        self.handle.as_ref()
    }

    /// Closes the handle (pending waits on it must then complete).
    pub fn close(self) {
        self.handle.close();
    }

    /// Any declared IOCTL with a fixed-size response, typed by its declaration
    /// (`ktimer_abi::ioctl`): encodes `input`, gives the driver an output of exactly the
    /// declared response's size, and decodes and validates the response.
    ///
    /// # Errors
    /// The failure status, or a malformed response.
    pub fn call<I: Ioctl>(&self, input: &I::Input) -> Result<I::Output, ClientError> {
        let mut output = vec![0; size_of::<I::Output>()];
        let length = self.handle.control(I::CODE, &encode(input), &mut output)?;
        output.truncate(length);
        Ok(I::Output::decode(&output)?)
    }

    /// Get-info: versions, clock increment, limits, current times.
    ///
    /// # Errors
    /// The failure status, or a response of another ABI version.
    pub fn info(&self) -> Result<InfoResponse, ClientError> {
        self.call::<GetInfo>(&Empty)
    }

    /// Creates and arms a timer; returns its id.
    ///
    /// # Errors
    /// The failure status.
    pub fn create(&self, request: &CreateRequest) -> Result<u64, ClientError> {
        Ok(self.call::<Create>(request)?.timer_id)
    }

    /// Creates a notification timer with no flags.
    ///
    /// # Errors
    /// The failure status.
    pub fn create_simple(&self, schedule: Schedule) -> Result<u64, ClientError> {
        self.create(&create_request(
            ktimer_abi::TIMER_TYPE_NOTIFICATION,
            0,
            schedule,
        ))
    }

    /// Re-arms a timer; returns whether it was armed before.
    ///
    /// # Errors
    /// The failure status.
    pub fn set(&self, timer_id: u64, schedule: Schedule) -> Result<bool, ClientError> {
        let request = SetRequest {
            header: Header::of::<SetRequest>(),
            timer_id,
            schedule,
        };
        Ok(self.call::<Set>(&request)?.was_armed != 0)
    }

    /// Cancels a timer; returns whether it was armed.
    ///
    /// # Errors
    /// The failure status.
    pub fn cancel(&self, timer_id: u64) -> Result<bool, ClientError> {
        Ok(self.call::<Cancel>(&timer_request(timer_id))?.was_armed != 0)
    }

    /// Reads a timer's state and statistics.
    ///
    /// # Errors
    /// The failure status.
    pub fn query(&self, timer_id: u64) -> Result<QueryResponse, ClientError> {
        self.call::<Query>(&timer_request(timer_id))
    }

    /// Closes (destroys) a timer.
    ///
    /// # Errors
    /// The failure status.
    pub fn close_timer(&self, timer_id: u64) -> Result<(), ClientError> {
        self.call::<Close>(&timer_request(timer_id))?;
        Ok(())
    }

    /// Submits a wait that completes once `min_records` records are ready, with room for
    /// `capacity` records (at least `min_records`).
    ///
    /// # Errors
    /// The failure status if the driver rejected the wait without pending it.
    pub fn submit_wait(
        &self,
        min_records: u32,
        capacity: usize,
    ) -> Result<Box<dyn PendingRequest>, ClientError> {
        let request = WaitRequest {
            header: Header::of::<WaitRequest>(),
            min_records,
            reserved: 0,
        };
        let records = capacity.max(usize::try_from(min_records).unwrap_or(usize::MAX));
        let output_len = wait_response_len(records).unwrap_or(size_of::<WaitResponse>());
        Ok(self
            .handle
            .submit(IOCTL_KTIMER_WAIT, &encode(&request), output_len)?)
    }
}

/// A timer-id request.
#[must_use]
pub fn timer_request(timer_id: u64) -> TimerRequest {
    TimerRequest {
        header: Header::of::<TimerRequest>(),
        timer_id,
    }
}
