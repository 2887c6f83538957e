//! Work over many environments at once, a bounded number at a time.

use std::future::Future;

use tokio::task::JoinSet;

/// Runs `work` on each of `items`, at most `parallel` at a time, each on a task of its
/// own; the results in the order of `items` (none for a task that panicked).
pub async fn bounded<T, R, F, Fut>(items: Vec<T>, parallel: usize, work: F) -> Vec<Option<R>>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let mut tasks = JoinSet::new();
    let mut pending = items.into_iter().enumerate();
    loop {
        while tasks.len() < parallel.max(1) {
            let Some((i, item)) = pending.next() else {
                break;
            };
            let fut = work(item);
            tasks.spawn(async move { (i, fut.await) });
        }
        match tasks.join_next().await {
            Some(Ok((i, r))) => results[i] = Some(r),
            Some(Err(_)) => {}
            None => break,
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn results_come_in_order_and_no_more_than_parallel_run_at_once() {
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let out = bounded((0..20u64).collect(), 3, |n| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                // Later items finish first: the order still holds.
                tokio::time::sleep(std::time::Duration::from_millis(100 - n)).await;
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                n * 2
            }
        })
        .await;
        assert_eq!(out, (0..20u64).map(|n| Some(n * 2)).collect::<Vec<_>>());
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
