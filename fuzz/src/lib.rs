//! What the fuzz targets share: [`Limited`], a global allocator that aborts on any single allocation
//! above a bound, so that a length a peer declares can never make the process reserve more (libFuzzer's
//! own `-malloc_limit_mb` needs a sanitizer runtime, and these targets run without one). A zeroed
//! allocation the kernel never backs would also slip past `-rss_limit_mb`; this catches it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;

/// The system allocator, refusing (by aborting, which libFuzzer reports as a crash) any single
/// allocation or reallocation above `MB` MiB.
pub struct Limited<const MB: usize>;

impl<const MB: usize> Limited<MB> {
    fn check(size: usize) {
        if size > MB << 20 {
            // No formatting: it could allocate, and we are inside the allocator.
            let _ = std::io::stderr().write_all(b"fuzz: an allocation above the target's limit\n");
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s contract; the
// size check only aborts before forwarding.
unsafe impl<const MB: usize> GlobalAlloc for Limited<MB> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}
