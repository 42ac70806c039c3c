//! Building blocks the scenarios share: tolerances derived from the driver's clock, opening
//! handles, collecting expiry records through waits, and non-blocking draining.

use std::time::Duration;

use ktimer_abi::status::STATUS_CANCELLED;
use ktimer_abi::{ExpiryRecord, InfoResponse};

use super::Env;
use crate::client::{Batch, Client, ClientError, decode_wait};
use crate::clock::{from_100ns, units_100ns};
use crate::device::{PendingRequest, Reply};
use crate::stats::format_ms;

/// How early or late an expiration may be, in 100 ns units.
///
/// Three terms: the kernel rule (a timer may fire up to one clock tick early or late); the
/// precision of the driver's own time base (it dates an arming with `KeQueryInterruptTime`,
/// which advances once a tick, so the due time it reports may lie up to a tick before the
/// one the kernel uses); and, in real time, [`Env::slack`] for host scheduling delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tolerance {
    /// Largest allowed earliness (positive number).
    pub early: i64,
    /// Largest allowed lateness.
    pub late: i64,
}

impl Tolerance {
    /// A tick-driven timer: one tick early, two ticks late (kernel rule + time base), plus
    /// the environment's slack on the late side.
    #[must_use]
    pub fn kernel(info: &InfoResponse, env: &Env<'_>) -> Self {
        let tick = i64::from(info.clock_increment);
        Self {
            early: tick,
            late: tick
                .saturating_mul(2)
                .saturating_add(units_100ns(env.slack)),
        }
    }

    /// A high-resolution timer: never early; late by the driver's time-base precision (one
    /// tick) plus a quarter tick, plus the environment's slack. A tick-driven timer armed
    /// on a tick and due half a tick later would be half a tick late.
    #[must_use]
    pub fn high_resolution(info: &InfoResponse, env: &Env<'_>) -> Self {
        let tick = i64::from(info.clock_increment);
        Self {
            early: 0,
            late: tick
                .saturating_add(tick / 4)
                .saturating_add(units_100ns(env.slack)),
        }
    }

    /// This tolerance with `extra` more allowed on the late side.
    #[must_use]
    pub fn with_extra_late(self, extra: i64) -> Self {
        Self {
            late: self.late.saturating_add(extra),
            ..self
        }
    }

    /// Whether `lateness` is within the tolerance.
    #[must_use]
    pub fn allows(&self, lateness: i64) -> bool {
        (-self.early..=self.late).contains(&lateness)
    }

    /// The first record outside the tolerance, described.
    #[must_use]
    pub fn violation(&self, records: &[ExpiryRecord]) -> Option<String> {
        records
            .iter()
            .find(|record| !self.allows(record.lateness))
            .map(|record| {
                format!(
                    "timer {} expiration {} fired {} late, outside [-{}, {}]",
                    record.timer_id,
                    record.sequence,
                    format_ms(record.lateness),
                    format_ms(self.early),
                    format_ms(self.late)
                )
            })
    }
}

/// Opens a client and reads the driver's info.
///
/// # Errors
/// A description of the open or get-info failure.
pub fn open(env: &Env<'_>) -> Result<(Client, InfoResponse), String> {
    let client = Client::open(env.device).map_err(|error| format!("open failed: {error}"))?;
    let info = client
        .info()
        .map_err(|error| format!("get-info failed: {error}"))?;
    Ok((client, info))
}

/// Adds context to a client error.
pub fn op<T>(what: &str, result: Result<T, ClientError>) -> Result<T, String> {
    result.map_err(|error| format!("{what} failed: {error}"))
}

/// The driver's clock tick as a duration.
#[must_use]
pub fn tick(info: &InfoResponse) -> Duration {
    from_100ns(i64::from(info.clock_increment))
}

/// The driver's current interrupt time (100 ns units).
///
/// # Errors
/// A description of the get-info failure.
pub fn device_now(client: &Client) -> Result<i64, String> {
    let info = op("get-info", client.info())?;
    Ok(i64::try_from(info.interrupt_time).unwrap_or(i64::MAX))
}

/// The ring capacity of one handle, as a record count.
#[must_use]
pub fn ring(info: &InfoResponse) -> usize {
    usize::try_from(info.event_ring_capacity)
        .unwrap_or(1)
        .max(1)
}

/// Waits for records until `enough` holds for what was collected, or until `limit` of
/// device time has passed. Returns everything collected.
///
/// # Errors
/// A failed wait (other than one this function cancelled at the limit).
pub fn collect(
    env: &Env<'_>,
    client: &Client,
    info: &InfoResponse,
    limit: Duration,
    enough: impl Fn(&Batch) -> bool,
) -> Result<Batch, String> {
    let mut collected = Batch::default();
    let started = device_now(client)?;
    let limit_units = units_100ns(limit);
    let step = tick(info);
    while !enough(&collected) {
        let waited = device_now(client)?.saturating_sub(started);
        let remaining = limit_units.saturating_sub(waited);
        if remaining <= 0 {
            break;
        }
        let mut wait = op("wait", client.submit_wait(1, ring(info)))?;
        let completion = match env
            .clock
            .wait_for(wait.as_mut(), from_100ns(remaining), step)
        {
            Some(done) => done,
            None => cancel_and_reap(wait.as_mut())?,
        };
        match decode_wait(completion) {
            Ok(batch) => append(&mut collected, batch),
            Err(error) if error.is(STATUS_CANCELLED) => break,
            Err(error) => return Err(format!("wait failed: {error}")),
        }
    }
    Ok(collected)
}

/// Collects every record that is ready now, without letting time pass.
///
/// # Errors
/// A failed wait.
pub fn drain(client: &Client, info: &InfoResponse) -> Result<Batch, String> {
    let mut collected = Batch::default();
    loop {
        let mut wait = op("wait", client.submit_wait(1, ring(info)))?;
        let completion = match wait.wait(Duration::ZERO) {
            Some(done) => done,
            None => cancel_and_reap(wait.as_mut())?,
        };
        match decode_wait(completion) {
            // Loop until a wait finds nothing ready (and is cancelled).
            Ok(batch) => append(&mut collected, batch),
            Err(error) if error.is(STATUS_CANCELLED) => return Ok(collected),
            Err(error) => return Err(format!("wait failed: {error}")),
        }
    }
}

/// Cancels a pending request and waits for the driver to complete it.
///
/// # Errors
/// If the driver does not complete a cancelled request within a few seconds.
pub fn cancel_and_reap(request: &mut dyn PendingRequest) -> Result<Reply, String> {
    request.cancel();
    // Completion of a cancelled request needs no device time: a real wait is right in
    // every mode.
    request
        .wait(Duration::from_secs(5))
        .ok_or_else(|| "a cancelled wait was not completed by the driver within 5 s".to_owned())
}

fn append(collected: &mut Batch, batch: Batch) {
    collected.records.extend(batch.records);
    collected.overruns = collected.overruns.saturating_add(batch.overruns);
}

/// Total expirations covered by `records`.
#[must_use]
pub fn expirations(records: &[ExpiryRecord]) -> u64 {
    records
        .iter()
        .map(|record| u64::from(record.expirations))
        .sum()
}

/// The records of one timer.
#[must_use]
pub fn of_timer(records: &[ExpiryRecord], timer_id: u64) -> Vec<ExpiryRecord> {
    records
        .iter()
        .filter(|record| record.timer_id == timer_id)
        .copied()
        .collect()
}

/// Lateness samples of `records`.
#[must_use]
pub fn lateness(records: &[ExpiryRecord]) -> Vec<i64> {
    records.iter().map(|record| record.lateness).collect()
}

/// A multiple of the tick, at least `floor`, rounded up to whole milliseconds (periods and
/// the waitable timer work in milliseconds).
#[must_use]
pub fn ticks_ms(info: &InfoResponse, ticks: u32, floor_ms: u32) -> u32 {
    let units = u64::from(info.clock_increment).saturating_mul(u64::from(ticks));
    let ms = units.div_ceil(10_000);
    u32::try_from(ms).unwrap_or(u32::MAX).max(floor_ms)
}

/// Milliseconds as 100 ns units.
#[must_use]
pub fn ms(milliseconds: u32) -> i64 {
    i64::from(milliseconds) * 10_000
}
