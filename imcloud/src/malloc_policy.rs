//! How the process asks glibc's malloc to return large blocks.
//!
//! glibc serves a request above its mmap threshold (128 KiB at first) with a mapping of its own, and
//! unmaps it on free. But each such free raises the threshold to the size freed (up to 32 MiB): after the
//! first argon2 hash (19 MiB of working memory) every later one is carved from a thread's malloc arena
//! instead, and an arena keeps what it held. logic, whose password hashes run on `spawn_blocking` threads
//! (each with an arena of its own), stood at 918 MiB after the soak's setup, and a standalone at 1.3 GiB
//! after 100 registrations and 100 logins, against 25 MiB before them.
//!
//! [`return_large_blocks`] fixes the threshold at [`MMAP_THRESHOLD`], which also turns the raising off:
//! every block of that size or more is mapped and unmapped on its own, so its memory goes back to the
//! system when freed. Smaller requests, the hot paths' buffers among them, are served as before.

/// Requests of this size or more get mappings of their own.
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`] (see the module). Call once, first thing in
/// `main`, before any other thread exists. `false` if glibc refused it (log that once logging is up);
/// `true` as well on other C libraries, where there is nothing to do.
pub fn return_large_blocks() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a tunable of the allocator, before any other thread exists, and
        // M_MMAP_THRESHOLD accepts any value up to 32 MiB.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}
