//! Background work as named workers with a status, started and stopped by one [`Runner`].
//!
//! A [`Worker`] does its work in steps: [`Worker::step`] does one unit (a gossip round, a
//! pass over the hints, an anti-entropy round) and says whether more is ready at once
//! (`Busy`), whether to wait for more (`Idle`) or that it is finished (`Done`);
//! [`Worker::wait_for_work`] sleeps until the next unit is due or a kick arrives. The
//! runner drives each worker on its own task and records what it did in a shared table
//! that `chorus status` reports. On shutdown it raises a stop signal, which each task
//! checks between steps and while waiting, and joins every task; a step still running at
//! the deadline is aborted, which is safe because every step leaves durable state
//! consistent at each await point (the loops they replace were dropped mid-step at exit).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a step says comes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// More work is ready: step again at once.
    Busy,
    /// Nothing to do until [`Worker::wait_for_work`] returns.
    Idle,
    /// Finished for the life of the process.
    Done,
}

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Busy => "busy",
            WorkerState::Idle => "idle",
            WorkerState::Done => "done",
        }
    }
}

/// A step that failed. The worker keeps running: the runner records the error and waits
/// for work before the next step, so a failing step doesn't spin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorkerError(pub String);

impl From<String> for WorkerError {
    fn from(s: String) -> Self {
        WorkerError(s)
    }
}

impl From<&str> for WorkerError {
    fn from(s: &str) -> Self {
        WorkerError(s.to_string())
    }
}

/// One kind of background work.
pub trait Worker: Send + 'static {
    /// A short, stable name (`status` lists workers by it).
    fn name(&self) -> &'static str;

    /// Free text on what the worker did last or is waiting for.
    fn progress(&self) -> String {
        String::new()
    }

    /// Whether to wait for work before the first step: periodic work that isn't due at
    /// start (a round every interval, the first one interval after start).
    fn waits_first(&self) -> bool {
        false
    }

    /// Does one unit of work.
    fn step(&mut self) -> impl Future<Output = Result<WorkerState, WorkerError>> + Send;

    /// Returns when the next step is due: after a sleep, on a kick, or on a change the
    /// worker watches. The runner abandons it when stopping.
    fn wait_for_work(&mut self) -> impl Future<Output = ()> + Send;
}

/// What the runner knows of one worker.
#[derive(Clone, Debug)]
pub struct WorkerStatus {
    pub name: &'static str,
    /// What the last step returned, or `Busy` while a step runs.
    pub state: WorkerState,
    /// The last step failed (`last_error` says why).
    pub failed: bool,
    pub progress: String,
    /// Steps completed, failed ones included.
    pub iterations: u64,
    /// Steps that failed.
    pub errors: u64,
    pub last_error: Option<String>,
    /// When the last step ended.
    pub last_step: Option<Instant>,
}

impl WorkerStatus {
    /// `busy`, `idle`, `done`, or `error` when the last step failed.
    pub fn state_name(&self) -> &'static str {
        if self.failed && self.state != WorkerState::Busy {
            "error"
        } else {
            self.state.name()
        }
    }
}

type Table = Arc<Mutex<Vec<WorkerStatus>>>;

/// Starts workers, keeps their status and stops them.
pub struct Runner {
    stop: watch::Sender<bool>,
    table: Table,
    tasks: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl Runner {
    pub fn new() -> Runner {
        Runner {
            stop: watch::Sender::new(false),
            table: Arc::default(),
            tasks: Mutex::default(),
        }
    }

    /// Starts `worker` on its own task. After [`Runner::shutdown`] it stops at once.
    pub fn spawn<W: Worker>(&self, worker: W) {
        let name = worker.name();
        let slot = {
            let mut table = lock(&self.table);
            table.push(WorkerStatus {
                name,
                state: if worker.waits_first() {
                    WorkerState::Idle
                } else {
                    WorkerState::Busy
                },
                failed: false,
                progress: worker.progress(),
                iterations: 0,
                errors: 0,
                last_error: None,
                last_step: None,
            });
            Slot {
                table: self.table.clone(),
                index: table.len() - 1,
            }
        };
        let handle = tokio::spawn(drive(worker, self.stop.subscribe(), slot));
        lock(&self.tasks).push((name, handle));
    }

    /// Every worker's status, in the order they were started.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        lock(&self.table).clone()
    }

    /// Stops every worker: raises the stop signal, waits for each to finish its current
    /// step until `within` has passed, then aborts the rest. Returns the names of those
    /// that had to be aborted.
    pub async fn shutdown(&self, within: Duration) -> Vec<&'static str> {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        let deadline = tokio::time::Instant::now() + within;
        let mut aborted = Vec::new();
        for (name, mut handle) in tasks {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
                // Resolves once the task is dropped, at its next await point.
                let _ = handle.await;
                aborted.push(name);
            }
        }
        aborted
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A worker's row in the table. Marks the worker done when its task ends, and failed if
/// it ends by a panic (otherwise a dead worker would look idle forever).
struct Slot {
    table: Table,
    index: usize,
}

impl Slot {
    fn update(&self, f: impl FnOnce(&mut WorkerStatus)) {
        if let Some(s) = lock(&self.table).get_mut(self.index) {
            f(s);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        self.update(|s| {
            s.state = WorkerState::Done;
            if panicked {
                s.failed = true;
                s.errors += 1;
                s.last_error = Some("the worker panicked; see the log".into());
            }
        });
    }
}

/// Resolves once the stop signal is raised (or the runner is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn drive<W: Worker>(mut worker: W, mut stop: watch::Receiver<bool>, slot: Slot) {
    let name = worker.name();
    let mut next = if worker.waits_first() {
        WorkerState::Idle
    } else {
        WorkerState::Busy
    };
    loop {
        if *stop.borrow() {
            break;
        }
        if next != WorkerState::Busy {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                _ = worker.wait_for_work() => {}
            }
        }
        slot.update(|s| s.state = WorkerState::Busy);
        let result = worker.step().await;
        let progress = worker.progress();
        let failed = result.is_err();
        next = match result {
            Ok(state) => state,
            Err(e) => {
                tracing::debug!(worker = name, error = %e, "background step failed");
                slot.update(|s| {
                    s.errors += 1;
                    s.last_error = Some(e.0);
                });
                WorkerState::Idle
            }
        };
        slot.update(|s| {
            s.state = next;
            s.failed = failed;
            s.progress = progress;
            s.iterations += 1;
            s.last_step = Some(Instant::now());
        });
        match next {
            WorkerState::Done => break,
            // Lets other tasks in between the steps of a worker that is never idle.
            WorkerState::Busy => tokio::task::yield_now().await,
            WorkerState::Idle => {}
        }
    }
}

#[cfg(test)]
mod tests {
    //! Waits are driven by explicit kicks rather than timers, so step counts are exact;
    //! only the shutdown deadline uses real time, with wide margins.

    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::sync::Notify;

    /// Counts its steps and waits for a kick between them; a step takes `step_takes`,
    /// every `fail_every`-th fails, and it is done after `done_after` steps.
    struct Fake {
        name: &'static str,
        /// Steps begun and steps ended.
        begun: Arc<AtomicU64>,
        steps: Arc<AtomicU64>,
        kicks: Arc<Notify>,
        step_takes: Duration,
        fail_every: u64,
        done_after: Option<u64>,
        waits_first: bool,
        always_busy: bool,
    }

    impl Fake {
        fn new(name: &'static str) -> Fake {
            Fake {
                name,
                begun: Arc::default(),
                steps: Arc::default(),
                kicks: Arc::default(),
                step_takes: Duration::ZERO,
                fail_every: 0,
                done_after: None,
                waits_first: false,
                always_busy: false,
            }
        }
    }

    impl Worker for Fake {
        fn name(&self) -> &'static str {
            self.name
        }

        fn progress(&self) -> String {
            format!("{} steps", self.steps.load(Ordering::SeqCst))
        }

        fn waits_first(&self) -> bool {
            self.waits_first
        }

        async fn step(&mut self) -> Result<WorkerState, WorkerError> {
            self.begun.fetch_add(1, Ordering::SeqCst);
            if !self.step_takes.is_zero() {
                tokio::time::sleep(self.step_takes).await;
            }
            let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
            if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
                return Err(format!("step {n} failed").into());
            }
            Ok(match self.done_after {
                Some(d) if n >= d => WorkerState::Done,
                _ if self.always_busy => WorkerState::Busy,
                _ => WorkerState::Idle,
            })
        }

        async fn wait_for_work(&mut self) {
            self.kicks.notified().await;
        }
    }

    fn status_of(r: &Runner, name: &str) -> WorkerStatus {
        r.statuses()
            .into_iter()
            .find(|s| s.name == name)
            .expect("worker listed")
    }

    /// Waits until the worker's status satisfies `ok`; fails after 10 s.
    async fn until(r: &Runner, name: &str, ok: impl Fn(&WorkerStatus) -> bool) -> WorkerStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = status_of(r, name);
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "status never got there: {s:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Gives a misbehaving runner the chance to step when it shouldn't.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn steps_once_per_wait_and_counts_them() {
        let r = Runner::new();
        let w = Fake::new("fake");
        let (steps, kicks) = (w.steps.clone(), w.kicks.clone());
        r.spawn(w);
        until(&r, "fake", |s| s.iterations == 1).await;
        settle().await;
        assert_eq!(
            steps.load(Ordering::SeqCst),
            1,
            "idle: no step without work"
        );
        for k in 2..=4 {
            kicks.notify_one();
            until(&r, "fake", |s| s.iterations == k).await;
        }
        settle().await;
        let s = status_of(&r, "fake");
        assert_eq!((s.iterations, s.errors, s.state_name()), (4, 0, "idle"));
        assert_eq!(steps.load(Ordering::SeqCst), 4);
        assert_eq!(s.progress, "4 steps");
        assert!(s.last_error.is_none() && s.last_step.is_some());
        assert!(r.shutdown(Duration::from_secs(5)).await.is_empty());
    }

    #[tokio::test]
    async fn waits_first_waits_for_work_before_the_first_step() {
        let r = Runner::new();
        let mut w = Fake::new("fake");
        w.waits_first = true;
        let (steps, kicks) = (w.steps.clone(), w.kicks.clone());
        r.spawn(w);
        settle().await;
        assert_eq!(steps.load(Ordering::SeqCst), 0);
        let s = status_of(&r, "fake");
        assert_eq!((s.iterations, s.state_name()), (0, "idle"));
        kicks.notify_one();
        until(&r, "fake", |s| s.iterations == 1).await;
        r.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn an_erroring_worker_reports_the_error_and_keeps_running() {
        let r = Runner::new();
        let mut w = Fake::new("fake");
        w.fail_every = 2;
        let (steps, kicks) = (w.steps.clone(), w.kicks.clone());
        r.spawn(w);
        until(&r, "fake", |s| s.iterations == 1).await;
        kicks.notify_one();
        let s = until(&r, "fake", |s| s.iterations == 2).await;
        assert_eq!((s.errors, s.state_name()), (1, "error"));
        assert_eq!(s.last_error.as_deref(), Some("step 2 failed"));
        // After a failure it waits for work like after any step, then goes on; the error
        // stays visible.
        settle().await;
        assert_eq!(steps.load(Ordering::SeqCst), 2, "no retry without work");
        kicks.notify_one();
        let s = until(&r, "fake", |s| s.iterations == 3).await;
        assert_eq!((s.errors, s.state_name()), (1, "idle"));
        assert_eq!(s.last_error.as_deref(), Some("step 2 failed"));
        kicks.notify_one();
        let s = until(&r, "fake", |s| s.iterations == 4).await;
        assert_eq!(s.errors, 2);
        assert_eq!(s.last_error.as_deref(), Some("step 4 failed"));
        assert!(r.shutdown(Duration::from_secs(5)).await.is_empty());
    }

    #[tokio::test]
    async fn shutdown_interrupts_a_wait_at_once_and_no_step_follows() {
        let r = Runner::new();
        let w = Fake::new("fake");
        let (steps, kicks) = (w.steps.clone(), w.kicks.clone());
        r.spawn(w);
        until(&r, "fake", |s| s.iterations == 1).await;
        let started = Instant::now();
        assert!(r.shutdown(Duration::from_secs(30)).await.is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the deadline"
        );
        assert_eq!(status_of(&r, "fake").state_name(), "done");
        kicks.notify_one();
        settle().await;
        assert_eq!(steps.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shutdown_stops_a_worker_that_is_never_idle_between_steps() {
        let r = Runner::new();
        let mut w = Fake::new("busy");
        w.always_busy = true;
        let steps = w.steps.clone();
        r.spawn(w);
        until(&r, "busy", |s| s.iterations > 100).await;
        let started = Instant::now();
        assert!(r.shutdown(Duration::from_secs(30)).await.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
        let after = steps.load(Ordering::SeqCst);
        settle().await;
        assert_eq!(steps.load(Ordering::SeqCst), after);
    }

    #[tokio::test]
    async fn shutdown_lets_a_short_step_finish_and_aborts_a_long_one() {
        let r = Runner::new();
        let mut short = Fake::new("short");
        short.step_takes = Duration::from_millis(100);
        let mut long = Fake::new("long");
        long.step_takes = Duration::from_secs(600);
        let (short_steps, long_steps) = (short.steps.clone(), long.steps.clone());
        let begun = [short.begun.clone(), long.begun.clone()];
        r.spawn(short);
        r.spawn(long);
        while begun.iter().any(|b| b.load(Ordering::SeqCst) == 0) {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        let aborted = r.shutdown(Duration::from_secs(2)).await;
        let took = started.elapsed();
        assert_eq!(aborted, vec!["long"]);
        assert!(took >= Duration::from_secs(2), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert_eq!(
            short_steps.load(Ordering::SeqCst),
            1,
            "the short step finished"
        );
        assert_eq!(long_steps.load(Ordering::SeqCst), 0, "the long one was cut");
        let states: Vec<_> = r.statuses().iter().map(|s| s.state_name()).collect();
        assert_eq!(states, vec!["done", "done"]);
    }

    #[tokio::test]
    async fn a_finished_worker_is_done_and_steps_no_more() {
        let r = Runner::new();
        let mut w = Fake::new("fake");
        w.done_after = Some(2);
        let (steps, kicks) = (w.steps.clone(), w.kicks.clone());
        r.spawn(w);
        until(&r, "fake", |s| s.iterations == 1).await;
        kicks.notify_one();
        let s = until(&r, "fake", |s| s.iterations == 2).await;
        assert_eq!(s.state_name(), "done");
        kicks.notify_one();
        settle().await;
        assert_eq!(steps.load(Ordering::SeqCst), 2);
        assert!(r.shutdown(Duration::from_secs(5)).await.is_empty());
    }

    #[tokio::test]
    async fn a_panicking_worker_shows_as_failed() {
        struct Panics;
        impl Worker for Panics {
            fn name(&self) -> &'static str {
                "panics"
            }
            async fn step(&mut self) -> Result<WorkerState, WorkerError> {
                panic!("a bug in a worker")
            }
            async fn wait_for_work(&mut self) {}
        }
        let r = Runner::new();
        r.spawn(Panics);
        let s = until(&r, "panics", |s| s.state == WorkerState::Done).await;
        assert_eq!((s.state_name(), s.errors), ("error", 1));
        assert!(s.last_error.is_some_and(|e| e.contains("panicked")));
        r.shutdown(Duration::from_secs(5)).await;
    }
}
