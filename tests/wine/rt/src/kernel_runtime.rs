//! The kernel-image runtime items (Windows targets only). Every item here is a link-time
//! symbol or a lang item; nothing is called by name from Rust.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::panic::PanicInfo;

use windows_sys::Wdk::System::SystemServices::{
    ExAllocatePoolWithTag, ExFreePoolWithTag, KeBugCheckEx,
};

/// `NonPagedPoolNx` (`POOL_TYPE`).
const NON_PAGED_POOL_NX: i32 = 512;

/// Pool tag of allocations made through `alloc` (Box, Vec, ..) in this build: `KtWa` as it
/// shows in pool tools (ktimer, Wine, allocator).
const GLOBAL_ALLOCATOR_TAG: u32 = u32::from_le_bytes(*b"KtWa");

/// What a non-paged pool block is aligned to on x64 (`MEMORY_ALLOCATION_ALIGNMENT`).
const POOL_ALIGNMENT: usize = 16;

/// Bug-check code raised by a Rust panic in this build. Driver-chosen (not a Microsoft code):
/// parameter 1 is the source line, 2 the column, 3 the address and 4 the length of the file
/// name of the panic location (0 when unknown).
const RUST_PANIC_BUG_CHECK: u32 = 0x4B54_5250; // "KTRP"

/// The global allocator: non-paged pool, so `alloc` types may be touched at `DISPATCH_LEVEL`.
/// Allocating or freeing itself must happen at IRQL <= `DISPATCH_LEVEL`; the driver's design
/// already forbids allocating in a DPC. `ExAllocatePoolWithTag`, not `ExAllocatePool2`:
/// Wine 8.0 has no `ExAllocatePool2`, and an image importing it does not load there.
struct NonPagedPoolAllocator;

// SAFETY: ExAllocatePoolWithTag returns blocks of at least the requested size aligned to
// POOL_ALIGNMENT (larger alignments are refused with null, which `GlobalAlloc` allows), and a
// block is freed exactly once with the tag it was allocated with.
unsafe impl GlobalAlloc for NonPagedPoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > POOL_ALIGNMENT {
            return core::ptr::null_mut();
        }
        // SAFETY: a plain pool allocation; the caller runs at IRQL <= DISPATCH_LEVEL (see the
        // type's doc) and a zero size is excluded by `GlobalAlloc`'s contract.
        unsafe { ExAllocatePoolWithTag(NON_PAGED_POOL_NX, layout.size(), GLOBAL_ALLOCATOR_TAG) }
            .cast()
    }

    unsafe fn dealloc(&self, block: *mut u8, _layout: Layout) {
        // SAFETY: `block` came from `alloc` above (GlobalAlloc's contract), so it is a live pool
        // block with this tag, freed once.
        unsafe { ExFreePoolWithTag(block.cast::<c_void>(), GLOBAL_ALLOCATOR_TAG) };
    }
}

#[global_allocator]
static GLOBAL_ALLOCATOR: NonPagedPoolAllocator = NonPagedPoolAllocator;

/// A panic in a kernel image cannot unwind: stop the machine with a recognisable bug check.
/// (Under Wine, `KeBugCheckEx` ends the driver host process instead.)
#[panic_handler]
fn bug_check_on_panic(info: &PanicInfo) -> ! {
    let (line, column, file_address, file_length) = info.location().map_or((0, 0, 0, 0), |at| {
        (
            at.line() as usize,
            at.column() as usize,
            at.file().as_ptr() as usize,
            at.file().len(),
        )
    });
    // SAFETY: KeBugCheckEx may be called at any IRQL and takes plain integers.
    unsafe {
        KeBugCheckEx(
            RUST_PANIC_BUG_CHECK,
            line,
            column,
            file_address,
            file_length,
        );
    }
    // KeBugCheckEx does not return; windows-sys declares it as returning `()`.
    loop {
        core::hint::spin_loop();
    }
}

/// Tells the linker the image uses floating point; the C runtime normally defines it and
/// rustc emits a reference whenever a function uses floats.
#[unsafe(no_mangle)]
#[used]
static _fltused: i32 = 0;

/// The MSVC C++ exception personality routine, named by the unwind tables of the prebuilt
/// libcore. With `panic = "abort"` no Rust frame ever unwinds, so this only has to exist;
/// should the system consult it, it answers `ExceptionContinueSearch` (1).
#[unsafe(no_mangle)]
extern "C" fn __CxxFrameHandler3() -> i32 {
    1
}

/// The default entry point of a DLL, present only so that the by-product `ktimer.dll` Cargo
/// links from package `ktimer` in the Wine build links (see the crate doc); that file is never
/// loaded. The front end's `.sys` names `DriverEntry` as its entry point, so this is not its
/// entry. Should anything ever load the by-product, it refuses to load (returns FALSE).
#[unsafe(no_mangle)]
extern "system" fn _DllMainCRTStartup(
    _module: *mut c_void,
    _reason: u32,
    _reserved: *mut c_void,
) -> i32 {
    0
}

// The routines the compiler and the prebuilt liballoc emit calls to (copies, fills,
// comparisons, `strlen`, stack probes of large frames), taken from the kernel's own exports
// instead of a C runtime. The declaration makes rustc generate their import entries.
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
#[expect(
    dead_code,
    reason = "called by compiler-emitted code through the linker, never by name from Rust"
)]
unsafe extern "C" {
    fn memcpy(destination: *mut c_void, source: *const c_void, count: usize) -> *mut c_void;
    fn memmove(destination: *mut c_void, source: *const c_void, count: usize) -> *mut c_void;
    fn memset(destination: *mut c_void, value: i32, count: usize) -> *mut c_void;
    fn memcmp(left: *const c_void, right: *const c_void, count: usize) -> i32;
    fn strlen(text: *const u8) -> usize;
    fn __chkstk();
}
