//! The threads of one call: the calling thread works on the call's parts itself, and the pool's
//! workers help. Each thread takes the next part nobody has taken yet, so a worker that wakes
//! late gets fewer parts instead of holding the call up. Handing every part to the workers and
//! waiting (rayon's `install`) made half the 2-thread rounds of a 512² call as slow as one
//! thread on a 2-vCPU Zen 5 VM: one worker had done both halves before the other woke.
//!
//! The pool has as many workers as threads, so that a caller that is itself one of them (the
//! trainer runs `fit` on one, see `nn::Backend::install`) still finds `threads − 1` helpers.

use std::sync::Mutex;

use crate::error::{Error, Result};

/// Worker threads that help a calling thread with the parts of its calls.
#[derive(Debug)]
pub(crate) struct Pool {
    workers: rayon::ThreadPool,
}

impl Pool {
    /// A pool for calls on `threads` threads (at least 2).
    pub(crate) fn new(threads: usize) -> Result<Self> {
        debug_assert!(threads >= 2);
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("densecore-{i}"))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start {threads} threads: {e}")))?;
        Ok(Self { workers })
    }

    /// The threads that share a call, the calling one included.
    pub(crate) fn threads(&self) -> usize {
        self.workers.current_num_threads()
    }

    /// Runs `f` on one of the workers.
    #[cfg(feature = "nn")]
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.workers.install(f)
    }

    /// Calls `f` on every item of `items` on up to `threads` threads, the calling one included,
    /// each taking the next item. Results must not depend on who runs an item: which thread
    /// gets which changes from call to call. Returns when every item is done and every helper
    /// asked for has started (a late one finds no item left and returns at once).
    pub(crate) fn for_each<I>(&self, threads: usize, items: I, f: impl Fn(I::Item) + Sync)
    where
        I: Iterator + Send,
        I::Item: Send,
    {
        let items = Mutex::new(items);
        let next = || items.lock().unwrap_or_else(|e| e.into_inner()).next();
        let work = || {
            while let Some(item) = next() {
                f(item);
            }
        };
        self.workers.in_place_scope(|s| {
            for _ in 1..threads.min(self.threads()) {
                s.spawn(|_| work());
            }
            work();
        });
    }

    /// [`Pool::for_each`] with a fallible `f`: the first error stops the hand-out of further
    /// items and is returned.
    #[cfg(feature = "nn")]
    pub(crate) fn try_for_each<I, E>(
        &self,
        threads: usize,
        items: I,
        f: impl Fn(I::Item) -> std::result::Result<(), E> + Sync,
    ) -> std::result::Result<(), E>
    where
        I: Iterator + Send,
        I::Item: Send,
        E: Send,
    {
        let first_error = Mutex::new(None);
        let failed = || first_error.lock().unwrap_or_else(|e| e.into_inner());
        self.for_each(
            threads,
            items.map_while(|item| failed().is_none().then_some(item)),
            |item| {
                if let Err(e) = f(item) {
                    failed().get_or_insert(e);
                }
            },
        );
        first_error
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Every item runs exactly once, however many threads share them; with one thread asked
    /// for, all on the calling thread.
    #[test]
    fn each_item_runs_once() {
        let pool = Pool::new(3).unwrap();
        assert_eq!(pool.threads(), 3);
        for threads in 1..=4 {
            let runs: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
            let caller = std::thread::current().id();
            let elsewhere = AtomicUsize::new(0);
            pool.for_each(threads, 0..runs.len(), |i| {
                runs[i].fetch_add(1, Ordering::Relaxed);
                if std::thread::current().id() != caller {
                    elsewhere.fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(
                runs.iter().all(|r| r.load(Ordering::Relaxed) == 1),
                "{threads}"
            );
            if threads == 1 {
                assert_eq!(elsewhere.load(Ordering::Relaxed), 0);
            }
        }
    }

    /// Items borrow disjoint parts of one buffer mutably.
    #[test]
    fn items_may_be_mutable_chunks() {
        let pool = Pool::new(2).unwrap();
        let mut v = vec![0usize; 1000];
        pool.for_each(2, v.chunks_mut(7).enumerate(), |(i, chunk)| {
            chunk.iter_mut().for_each(|x| *x = i)
        });
        assert!(v.iter().enumerate().all(|(j, &x)| x == j / 7));
    }

    /// The first error is returned and no item is handed out after it.
    #[cfg(feature = "nn")]
    #[test]
    fn first_error_stops_the_rest() {
        let pool = Pool::new(2).unwrap();
        let ran = AtomicUsize::new(0);
        let r = pool.try_for_each(1, 0..10, |i| {
            ran.fetch_add(1, Ordering::Relaxed);
            if i == 3 { Err(i) } else { Ok(()) }
        });
        assert_eq!(r, Err(3));
        assert_eq!(ran.load(Ordering::Relaxed), 4);
        assert_eq!(pool.try_for_each(2, 0..10, |_| Ok::<(), ()>(())), Ok(()));
    }
}
