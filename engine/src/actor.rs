//! The actix shell around one office's pool: it owns the clock, the timer, the mailbox and the
//! writer, and nothing else. All selection logic is in [`crate::pool`].
//!
//! Every request is a [`Call`]: a closure run against the pool with the current time and the
//! office's RNG. Whatever records the step left are queued to the office's writer thread (group
//! commit) and the reply waits until they are durable (I2): the writer thread itself sends it,
//! once the group's flush has returned. A call that changed nothing — a read or a refusal — is
//! answered at once when everything the office handed its writer is durable; otherwise it waits
//! for the groups in flight (a barrier through the writer, [`OfficeActor::barrier`]): what an
//! answer shows is acknowledged state only, never a change a failed group commit may take back.
//! After a failed commit the office answers nothing, reads included (503), until it is
//! restarted from what is durable.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::EventSender;
use actix::prelude::*;
use rand::rngs::StdRng;

use crate::clock::ClockReading;
use crate::figures::{CallFigures, CallKind, OfficeCalls};
use crate::outcome::Refusal;
use crate::pool::{Event, OfficePool};
use crate::store::Writer;

/// Messages an office actor queues before senders wait (the bounded mailbox).
pub const MAILBOX_CAPACITY: usize = 4_096;
/// Requests in flight to one office beyond which new ones are refused at once with 503
/// `unavailable` instead of queueing without bound.
pub const IN_FLIGHT_MAX: usize = 16_384;
/// Load shedding by time, not only by count: when calls wait in the office longer than this
/// (in its mailbox before they run, then for the group commit that makes them durable), new
/// writes are refused at once with 503 `unavailable` (while at least [`SHED_MIN_DEPTH`] are
/// in flight), so that the queue never holds much more than this much work and accepted
/// requests keep a bounded latency.
pub const SHED_QUEUE_DELAY: Duration = Duration::from_millis(500);
/// Below this many calls waiting, nothing is shed: the queue is draining.
pub const SHED_MIN_DEPTH: usize = 64;
/// A write that waited longer than this in the mailbox is refused instead of run: its caller
/// has most likely given up, and serving it would only delay the ones still waiting.
pub const QUEUE_DEADLINE: Duration = Duration::from_secs(2);
/// Slack added to the timer so it fires just after a deadline, not just before it.
const TIMER_SLACK_MS: u64 = 1;
/// How long after the engine is ready the offices build their keyboard indexes, one office at
/// a time, unless a keyboard read needs them sooner: not while a restart is being recovered or
/// its first calls answered, and not at the first keystroke of an opening either.
pub const KEYBOARD_WARM_UP_AFTER: Duration = Duration::from_secs(1);

/// Where time comes from. The system clock in production; tests may supply another. The engine
/// reads it through [`crate::clock::GuardedClock`] (SPEC T1).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall time, epoch milliseconds.
    fn now_ms(&self) -> u64;

    /// Milliseconds on a clock that never steps (any origin). The default is the wall clock
    /// itself: right for test clocks whose time moves only when the test moves it.
    fn monotonic_ms(&self) -> u64 {
        self.now_ms()
    }

    /// The time with the sum of the clock jumps an operator confirmed so far (none here).
    fn reading(&self) -> ClockReading {
        ClockReading {
            now_ms: self.now_ms(),
            shift_ms: 0,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::calendar::now_ms()
    }

    fn monotonic_ms(&self) -> u64 {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let elapsed = ORIGIN.get_or_init(Instant::now).elapsed().as_millis();
        u64::try_from(elapsed).unwrap_or(u64::MAX)
    }
}

type CallFn<R> = Box<dyn FnOnce(&mut OfficePool, u64, &mut StdRng) -> Result<R, Refusal> + Send>;

/// A request to an office: run `f` against its pool.
pub struct Call<R> {
    f: CallFn<R>,
    /// A read never changes the pool; it is served even while the office refuses writes.
    read_only: bool,
    /// The application a draw or custom check is for: such calls arriving in a release's opening
    /// window wait for its end and are then served in random order.
    window_app: Option<u64>,
    /// When [`OfficeHandle::call`] sent it (load shedding by queueing delay).
    sent_at: Option<Instant>,
}

impl<R> std::fmt::Debug for Call<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl<R> Call<R> {
    pub fn write(
        f: impl FnOnce(&mut OfficePool, u64, &mut StdRng) -> Result<R, Refusal> + Send + 'static,
    ) -> Call<R> {
        Call {
            f: Box::new(f),
            read_only: false,
            window_app: None,
            sent_at: None,
        }
    }

    /// Marks a draw or custom check of application `seq` (see [`OfficePool::opening_window_end`]).
    pub fn in_opening_window(mut self, seq: u64) -> Call<R> {
        self.window_app = Some(seq);
        self
    }

    /// A call that may run pool code needing `&mut` but is answered without waiting for a flush.
    pub fn write_free(
        f: impl FnOnce(&mut OfficePool, u64, &mut StdRng) -> Result<R, Refusal> + Send + 'static,
    ) -> Call<R> {
        Call {
            f: Box::new(f),
            read_only: true,
            window_app: None,
            sent_at: None,
        }
    }

    pub fn read(
        f: impl FnOnce(&OfficePool, u64) -> Result<R, Refusal> + Send + 'static,
    ) -> Call<R> {
        Call {
            f: Box::new(move |pool, now, _| f(pool, now)),
            read_only: true,
            window_app: None,
            sent_at: None,
        }
    }
}

impl<R: Send + 'static> Message for Call<R> {
    type Result = Result<R, Refusal>;
}

/// Health of an office, shared with its handle.
#[derive(Debug)]
pub struct OfficeHealth {
    /// Shedding by time: writes are refused while calls wait longer than this (see
    /// [`OfficeHealth::sheds_writes`]); `None` sheds only at [`IN_FLIGHT_MAX`]. Set when the
    /// office starts, from [`crate::EngineConfig::shed_queue_delay`].
    pub shed_after: Option<Duration>,
    /// Requests sent and not yet answered (the mailbox depth, for metrics and load shedding).
    pub in_flight: AtomicUsize,
    /// Set when a write failed: memory may be ahead of the disk, so the office refuses every
    /// write until the process restarts and recovers from what is durable.
    pub failed: AtomicBool,
    /// How long the last call the office started had waited in its mailbox, in µs.
    pub queue_delay_us: AtomicU64,
    /// How long the last group of records took from the office handing it to its writer to
    /// being durable (the writer's backlog plus the flush), in µs. A write is answered only
    /// then, so under load this is where callers wait once the office's own thread keeps up.
    pub commit_delay_us: AtomicU64,
    /// How long the last write took from its caller sending it to its caller having the answer,
    /// in µs: the mailbox and the commit, and also the wait after the answer is ready until the
    /// caller's thread gets round to it (an HTTP worker with thousands of answers to write).
    /// Under a flood of connections that last wait is where calls queue, unseen by the two
    /// delays above.
    pub sojourn_us: AtomicU64,
    /// Calls refused at once because the office was overloaded.
    pub shed: AtomicU64,
    /// Draws the office answered and how long each took (recorded by the caller, see
    /// [`crate::figures`]).
    pub draws: CallFigures,
    /// Custom checks the office answered and how long each took.
    pub checks: CallFigures,
}

impl Default for OfficeHealth {
    fn default() -> Self {
        OfficeHealth::new(Some(SHED_QUEUE_DELAY))
    }
}

impl OfficeHealth {
    pub fn new(shed_after: Option<Duration>) -> Self {
        OfficeHealth {
            shed_after,
            in_flight: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            queue_delay_us: AtomicU64::new(0),
            commit_delay_us: AtomicU64::new(0),
            sojourn_us: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            draws: CallFigures::default(),
            checks: CallFigures::default(),
        }
    }

    /// The figures of one kind of call.
    pub fn calls(&self, kind: CallKind) -> &CallFigures {
        match kind {
            CallKind::Draw => &self.draws,
            CallKind::Check => &self.checks,
        }
    }

    /// A reading of both kinds of call.
    pub fn office_calls(&self) -> OfficeCalls {
        OfficeCalls {
            draws: self.draws.snapshot(),
            checks: self.checks.snapshot(),
        }
    }

    /// What a write sent now would wait beyond its own work, going by the last call started,
    /// the last group made durable and the last write answered: the larger of mailbox delay
    /// plus commit delay, and the last write's whole time from send to answer.
    pub fn expected_wait(&self) -> Duration {
        let inside = self
            .queue_delay_us
            .load(Ordering::Relaxed)
            .saturating_add(self.commit_delay_us.load(Ordering::Relaxed));
        Duration::from_micros(inside.max(self.sojourn_us.load(Ordering::Relaxed)))
    }

    /// Whether a new write is refused for load with `depth` calls already in flight: at
    /// [`IN_FLIGHT_MAX`], or while at least [`SHED_MIN_DEPTH`] wait and calls wait longer than
    /// [`OfficeHealth::shed_after`] ([`SHED_QUEUE_DELAY`] by default).
    pub fn sheds_writes(&self, depth: usize) -> bool {
        self.sheds_writes_after(depth, Duration::ZERO)
    }

    /// [`OfficeHealth::sheds_writes`] for a write that has already waited `before` (on its way
    /// to the office, e.g. in an HTTP worker's socket buffers before it was read).
    pub fn sheds_writes_after(&self, depth: usize, before: Duration) -> bool {
        depth >= IN_FLIGHT_MAX
            || self.shed_after.is_some_and(|limit| {
                depth >= SHED_MIN_DEPTH && before + self.expected_wait() > limit
            })
    }
}

/// The actor owning one office's pool.
pub struct OfficeActor {
    pool: OfficePool,
    writer: Writer,
    rng: StdRng,
    clock: Arc<dyn Clock>,
    health: Arc<OfficeHealth>,
    events: Option<EventSender>,
    /// The armed timer: its handle, the deadline it is for, and the clock shift it was armed in.
    timer: Option<(SpawnHandle, u64, i64)>,
    /// The confirmed clock jumps this office's holds have been shifted by (see [`Clock::reading`]).
    shift_seen_ms: i64,
    /// Calls waiting for the end of an opening window, and when it ends.
    window: Vec<Deferred>,
    window_end_ms: Option<u64>,
    /// The office id, shared with every commit's future (no copy per call).
    office: Arc<str>,
    /// Groups of records handed to the writer so far, and how many of them are durable (set by
    /// the writer thread): while they differ, memory is ahead of the disk.
    handed: u64,
    durable: Arc<AtomicU64>,
    /// Applications settled in a group, evicted from the pool once it is durable (group seq,
    /// applications; oldest first).
    evictable: VecDeque<(u64, Vec<u64>)>,
}

/// A call held back by an opening window, ready to run.
type Deferred = Box<dyn FnOnce(&mut OfficeActor, &mut Context<OfficeActor>)>;

impl std::fmt::Debug for OfficeActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfficeActor")
            .field("office", &self.pool.id())
            .finish()
    }
}

impl OfficeActor {
    pub fn new(
        pool: OfficePool,
        writer: Writer,
        rng: StdRng,
        clock: Arc<dyn Clock>,
        health: Arc<OfficeHealth>,
        events: Option<EventSender>,
    ) -> OfficeActor {
        let pool_id = pool.id().to_string();
        let shift_seen_ms = clock.reading().shift_ms;
        OfficeActor {
            pool,
            writer,
            rng,
            clock,
            health,
            events,
            timer: None,
            shift_seen_ms,
            window: Vec::new(),
            window_end_ms: None,
            office: Arc::from(pool_id),
            handed: 0,
            durable: Arc::default(),
            evictable: VecDeque::new(),
        }
    }

    /// Whether every group handed to the writer is durable: memory shows acknowledged state.
    fn settled(&self) -> bool {
        self.durable.load(Ordering::SeqCst) >= self.handed
    }

    /// A commit of nothing that is told once every group handed before it is durable (the
    /// writer answers its commits in order): an answer read from memory waits on it while
    /// groups are in flight, and fails if one of them fails.
    fn barrier(&self) -> Pending {
        Pending {
            records: Vec::new(),
            events: Vec::new(),
            sink: None,
            writer: self.writer.clone(),
            health: Arc::clone(&self.health),
            office: Arc::clone(&self.office),
            seq: self.handed,
            durable: Arc::clone(&self.durable),
            barrier: true,
        }
    }

    /// Takes the effects of the steps just run, to be committed by [`Pending::commit_then`];
    /// `None` when they changed nothing.
    fn pending(&mut self) -> Option<Pending> {
        let effects = self.pool.take_effects();
        let settled = self.pool.take_settled();
        if !settled.is_empty() {
            // Settled by these records (the next group), or already durable in the store.
            let group = self.handed + u64::from(!effects.is_empty());
            self.evictable.push_back((group, settled));
        }
        if effects.is_empty() {
            return None;
        }
        let sink = if effects.events.is_empty() {
            None
        } else {
            self.events.clone()
        };
        self.handed += 1;
        Some(Pending {
            records: effects.records,
            events: effects.events,
            sink,
            writer: self.writer.clone(),
            health: Arc::clone(&self.health),
            office: Arc::clone(&self.office),
            seq: self.handed,
            durable: Arc::clone(&self.durable),
            barrier: false,
        })
    }

    /// Drops from the pool the applications settled by groups that are durable now (see
    /// `pool/settled.rs`): what the store shows of them is then what memory showed.
    fn evict_durable(&mut self) {
        let durable = self.durable.load(Ordering::SeqCst);
        while self
            .evictable
            .front()
            .is_some_and(|(group, _)| *group <= durable)
        {
            if let Some((_, seqs)) = self.evictable.pop_front() {
                self.pool.evict_settled(&seqs);
            }
        }
    }

    /// The engine's time. After an operator confirmed a clock jump, the pool's holds and the
    /// times its rate rules count from are first shifted by it, so a hold keeps the length it
    /// was given and an interval the length it asks for (SPEC T1, `pool/shift.rs`).
    fn now(&mut self) -> u64 {
        let reading = self.clock.reading();
        if reading.shift_ms != self.shift_seen_ms {
            self.pool
                .shift_for_clock_jump(reading.shift_ms - self.shift_seen_ms);
            self.shift_seen_ms = reading.shift_ms;
        }
        reading.now_ms
    }

    /// Arms the one timer at the pool's next deadline, if it is earlier than the armed one (or
    /// the armed one was set before a confirmed clock jump).
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        let Some(next) = self.pool.next_deadline_ms() else {
            return;
        };
        if let Some((handle, at, shift)) = self.timer {
            if at <= next && shift == self.shift_seen_ms {
                return;
            }
            ctx.cancel_future(handle);
        }
        let wait = next.saturating_sub(now) + TIMER_SLACK_MS;
        let handle = ctx.run_later(Duration::from_millis(wait), |act, ctx| {
            act.timer = None;
            act.on_timer(ctx);
        });
        self.timer = Some((handle, next, self.shift_seen_ms));
    }

    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        if !self.health.failed.load(Ordering::SeqCst) {
            self.evict_durable();
            let now = self.now();
            self.pool.tick(now);
            if let Some(pending) = self.pending() {
                pending.commit_then(|_| {});
            }
        }
        self.arm_timer(ctx);
    }
}

impl Actor for OfficeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.on_timer(ctx);
    }
}

/// The effects of a step on their way to the writer, with what is needed to finish them there.
struct Pending {
    records: Vec<crate::record::Record>,
    events: Vec<Event>,
    sink: Option<EventSender>,
    writer: Writer,
    health: Arc<OfficeHealth>,
    office: Arc<str>,
    /// The office's count of groups handed to the writer, this one included.
    seq: u64,
    durable: Arc<AtomicU64>,
    /// A commit of no records that waits for the groups before it ([`OfficeActor::barrier`]).
    barrier: bool,
}

impl Pending {
    /// Commits the records; once they are durable (on the writer thread) the events go out and
    /// `then` is told. A failed write marks the office failed: it refuses writes until restart.
    fn commit_then(self, then: impl FnOnce(Result<(), Refusal>) + Send + 'static) {
        let Pending {
            records,
            events,
            sink,
            writer,
            health,
            office,
            seq,
            durable,
            barrier,
        } = self;
        let handed = Instant::now();
        let finish = move |outcome: Result<(), crate::store::StoreError>| {
            health
                .commit_delay_us
                .store(handed.elapsed().as_micros() as u64, Ordering::Relaxed);
            if let Err(e) = outcome {
                health.failed.store(true, Ordering::SeqCst);
                tracing::error!(office = %office, error = %e, "write failed; office refuses writes until restart");
                then(Err(Refusal::Unavailable(e.to_string())));
                return;
            }
            durable.fetch_max(seq, Ordering::SeqCst);
            if let Some(sink) = sink {
                for e in events {
                    crate::events::forward(&sink, &office, e);
                }
            }
            then(Ok(()));
        };
        if records.is_empty() && !barrier {
            finish(Ok(()));
        } else {
            writer.commit_then(records, finish);
        }
    }
}

/// An office's answer to a [`Call`]: at once (a read, a refusal), or once the step's records are
/// durable. The durable answer is sent to the caller from the writer thread, so a write costs the
/// office's own thread no task, no channel and no second wake-up.
pub struct Reply<R>(Answer<R>);

enum Answer<R> {
    Now(Result<R, Refusal>),
    Durable {
        result: Result<R, Refusal>,
        pending: Pending,
    },
    Later(std::pin::Pin<Box<dyn Future<Output = Result<R, Refusal>>>>),
}

impl<R: Send + 'static> Reply<R> {
    fn deliver(self, tx: Option<actix::dev::OneshotSender<Result<R, Refusal>>>) {
        match self.0 {
            Answer::Now(result) => {
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
            Answer::Durable { result, pending } => pending.commit_then(move |outcome| {
                if let Some(tx) = tx {
                    let _ = tx.send(outcome.and(result));
                }
            }),
            Answer::Later(fut) => {
                actix::spawn(async move {
                    let result = fut.await;
                    if let Some(tx) = tx {
                        let _ = tx.send(result);
                    }
                });
            }
        }
    }
}

impl<R> std::fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Answer::Now(_) => "Reply::Now",
            Answer::Durable { .. } => "Reply::Durable",
            Answer::Later(_) => "Reply::Later",
        })
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("records", &self.records.len())
            .field("events", &self.events.len())
            .finish()
    }
}

impl<R: Send + 'static> actix::dev::MessageResponse<OfficeActor, Call<R>> for Reply<R> {
    fn handle(
        self,
        _: &mut Context<OfficeActor>,
        tx: Option<actix::dev::OneshotSender<Result<R, Refusal>>>,
    ) {
        self.deliver(tx);
    }
}

impl OfficeActor {
    /// Runs one call now: tick, the step, its commit; a write is answered after durability.
    fn execute<R: Send + 'static>(&mut self, msg: Call<R>, ctx: &mut Context<Self>) -> Reply<R> {
        if self.health.failed.load(Ordering::SeqCst) {
            // Memory may hold changes the disk does not: reads are refused too (fail-stop).
            return Reply(Answer::Now(Err(Refusal::Unavailable(
                "the office cannot persist changes; it is being restarted from its durable state"
                    .into(),
            ))));
        }
        self.evict_durable();
        let now = self.now();
        self.pool.tick(now);
        let result = (msg.f)(&mut self.pool, now, &mut self.rng);
        let pending = self.pending();
        self.arm_timer(ctx);
        match pending {
            None if self.settled() => Reply(Answer::Now(result)),
            // A read or a refusal of state still in flight waits until that state is durable.
            None => Reply(Answer::Durable {
                result,
                pending: self.barrier(),
            }),
            // A read whose tick changed something (expiries) waits for that change too.
            Some(pending) => Reply(Answer::Durable { result, pending }),
        }
    }

    /// Holds a call back until the opening window ends.
    fn defer<R: Send + 'static>(
        &mut self,
        msg: Call<R>,
        end_ms: u64,
        ctx: &mut Context<Self>,
    ) -> Reply<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.window.push(Box::new(
            move |act: &mut OfficeActor, ctx: &mut Context<OfficeActor>| {
                act.execute(msg, ctx).deliver(Some(tx));
            },
        ));
        if self.window_end_ms.is_none_or(|e| e < end_ms) {
            self.window_end_ms = Some(end_ms);
            let wait = end_ms.saturating_sub(self.now());
            ctx.run_later(Duration::from_millis(wait), move |act, ctx| {
                if act.window_end_ms == Some(end_ms) {
                    act.drain_window(ctx);
                }
            });
        }
        Reply(Answer::Later(Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(Refusal::Unavailable("office stopped".into())))
        })))
    }

    /// Serves every call held back by the window, in random order.
    fn drain_window(&mut self, ctx: &mut Context<Self>) {
        use rand::seq::SliceRandom;
        self.window_end_ms = None;
        let mut calls = std::mem::take(&mut self.window);
        calls.shuffle(&mut self.rng);
        for run in calls {
            run(self, ctx);
        }
    }
}

impl<R: Send + 'static> Handler<Call<R>> for OfficeActor {
    type Result = Reply<R>;

    fn handle(&mut self, msg: Call<R>, ctx: &mut Self::Context) -> Self::Result {
        if let Some(sent) = msg.sent_at {
            let waited = sent.elapsed();
            self.health
                .queue_delay_us
                .store(waited.as_micros() as u64, Ordering::Relaxed);
            if waited > QUEUE_DEADLINE && !msg.read_only {
                self.health.shed.fetch_add(1, Ordering::Relaxed);
                return Reply(Answer::Now(Err(overloaded())));
            }
        }
        if let Some(seq) = msg.window_app {
            let now = self.now();
            if let Some(end) = self.pool.opening_window_end(seq, now) {
                return self.defer(msg, end, ctx);
            }
        }
        self.execute(msg, ctx)
    }
}

/// Builds an office's keyboard indexes now (see [`KEYBOARD_WARM_UP_AFTER`]).
#[derive(Debug)]
pub struct WarmKeyboards;

impl Message for WarmKeyboards {
    type Result = ();
}

impl Handler<WarmKeyboards> for OfficeActor {
    type Result = ();

    fn handle(&mut self, _: WarmKeyboards, _: &mut Self::Context) {
        self.pool.refresh_keyboards();
    }
}

/// Stops an office actor once the calls queued before it are handled (a restart replaces it).
#[derive(Debug)]
pub struct StopOffice;

impl Message for StopOffice {
    type Result = ();
}

impl Handler<StopOffice> for OfficeActor {
    type Result = ();

    fn handle(&mut self, _: StopOffice, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The arbiter (thread) a new office actor runs on. Office actors share a fixed set of
/// arbiters, one per core, started as offices need them and then given in turn: the threads do
/// not grow with the offices. One actor still owns each office's pool and runs its calls one at
/// a time (SPEC); a panic in one ends that actor only (the supervisor restarts its office).
pub(crate) fn office_arbiter(arbiters: &mut Vec<Arbiter>) -> ArbiterHandle {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if arbiters.len() < cores {
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        arbiters.push(arbiter);
        return handle;
    }
    arbiters[NEXT.fetch_add(1, Ordering::Relaxed) % arbiters.len()].handle()
}

/// The address of an office actor with its health counters.
#[derive(Clone, Debug)]
pub struct OfficeHandle {
    pub addr: Addr<OfficeActor>,
    pub health: Arc<OfficeHealth>,
}

impl OfficeHandle {
    /// Sends a call and waits for its answer. Sheds load with 503 `unavailable` when the office
    /// already has [`IN_FLIGHT_MAX`] requests waiting.
    ///
    /// Also sheds by time: while calls wait longer than [`SHED_QUEUE_DELAY`] (in the office's
    /// mailbox, then for their group commit, then for their caller to take the answer), a new
    /// write is refused at once rather than queued behind them.
    pub async fn call<R: Send + 'static>(&self, mut call: Call<R>) -> Result<R, Refusal> {
        let depth = self.health.in_flight.fetch_add(1, Ordering::SeqCst);
        let _guard = InFlight(&self.health.in_flight);
        if depth >= IN_FLIGHT_MAX || (!call.read_only && self.health.sheds_writes(depth)) {
            self.health.shed.fetch_add(1, Ordering::Relaxed);
            return Err(overloaded());
        }
        let sent = Instant::now();
        let read_only = call.read_only;
        call.sent_at = Some(sent);
        let answer = match self.addr.send(call).await {
            Ok(r) => r,
            Err(_) => Err(Refusal::Unavailable("office is not running".into())),
        };
        if !read_only {
            // Measured here, where the caller has the answer in hand.
            self.health
                .sojourn_us
                .store(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        answer
    }

    pub fn mailbox_depth(&self) -> usize {
        self.health.in_flight.load(Ordering::Relaxed)
    }

    /// Stops the actor after the calls already queued (it answers them as it would); its
    /// arbiter goes on running the other offices' actors.
    pub fn stop(&self) {
        self.addr.do_send(StopOffice);
    }
}

fn overloaded() -> Refusal {
    Refusal::Unavailable("overloaded: try again shortly".into())
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_wait_is_the_larger_of_the_office_delays_and_the_last_sojourn() {
        let h = OfficeHealth::default();
        h.queue_delay_us.store(100, Ordering::Relaxed);
        h.commit_delay_us.store(200, Ordering::Relaxed);
        assert_eq!(h.expected_wait(), Duration::from_micros(300));
        // Answers waiting for a busy caller thread: the office's own delays are small, but
        // the last write took 900 ms from send to answer.
        h.sojourn_us.store(900_000, Ordering::Relaxed);
        assert_eq!(h.expected_wait(), Duration::from_millis(900));
        assert!(h.expected_wait() > SHED_QUEUE_DELAY);
        assert!(h.sheds_writes(SHED_MIN_DEPTH));
        // A queue that is draining is not shed, however slow its last call was.
        assert!(!h.sheds_writes(SHED_MIN_DEPTH - 1));
        h.sojourn_us.store(50, Ordering::Relaxed);
        assert_eq!(h.expected_wait(), Duration::from_micros(300));
        assert!(!h.sheds_writes(SHED_MIN_DEPTH));
        assert!(h.sheds_writes(IN_FLIGHT_MAX));
        // A write that already waited on its way counts that wait too.
        assert!(h.sheds_writes_after(SHED_MIN_DEPTH, SHED_QUEUE_DELAY));
        assert!(!h.sheds_writes_after(SHED_MIN_DEPTH - 1, SHED_QUEUE_DELAY));
    }

    #[test]
    fn without_a_time_limit_only_the_in_flight_cap_sheds() {
        let h = OfficeHealth::new(None);
        h.sojourn_us.store(60_000_000, Ordering::Relaxed);
        assert!(!h.sheds_writes(SHED_MIN_DEPTH * 10));
        assert!(!h.sheds_writes_after(SHED_MIN_DEPTH * 10, Duration::from_secs(60)));
        assert!(h.sheds_writes(IN_FLIGHT_MAX));
        let h = OfficeHealth::new(Some(Duration::from_secs(5)));
        h.sojourn_us.store(4_000_000, Ordering::Relaxed);
        assert!(!h.sheds_writes(SHED_MIN_DEPTH));
        assert!(h.sheds_writes_after(SHED_MIN_DEPTH, Duration::from_secs(2)));
    }
}
