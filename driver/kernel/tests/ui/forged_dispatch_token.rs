// A `DispatchLevel` only comes from the code that raised the IRQL (the DPC trampoline, a
// spin-lock guard): its constructor is not public, not even as `unsafe`.
use ktimer_kernel::irql::DispatchLevel;

fn main() {
    let _dispatch = unsafe { DispatchLevel::new_unchecked() };
}
