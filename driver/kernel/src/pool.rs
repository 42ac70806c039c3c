//! Tagged non-paged pool allocations: [`PoolBox`], the owner of one value in memory from
//! `ExAllocatePool2(POOL_FLAG_NON_PAGED, ..)`, freed with `ExFreePoolWithTag`.
//!
//! Non-paged memory may be touched at any IRQL, which is what a `KTIMER`, a `KDPC` and
//! everything a DPC reads need. A pool box never moves its value, so `Pin<PoolBox<T>>`
//! (see [`PoolBox::pin`]) is the home of storage the kernel links into its own lists.
//! [`PoolArc`] is the shared, reference-counted form (an `Arc` whose allocation can fail).
//! Allocation is fallible ([`AllocationFailed`]) and never panics.

use core::ffi::c_void;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering, fence};

use super::sys;

/// `MEMORY_ALLOCATION_ALIGNMENT` on 64-bit Windows: every pool block is aligned to 16
/// bytes. Values that need more are refused at compile time.
pub const POOL_ALIGNMENT: usize = 16;

/// A pool tag: four characters that name the allocation's owner in pool-tracking tools
/// and in the verifier's leak report.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolTag(u32);

impl PoolTag {
    /// The tag that reads as `chars` in debuggers and pool tools (which print the tag's
    /// little-endian bytes in order). Any IRQL.
    #[must_use]
    pub const fn new(chars: [u8; 4]) -> Self {
        Self(u32::from_le_bytes(chars))
    }

    /// The tag as the `ULONG` the pool routines take. Any IRQL.
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for PoolTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars = self.0.to_le_bytes();
        f.debug_tuple("PoolTag")
            .field(&core::str::from_utf8(&chars).unwrap_or("????"))
            .finish()
    }
}

/// The kernel could not supply non-paged pool for an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocationFailed;

impl fmt::Display for AllocationFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("non-paged pool allocation failed")
    }
}

/// One `T` in tagged non-paged pool.
///
/// # Invariants
///
/// `ptr` points to a live block from `ExAllocatePool2(POOL_FLAG_NON_PAGED, size_of::<T>()
/// (at least 1), tag)`, aligned for `T`, that holds an initialised `T` owned by this box.
/// The block is freed (with the same tag) only by this box, after dropping the `T`. The
/// value never moves while the box lives.
pub struct PoolBox<T> {
    ptr: NonNull<T>,
    tag: PoolTag,
    owns: PhantomData<T>,
}

// SAFETY: PoolBox uniquely owns its T like Box<T>; sending the box sends the T.
unsafe impl<T: Send> Send for PoolBox<T> {}
// SAFETY: &PoolBox<T> only gives &T.
unsafe impl<T: Sync> Sync for PoolBox<T> {}

impl<T> PoolBox<T> {
    /// Moves `value` into a new tagged non-paged allocation. IRQL <= `DISPATCH_LEVEL`.
    ///
    /// # Errors
    ///
    /// [`AllocationFailed`] if the pool is exhausted (`value` is dropped).
    pub fn new(value: T, tag: PoolTag) -> Result<Self, AllocationFailed> {
        const {
            assert!(
                align_of::<T>() <= POOL_ALIGNMENT,
                "pool blocks are only 16-byte aligned"
            );
        };
        let size = sys::SIZE_T::try_from(size_of::<T>().max(1)).map_err(|_| AllocationFailed)?;
        // SAFETY: non-paged allocation is legal at IRQL <= DISPATCH_LEVEL (this routine's
        // documented precondition, and the highest IRQL safe code can reach).
        let block = unsafe { sys::ExAllocatePool2(sys::POOL_FLAG_NON_PAGED, size, tag.as_u32()) };
        let Some(block) = NonNull::new(block.cast::<T>()) else {
            return Err(AllocationFailed);
        };
        if !block.as_ptr().is_aligned() {
            // The kernel guarantees POOL_ALIGNMENT; refuse rather than trust it blindly.
            // SAFETY: `block` came from ExAllocatePool2 with this tag and holds no value.
            unsafe { sys::ExFreePoolWithTag(block.as_ptr().cast(), tag.as_u32()) };
            return Err(AllocationFailed);
        }
        // SAFETY: `block` is a fresh, aligned allocation of at least size_of::<T>() bytes.
        unsafe { block.as_ptr().write(value) };
        // INVARIANT: the block is live, aligned, tagged `tag` and now holds the value.
        Ok(Self {
            ptr: block,
            tag,
            owns: PhantomData,
        })
    }

    /// Like [`PoolBox::new`], pinned: the value stays at its address until it is dropped.
    /// IRQL <= `DISPATCH_LEVEL`.
    ///
    /// # Errors
    ///
    /// [`AllocationFailed`] if the pool is exhausted.
    pub fn pin(value: T, tag: PoolTag) -> Result<Pin<Self>, AllocationFailed> {
        // SAFETY (of `into_pin`'s contract): a PoolBox never moves its value and gives no
        // way to move it out once pinned, like Box.
        Self::new(value, tag).map(Self::into_pin)
    }

    /// Pins the box's value. Any IRQL.
    #[must_use]
    pub fn into_pin(this: Self) -> Pin<Self> {
        // SAFETY: the value lives at a fixed address in pool memory until the box drops it
        // (the box's invariant), and a Pin<PoolBox<T>> offers no safe &mut T for !Unpin T.
        unsafe { Pin::new_unchecked(this) }
    }

    /// The allocation's tag. Any IRQL.
    #[must_use]
    pub fn tag(this: &Self) -> PoolTag {
        this.tag
    }

    /// The address of the pinned value, for handing to the kernel as a context pointer
    /// (read through shared references only). Any IRQL.
    pub(crate) fn as_ptr(this: &Pin<Self>) -> NonNull<T> {
        NonNull::from(this.as_ref().get_ref())
    }

    /// Gives up ownership without dropping the value or freeing the block. Any IRQL.
    pub(crate) fn into_raw(this: Pin<Self>) -> (NonNull<T>, PoolTag) {
        // SAFETY: the raw parts keep the pin: nothing moves the value, and only
        // `from_raw` (whose caller keeps it pinned) takes it back.
        let this = core::mem::ManuallyDrop::new(unsafe { Pin::into_inner_unchecked(this) });
        (this.ptr, this.tag)
    }

    /// Takes back ownership of a value given up by [`PoolBox::into_raw`]. Any IRQL.
    ///
    /// # Safety
    ///
    /// `ptr` and `tag` must come from one `into_raw` call, and no other `from_raw` may be
    /// made for them.
    pub(crate) unsafe fn from_raw(ptr: NonNull<T>, tag: PoolTag) -> Pin<Self> {
        // SAFETY: the caller hands back the unique ownership `into_raw` gave up; the value
        // never moved, so it is still pinned.
        unsafe {
            Pin::new_unchecked(Self {
                ptr,
                tag,
                owns: PhantomData,
            })
        }
    }
}

impl<T> Deref for PoolBox<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the invariant: `ptr` points to a live, initialised T owned by this box.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> DerefMut for PoolBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the invariant, and `&mut self` makes this the only access.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for PoolBox<T> {
    /// IRQL <= `DISPATCH_LEVEL` (`ExFreePoolWithTag` on non-paged pool).
    fn drop(&mut self) {
        // SAFETY: the invariant: the value is live and owned here; it is dropped once.
        unsafe { self.ptr.as_ptr().drop_in_place() };
        // SAFETY: the invariant: the block came from ExAllocatePool2 with this tag and is
        // freed only here, after its value was dropped.
        unsafe { sys::ExFreePoolWithTag(self.ptr.as_ptr().cast(), self.tag.as_u32()) };
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBox")
            .field("tag", &self.tag)
            .field("value", &**self)
            .finish_non_exhaustive()
    }
}

/// The block behind a [`PoolArc`]: the count of owners, the block's tag, and the value.
struct Shared<T> {
    owners: AtomicUsize,
    tag: PoolTag,
    value: T,
}

/// Past this many owners a [`PoolArc`] is never freed (it leaks instead of overflowing the
/// count, which would free it while owners remain). Unreachable without `mem::forget`ting
/// clones in a loop.
const MAX_OWNERS: usize = usize::MAX / 2;

/// A shared `T` in tagged non-paged pool, freed when its last owner is dropped: `Arc`, but
/// made with a fallible allocation (stable Rust has no fallible `Arc::new`, and an
/// infallible one ends in the allocation-error handler, a bug check in a driver).
///
/// # Invariants
///
/// `shared` is the raw pointer of a pinned [`PoolBox`] of a `Shared<T>` tagged with its
/// `tag` field, whose `owners` counts the `PoolArc`s (and raw forms from [`PoolArc::into_raw`]) that refer to
/// it; the block is freed by the owner that takes the count from 1 to 0, and only then.
pub struct PoolArc<T> {
    shared: NonNull<Shared<T>>,
    owns: PhantomData<Shared<T>>,
}

// SAFETY: as `Arc<T>`: owners on several threads share `&T` (hence `T: Sync`), and the last
// one, on whichever thread, drops the `T` (hence `T: Send`).
unsafe impl<T: Send + Sync> Send for PoolArc<T> {}
// SAFETY: as `Arc<T>`: `&PoolArc<T>` gives `&T` and clones.
unsafe impl<T: Send + Sync> Sync for PoolArc<T> {}

impl<T> PoolArc<T> {
    /// Moves `value` into a new tagged non-paged allocation with one owner. IRQL <=
    /// `DISPATCH_LEVEL`.
    ///
    /// # Errors
    ///
    /// [`AllocationFailed`] if the pool is exhausted (`value` is dropped).
    pub fn new(value: T, tag: PoolTag) -> Result<Self, AllocationFailed> {
        let block = PoolBox::pin(
            Shared {
                owners: AtomicUsize::new(1),
                tag,
                value,
            },
            tag,
        )?;
        let (shared, _tag) = PoolBox::into_raw(block);
        // INVARIANT: a fresh block tagged `tag`, whose one owner is this value.
        Ok(Self {
            shared,
            owns: PhantomData,
        })
    }

    /// Any IRQL.
    fn shared(&self) -> &Shared<T> {
        // SAFETY: the invariant: the block lives while this owner does.
        unsafe { self.shared.as_ref() }
    }

    /// Whether both name the same allocation. Any IRQL.
    #[must_use]
    pub fn ptr_eq(this: &Self, other: &Self) -> bool {
        this.shared == other.shared
    }

    /// A pointer to the shared value (`Arc::as_ptr`): valid while any owner, or a raw form
    /// from [`PoolArc::into_raw`], lives. Any IRQL.
    #[must_use]
    pub fn as_ptr(this: &Self) -> *const T {
        &raw const this.shared().value
    }

    /// This owner as one pointer-sized value (for a context slot the kernel or the framework
    /// keeps): it stays an owner until [`PoolArc::from_raw`] takes it back. Any IRQL.
    #[must_use]
    pub fn into_raw(this: Self) -> *mut c_void {
        let this = ManuallyDrop::new(this);
        this.shared.as_ptr().cast()
    }

    /// Takes back an owner given up by [`PoolArc::into_raw`]. Any IRQL.
    ///
    /// # Safety
    ///
    /// `raw` came from [`PoolArc::into_raw`] of a `PoolArc<T>` (same `T`), and is taken
    /// back at most once.
    #[must_use]
    pub unsafe fn from_raw(raw: *mut c_void) -> Self {
        // SAFETY: per the contract, `raw` is the non-null block pointer `into_raw` gave.
        let shared = unsafe { NonNull::new_unchecked(raw.cast::<Shared<T>>()) };
        // INVARIANT: the owner `into_raw` kept is this value again.
        Self {
            shared,
            owns: PhantomData,
        }
    }
}

impl<T> Clone for PoolArc<T> {
    /// A new owner. Any IRQL; no allocation.
    fn clone(&self) -> Self {
        // Relaxed, as `Arc`: a new owner is made from an existing one, which keeps the block.
        let before = self.shared().owners.fetch_add(1, Ordering::Relaxed);
        if before >= MAX_OWNERS {
            // Pinned far above any reachable count: never freed (see MAX_OWNERS).
            self.shared().owners.store(MAX_OWNERS, Ordering::Relaxed);
        }
        // INVARIANT: counted above.
        Self {
            shared: self.shared,
            owns: PhantomData,
        }
    }
}

impl<T> Deref for PoolArc<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.shared().value
    }
}

impl<T> Drop for PoolArc<T> {
    /// The last owner drops the value and frees the block. IRQL <= `DISPATCH_LEVEL`.
    fn drop(&mut self) {
        if self.shared().owners.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Every other owner's last use happened before its decrement (Release); this makes
        // them visible before the value is dropped, as `Arc` does.
        fence(Ordering::Acquire);
        let tag = self.shared().tag;
        // SAFETY: the invariant: the pointer and tag of the pinned box, which this, the last
        // owner, takes back exactly once.
        drop(unsafe { PoolBox::from_raw(self.shared, tag) });
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolArc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolArc")
            .field("tag", &self.shared().tag)
            .field("value", &**self)
            .finish_non_exhaustive()
    }
}
