//! The framework's state: the object tree, contexts, device-init blocks, queues, file
//! objects and requests of one loaded driver, and the rules that move them (object
//! deletion children first, request ownership and cancellation, file-object cleanup and
//! close, device removal). The DDIs (`super::ddi`) and the simulated I/O manager
//! (`super::io`) are thin layers over this. Rules and their sources: docs/SIMULATOR.md,
//! "The KMDF model".
//!
//! Locking: one mutex per loaded driver (`Fx::state`) and one condition variable
//! (`Fx::changed`) announcing every change. Driver callbacks always run with the mutex
//! released, inside a [`DriverFrame`], so a bug check raised in them stops that thread
//! instead of unwinding through the driver's `extern "C"` function.

use std::alloc::Layout;
use std::collections::{HashMap, VecDeque};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::types::{
    GUID, PFN_WDF_DRIVER_DEVICE_ADD, PFN_WDF_DRIVER_UNLOAD, PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
    PFN_WDF_OBJECT_CONTEXT_CLEANUP, PFN_WDF_OBJECT_CONTEXT_DESTROY, PFN_WDF_REQUEST_CANCEL,
    UNICODE_STRING, WDF_FILEOBJECT_CONFIG, WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO,
    WDFFILEOBJECT,
};
use crate::addr_map::AddrMap;
use crate::bugcheck::{BugCheck, codes, wdf_object};
use crate::kernel::{DriverFrame, Kernel, irql};
use crate::signal::Signal;
use crate::types::NTSTATUS;

/// What can be made to fail ([`super::Framework::fail_next`]): each framework call the
/// driver makes at load or device add, the framework's own allocation of a file object at
/// handle open, and the request-path DDIs (retrieving a request's buffers, marking it
/// cancelable, its file object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `WdfDriverCreate`.
    DriverCreate,
    /// `WdfDeviceInitAssignName`.
    DeviceInitAssignName,
    /// `WdfDeviceInitAssignSDDLString`.
    DeviceInitAssignSddlString,
    /// `WdfDeviceCreate`.
    DeviceCreate,
    /// `WdfDeviceCreateDeviceInterface`.
    DeviceCreateDeviceInterface,
    /// `WdfDeviceCreateSymbolicLink`.
    DeviceCreateSymbolicLink,
    /// `WdfIoQueueCreate`.
    IoQueueCreate,
    /// The framework's file object at `IRP_MJ_CREATE` (before the driver is called).
    FileObjectCreate,
    /// `WdfRequestRetrieveInputBuffer`: returns the injected status, no buffer.
    RequestRetrieveInputBuffer,
    /// `WdfRequestRetrieveOutputBuffer`: returns the injected status, no buffer.
    RequestRetrieveOutputBuffer,
    /// `WdfRequestMarkCancelableEx`: returns the injected status (any, e.g. one other than
    /// `STATUS_CANCELLED`) and leaves the request driver-owned, not cancelable.
    RequestMarkCancelableEx,
    /// `WdfRequestGetFileObject`: returns NULL (the status is not used).
    RequestGetFileObject,
}

/// A driver callback the model called, in the order it called them
/// ([`super::Framework::callback_log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// `EvtDriverDeviceAdd`.
    DeviceAdd,
    /// `EvtDriverUnload`.
    DriverUnload,
    /// `EvtDeviceFileCreate` for this file object.
    FileCreate(usize),
    /// `EvtFileCleanup`.
    FileCleanup(usize),
    /// `EvtFileClose`.
    FileClose(usize),
    /// `EvtIoDeviceControl` for this request.
    IoDeviceControl(usize),
    /// `EvtRequestCancel` for this request.
    RequestCancel(usize),
    /// An object's `EvtCleanupCallback` (the object's handle).
    ObjectCleanup(usize),
    /// An object's `EvtDestroyCallback`.
    ObjectDestroy(usize),
}

/// The framework object types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Driver,
    Device,
    Queue,
    File,
    Request,
}

impl Kind {
    pub(crate) fn code(self) -> u64 {
        match self {
            Kind::Driver => wdf_object::DRIVER,
            Kind::Device => wdf_object::DEVICE,
            Kind::Queue => wdf_object::QUEUE,
            Kind::File => wdf_object::FILE_OBJECT,
            Kind::Request => wdf_object::REQUEST,
        }
    }
}

/// An object's context: zero-filled, 16-byte aligned, found by its type's `UniqueType`.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) key: usize,
    pub(crate) ptr: *mut u8,
    layout: Layout,
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(layout)` in `Context::new` and is freed only
        // here, once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// The framework's context alignment (`MEMORY_ALLOCATION_ALIGNMENT` on x64).
const CONTEXT_ALIGNMENT: usize = 16;

impl Context {
    /// The context the attributes ask for, if any.
    ///
    /// # Safety
    /// `attributes.ContextTypeInfo` is null or points to a live type info.
    pub(crate) unsafe fn new(attributes: &WDF_OBJECT_ATTRIBUTES) -> Option<Self> {
        let info = attributes.ContextTypeInfo;
        // SAFETY: null or a live type info (the caller's contract).
        let info: &WDF_OBJECT_CONTEXT_TYPE_INFO = unsafe { info.as_ref() }?;
        let key = if info.UniqueType.is_null() {
            std::ptr::from_ref(info).addr()
        } else {
            info.UniqueType.addr()
        };
        let size = attributes
            .ContextSizeOverride
            .max(info.ContextSize)
            .max(1)
            .next_multiple_of(size_of::<usize>());
        let layout = Layout::from_size_align(size, CONTEXT_ALIGNMENT).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return None;
        }
        Some(Self { key, ptr, layout })
    }
}

/// Memory the framework hands to the driver (a request's system buffer, a file object's
/// name): allocated here, reached only through one raw base pointer with shared
/// provenance, freed when dropped. No Rust reference or `Box` to it exists while the driver
/// may hold pointers into it, so the model creates no unique borrow that would invalidate
/// them (a `Box` field is retagged as unique whenever its owner moves through a call), and
/// two pointers handed out for the same memory (`METHOD_BUFFERED`'s input and output) stay
/// usable side by side, as on Windows.
#[derive(Debug)]
pub(crate) struct DriverMemory<T> {
    base: NonNull<T>,
    len: usize,
}

impl<T> DriverMemory<T> {
    /// Takes ownership of `values`.
    pub(crate) fn new(values: Box<[T]>) -> Self {
        let len = values.len();
        let base = NonNull::from(Box::leak(values)).cast::<T>();
        Self { base, len }
    }

    /// The base pointer, valid for `len` elements until `self` is dropped.
    pub(crate) fn as_mut_ptr(&self) -> *mut T {
        self.base.as_ptr()
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<T: Copy> DriverMemory<T> {
    /// A copy of the first `count` elements (fewer if there are fewer).
    ///
    /// # Safety
    /// No pointer handed out for this memory is being written through meanwhile (the driver
    /// is done with it: for a request, it has been completed).
    pub(crate) unsafe fn copy_prefix(&self, count: usize, into: &mut Vec<T>) {
        let count = count.min(self.len);
        // SAFETY: `base` is valid for `len` initialized elements and `count <= len`; nothing
        // writes to them meanwhile (the caller's contract).
        let values = unsafe { std::slice::from_raw_parts(self.base.as_ptr(), count) };
        into.extend_from_slice(values);
    }
}

// SAFETY: `DriverMemory` owns its elements like a `Box<[T]>`; it gives out only raw
// pointers (using them is the driver's or an `unsafe` caller's business, under the
// framework's rules for that memory) and reads them only in `copy_prefix`, whose contract
// excludes concurrent writes. The elements are plain data (bytes, UTF-16 units, a
// `UNICODE_STRING` pointing into another `DriverMemory`, a `DRIVER_OBJECT`).
unsafe impl<T> Send for DriverMemory<T> {}
// SAFETY: as above: `&DriverMemory` allows no access to the elements except through raw
// pointers or `copy_prefix`.
unsafe impl<T> Sync for DriverMemory<T> {}

impl<T> Drop for DriverMemory<T> {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.base.as_ptr(), self.len);
        // SAFETY: `base` and `len` came from `Box::leak` in `DriverMemory::new` and are
        // freed only here, once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

#[derive(Debug)]
pub(crate) struct Obj {
    pub(crate) kind: Kind,
    pub(crate) parent: Option<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) cleanup: PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    pub(crate) destroy: PFN_WDF_OBJECT_CONTEXT_DESTROY,
    pub(crate) context: Option<Context>,
    pub(crate) data: Data,
}

#[derive(Debug)]
pub(crate) enum Data {
    Driver,
    Device(Device),
    Queue(Queue),
    File(File),
    Request(Request),
}

#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) name: Option<Vec<u16>>,
    pub(crate) file_config: Option<WDF_FILEOBJECT_CONFIG>,
    pub(crate) file_attributes: Option<WDF_OBJECT_ATTRIBUTES>,
    pub(crate) request_attributes: Option<WDF_OBJECT_ATTRIBUTES>,
    pub(crate) interfaces: Vec<GUID>,
    pub(crate) symbolic_link: Option<Vec<u16>>,
    pub(crate) default_queue: Option<usize>,
    pub(crate) open_files: usize,
    pub(crate) started: bool,
    pub(crate) removing: bool,
    pub(crate) deleted_when_closed: bool,
}

#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) device: usize,
    pub(crate) io_device_control: PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
    pub(crate) accepting: bool,
    pub(crate) cancel_dispatched: bool,
    pub(crate) dispatching: u32,
    pub(crate) cancelled: VecDeque<usize>,
    pub(crate) owned: Vec<usize>,
    pub(crate) cancelable: Vec<usize>,
}

#[derive(Debug)]
pub(crate) struct File {
    pub(crate) device: usize,
    /// The characters `name` points to (owned here, read through `name`).
    #[expect(dead_code, reason = "owns the storage `name` points into")]
    pub(crate) name_units: DriverMemory<u16>,
    /// The `UNICODE_STRING` `WdfFileObjectGetFileName` returns (one element).
    pub(crate) name: DriverMemory<UNICODE_STRING>,
    pub(crate) outstanding: usize,
    pub(crate) cleanup_started: bool,
    pub(crate) cleanup_done: bool,
    pub(crate) close_started: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestState {
    /// Presented: the driver owns it, not cancelable.
    DriverOwned,
    /// Marked cancelable.
    Cancelable,
    /// Cancelled while cancelable; on the queue's cancelled list.
    CancelPending,
    /// Its cancel routine has been called.
    CancelRoutine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Create,
    DeviceControl,
}

#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) kind: RequestKind,
    pub(crate) irp: Arc<Irp>,
    pub(crate) queue: Option<usize>,
    pub(crate) file: usize,
    pub(crate) state: RequestState,
    pub(crate) cancel_routine: PFN_WDF_REQUEST_CANCEL,
    pub(crate) cancelled: bool,
    /// The `METHOD_BUFFERED` system buffer (`max(input, output)` bytes): both the input
    /// and the output buffer the driver retrieves point to its start.
    pub(crate) buffer: DriverMemory<u8>,
    pub(crate) input_length: usize,
    pub(crate) output_length: usize,
    /// The I/O manager's copy of the output, allocated when the IRP was sent so that
    /// completion (possibly from a DPC) allocates nothing.
    pub(crate) returned: Vec<u8>,
    pub(crate) completing: bool,
}

/// How an I/O request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoOutcome {
    /// The status the driver completed it with.
    pub status: NTSTATUS,
    /// `Information`.
    pub information: usize,
    /// The output the I/O manager copied back (`min(Information, OutputBufferLength)`
    /// bytes of the system buffer, for a status that is not an error).
    pub output: Vec<u8>,
}

/// An IRP as the I/O manager sees it.
#[derive(Debug, Default)]
pub(crate) struct Irp {
    pub(crate) state: Mutex<IrpState>,
    pub(crate) done: Signal,
}

#[derive(Debug, Default)]
pub(crate) struct IrpState {
    pub(crate) completion: Option<IoOutcome>,
    /// The request while it is in the framework.
    pub(crate) request: Option<usize>,
    /// The file object it was sent to.
    pub(crate) file: usize,
}

impl Irp {
    pub(crate) fn lock(&self) -> MutexGuard<'_, IrpState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn finish(&self, completion: IoOutcome) {
        let mut state = self.lock();
        state.request = None;
        state.completion = Some(completion);
        drop(state);
        self.done.notify_all();
    }
}

/// A `WDFDEVICE_INIT` between `EvtDriverDeviceAdd`'s start and `WdfDeviceCreate`.
#[derive(Debug, Default)]
pub(crate) struct Init {
    pub(crate) name: Option<Vec<u16>>,
    pub(crate) sddl: Option<Vec<u16>>,
    pub(crate) file_config: Option<WDF_FILEOBJECT_CONFIG>,
    pub(crate) file_attributes: Option<WDF_OBJECT_ATTRIBUTES>,
    pub(crate) request_attributes: Option<WDF_OBJECT_ATTRIBUTES>,
    pub(crate) created: Option<usize>,
}

#[derive(Debug, Default)]
pub(crate) struct FxState {
    pub(crate) objects: AddrMap<Obj>,
    pub(crate) driver: Option<usize>,
    pub(crate) device_add: PFN_WDF_DRIVER_DEVICE_ADD,
    pub(crate) driver_unload: PFN_WDF_DRIVER_UNLOAD,
    pub(crate) inits: AddrMap<Init>,
    pub(crate) faults: HashMap<Fault, NTSTATUS>,
    pub(crate) work_items: usize,
    pub(crate) log: Vec<Callback>,
    pub(crate) purge_on_removal: bool,
}

// SAFETY: the raw pointers in the state (contexts, the memory handed to the driver
// (`DriverMemory`), configuration structures holding driver pointers) are owned by the framework or are the driver's
// 'static data; the state is only ever reached through `Fx::state`'s mutex.
unsafe impl Send for FxState {}

/// One loaded driver's framework.
#[derive(Debug)]
pub(crate) struct Fx {
    pub(crate) id: u64,
    pub(crate) kernel: Kernel,
    pub(crate) removal_timeout: Duration,
    pub(crate) inline_driver_calls: bool,
    pub(crate) state: Mutex<FxState>,
    pub(crate) changed: Signal,
    /// A test's hold on the next cancel routine ([`CancelHold`]).
    pub(crate) hold: Mutex<Option<Arc<HoldState>>>,
}

/// The state of a [`CancelHold`].
#[derive(Debug, Default)]
pub(crate) struct HoldState {
    held: Mutex<(bool, bool)>,
    changed: Condvar,
}

/// Holds the next `EvtRequestCancel` of a framework mid-run: the routine runs until its
/// first DDI call, which blocks until [`CancelHold::release`] (or the hold is dropped).
/// For tests of races against a cancel routine already running on another thread.
#[derive(Debug)]
pub struct CancelHold {
    state: Arc<HoldState>,
}

impl CancelHold {
    pub(crate) fn arm(fx: &Fx) -> Self {
        let state = Arc::new(HoldState::default());
        *fx.hold.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&state));
        Self { state }
    }

    /// Waits (wall time) until a cancel routine is held; returns whether one is.
    #[must_use]
    pub fn wait_until_held(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut held = self
            .state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !held.0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            held = self
                .state
                .changed
                .wait_timeout(held, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Lets the held cancel routine go on.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for CancelHold {
    fn drop(&mut self) {
        self.state
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1 = true;
        self.state.changed.notify_all();
    }
}

thread_local! {
    /// Set while this thread runs a cancel routine the model called.
    static IN_CANCEL_ROUTINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Called by every DDI: inside a cancel routine, blocks while a [`CancelHold`] holds it.
pub(crate) fn cancel_hold_point(fx: &Fx) {
    if !IN_CANCEL_ROUTINE.with(std::cell::Cell::get) {
        return;
    }
    let state = fx
        .hold
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(state) = state else {
        return;
    };
    let mut held = state.held.lock().unwrap_or_else(PoisonError::into_inner);
    held.0 = true;
    state.changed.notify_all();
    while !held.1 {
        held = state
            .changed
            .wait(held)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

static NEXT_FX: AtomicU64 = AtomicU64::new(1);
/// Handles are never reused, so a stale one is always detected: they are addresses in a
/// range no allocation uses, 16 apart, never dereferenced by anyone.
static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(0x0000_7E57_0000_0000);
/// Which framework each live handle, device-init block and driver object belongs to.
static REGISTRY: LazyLock<Mutex<HashMap<usize, Arc<Fx>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry() -> MutexGuard<'static, HashMap<usize, Arc<Fx>>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The framework `address` (a handle, device-init block or driver object) belongs to.
pub(crate) fn lookup(address: usize) -> Option<Arc<Fx>> {
    registry().get(&address).cloned()
}

pub(crate) fn register(address: usize, fx: &Arc<Fx>) {
    registry().insert(address, Arc::clone(fx));
}

pub(crate) fn unregister(address: usize) {
    registry().remove(&address);
}

/// A handle value as the pointer type the driver sees (`WDFDEVICE`, `WDFREQUEST`, ...).
/// Handles are opaque numbers (the framework looks them up, never dereferences them), so
/// the pointer has no provenance: a driver that dereferenced one would be caught by Miri.
pub(crate) fn handle_pointer<T>(handle: usize) -> *mut T {
    std::ptr::without_provenance_mut(handle)
}

/// A fresh handle value.
pub(crate) fn new_handle() -> usize {
    NEXT_HANDLE.fetch_add(16, Ordering::Relaxed)
}

/// Raises `WDF_VIOLATION` with `parameters` in the calling thread's kernel.
pub(crate) fn violation(parameters: [u64; 4]) -> ! {
    crate::kernel::current().fail_now(BugCheck::new(codes::WDF_VIOLATION, parameters))
}

/// The simulator's IRQL check for a DDI (real KMDF: a verifier break).
pub(crate) fn require_irql(max: u8, ddi: u64) {
    let current = irql();
    if current > max {
        violation([
            codes::WDF_SIM_DDI_IRQL,
            u64::from(current),
            u64::from(max),
            ddi,
        ]);
    }
}

/// Runs a driver callback: marked as a driver frame.
pub(crate) fn call_driver<T>(f: impl FnOnce() -> T) -> T {
    let _frame = DriverFrame::enter();
    f()
}

impl Fx {
    pub(crate) fn new(
        kernel: Kernel,
        removal_timeout: Duration,
        inline_driver_calls: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: NEXT_FX.fetch_add(1, Ordering::Relaxed),
            kernel,
            removal_timeout,
            inline_driver_calls,
            state: Mutex::new(FxState {
                purge_on_removal: true,
                ..FxState::default()
            }),
            changed: Signal::new(),
            hold: Mutex::new(None),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, FxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an object (registered, under `parent`), returning its handle.
    pub(crate) fn add_object(
        self: &Arc<Self>,
        st: &mut FxState,
        kind: Kind,
        parent: Option<usize>,
        attributes: Option<&WDF_OBJECT_ATTRIBUTES>,
        data: Data,
    ) -> usize {
        let handle = new_handle();
        // SAFETY: the attributes came from the driver, whose type info is 'static.
        let context = attributes.and_then(|attributes| unsafe { Context::new(attributes) });
        let (cleanup, destroy) = attributes.map_or((None, None), |a| {
            (a.EvtCleanupCallback, a.EvtDestroyCallback)
        });
        st.objects.insert(
            handle,
            Obj {
                kind,
                parent,
                children: Vec::new(),
                cleanup,
                destroy,
                context,
                data,
            },
        );
        if let Some(parent) = parent.and_then(|parent| st.objects.get_mut(&parent)) {
            parent.children.push(handle);
        }
        register(handle, self);
        handle
    }

    /// Takes the one-shot failure injected for `fault`.
    pub(crate) fn take_fault(st: &mut FxState, fault: Fault) -> Option<NTSTATUS> {
        st.faults.remove(&fault)
    }

    /// Deletes `handle` and its subtree: every object's `EvtCleanupCallback`, children
    /// before parents (in the order they were added), then each object's
    /// `EvtDestroyCallback` and its memory. `with_callbacks == false`: a failed create,
    /// where KMDF clears the callbacks first.
    pub(crate) fn delete_object(self: &Arc<Self>, handle: usize, with_callbacks: bool) {
        let order = {
            let st = self.lock();
            let mut order = Vec::new();
            post_order(&st, handle, &mut order);
            order
        };
        if with_callbacks {
            for &object in &order {
                let cleanup = self.lock().objects.get(&object).and_then(|o| o.cleanup);
                if let Some(cleanup) = cleanup {
                    self.log(Callback::ObjectCleanup(object));
                    // SAFETY: the driver's callback, called with its live object.
                    call_driver(|| unsafe { cleanup(handle_pointer(object)) });
                }
            }
        }
        for &object in &order {
            let destroy = self.lock().objects.get(&object).and_then(|o| o.destroy);
            if with_callbacks && let Some(destroy) = destroy {
                self.log(Callback::ObjectDestroy(object));
                // SAFETY: as above; its context is still allocated.
                call_driver(|| unsafe { destroy(handle_pointer(object)) });
            }
            let mut st = self.lock();
            if let Some(removed) = st.objects.remove(&object) {
                if let Some(parent) = removed.parent.and_then(|p| st.objects.get_mut(&p)) {
                    parent.children.retain(|child| *child != object);
                }
                if st.driver == Some(object) {
                    st.driver = None;
                }
                drop(st);
                drop(removed);
            }
            unregister(object);
        }
        self.changed.notify_all();
    }

    pub(crate) fn log(&self, callback: Callback) {
        self.lock().log.push(callback);
    }

    /// Runs `job` on a framework work item: a new thread bound to the kernel at
    /// `PASSIVE_LEVEL`, inside a driver frame.
    pub(crate) fn work_item(self: &Arc<Self>, job: impl FnOnce(&Arc<Self>) + Send + 'static) {
        self.lock().work_items += 1;
        let fx = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("kernel-sim wdf work item".into())
            .spawn(move || {
                let _entered = fx.kernel.enter();
                job(&fx);
                fx.lock().work_items -= 1;
                fx.changed.notify_all();
            });
        // No thread: the host is out of resources; a test failure, not a simulated crash.
        assert!(
            spawned.is_ok(),
            "kernel-sim: cannot start a framework work item thread"
        );
    }

    /// Waits until `done` holds, or the timeout passes (returns whether it held).
    pub(crate) fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&FxState) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if done(&st) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.kernel.bug_check().is_some() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    // ----- requests -----

    /// Delivers the queue's cancelled requests to their cancel routines on this thread,
    /// then leaves the dispatch loop (the caller entered it: `dispatching` counted it).
    pub(crate) fn drain_cancelled(self: &Arc<Self>, queue: usize) {
        loop {
            let next = {
                let mut st = self.lock();
                let Some(q) = queue_mut(&mut st, queue) else {
                    return;
                };
                let Some(request) = q.cancelled.pop_front() else {
                    q.dispatching -= 1;
                    drop(st);
                    self.changed.notify_all();
                    return;
                };
                let routine = request_mut(&mut st, request).and_then(|r| {
                    r.state = RequestState::CancelRoutine;
                    r.cancel_routine
                });
                routine.map(|routine| (request, routine))
            };
            if let Some((request, routine)) = next {
                self.log(Callback::RequestCancel(request));
                IN_CANCEL_ROUTINE.with(|flag| flag.set(true));
                // SAFETY: the driver's cancel routine, with its cancelled request.
                call_driver(|| unsafe { routine(handle_pointer(request)) });
                IN_CANCEL_ROUTINE.with(|flag| flag.set(false));
            }
        }
    }

    /// Re-enters the queue's dispatcher after a completion or a cancel: delivers pending
    /// cancellations here if no thread is dispatching (at `PASSIVE_LEVEL`) or on a work item
    /// (above it: the queue is `WdfExecutionLevelPassive`).
    pub(crate) fn dispatch_if_idle(self: &Arc<Self>, queue: usize) {
        let mut st = self.lock();
        let Some(q) = queue_mut(&mut st, queue) else {
            return;
        };
        if q.dispatching > 0 || q.cancelled.is_empty() {
            return;
        }
        q.dispatching += 1;
        drop(st);
        if irql() == 0 {
            self.drain_cancelled(queue);
        } else {
            self.work_item(move |fx| fx.drain_cancelled(queue));
        }
    }

    /// Cancels the IRP (`IoCancelIrp`): a cancelable request goes to its queue's cancelled
    /// list and its cancel routine runs (here if no thread is dispatching); any other is
    /// only flagged (a later `WdfRequestMarkCancelableEx` returns `STATUS_CANCELLED`).
    pub(crate) fn cancel_irp(self: &Arc<Self>, irp: &Irp) {
        let queue = {
            let mut st = self.lock();
            let Some(request) = irp.lock().request else {
                return;
            };
            let Some(r) = request_mut(&mut st, request) else {
                return;
            };
            r.cancelled = true;
            if r.state != RequestState::Cancelable {
                return;
            }
            r.state = RequestState::CancelPending;
            let Some(queue) = r.queue else {
                return;
            };
            if let Some(q) = queue_mut(&mut st, queue) {
                q.cancelable.retain(|c| *c != request);
                q.cancelled.push_back(request);
            }
            queue
        };
        self.dispatch_if_idle(queue);
    }

    /// Completes a request (`WdfRequestComplete*`), after the DDI's checks.
    pub(crate) fn complete(self: &Arc<Self>, request: usize, status: NTSTATUS, information: usize) {
        let cleanup = {
            let mut st = self.lock();
            let Some(obj) = st.objects.get_mut(&request) else {
                return;
            };
            let cleanup = obj.cleanup.take();
            if let Data::Request(r) = &mut obj.data {
                r.completing = true;
            }
            cleanup
        };
        // The request's cleanup callback runs on the completing thread, before the IRP
        // completes (`FxRequest::CompleteInternal`).
        if let Some(cleanup) = cleanup {
            self.log(Callback::ObjectCleanup(request));
            // SAFETY: the driver's callback with its live request.
            call_driver(|| unsafe { cleanup(handle_pointer(request)) });
        }
        let mut st = self.lock();
        let Some(obj) = st.objects.remove(&request) else {
            return;
        };
        unregister(request);
        let Data::Request(r) = obj.data else {
            return;
        };
        let copy = if status >= 0 || status.cast_unsigned() >> 30 == 2 {
            information.min(r.output_length)
        } else {
            0
        };
        let mut output = r.returned;
        output.clear();
        // SAFETY: the request is completed: the driver no longer uses its buffer pointers.
        unsafe { r.buffer.copy_prefix(copy, &mut output) };
        if let Some(q) = r.queue.and_then(|queue| queue_mut(&mut st, queue)) {
            q.owned.retain(|o| *o != request);
            q.cancelable.retain(|o| *o != request);
            q.cancelled.retain(|o| *o != request);
        }
        let mut close = false;
        if let Some(f) = file_mut(&mut st, r.file)
            && r.kind == RequestKind::DeviceControl
        {
            f.outstanding = f.outstanding.saturating_sub(1);
            if f.cleanup_done && f.outstanding == 0 && !f.close_started {
                f.close_started = true;
                close = true;
            }
        }
        drop(st);
        drop(obj.context);
        r.irp.finish(IoOutcome {
            status,
            information,
            output,
        });
        self.changed.notify_all();
        if close {
            // IRP_MJ_CLOSE follows the file object's last reference, which this request
            // held; the close runs at PASSIVE_LEVEL on another thread.
            let file = r.file;
            self.work_item(move |fx| fx.close_file(file));
        }
        if let Some(queue) = r.queue {
            self.dispatch_if_idle(queue);
        }
    }

    // ----- file objects -----

    /// `IRP_MJ_CLOSE`: `EvtFileClose`, then the file object is deleted.
    pub(crate) fn close_file(self: &Arc<Self>, file: usize) {
        let (close, device) = {
            let mut st = self.lock();
            let Some(f) = file_mut(&mut st, file) else {
                return;
            };
            let device = f.device;
            let close = device_of(&st, device)
                .and_then(|d| d.file_config)
                .and_then(|c| c.EvtFileClose);
            (close, device)
        };
        if let Some(close) = close {
            self.log(Callback::FileClose(file));
            call_close(close, file);
        }
        self.delete_object(file, true);
        self.release_device_of_closed_file(device);
    }

    /// A file object of `device` is gone: one open file fewer, and a device that was removed
    /// while files were open is deleted with its last one.
    pub(crate) fn release_device_of_closed_file(self: &Arc<Self>, device: usize) {
        let delete_device = {
            let mut st = self.lock();
            match device_mut(&mut st, device) {
                Some(d) => {
                    d.open_files = d.open_files.saturating_sub(1);
                    d.open_files == 0 && d.deleted_when_closed
                }
                None => false,
            }
        };
        if delete_device {
            self.delete_device(device);
        }
    }

    /// Deletes a removed device (its queue first, then the device's own cleanup).
    pub(crate) fn delete_device(self: &Arc<Self>, device: usize) {
        let name = {
            let mut st = self.lock();
            device_mut(&mut st, device).and_then(|d| {
                d.deleted_when_closed = false;
                d.name.take()
            })
        };
        drop(name);
        self.delete_object(device, true);
    }
}

fn call_close(close: unsafe extern "C" fn(WDFFILEOBJECT), file: usize) {
    // SAFETY: the driver's callback with its live file object.
    call_driver(|| unsafe { close(handle_pointer(file)) });
}

/// Children (in the order added) before their parent, recursively.
fn post_order(st: &FxState, handle: usize, order: &mut Vec<usize>) {
    if let Some(obj) = st.objects.get(&handle) {
        for child in &obj.children {
            post_order(st, *child, order);
        }
        order.push(handle);
    }
}

pub(crate) fn request_mut(st: &mut FxState, handle: usize) -> Option<&mut Request> {
    match st.objects.get_mut(&handle).map(|o| &mut o.data) {
        Some(Data::Request(r)) => Some(r),
        _ => None,
    }
}

pub(crate) fn queue_mut(st: &mut FxState, handle: usize) -> Option<&mut Queue> {
    match st.objects.get_mut(&handle).map(|o| &mut o.data) {
        Some(Data::Queue(q)) => Some(q),
        _ => None,
    }
}

pub(crate) fn file_mut(st: &mut FxState, handle: usize) -> Option<&mut File> {
    match st.objects.get_mut(&handle).map(|o| &mut o.data) {
        Some(Data::File(f)) => Some(f),
        _ => None,
    }
}

pub(crate) fn device_mut(st: &mut FxState, handle: usize) -> Option<&mut Device> {
    match st.objects.get_mut(&handle).map(|o| &mut o.data) {
        Some(Data::Device(d)) => Some(d),
        _ => None,
    }
}

pub(crate) fn device_of(st: &FxState, handle: usize) -> Option<&Device> {
    match st.objects.get(&handle).map(|o| &o.data) {
        Some(Data::Device(d)) => Some(d),
        _ => None,
    }
}
