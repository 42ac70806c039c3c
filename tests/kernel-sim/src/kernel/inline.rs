//! Inline execution (`Execution::Inline`): no processor threads; a thread that waits for
//! DPCs (`advance`, `run_until_idle`, `KeFlushQueuedDpcs`, `ExDeleteTimer` with `Wait`) picks
//! the next DPC by the same rule a processor thread would and runs it itself, "on" the
//! processor it was queued on (`PROCESSOR`, IRQL and the running-DPC bookkeeping are those of
//! that processor for the duration of the routine).

use std::sync::{Arc, MutexGuard};

use super::{BOUND, Entry, Inner, PROCESSOR, State};

/// Binds a dispatching thread to the kernel whose DPCs it runs, and restores the thread's
/// previous binding when dropped (the thread may be unbound or bound to another kernel).
pub(super) enum InlineBinding {
    /// The thread was bound to this kernel already.
    Kept,
    /// The thread's binding before (unbound, or another kernel), restored on drop.
    Replaced(Option<Arc<Inner>>),
}

impl Drop for InlineBinding {
    fn drop(&mut self) {
        if let InlineBinding::Replaced(previous) = self {
            let previous = previous.take();
            // Ignore a thread-local already destroyed at thread exit: nothing to restore.
            let _ = BOUND.try_with(|bound| *bound.borrow_mut() = previous);
        }
    }
}

impl Inner {
    /// Binds the calling thread to this kernel unless it already is.
    fn bind_inline(&self) -> InlineBinding {
        let bound_here = BOUND.with(|bound| {
            bound
                .borrow()
                .as_ref()
                .is_some_and(|kernel| std::ptr::eq(Arc::as_ptr(kernel), self))
        });
        if bound_here {
            return InlineBinding::Kept;
        }
        let this = self.this.upgrade();
        InlineBinding::Replaced(
            BOUND.with(|bound| std::mem::replace(&mut *bound.borrow_mut(), this)),
        )
    }

    /// The next DPC an inline dispatcher waiting for queuings below `limit` may start, and the
    /// processor it runs on: the earliest queued (lowest queuing number) among the processors'
    /// queue heads. Serial dispatch: only while no DPC runs anywhere. `parallel_dpcs`: on a
    /// processor where none runs (another dispatching thread may be running one elsewhere).
    pub(super) fn pick_inline(&self, st: &mut State, limit: u64) -> Option<(usize, Entry)> {
        if !self.config.parallel_dpcs && st.running.iter().any(Option::is_some) {
            return None;
        }
        let mut best: Option<(usize, u64)> = None;
        for (cpu, queue) in st.queues.iter().enumerate() {
            let Some(head) = queue.front() else {
                continue;
            };
            if head.seq >= limit || st.running[cpu].is_some() {
                continue;
            }
            if best.is_none_or(|(_, seq)| head.seq < seq) {
                best = Some((cpu, head.seq));
            }
        }
        let (cpu, _) = best?;
        st.queues[cpu].pop_front().map(|entry| (cpu, entry))
    }

    /// Runs one picked DPC on the calling thread as processor `cpu`; binds the thread for the
    /// dispatching session (`binding`, created on first use) if it is not bound here.
    pub(super) fn run_inline<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        cpu: usize,
        entry: Entry,
        binding: &mut Option<InlineBinding>,
    ) -> MutexGuard<'a, State> {
        if binding.is_none() {
            *binding = Some(self.bind_inline());
        }
        let previous = PROCESSOR.with(|p| p.replace(Some(cpu)));
        let st = self.run_entry(st, cpu, entry);
        PROCESSOR.with(|p| p.set(previous));
        st
    }
}
