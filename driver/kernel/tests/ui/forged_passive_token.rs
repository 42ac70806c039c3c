// A `PassiveLevel` only comes from the checked `PassiveLevel::current()`: it cannot be
// built by hand.
use ktimer_kernel::irql::PassiveLevel;

fn main() {
    let _passive = PassiveLevel {
        not_send: std::marker::PhantomData,
    };
}
