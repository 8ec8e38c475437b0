//! jemalloc: the global allocator, its statistics, purging and heap profiles.
//!
//! The allocator's options (`malloc_conf`) live in the binary, because jemalloc
//! reads them before `main` and only a symbol in the final executable is sure to be linked.

#![allow(unsafe_code)]

use std::{ffi::CStr, ptr};

use serde::Serialize;
use tikv_jemalloc_ctl::{epoch, stats};

use crate::{Error, Result};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `MALLCTL_ARENAS_ALL`: addresses every arena at once.
const ALL_ARENAS_PURGE: &CStr = c"arena.4096.purge";

/// jemalloc's view of the heap, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AllocatorStats {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub mapped: u64,
    pub retained: u64,
    pub metadata: u64,
}

/// Reads fresh statistics (jemalloc caches them until the epoch advances).
pub fn stats() -> Result<AllocatorStats> {
    epoch::advance().map_err(allocator_error)?;
    let read = |value: Result<usize, tikv_jemalloc_ctl::Error>| {
        value.map(|v| v as u64).map_err(allocator_error)
    };
    Ok(AllocatorStats {
        allocated: read(stats::allocated::read())?,
        active: read(stats::active::read())?,
        resident: read(stats::resident::read())?,
        mapped: read(stats::mapped::read())?,
        retained: read(stats::retained::read())?,
        metadata: read(stats::metadata::read())?,
    })
}

/// Returns what the calling thread's cache holds to its arena, so that a purge can free it.
/// Other threads' caches are out of reach; they are bounded by the options in `main.rs`.
pub fn flush_thread_cache() -> Result<()> {
    command(c"thread.tcache.flush")
}

/// Returns every arena's unused dirty pages to the operating system now,
/// instead of waiting for the background decay.
pub fn purge() -> Result<()> {
    command(ALL_ARENAS_PURGE)
}

/// Runs a jemalloc control that takes no input and gives no output.
fn command(name: &CStr) -> Result<()> {
    // SAFETY: such controls need all four pointers null; the name is NUL-terminated.
    let code = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
        )
    };
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Allocator(format!(
            "jemalloc's `{}` failed with code {code}",
            name.to_string_lossy()
        )))
    }
}

/// Turns heap profiling on; fails when the binary was not started with profiling compiled in.
pub async fn enable_profiling() -> Result<()> {
    let control = profiler()?;
    let mut control = control.lock().await;
    if !control.activated() {
        control
            .activate()
            .map_err(|e| Error::Allocator(format!("cannot activate heap profiling: {e}")))?;
    }
    Ok(())
}

/// A gzipped pprof heap profile, readable by `go tool pprof`.
pub async fn heap_profile() -> Result<Vec<u8>> {
    let control = profiler()?;
    let mut control = control.lock().await;
    if !control.activated() {
        return Err(Error::Allocator(
            "heap profiling is not active: start with SHORTENER_PPROF=true".into(),
        ));
    }
    control
        .dump_pprof()
        .map_err(|e| Error::Allocator(format!("cannot dump the heap profile: {e}")))
}

fn profiler() -> Result<&'static std::sync::Arc<tokio::sync::Mutex<jemalloc_pprof::JemallocProfCtl>>>
{
    jemalloc_pprof::PROF_CTL.as_ref().ok_or_else(|| {
        Error::Allocator(
            "heap profiling is unavailable: this binary's jemalloc was started without `prof:true`"
                .into(),
        )
    })
}

fn allocator_error(error: tikv_jemalloc_ctl::Error) -> Error {
    Error::Allocator(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_see_a_large_allocation() {
        let block = vec![1u8; 8 << 20];
        let during = stats().unwrap();
        // Other tests allocate and free at the same time, so only what this one holds is
        // certain: the live block is part of what jemalloc reports as allocated.
        assert!(during.allocated >= 8 << 20);
        assert!(during.resident >= during.active && during.mapped >= during.active);
        drop(block);
    }

    #[test]
    fn purging_all_arenas_succeeds() {
        purge().unwrap();
    }

    #[test]
    fn the_thread_cache_can_be_flushed() {
        flush_thread_cache().unwrap();
    }
}
