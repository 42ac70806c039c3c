//! Lateness statistics: how late (or early, negative) expirations were relative to their
//! due times, summarised as percentiles.

/// Summary of a set of lateness samples, in 100 ns units (the kernel's unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lateness {
    /// Number of samples.
    pub samples: usize,
    /// Smallest sample (negative = early).
    pub min: i64,
    /// Median (nearest rank).
    pub p50: i64,
    /// 99th percentile (nearest rank).
    pub p99: i64,
    /// Largest sample.
    pub max: i64,
}

impl Lateness {
    /// Summarises `samples`; `None` when there are none.
    #[must_use]
    pub fn of(samples: &[i64]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        Some(Self {
            samples: sorted.len(),
            min,
            p50: nearest_rank(&sorted, 50),
            p99: nearest_rank(&sorted, 99),
            max,
        })
    }
}

/// The nearest-rank percentile of a sorted, non-empty slice (`percent` in 1..=100).
fn nearest_rank(sorted: &[i64], percent: usize) -> i64 {
    // rank = ceil(percent/100 * n), 1-based; clamp keeps it inside the slice.
    let rank = (percent * sorted.len())
        .div_ceil(100)
        .clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// Formats 100 ns units as milliseconds with microsecond precision, e.g. `-0.125 ms`.
#[must_use]
pub fn format_ms(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let micros = units.unsigned_abs() / 10;
    format!("{sign}{}.{:03} ms", micros / 1000, micros % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<i64> = (1..=100).rev().collect();
        let summary = Lateness::of(&samples).expect("non-empty");
        assert_eq!(summary.samples, 100);
        assert_eq!(
            (summary.min, summary.p50, summary.p99, summary.max),
            (1, 50, 99, 100)
        );
    }

    #[test]
    fn single_sample_is_every_percentile() {
        let summary = Lateness::of(&[-7]).expect("non-empty");
        assert_eq!(
            (summary.min, summary.p50, summary.p99, summary.max),
            (-7, -7, -7, -7)
        );
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Lateness::of(&[]), None);
    }

    #[test]
    fn formats_milliseconds() {
        assert_eq!(format_ms(156_250), "15.625 ms");
        assert_eq!(format_ms(-5_000), "-0.500 ms");
        assert_eq!(format_ms(0), "0.000 ms");
    }
}
