// A callback runs at DISPATCH_LEVEL: it cannot wait on a timer, because waiting needs a
// `&PassiveLevel` and the callback only has a `&DispatchLevel`.
use std::time::Duration;

use ktimer_kernel::irql::DispatchLevel;
use ktimer_kernel::timer::{Timer, TimerCallback};

struct Nothing;

impl TimerCallback for Nothing {
    fn expired(&self, _irql: &DispatchLevel) {}
}

struct WaitsForAnother {
    other: Timer<Nothing>,
}

impl TimerCallback for WaitsForAnother {
    fn expired(&self, irql: &DispatchLevel) {
        let _ = self.other.wait(irql, Some(Duration::from_millis(1)));
    }
}

fn main() {}
