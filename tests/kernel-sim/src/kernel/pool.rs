//! Tagged pool (`ExAllocatePool2` / `ExFreePoolWithTag`) with the free-time checks on the
//! kernel objects a block holds, and the unload verifier pass.

use std::ffi::c_void;
use std::ops::Range;

use crate::addr_map::AddrMap;
use crate::bugcheck::{BugCheck, codes};
use crate::trace::Event;

use super::{EntryKind, Inner, PoolBlock, SendPtr, State, irql, thread_token};

/// Kernel objects are 8-byte aligned (checked at every call), so the ones inside a block
/// are at its 8-byte aligned addresses.
const OBJECT_ALIGN: usize = 8;

/// Whether looking up each aligned address of `range` is cheaper than scanning `len` records
/// (a small block among many timers, as when a driver frees one of thousands).
fn probing_is_cheaper(range: &Range<usize>, len: usize) -> bool {
    range.len() / OBJECT_ALIGN < len
}

/// Calls `f` for each record of `map` whose object lies in `range`.
fn for_each_in<V>(map: &AddrMap<V>, range: Range<usize>, mut f: impl FnMut(usize, &V)) {
    if probing_is_cheaper(&range, map.len()) {
        let first = range.start.next_multiple_of(OBJECT_ALIGN);
        for addr in (first..range.end).step_by(OBJECT_ALIGN) {
            if let Some(value) = map.get(&addr) {
                f(addr, value);
            }
        }
    } else {
        for (addr, value) in map {
            if range.contains(addr) {
                f(*addr, value);
            }
        }
    }
}

/// Removes the records of `map` whose object lies in `range`.
fn remove_in<V>(map: &mut AddrMap<V>, range: Range<usize>) {
    if probing_is_cheaper(&range, map.len()) {
        let first = range.start.next_multiple_of(OBJECT_ALIGN);
        for addr in (first..range.end).step_by(OBJECT_ALIGN) {
            map.remove(&addr);
        }
    } else {
        map.retain(|addr, _| !range.contains(addr));
    }
}

impl Inner {
    /// `ExAllocatePool2` after IRQL checks.
    pub(crate) fn allocate_pool(&self, flags: u64, bytes: u64, tag: u32) -> *mut c_void {
        let mut st = self.lock();
        if bytes == 0 {
            self.fail(
                st,
                BugCheck::new(
                    codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [0, u64::from(irql()), flags, 0],
                ),
            );
        }
        if st.fail_allocations > 0 {
            st.fail_allocations -= 1;
            st.pool_stats.failed_allocations += 1;
            return std::ptr::null_mut();
        }
        let align = if flags & crate::types::POOL_FLAG_CACHE_ALIGNED != 0 {
            64
        } else {
            16
        };
        let Some(layout) = usize::try_from(bytes)
            .ok()
            .and_then(|size| std::alloc::Layout::from_size_align(size, align).ok())
        else {
            st.pool_stats.failed_allocations += 1;
            return std::ptr::null_mut();
        };
        let uninitialized = flags & crate::types::POOL_FLAG_UNINITIALIZED != 0;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            st.pool_stats.failed_allocations += 1;
            return std::ptr::null_mut();
        }
        if uninitialized {
            // SAFETY: `ptr` is a fresh allocation of `layout.size()` bytes.
            unsafe { ptr.write_bytes(0xCD, layout.size()) };
        }
        let seq = st.next_pool_seq;
        st.next_pool_seq += 1;
        st.pool.insert(
            ptr.addr(),
            PoolBlock {
                ptr: SendPtr(ptr),
                layout,
                tag,
                seq,
            },
        );
        st.pool_stats.allocations += 1;
        st.pool_stats.outstanding_allocations += 1;
        st.pool_stats.outstanding_bytes += layout.size();
        self.trace(
            &mut st,
            Event::PoolAllocated {
                tag,
                bytes: layout.size(),
            },
        );
        ptr.cast()
    }

    /// `ExFreePoolWithTag` after IRQL checks.
    pub(crate) fn free_pool(&self, addr: usize, tag: u32) {
        let mut st = self.lock();
        let Some(block) = st.pool.get(&addr) else {
            self.fail(
                st,
                BugCheck::new(codes::BAD_POOL_CALLER, [0x07, 0, 0, addr as u64]),
            );
        };
        if tag != 0 && tag != block.tag {
            let block_tag = block.tag;
            self.fail(
                st,
                BugCheck::new(
                    codes::BAD_POOL_CALLER,
                    [0x0A, addr as u64, u64::from(block_tag), u64::from(tag)],
                ),
            );
        }
        let end = addr + block.layout.size();
        let range = addr..end;
        let mut set_timer = None;
        for_each_in(&st.timers, range.clone(), |a, t| {
            if t.set.is_some() {
                set_timer = Some(set_timer.map_or(a, |b: usize| b.min(a)));
            }
        });
        if let Some(timer) = set_timer {
            self.fail(
                st,
                BugCheck::new(
                    codes::TIMER_OR_DPC_INVALID,
                    [0, timer as u64, addr as u64, end as u64],
                ),
            );
        }
        let own_thread = thread_token();
        let mut busy_dpc = None;
        for_each_in(&st.dpcs, range, |a, d| {
            // A DPC routine may free its own KDPC: only other runs count.
            let own_runs = st
                .running
                .iter()
                .flatten()
                .filter(|r| {
                    r.entry.kind == EntryKind::Dpc && r.entry.addr == a && r.thread == own_thread
                })
                .count();
            if d.queued.is_some() || d.running as usize > own_runs {
                busy_dpc = Some(busy_dpc.map_or(a, |b: usize| b.min(a)));
            }
        });
        if let Some(dpc) = busy_dpc {
            self.fail(
                st,
                BugCheck::new(
                    codes::TIMER_OR_DPC_INVALID,
                    [1, dpc as u64, addr as u64, end as u64],
                ),
            );
        }
        self.release_block(&mut st, addr);
    }

    /// Frees a pool block and forgets the kernel objects that lived in it.
    pub(super) fn release_block(&self, st: &mut State, addr: usize) {
        let Some(block) = st.pool.remove(&addr) else {
            return;
        };
        let range = addr..addr + block.layout.size();
        remove_in(&mut st.timers, range.clone());
        remove_in(&mut st.dpcs, range);
        st.pool_stats.frees += 1;
        st.pool_stats.outstanding_allocations -= 1;
        st.pool_stats.outstanding_bytes -= block.layout.size();
        self.trace(
            st,
            Event::PoolFreed {
                tag: block.tag,
                bytes: block.layout.size(),
            },
        );
        // SAFETY: `block.ptr` came from `std::alloc::alloc_zeroed(block.layout)` and has just
        // been removed from the pool map, so it is freed exactly once.
        unsafe { std::alloc::dealloc(block.ptr.0, block.layout) };
    }

    /// `ExFreePoolWithTag` after the machine stopped: free the memory, check nothing.
    pub(crate) fn free_pool_inert(&self, addr: usize) {
        let mut st = self.lock();
        self.release_block(&mut st, addr);
    }

    // ----- unload -------------------------------------------------------------------------

    pub(super) fn unload(&self) -> Result<(), BugCheck> {
        let mut st = self.lock();
        if let Some(bug_check) = st.bug_check {
            return Err(bug_check);
        }
        let pending = |address: usize, kind: u64| {
            BugCheck::new(
                codes::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
                [address as u64, kind, 0, 0],
            )
        };
        let mut found = st
            .timers
            .iter()
            .filter(|(_, t)| t.set.is_some())
            .min_by_key(|(_, t)| t.id)
            .map(|(a, _)| pending(*a, 0));
        if found.is_none() {
            found = st
                .dpcs
                .iter()
                .filter(|(_, d)| d.queued.is_some() || d.running > 0)
                .min_by_key(|(_, d)| d.id)
                .map(|(a, _)| pending(*a, 1));
        }
        if found.is_none() {
            found = st
                .ex_timers
                .iter()
                .min_by_key(|(_, t)| t.id)
                .map(|(a, _)| pending(*a, 3));
        }
        if found.is_none() {
            found = st.pool.values().min_by_key(|b| b.seq).map(|oldest| {
                BugCheck::new(
                    codes::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [
                        codes::VERIFIER_POOL_LEAK,
                        u64::from(oldest.tag),
                        st.pool_stats.outstanding_bytes as u64,
                        st.pool_stats.outstanding_allocations as u64,
                    ],
                )
            });
        }
        match found {
            Some(bug_check) => {
                self.record(&mut st, bug_check);
                drop(st);
                self.changed.notify_all();
                Err(bug_check)
            }
            None => Ok(()),
        }
    }
}
