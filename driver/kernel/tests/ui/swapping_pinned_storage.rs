// Pinned kernel-linked storage cannot be reached mutably either, so it cannot be swapped
// (or `mem::replace`d) with other storage.
use std::marker::PhantomPinned;

use ktimer_kernel::pool::{PoolBox, PoolTag};

struct LinkedByTheKernel {
    _linked: PhantomPinned,
}

fn swap_storage(
    first: &mut std::pin::Pin<PoolBox<LinkedByTheKernel>>,
    second: &mut std::pin::Pin<PoolBox<LinkedByTheKernel>>,
) {
    std::mem::swap(&mut **first, &mut **second);
}

fn main() {
    let tag = PoolTag::new(*b"demo");
    let mut first = PoolBox::pin(LinkedByTheKernel { _linked: PhantomPinned }, tag).unwrap();
    let mut second = PoolBox::pin(LinkedByTheKernel { _linked: PhantomPinned }, tag).unwrap();
    swap_storage(&mut first, &mut second);
}
