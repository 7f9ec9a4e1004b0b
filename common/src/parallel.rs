//! Independent per-tensor work spread over threads. Each item is handled by exactly one thread
//! and results come back in item order, so the split never changes a result.

/// Runs `f` on every item, on up to `threads` scoped threads; `init` makes each thread's own
/// scratch state (e.g. DCT bases). Results are in item order.
pub fn map<I: Send, S, T: Send>(
    items: Vec<I>,
    threads: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(I, &mut S) -> T + Sync,
) -> Vec<T> {
    let per = items.len().div_ceil(threads.max(1)).max(1);
    let mut chunks: Vec<Vec<I>> = Vec::new();
    let mut rest = items.into_iter();
    loop {
        let chunk: Vec<I> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let (f, init) = (&f, &init);
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut state = init();
                    chunk.into_iter().map(|item| f(item, &mut state)).collect::<Vec<T>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
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
