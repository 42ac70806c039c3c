// A periodic timer's callback can run on two processors at once: it is shared, so plain
// interior mutability (`Cell`) must not become a callback.
use std::cell::Cell;

use ktimer_kernel::irql::DispatchLevel;
use ktimer_kernel::timer::TimerCallback;

struct CountsInCell {
    count: Cell<u32>,
}

impl TimerCallback for CountsInCell {
    fn expired(&self, _irql: &DispatchLevel) {
        self.count.set(self.count.get() + 1);
    }
}

fn main() {}
