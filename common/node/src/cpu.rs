//! CPU-bound steps inside async node code: aggregation and the outer step, hashing the model,
//! comparing every pair of a window's updates. Run on a runtime worker as they are, they stall
//! every other task queued on that worker (uploads, timers, a devnet's other nodes) for as long
//! as they take: a second or more at the larger presets.

/// Runs `f`, which keeps a CPU busy for long, without stalling the runtime's other tasks: on a
/// multi-threaded runtime the worker first hands its queued tasks to another
/// (`tokio::task::block_in_place`); elsewhere (a current-thread runtime, as in unit tests, or
/// outside any runtime) `f` simply runs here.
pub fn heavy<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_outside_a_runtime() {
        assert_eq!(heavy(|| 2 + 2), 4);
    }

    #[tokio::test]
    async fn runs_on_a_current_thread_runtime() {
        assert_eq!(heavy(|| 3), 3);
    }

    /// On a multi-threaded runtime a task queued behind the heavy one still runs meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn other_tasks_run_while_a_heavy_step_holds_the_worker() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = tokio::spawn(async move {
            let _ = tx.send(());
        });
        // Waits (up to 10 s) for the other task, which can run only if this worker let it go.
        let got = heavy(|| rx.recv_timeout(std::time::Duration::from_secs(10)));
        assert!(got.is_ok(), "the other task never ran");
        other.await.expect("other task");
    }
}
