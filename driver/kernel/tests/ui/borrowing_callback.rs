// A callback outlives any stack frame (the timer can fire after the creator returned):
// it must not borrow.
use ktimer_kernel::irql::DispatchLevel;
use ktimer_kernel::timer::TimerCallback;

struct ReadsBorrowed<'a> {
    limit: &'a u32,
}

impl<'a> TimerCallback for ReadsBorrowed<'a> {
    fn expired(&self, _irql: &DispatchLevel) {
        let _ = *self.limit;
    }
}

fn main() {}
