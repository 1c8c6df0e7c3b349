//! Allocation counts on longlink-rpc's per-call paths (a counting global allocator counts
//! the allocations of the measuring thread only): recording a call of a method already seen
//! allocates nothing, the first call of a method allocates its histograms once, and a typed
//! body is encoded in one allocation of its exact size.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use longlink_rpc::metrics::{CallHistograms, Histogram, MAX_METHODS};
use longlink_rpc::typed::__private::encode;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator may run while this thread's locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns how many allocations it made on this thread.
fn count_allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

#[test]
fn a_known_method_records_without_allocating() {
    let h = CallHistograms::new();
    let first = count_allocations(|| h.record(7, Duration::ZERO, Duration::from_micros(40)));
    assert_eq!(
        first, 1,
        "the first call of a method makes its histograms, once"
    );
    let steady = count_allocations(|| {
        for i in 0..10_000u64 {
            h.record(7, Duration::from_nanos(i), Duration::from_micros(i));
        }
    });
    assert_eq!(steady, 0);
    assert_eq!(h.snapshot()[0].round_trip.count(), 10_001);
}

#[test]
fn methods_past_the_cap_record_into_other_without_allocating() {
    let h = CallHistograms::new();
    for method in 0..MAX_METHODS as u32 {
        h.record(method, Duration::ZERO, Duration::from_micros(1));
    }
    let past = count_allocations(|| {
        for method in 10_000..10_100 {
            h.record(method, Duration::ZERO, Duration::from_micros(1));
        }
    });
    assert_eq!(past, 0, "an untracked method allocates nothing, every time");
    let other = h.snapshot().pop().unwrap();
    assert_eq!((other.method, other.round_trip.count()), (None, 100));
}

#[test]
fn a_histogram_records_without_allocating() {
    let h = Histogram::new();
    let n = count_allocations(|| {
        for us in 0..10_000 {
            h.record(Duration::from_micros(us));
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn a_typed_body_is_encoded_in_one_allocation_of_its_exact_size() {
    let body = serde_bytes::ByteBuf::from(vec![7u8; 1024]);
    let mut len = 0;
    let allocations = count_allocations(|| len = encode(&(&body,)).unwrap().len());
    assert_eq!(allocations, 1, "one allocation, no growth");
    assert_eq!(len, 1024 + 2, "a varint length and the bytes");
    let args = (42u64, "a name".to_owned(), vec![1u32, 2, 3]);
    let allocations =
        count_allocations(|| len = encode(&(&args.0, &args.1, &args.2)).unwrap().len());
    assert_eq!(allocations, 1);
    assert_eq!(len, 1 + 7 + 4);
}
