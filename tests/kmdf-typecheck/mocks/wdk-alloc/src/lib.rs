//! Stand-in for wdk-alloc 0.4.1: the `WdkAllocator` type (never used to allocate here).
#![no_std]

pub struct WdkAllocator;

// SAFETY: never allocates: every allocation fails (null), which `GlobalAlloc` permits.
unsafe impl core::alloc::GlobalAlloc for WdkAllocator {
    unsafe fn alloc(&self, _layout: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
}
