// Storage the kernel links into its lists (a timer's KTIMER and KDPC) lives pinned in a
// pool block: once pinned, it cannot be moved out.
use std::marker::PhantomPinned;

use ktimer_kernel::pool::{PoolBox, PoolTag};

struct LinkedByTheKernel {
    _linked: PhantomPinned,
}

fn main() {
    let tag = PoolTag::new(*b"demo");
    let pinned = PoolBox::pin(LinkedByTheKernel { _linked: PhantomPinned }, tag).unwrap();
    let _moved_out: LinkedByTheKernel = *pinned;
}
