//! Framing cost on the relay's steady path: scanning a read buffer of
//! server frames (a result set: RowDescription, DataRows, CommandComplete,
//! ReadyForQuery) into whole frames with `peek_header`, as the relay does
//! before writing the batch out in one write, and splitting frames off as
//! `Bytes` with `Frame::decode`. A counting allocator proves the scan
//! allocates nothing per frame.
//!
//! cargo bench --bench relay

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use heal7_proxy::protocol::{Frame, peek_header};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MAX: usize = 1 << 30;

fn frame(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
}

/// A 100-row result set as the server sends it: ~11 KB, 103 frames.
fn result_set() -> Vec<u8> {
    let mut b = Vec::new();
    frame(&mut b, b'T', &[0u8; 60]);
    for i in 0..100u32 {
        let mut row = vec![0, 3];
        for col in [
            format!("{i}"),
            format!("user{i}@example.com"),
            "x".repeat(60),
        ] {
            row.extend_from_slice(&(col.len() as i32).to_be_bytes());
            row.extend_from_slice(col.as_bytes());
        }
        frame(&mut b, b'D', &row);
    }
    frame(&mut b, b'C', b"SELECT 100\0");
    frame(&mut b, b'Z', b"I");
    b
}

/// The relay's scan: whole frames at the front of the buffer, by header.
fn scan(buf: &[u8]) -> (usize, usize) {
    let mut pos = 0;
    let mut frames = 0;
    while let Ok(Some(h)) = peek_header(&buf[pos..], MAX) {
        if buf.len() - pos < h.total_len {
            break;
        }
        frames += 1;
        pos += h.total_len;
    }
    (pos, frames)
}

fn bench_relay(c: &mut Criterion) {
    let batch = result_set();
    let (len, frames) = scan(&batch);
    assert_eq!((len, frames), (batch.len(), 103));

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        black_box(scan(black_box(&batch)));
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocations, 0, "the frame scan must not allocate");

    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(frames as u64));
    g.bench_function("scan a batch of 103 server frames (peek_header)", |b| {
        b.iter(|| scan(black_box(&batch)))
    });
    let mut buf = BytesMut::with_capacity(batch.len());
    g.bench_function(
        "split a batch of 103 frames as Bytes (Frame::decode)",
        |b| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(&batch);
                let mut n = 0;
                while let Ok(Some(f)) = Frame::decode(&mut buf, MAX) {
                    n += f.bytes.len();
                }
                n
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench_relay);
criterion_main!(benches);
