//! Giving freed heap back to the kernel (glibc's `malloc_trim`).
//!
//! After a flood of half-open IKE SAs is freed, glibc keeps the pages in
//! its arenas; `malloc_trim(0)` returns every whole free page (also in the
//! middle of an arena, with `MADV_DONTNEED`), so the RSS comes back down.

/// Returns free heap pages to the kernel; `true` when some were. A no-op
/// (`false`) outside glibc.
pub fn release_free_memory() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim has no preconditions; it only walks the
        // allocator's own free lists.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}
