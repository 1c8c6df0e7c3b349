//! BufPool: classes, reuse, bounds, cross-thread returns and exact accounting.

use std::sync::mpsc;
use std::thread;

use bytes::BufMut;
use longlink_codec::{BufPool, BufPoolStats};

fn assert_balanced(stats: BufPoolStats) {
    assert_eq!(
        stats.gets,
        stats.returned + stats.dropped,
        "every handle taken back or let go exactly once: {stats}"
    );
    assert_eq!(stats.gets, stats.hits + stats.misses, "{stats}");
    assert_eq!(
        stats.returned,
        stats.retained_buffers + stats.hits + stats.trimmed,
        "nothing lost or counted twice: {stats}"
    );
}

#[test]
fn get_returns_the_smallest_class_that_fits() {
    let pool = BufPool::new();
    for (want, class) in [
        (0, 256),
        (1, 256),
        (256, 256),
        (257, 1024),
        (4096, 4096),
        (4097, 16384),
        (65536, 65536),
    ] {
        let buf = pool.get(want);
        assert_eq!(buf.capacity(), class, "get({want})");
        assert_eq!(buf.class_size(), Some(class));
        assert!(buf.is_empty());
    }
}

#[test]
fn dropped_buffer_is_reused_without_allocating() {
    let pool = BufPool::new();
    let mut buf = pool.get(1000);
    buf.put_slice(b"data");
    let ptr = buf.as_ptr();
    drop(buf);
    let again = pool.get(1000);
    assert_eq!(again.as_ptr(), ptr, "same memory handed out again");
    assert!(again.is_empty(), "handed out cleared");
    let stats = pool.stats();
    assert_eq!((stats.gets, stats.hits, stats.misses), (2, 1, 1));
}

#[test]
fn buffer_grown_past_twice_its_class_is_freed_not_kept() {
    let pool = BufPool::new();
    let mut buf = pool.get(256);
    buf.put_slice(&[0u8; 5000]);
    assert!(buf.capacity() >= 512);
    drop(buf);
    let stats = pool.stats();
    assert_eq!(
        (stats.returned, stats.dropped, stats.retained_bytes),
        (0, 1, 0)
    );
    assert_balanced(stats);
}

#[test]
fn oversize_request_is_exact_and_never_kept() {
    let pool = BufPool::new();
    let buf = pool.get(200_000);
    assert_eq!(buf.capacity(), 200_000);
    assert_eq!(buf.class_size(), None);
    drop(buf);
    let stats = pool.stats();
    assert_eq!(
        (stats.misses, stats.dropped, stats.retained_bytes),
        (1, 1, 0)
    );
}

#[test]
fn split_off_part_keeps_the_buffer_out_until_it_drops() {
    let pool = BufPool::new();
    let mut buf = pool.get(1024);
    buf.put_slice(&[7u8; 100]);
    let part = buf.split_to(10).freeze();
    drop(buf); // the part still shares the memory: let go, not kept
    assert_eq!(pool.stats().dropped, 1);
    assert_eq!(&part[..], &[7u8; 10]);

    let mut buf = pool.get(1024);
    buf.put_slice(&[7u8; 100]);
    let part = buf.split_to(10).freeze();
    drop(part); // every part gone before the handle: the whole buffer is reclaimed
    drop(buf);
    let stats = pool.stats();
    assert_eq!((stats.returned, stats.retained_bytes), (1, 1024));
}

#[test]
fn frozen_buffer_returns_when_its_last_clone_drops() {
    let pool = BufPool::new();
    let mut buf = pool.get(100);
    buf.put_slice(b"hello");
    let bytes = buf.freeze();
    let clone = bytes.clone();
    drop(bytes);
    assert_eq!(pool.stats().returned, 0);
    assert_eq!(&clone[..], b"hello");
    drop(clone);
    assert_eq!(pool.stats().returned, 1);
}

#[test]
fn full_class_drops_extra_buffers_instead_of_growing() {
    // No thread cache, room for two 1 KiB buffers in the shared list.
    let pool = BufPool::builder()
        .size_classes(&[1024])
        .thread_cache_bytes(0)
        .shared_bytes_per_class(2048)
        .build();
    let bufs: Vec<_> = (0..5).map(|_| pool.get(1024)).collect();
    drop(bufs);
    let stats = pool.stats();
    assert_eq!((stats.returned, stats.dropped), (2, 3));
    assert_eq!(stats.retained_bytes, 2048);
    assert_eq!(stats.high_water_bytes, 2048);
    assert_balanced(stats);
}

#[test]
fn retained_memory_stays_within_the_configured_bound() {
    let pool = BufPool::builder()
        .size_classes(&[256, 4096])
        .thread_cache_bytes(8 * 1024)
        .shared_bytes_per_class(64 * 1024)
        .build();
    let bufs: Vec<_> = (0..1000)
        .flat_map(|_| [pool.get(100), pool.get(4000)])
        .collect();
    drop(bufs);
    let stats = pool.stats();
    // Per class: 64 KiB shared + 8 KiB in this thread's cache.
    assert!(stats.retained_bytes <= 2 * (64 + 8) * 1024, "{stats}");
    assert!(stats.high_water_bytes <= 2 * (64 + 8) * 1024, "{stats}");
    assert!(stats.dropped > 0);
    assert_balanced(stats);
}

#[test]
fn trim_frees_what_the_pool_holds() {
    let pool = BufPool::new();
    let bufs: Vec<_> = (0..100).map(|_| pool.get(1024)).collect();
    drop(bufs);
    let held = pool.stats().retained_bytes;
    assert_eq!(held, 100 * 1024);
    assert_eq!(pool.trim(), held);
    let stats = pool.stats();
    assert_eq!(
        (stats.retained_bytes, stats.retained_buffers, stats.trimmed),
        (0, 0, 100)
    );
    assert_balanced(stats);
}

#[test]
fn into_inner_detaches_and_counts_as_dropped() {
    let pool = BufPool::new();
    let inner = pool.get(10).into_inner();
    assert_eq!(inner.capacity(), 256);
    let stats = pool.stats();
    assert_eq!((stats.returned, stats.dropped), (0, 1));
}

#[test]
fn buffers_dropped_on_other_threads_are_neither_lost_nor_double_returned() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 20_000;
    let pool = BufPool::builder()
        .thread_cache_bytes(8 * 1024)
        .shared_bytes_per_class(256 * 1024)
        .build();
    // Each thread gets buffers, writes a marker, and hands half of them to the next thread,
    // which checks the marker and drops them there.
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            let pool = pool.clone();
            let next = senders[(i + 1) % THREADS].clone();
            thread::spawn(move || {
                let sizes = [10, 300, 2000, 5000, 20_000];
                for round in 0..ROUNDS {
                    let mut buf = pool.get(sizes[round % sizes.len()]);
                    buf.put_u64((i * ROUNDS + round) as u64);
                    if round % 2 == 0 {
                        next.send(buf).unwrap();
                    }
                    while let Ok(theirs) = rx.try_recv() {
                        assert_eq!(theirs.len(), 8, "a buffer handed over intact");
                    }
                }
                drop(next);
                rx
            })
        })
        .collect();
    drop(senders);
    let receivers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for rx in receivers {
        while let Ok(buf) = rx.try_recv() {
            drop(buf);
        }
    }
    let stats = pool.stats();
    assert_eq!(stats.gets, (THREADS * ROUNDS) as u64);
    assert!(stats.hits > stats.misses, "the pool is reused: {stats}");
    assert_balanced(stats);
}

#[test]
fn global_pool_is_shared_across_threads() {
    let before = BufPool::global().stats().gets;
    thread::spawn(|| drop(BufPool::global().get(10)))
        .join()
        .unwrap();
    drop(BufPool::global().get(10));
    assert!(BufPool::global().stats().gets >= before + 2);
}

#[test]
fn stats_render_as_prometheus_text() {
    let pool = BufPool::new();
    drop(pool.get(10));
    let text = pool.stats().to_prometheus("longlink_buf");
    assert!(
        text.contains("# TYPE longlink_buf_gets_total counter\nlonglink_buf_gets_total 1\n"),
        "{text}"
    );
    assert!(text.contains("longlink_buf_retained_bytes 256\n"), "{text}");
}

#[test]
#[should_panic(expected = "strictly ascending")]
fn unordered_size_classes_are_refused() {
    BufPool::builder().size_classes(&[1024, 256]).build();
}

#[test]
fn exiting_threads_free_their_caches_and_keep_their_counts() {
    let pool = BufPool::builder()
        .thread_cache_bytes(64 * 1024)
        .shared_bytes_per_class(0)
        .build();
    for _ in 0..50 {
        let pool = pool.clone();
        thread::spawn(move || {
            let bufs: Vec<_> = (0..10).map(|_| pool.get(1024)).collect();
            drop(bufs); // all ten land in this thread's cache
        })
        .join()
        .unwrap();
    }
    let stats = pool.stats();
    assert_eq!(stats.gets, 500);
    assert_eq!(stats.returned, 500);
    assert_eq!(
        stats.retained_buffers, 0,
        "an exited thread's cache is freed: {stats}"
    );
    assert_eq!(stats.trimmed, 500);
    assert_balanced(stats);
}
