//! Independent per-tensor work spread over threads. Each item is handled by exactly one thread
//! and results come back in item order, so the split never changes a result.

/// Runs `f` on every item, on up to `threads` scoped threads; `init` makes each thread's own
/// scratch state (e.g. DCT bases). Threads take the next item as they finish one, so items of
/// uneven size still keep every thread busy. Results are in item order.
pub fn map<I: Send, S, T: Send>(
    items: Vec<I>,
    threads: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(I, &mut S) -> T + Sync,
) -> Vec<T> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = items.len();
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        let mut state = init();
        return items.into_iter().map(|item| f(item, &mut state)).collect();
    }
    let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let next = AtomicUsize::new(0);
    let (f, init, slots, next) = (&f, &init, &slots, &next);
    let mut results: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut state = init();
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break out;
                        }
                        // Each index is taken once, so the slot is always full and never contended.
                        let item = slots[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
                        if let Some(item) = item {
                            out.push((i, f(item, &mut state)));
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_is_kept_for_any_thread_count() {
        for threads in [0, 1, 2, 3, 7, 100] {
            let out = super::map(
                (0..20).collect(),
                threads,
                || 0usize,
                |i: usize, calls| {
                    *calls += 1;
                    i * i
                },
            );
            assert_eq!(out, (0..20).map(|i| i * i).collect::<Vec<_>>(), "threads {threads}");
        }
        assert!(super::map(Vec::<u8>::new(), 4, || (), |i, _| i).is_empty());
    }
}
