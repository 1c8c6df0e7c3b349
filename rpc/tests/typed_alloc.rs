//! The typed path's encoding costs one allocation per body, of exactly its size: a 1 KiB
//! `serde_bytes` argument is encoded without the `realloc` that growing a `Vec` costs. A
//! counting global allocator counts the allocations made on the measuring thread only.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use longlink_rpc::typed::__private::encode;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
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

fn count_allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    let out = f();
    COUNTING.with(|on| on.set(false));
    (out, ALLOCATIONS.with(|n| n.get()))
}

#[test]
fn a_typed_body_is_encoded_in_one_allocation_of_its_exact_size() {
    let body = serde_bytes::ByteBuf::from(vec![7u8; 1024]);
    let (bytes, allocations) = count_allocations(|| encode(&(&body,)).unwrap());
    assert_eq!(allocations, 1, "one allocation, no growth");
    assert_eq!(bytes.len(), 1024 + 2, "a varint length and the bytes");
    let args = (42u64, "a name".to_owned(), vec![1u32, 2, 3]);
    let (bytes, allocations) = count_allocations(|| encode(&(&args.0, &args.1, &args.2)).unwrap());
    assert_eq!(allocations, 1);
    assert_eq!(bytes.len(), 1 + 7 + 4);
}
