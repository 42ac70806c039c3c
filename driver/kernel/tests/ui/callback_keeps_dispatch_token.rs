// The `&DispatchLevel` a callback receives is only valid during the call: it cannot be kept.
use std::sync::Mutex;

use ktimer_kernel::irql::DispatchLevel;
use ktimer_kernel::timer::TimerCallback;

struct KeepsToken {
    kept: Mutex<Option<&'static DispatchLevel>>,
}

impl TimerCallback for KeepsToken {
    fn expired(&self, irql: &DispatchLevel) {
        *self.kept.lock().unwrap() = Some(irql);
    }
}

fn main() {}
