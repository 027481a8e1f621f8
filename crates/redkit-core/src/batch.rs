//! Coalescing concurrent calls into batches, without a timer.
//!
//! When many tasks each await one small script call, the server spends most of its time
//! on the per-command overhead (parsing, dispatch, a reply per call), and on a small
//! machine the client does too. A [`Coalescer`] sends the first request at once; whatever
//! arrives while batches are in flight is queued and goes out together as the next batch,
//! so one script call decides many requests. An idle caller never waits for a timer.
//!
//! Redis runs every command in its input buffer before it writes a reply, so two batches
//! that arrive together are answered together and the two sides take turns.
//! [`Coalescer::pipelined`] avoids that: with many requests queued and nothing in flight
//! it sends half of them and keeps the rest for the moment the first half is answered,
//! sending them *before* the answers wake their callers; the two halves then alternate,
//! one on the server while the client handles the other. And once the callers of the
//! last answers are all back with new requests, their batch goes at once, behind the one
//! on the server, and waits in its socket: the server goes from one batch to the next
//! without waiting for the client.
//!
//! A caller may go away (its [`Coalescer::call`] future dropped) at any time. If it goes
//! before its batch is launched, its request is taken out of the batch and never sent. If
//! it goes after, the request has run on the server; its answer, which nobody can receive
//! any more, goes to the [`Coalescer::on_orphan`] handler (for example to release a lock
//! acquired for a caller who is gone). Each answer is either received by its caller or
//! handed to that handler, never both and never lost
//! (tests `a_dropped_caller_is_not_sent`, `an_answer_for_a_dropped_caller_goes_to_on_orphan`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> redkit_core::Result<()> {
//! use redkit_core::Coalescer;
//! let doubler = Coalescer::new(64, 2, |batch: Vec<u32>| async move {
//!     Ok(batch.into_iter().map(|n| n * 2).collect())
//! });
//! assert_eq!(doubler.call(21).await?, 42);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

type Flush<Req, Resp> =
    Arc<dyn Fn(Vec<Req>) -> Pin<Box<dyn Future<Output = Result<Vec<Resp>>> + Send>> + Send + Sync>;
type Job<Req, Resp> = (Req, oneshot::Sender<Result<Resp>>);
type Orphan<Resp> = Arc<dyn Fn(Resp) + Send + Sync>;

/// Sends requests in batches through a flush function; see the module docs.
pub struct Coalescer<Req, Resp> {
    flush: Flush<Req, Resp>,
    max_batch: usize,
    max_in_flight: usize,
    /// Batches alternate and returning cohorts go early (see [`Coalescer::pipelined`]).
    split: bool,
    /// Gets the answers whose callers went away after their batch was sent.
    orphan: Option<Orphan<Resp>>,
    /// Started on first use, on the runtime of that call.
    tx: OnceLock<mpsc::UnboundedSender<Job<Req, Resp>>>,
}

impl<Req, Resp> fmt::Debug for Coalescer<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer")
            .field("max_batch", &self.max_batch)
            .field("max_in_flight", &self.max_in_flight)
            .field("split", &self.split)
            .field("on_orphan", &self.orphan.is_some())
            .finish()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Coalescer<Req, Resp> {
    /// `flush` gets a batch of at most `max_batch` requests and returns one answer per
    /// request, in order. At most `max_in_flight` batches run at once; while they do, new
    /// requests queue up for the next batch.
    pub fn new<F, Fut>(max_batch: usize, max_in_flight: usize, flush: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>>> + Send + 'static,
    {
        Coalescer {
            flush: Arc::new(move |batch| Box::pin(flush(batch))),
            max_batch: max_batch.max(1),
            max_in_flight: max_in_flight.max(1),
            split: false,
            orphan: None,
            tx: OnceLock::new(),
        }
    }

    /// Hands `f` every answer that could not be delivered: its caller dropped the
    /// [`Coalescer::call`] future after the request's batch was sent, so the request ran
    /// but nobody receives its answer. Use it to undo what such a request did (release a
    /// lock acquired for a caller who is gone). Only successful answers whose caller is
    /// gone go there; a caller who went away before its batch was launched was never sent
    /// (see the module docs), and a failed batch's errors are dropped. `f` runs on the
    /// batching task or in the dropping caller's `drop`, so it must not block: spawn any
    /// follow-up work. A panic in `f` on the batching task is caught and logged (test
    /// `a_panicking_orphan_handler_does_not_stop_the_coalescer`).
    pub fn on_orphan(mut self, f: impl Fn(Resp) + Send + Sync + 'static) -> Self {
        self.orphan = Some(Arc::new(f));
        self
    }

    /// Batches that alternate between the two sides, at most two in flight: with more
    /// than a few requests queued and nothing in flight, half of them go at once and the
    /// rest as soon as that half is answered (before its answers are handed out), so the
    /// server works on one half while the client handles the other's answers and their
    /// callers' next requests. When as many requests are queued as the last answers went
    /// to (those callers are back), they go at once, behind the batch in flight, so the
    /// server finds the next batch waiting when it finishes one. No request waits longer
    /// than for the batch in flight to be answered. For many concurrent callers of cheap
    /// scripts, where the two sides would otherwise take turns.
    pub fn pipelined<F, Fut>(max_batch: usize, flush: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>>> + Send + 'static,
    {
        Coalescer {
            split: true,
            ..Coalescer::new(max_batch, 2, flush)
        }
    }

    /// Queues one request and waits for its answer.
    pub async fn call(&self, req: Req) -> Result<Resp> {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(drive(
                rx,
                Arc::clone(&self.flush),
                Limits {
                    max_batch: self.max_batch,
                    max_in_flight: self.max_in_flight,
                    split: self.split,
                },
                self.orphan.clone(),
            ));
            tx
        });
        let (done, answer) = oneshot::channel();
        tx.send((req, done))
            .map_err(|_| stopped("the batching task has stopped"))?;
        let mut pending = Pending {
            answer,
            orphan: self.orphan.clone(),
        };
        (&mut pending.answer)
            .await
            .map_err(|_| stopped("the batching task dropped the request"))?
    }
}

/// A caller's side of its request. Dropped before the answer was received, it closes the
/// channel (so a batch not launched yet leaves the request out) and hands an answer that
/// arrived meanwhile to the orphan handler; an answer sent after the close comes back to
/// the batching task, which hands it over instead.
struct Pending<Resp> {
    answer: oneshot::Receiver<Result<Resp>>,
    orphan: Option<Orphan<Resp>>,
}

impl<Resp> Drop for Pending<Resp> {
    fn drop(&mut self) {
        self.answer.close();
        if let Ok(Ok(answer)) = self.answer.try_recv()
            && let Some(orphan) = &self.orphan
        {
            orphan(answer);
        }
    }
}

fn stopped(what: &str) -> Error {
    Error::Connection(redis::RedisError::from((
        redis::ErrorKind::Io,
        "request batching",
        what.to_string(),
    )))
}

#[derive(Clone, Copy)]
struct Limits {
    max_batch: usize,
    max_in_flight: usize,
    split: bool,
}

/// With at most this many queued, a pipelined coalescer sends them all at once.
const SPLIT_ABOVE: usize = 8;

async fn drive<Req, Resp>(
    mut rx: mpsc::UnboundedReceiver<Job<Req, Resp>>,
    flush: Flush<Req, Resp>,
    limits: Limits,
    orphan: Option<Orphan<Resp>>,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut queued: VecDeque<Job<Req, Resp>> = VecDeque::new();
    let mut open = true;
    let cap = limits.max_batch.saturating_mul(limits.max_in_flight);
    // Pipelined: how many callers the last answers went to, until the next launch. As
    // many new requests queued means that cohort is back: its batch goes at once, behind
    // the one in flight, and waits in the server's socket while that one runs.
    let mut cohort = 0;
    loop {
        // Take in what has arrived, without waiting.
        take_in(&mut rx, &mut queued, &mut open, cap);
        // (requests whose caller is gone are taken out only when a batch can go, so a
        // long queue is not scanned again for every request that joins it)
        while next_batch(limits, queued.len(), in_flight.len(), cohort).is_some() {
            drop_gone(&mut queued);
            let Some(take) = next_batch(limits, queued.len(), in_flight.len(), cohort) else {
                break;
            };
            in_flight.push(run(&flush, &mut queued, take));
            cohort = 0;
        }
        if queued.len() >= cap {
            // full: make room for callers still there
            drop_gone(&mut queued);
        }
        if !open && queued.is_empty() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                // Pipelined: send what waited for this slot before handing out the
                // answers, so the server works on it while the answers wake their callers.
                // (Measured otherwise with two slots, whose batches already overlap.)
                take_in(&mut rx, &mut queued, &mut open, cap);
                let mut answered = done.waiters.len();
                if limits.split && in_flight.is_empty() && !queued.is_empty() {
                    drop_gone(&mut queued);
                }
                if limits.split && in_flight.is_empty() && !queued.is_empty() {
                    let all = queued.len().min(limits.max_batch);
                    in_flight.push(run(&flush, &mut queued, all));
                    // one poll starts it (its command is queued on the connection)
                    if let Some(Some(other)) =
                        futures_util::future::poll_immediate(in_flight.next()).await
                    {
                        answered += other.waiters.len();
                        other.deliver(orphan.as_ref());
                    }
                }
                cohort = answered;
                done.deliver(orphan.as_ref());
            }
            job = rx.recv(), if open && queued.len() < cap => match job {
                Some(job) => queued.push_back(job),
                None => open = false,
            },
        }
    }
}

/// How many queued requests go out now as one batch, if any.
fn next_batch(limits: Limits, queued: usize, in_flight: usize, cohort: usize) -> Option<usize> {
    if queued == 0 || in_flight >= limits.max_in_flight {
        return None;
    }
    let take = if !limits.split {
        // Spread what is queued over the free slots: with two slots and 64 requests, 32
        // go now and 32 right behind them.
        queued.div_ceil(limits.max_in_flight - in_flight)
    } else if in_flight == 0 {
        // nothing in flight: send half, keep half for when it is answered
        if queued > SPLIT_ABOVE {
            queued.div_ceil(2)
        } else {
            queued
        }
    } else if cohort > 0 && queued >= cohort {
        queued
    } else {
        return None;
    };
    Some(take.min(limits.max_batch))
}

/// Takes out the requests whose caller has gone away: they are never sent.
fn drop_gone<Req, Resp>(queued: &mut VecDeque<Job<Req, Resp>>) {
    queued.retain(|(_, waiter)| !waiter.is_closed());
}

fn take_in<Req, Resp>(
    rx: &mut mpsc::UnboundedReceiver<Job<Req, Resp>>,
    queued: &mut VecDeque<Job<Req, Resp>>,
    open: &mut bool,
    cap: usize,
) {
    while *open && queued.len() < cap {
        match rx.try_recv() {
            Ok(job) => queued.push_back(job),
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => *open = false,
        }
    }
}

/// The answers of a finished batch, not yet handed to their callers.
struct Delivery<Resp> {
    waiters: Vec<oneshot::Sender<Result<Resp>>>,
    answers: Result<Vec<Resp>>,
}

impl<Resp> Delivery<Resp> {
    /// Hands each answer to its caller, or to `orphan` when the caller has gone away.
    fn deliver(self, orphan: Option<&Orphan<Resp>>) {
        let n = self.waiters.len();
        match self.answers {
            Ok(answers) if answers.len() == n => {
                for (waiter, answer) in self.waiters.into_iter().zip(answers) {
                    if let Err(Ok(answer)) = waiter.send(Ok(answer))
                        && let Some(orphan) = orphan
                    {
                        // a panicking handler must not end the batching task (every
                        // later call would fail) nor keep the other answers from
                        // their callers
                        let undone = std::panic::catch_unwind(AssertUnwindSafe(|| orphan(answer)));
                        if undone.is_err() {
                            tracing::error!("a Coalescer on_orphan handler panicked");
                        }
                    }
                }
            }
            Ok(answers) => {
                for waiter in self.waiters {
                    let _ = waiter.send(Err(Error::unexpected_reply(format!(
                        "a batch of {n} got {} answers",
                        answers.len()
                    ))));
                }
            }
            Err(e) => {
                for waiter in self.waiters {
                    let _ = waiter.send(Err(e.duplicate()));
                }
            }
        }
    }
}

/// Takes the first `n` queued requests as one batch and runs it.
fn run<Req, Resp>(
    flush: &Flush<Req, Resp>,
    queued: &mut VecDeque<Job<Req, Resp>>,
    n: usize,
) -> impl Future<Output = Delivery<Resp>> + use<Req, Resp> {
    let (reqs, waiters): (Vec<Req>, Vec<_>) = queued.drain(..n).unzip();
    let flush = Arc::clone(flush);
    async move {
        // A panic in the batch function fails this batch only: unwinding the batching
        // task would drop the other batch in flight (its answers reaching nobody, not
        // even `on_orphan`) and stop every later call of the coalescer.
        let answers = AssertUnwindSafe(async move { flush(reqs).await })
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::unexpected_reply(format!(
                    "the batch function panicked ({why}); whether the batch ran is unknown"
                )))
            });
        Delivery { waiters, answers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_batches_and_keep_their_answers() {
        let batches = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&batches);
        let c = Arc::new(Coalescer::new(16, 1, move |batch: Vec<u64>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(batch.into_iter().map(|n| n + 1000).collect())
            }
        }));
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            let c = Arc::clone(&c);
            tasks.push(tokio::spawn(async move { (i, c.call(i).await.unwrap()) }));
        }
        for t in tasks {
            let (i, answer) = t.await.unwrap();
            assert_eq!(answer, i + 1000);
        }
        let n = batches.load(Ordering::SeqCst);
        assert!((200 / 16..200).contains(&n), "{n} batches for 200 calls");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn queued_requests_are_spread_over_the_free_slots() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let c = Arc::new(Coalescer::new(128, 2, move |batch: Vec<u32>| {
            seen.lock().unwrap().push(batch.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(batch)
            }
        }));
        // On one thread all 64 calls queue before the batching task first runs.
        let calls: Vec<_> = (0..64)
            .map(|i| {
                let c = Arc::clone(&c);
                tokio::spawn(async move { c.call(i).await.unwrap() })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), i as u32);
        }
        assert_eq!(
            *sizes.lock().unwrap(),
            [32, 32],
            "two half batches, not one of 64"
        );
        // a lone call goes out alone, at once
        assert_eq!(c.call(7).await.unwrap(), 7);
        assert_eq!(sizes.lock().unwrap().last(), Some(&1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn pipelined_batches_alternate_and_the_next_goes_before_answers() {
        // what happened, in order: ("start", size), ("end", size), ("answer", request)
        let log = Arc::new(std::sync::Mutex::new(Vec::<(&str, u32)>::new()));
        let seen = Arc::clone(&log);
        let c = Arc::new(Coalescer::pipelined(128, move |batch: Vec<u32>| {
            let seen = Arc::clone(&seen);
            async move {
                let n = batch.len() as u32;
                seen.lock().unwrap().push(("start", n));
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                seen.lock().unwrap().push(("end", n));
                Ok(batch)
            }
        }));
        let calls: Vec<_> = (0..64)
            .map(|i| {
                let c = Arc::clone(&c);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let answer = c.call(i).await.unwrap();
                    log.lock().unwrap().push(("answer", answer));
                    answer
                })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap(), i as u32);
        }
        let log = log.lock().unwrap().clone();
        let batches: Vec<_> = log.iter().filter(|e| e.0 == "start").map(|e| e.1).collect();
        assert_eq!(batches, [32, 32], "half now, half when it is answered");
        let at = |what: (&str, u32)| log.iter().position(|e| *e == what).unwrap();
        let second_start = log.iter().rposition(|e| e.0 == "start").unwrap();
        // one batch at a time: the second starts after the first ended ...
        assert!(at(("end", 32)) < second_start, "{log:?}");
        // ... and before any answer of the first is handed out
        let first_answer = log.iter().position(|e| e.0 == "answer").unwrap();
        assert!(second_start < first_answer, "{log:?}");
        // a few requests go out together at once
        let few: Vec<_> = (0..3)
            .map(|i| {
                let c = Arc::clone(&c);
                tokio::spawn(async move { c.call(i).await.unwrap() })
            })
            .collect();
        for call in few {
            call.await.unwrap();
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_returning_cohort_goes_behind_the_batch_in_flight() {
        // +1 when a batch starts, -1 when it ends
        let log = Arc::new(std::sync::Mutex::new(Vec::<i32>::new()));
        let seen = Arc::clone(&log);
        let c = Arc::new(Coalescer::pipelined(128, move |batch: Vec<u32>| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(1);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                seen.lock().unwrap().push(-1);
                Ok(batch)
            }
        }));
        // 64 callers, each making four calls in a row
        let callers: Vec<_> = (0..64)
            .map(|i| {
                let c = Arc::clone(&c);
                tokio::spawn(async move {
                    for _ in 0..4 {
                        assert_eq!(c.call(i).await.unwrap(), i);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        let in_flight: Vec<i32> = log
            .lock()
            .unwrap()
            .iter()
            .scan(0, |n, step| {
                *n += step;
                Some(*n)
            })
            .collect();
        // the first half's callers come back while the second half is on the server,
        // and their batch goes then; never more than two at once
        assert_eq!(in_flight.iter().max(), Some(&2), "{in_flight:?}");
        assert_eq!(in_flight.last(), Some(&0));
    }

    /// A coalescer whose batches wait for a permit of `gate` before answering, logging
    /// every batch it was sent. Answers are the requests plus 100.
    fn gated(
        gate: &Arc<tokio::sync::Semaphore>,
        log: &Arc<std::sync::Mutex<Vec<Vec<u32>>>>,
    ) -> Coalescer<u32, u32> {
        let (gate, log) = (Arc::clone(gate), Arc::clone(log));
        Coalescer::new(8, 1, move |batch: Vec<u32>| {
            log.lock().unwrap().push(batch.clone());
            let gate = Arc::clone(&gate);
            async move {
                gate.acquire().await.unwrap().forget();
                Ok(batch.into_iter().map(|n| n + 100).collect())
            }
        })
    }

    /// Polls a future once; true when it is still pending.
    async fn poll_once<F: Future>(f: Pin<&mut F>) -> bool {
        futures_util::future::poll_immediate(f).await.is_none()
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..1000 {
            if what() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        panic!("condition not reached in 2 s");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_caller_is_not_sent() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = Arc::new(gated(&gate, &log));
        // the first batch holds the only slot
        let first = tokio::spawn({
            let c = Arc::clone(&c);
            async move { c.call(1).await.unwrap() }
        });
        until(|| log.lock().unwrap().len() == 1).await;
        // 2 is queued for the next batch, then its caller goes away
        let mut gone = Box::pin(c.call(2));
        assert!(poll_once(gone.as_mut()).await);
        drop(gone);
        let kept = tokio::spawn({
            let c = Arc::clone(&c);
            async move { c.call(3).await.unwrap() }
        });
        tokio::task::yield_now().await;
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), 101);
        assert_eq!(kept.await.unwrap(), 103);
        assert_eq!(*log.lock().unwrap(), [vec![1], vec![3]], "2 was never sent");
        // a batch whose every caller went away is not sent at all
        let blocker = tokio::spawn({
            let c = Arc::clone(&c);
            async move { c.call(4).await.unwrap() }
        });
        until(|| log.lock().unwrap().len() == 3).await;
        let mut gone = Box::pin(c.call(5));
        assert!(poll_once(gone.as_mut()).await);
        drop(gone);
        gate.add_permits(1);
        assert_eq!(blocker.await.unwrap(), 104);
        gate.add_permits(1);
        assert_eq!(c.call(6).await.unwrap(), 106);
        assert_eq!(
            *log.lock().unwrap(),
            [vec![1], vec![3], vec![4], vec![6]],
            "5 was never sent"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_for_a_dropped_caller_goes_to_on_orphan() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let orphans = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&orphans);
        let c = Arc::new(gated(&gate, &log).on_orphan(move |answer| {
            seen.lock().unwrap().push(answer);
        }));

        // Each part queues its calls behind a batch that holds the only slot, so they go
        // out together when it is answered.
        let blocker = |n: u32| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.call(n).await.unwrap() })
        };

        // 1. The caller goes away while its batch is on the server.
        let first = blocker(0);
        until(|| log.lock().unwrap().len() == 1).await;
        let mut gone = Box::pin(c.call(1));
        assert!(poll_once(gone.as_mut()).await);
        let kept = blocker(2);
        tokio::task::yield_now().await;
        gate.add_permits(1);
        assert_eq!(first.await.unwrap(), 100);
        until(|| log.lock().unwrap().len() == 2).await;
        assert_eq!(log.lock().unwrap()[1], [1, 2]);
        drop(gone);
        gate.add_permits(1);
        assert_eq!(
            kept.await.unwrap(),
            102,
            "a caller still there gets its answer"
        );
        until(|| orphans.lock().unwrap().len() == 1).await;
        assert_eq!(*orphans.lock().unwrap(), [101]);

        // 2. The answer reached the caller's channel, then the caller went away unread.
        let first = blocker(0);
        until(|| log.lock().unwrap().len() == 3).await;
        let mut gone = Box::pin(c.call(3));
        assert!(poll_once(gone.as_mut()).await);
        let kept = blocker(4);
        tokio::task::yield_now().await;
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), 100);
        // answers are sent in batch order, so 3's is in its channel when 4 has its own
        assert_eq!(kept.await.unwrap(), 104);
        assert_eq!(log.lock().unwrap()[3], [3, 4]);
        assert_eq!(
            *orphans.lock().unwrap(),
            [101],
            "3's answer waits for its caller"
        );
        drop(gone);
        assert_eq!(*orphans.lock().unwrap(), [101, 103]);

        // 3. Answers that were received never go there.
        gate.add_permits(1);
        assert_eq!(c.call(5).await.unwrap(), 105);
        assert_eq!(*orphans.lock().unwrap(), [101, 103]);
        assert_eq!(log.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn the_largest_limits_are_usable() {
        for c in [
            Coalescer::new(usize::MAX, usize::MAX, |batch: Vec<u8>| async { Ok(batch) }),
            Coalescer::pipelined(usize::MAX, |batch: Vec<u8>| async { Ok(batch) }),
            Coalescer::new(0, 0, |batch: Vec<u8>| async { Ok(batch) }),
        ] {
            assert_eq!(c.call(7).await.unwrap(), 7);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_batch_fails_only_its_own_calls() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = Arc::new(Coalescer::new(8, 2, {
            let (gate, log) = (Arc::clone(&gate), Arc::clone(&log));
            move |batch: Vec<u32>| {
                log.lock().unwrap().push(batch.clone());
                assert!(!batch.contains(&13), "the batch function panics on 13");
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.unwrap().forget();
                    Ok(batch.into_iter().map(|n| n + 100).collect())
                }
            }
        }));
        // a batch is on the server when another batch's function panics
        let first = tokio::spawn({
            let c = Arc::clone(&c);
            async move { c.call(1).await }
        });
        until(|| log.lock().unwrap().len() == 1).await;
        let err = c.call(13).await.unwrap_err();
        assert!(matches!(err, Error::UnexpectedReply(_)), "{err:?}");
        // the batch in flight still answers its caller ...
        gate.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap(), 101);
        // ... and later calls still work
        gate.add_permits(1);
        assert_eq!(c.call(2).await.unwrap(), 102);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_orphan_handler_does_not_stop_the_coalescer() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let c = Arc::new(gated(&gate, &log).on_orphan(|answer| {
            panic!("the orphan handler panics on {answer}");
        }));
        // 1's caller goes away while its batch is on the server
        let mut gone = Box::pin(c.call(1));
        assert!(poll_once(gone.as_mut()).await);
        until(|| log.lock().unwrap().len() == 1).await;
        drop(gone);
        gate.add_permits(1);
        // the answer went to the handler, which panicked on the batching task; later
        // calls are still answered
        gate.add_permits(1);
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), c.call(2)).await;
        assert_eq!(next.expect("no answer").unwrap(), 102);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_call_in_it() {
        let c = Coalescer::new(8, 1, |_batch: Vec<u8>| async {
            Err::<Vec<u8>, _>(Error::Timeout("server paused".into()))
        });
        let err = c.call(1).await.unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        let short = Coalescer::new(8, 1, |_batch: Vec<u8>| async { Ok(Vec::<u8>::new()) });
        assert!(matches!(
            short.call(1).await,
            Err(Error::UnexpectedReply(_))
        ));
    }
}
