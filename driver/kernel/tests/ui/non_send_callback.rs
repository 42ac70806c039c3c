// A timer callback runs on whichever processor drains the DPC queue: state that is not
// `Send` (here an `Rc`) must not become a callback.
use std::cell::Cell;
use std::rc::Rc;

use ktimer_kernel::irql::DispatchLevel;
use ktimer_kernel::timer::TimerCallback;

struct CountsThroughRc {
    count: Rc<Cell<u32>>,
}

impl TimerCallback for CountsThroughRc {
    fn expired(&self, _irql: &DispatchLevel) {
        self.count.set(self.count.get() + 1);
    }
}

fn main() {}
