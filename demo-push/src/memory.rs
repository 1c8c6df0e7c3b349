//! Returning free memory to the system.
//!
//! Memory a process frees goes back to the allocator, not to the system: glibc keeps it in
//! its arenas (one per thread that allocates), scattered between live objects, and only
//! trims the top of the main heap by itself. `malloc_trim(0)` also gives back whole free
//! pages in the middle of every arena. The push system calls it after large drops (many
//! connections closed, many parked sessions expired), so memory returns to near its
//! baseline instead of staying at the peak.

use std::sync::Arc;

use crate::metrics::{Metrics, inc};

/// Empties the buffer pool's shared free lists, then returns free pages to the system (glibc's `malloc_trim(0)`, on a blocking thread: it
/// takes a few milliseconds per 100 MB). `true` if memory was released. Counted in
/// `memory_trims_total`.
pub async fn release_free_memory(metrics: &Arc<Metrics>) -> bool {
    // The buffer pool's spare buffers first (it refills as traffic needs).
    longlink_codec::BufPool::global().trim();
    let released = tokio::task::spawn_blocking(trim_allocator)
        .await
        .unwrap_or(false);
    inc(&metrics.memory_trims);
    released
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_allocator() -> bool {
    // SAFETY: malloc_trim takes no pointers and may be called from any thread at any time;
    // it only walks the allocator's own free lists under the allocator's locks.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_allocator() -> bool {
    false
}
