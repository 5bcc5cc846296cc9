//! `dvault daemon`: the loader as a long-running service.
//!
//! - On a cron schedule (default [`schedule::DEFAULT_SCHEDULE`], in a configurable
//!   time zone) it runs the nightly cycle: load → refresh materialized views (the
//!   business vault is maintained by the loader inside each batch) → quality gate →
//!   `ANALYZE` of the touched tables ([`cycle`]).
//! - With `--follow` it also `LISTEN`s for the log's append notifications and loads
//!   new events within about a second, a burst at a time ([`follow`]).
//! - One daemon per database works, others stand by ([`lock`]); the loader lock keeps
//!   manual loads from writing at the same time.
//! - SIGTERM/SIGINT finish the batch in hand within a grace period, else roll it back
//!   (`ops::shutdown`); a lost database is retried with exponential backoff and jitter
//!   ([`retry`]), and loading resumes from the checkpoint: batches commit with it, so
//!   nothing is loaded twice.
//! - Every run is recorded in `ops.load_runs` (`ops::runs`); metrics for Prometheus
//!   ([`metrics`]).

pub mod cycle;
pub mod follow;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod retry;
pub mod schedule;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::config::Config;
use crate::db::chain;
use crate::db::{self, DbError, Doing, Target};
use crate::load::{CONSUMER, LoadError, Loader};
use crate::mapping::Mappings;
use crate::ops::quality::{QualityConfig, QualityError};
use crate::ops::runs::Trigger;
use crate::ops::shutdown::Shutdown;
use cycle::{Cycle, Ended, Unfinished};
use follow::{Debounce, Recheck};
use metrics::Metrics;
use retry::{Backoff, RetryPolicy};
use schedule::Schedule;

/// How the daemon runs; the CLI fills it from flags and environment.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The nightly cycle's schedule; `None`: no nightly cycle.
    pub schedule: Option<Schedule>,
    /// Follow the log in near real time.
    pub follow: bool,
    /// Follow: load once the log has been quiet this long...
    pub debounce: Duration,
    /// ...or this long after the first notification of a burst.
    pub max_delay: Duration,
    /// How often to refresh the lag metrics and, following, look for events whose
    /// notification was missed.
    pub poll_interval: Duration,
    /// Exit if another daemon works on the database instead of standing by.
    pub no_wait: bool,
    /// Run the nightly cycle once, now, and exit.
    pub once: bool,
    /// At start, run the nightly cycle if the schedule fired since the last one.
    pub catch_up: bool,
    pub batch_size: i64,
    pub quality: QualityConfig,
    pub metrics_listen: Option<SocketAddr>,
    /// After SIGTERM/SIGINT, how long the batch in hand may take to finish before it
    /// is cancelled (rolled back).
    pub stop_grace: Duration,
    pub retry: RetryPolicy,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            schedule: Some(
                Schedule::parse(schedule::DEFAULT_SCHEDULE, schedule::DEFAULT_TIME_ZONE)
                    .expect("the default schedule parses"),
            ),
            follow: false,
            debounce: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            poll_interval: Duration::from_secs(15),
            no_wait: false,
            once: false,
            catch_up: false,
            batch_size: 50_000,
            quality: QualityConfig::default(),
            metrics_listen: None,
            stop_grace: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Quality(#[from] QualityError),
    #[error("database error while {doing}: {}", crate::db::Shown(source))]
    Sql {
        doing: &'static str,
        source: tokio_postgres::Error,
    },
    #[error(
        "another dvault daemon is working on this database ({holder}); exiting because of --no-wait \
         (stop that one first, or drop --no-wait to stand by and take over when it stops)"
    )]
    AnotherDaemon { holder: String },
    #[error("the database connection was lost")]
    ConnectionLost,
    #[error("stopped before the cycle's refresh, quality gate and ANALYZE")]
    Stopped,
    #[error("{0}")]
    Setup(String),
}

impl DaemonError {
    /// Worth reconnecting and trying again?
    pub fn is_transient(&self) -> bool {
        use retry::is_transient;
        match self {
            DaemonError::Db(DbError::Connect { .. } | DbError::Local(_)) => true,
            DaemonError::Db(DbError::Sql(e)) => is_transient(e),
            DaemonError::Load(LoadError::Db { source, .. }) => is_transient(source),
            DaemonError::Quality(q) => q.db_error().is_some_and(is_transient),
            DaemonError::Sql { source, .. } => is_transient(source),
            DaemonError::ConnectionLost => true,
            _ => false,
        }
    }
}

impl From<crate::db::Failed> for DaemonError {
    fn from(crate::db::Failed { doing, source }: crate::db::Failed) -> Self {
        DaemonError::Sql { doing, source }
    }
}

impl From<crate::ops::run::RunError> for DaemonError {
    fn from(e: crate::ops::run::RunError) -> Self {
        match e {
            crate::ops::run::RunError::Load(e) => e.into(),
            crate::ops::run::RunError::Db(e) => e.into(),
        }
    }
}

/// How the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonExit {
    /// SIGTERM/SIGINT.
    Stopped,
    /// `--once`: whether the cycle succeeded (quality gate included).
    Once { succeeded: bool },
}

/// What carries over from one connection to the next.
#[derive(Debug)]
struct Carry {
    /// A run the lost connection left open.
    unfinished: Option<Unfinished>,
    /// `--catch-up` was considered.
    caught_up: bool,
    /// The reconnection delays: they grow with each failed session, until one
    /// connects and takes the daemon lock.
    backoff: Backoff,
}

/// Run the daemon until a stop is asked for (or, with `--once`, one cycle is done).
pub async fn run(
    config: &Config,
    mappings: Mappings,
    opts: DaemonOptions,
    shutdown: Shutdown,
) -> Result<DaemonExit, DaemonError> {
    opts.quality
        .check(&mappings)
        .map_err(|e| DaemonError::Setup(e.to_string()))?;
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = opts.metrics_listen {
        let bound = metrics::serve(addr, metrics.clone())
            .await
            .map_err(|e| DaemonError::Setup(format!("cannot listen on {addr} for metrics: {e}")))?;
        tracing::info!(address = %bound, "metrics at http://{bound}/metrics");
    }
    let daemon = Daemon {
        config,
        mappings: &mappings,
        opts: &opts,
        shutdown: &shutdown,
        metrics: &metrics,
    };
    let mut carry = Carry {
        unfinished: None,
        caught_up: false,
        backoff: Backoff::new(opts.retry),
    };
    loop {
        if shutdown.requested() {
            return Ok(DaemonExit::Stopped);
        }
        let result = daemon.session(&mut carry).await;
        metrics.set_db_up(false);
        metrics.set_following(false);
        match result {
            Ok(exit) => return Ok(exit),
            Err(e) if e.is_transient() && !shutdown.requested() => {
                let backoff = &mut carry.backoff;
                let delay = backoff.next_delay();
                tracing::warn!(
                    attempt = backoff.failures(),
                    retry_in_ms = delay.as_millis() as u64,
                    error = %chain(&e),
                    "database unavailable; retrying"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => return Ok(DaemonExit::Stopped),
                }
            }
            Err(_) if shutdown.requested() => return Ok(DaemonExit::Stopped),
            Err(e) => return Err(e),
        }
    }
}

/// What every session works with, the same for the daemon's whole life; each
/// connection in turn borrows it.
struct Daemon<'a> {
    config: &'a Config,
    mappings: &'a Mappings,
    opts: &'a DaemonOptions,
    shutdown: &'a Shutdown,
    metrics: &'a Metrics,
}

/// A connection holding the daemon lock, with its loader. The fields drop in this
/// order: the private server (if any) stops last, after the session is closed.
struct Connection {
    loader: Loader,
    notifications: mpsc::UnboundedReceiver<()>,
    client: Client,
    target: Target,
}

impl Daemon<'_> {
    /// One connection's life: connect, take the daemon lock, then serve the schedule
    /// and the notifications until a stop, an error, or (with `--once`) one cycle.
    async fn session(&self, carry: &mut Carry) -> Result<DaemonExit, DaemonError> {
        let Some(mut conn) = self.connect(&mut carry.backoff).await? else {
            return Ok(DaemonExit::Stopped);
        };
        let token = conn.client.cancel_token();
        let mut cycle = Cycle {
            client: &mut conn.client,
            loader: &conn.loader,
            opts: self.opts,
            shutdown: self.shutdown,
            metrics: self.metrics,
            token: &token,
            url: &conn.target.url,
        };
        if let Some(unfinished) = carry.unfinished.take() {
            cycle.close_unfinished(unfinished).await?;
        }
        if self.opts.once {
            let ended = cycle.run(Trigger::Schedule, &mut carry.unfinished).await?;
            release(cycle.client).await;
            return Ok(match ended {
                Ended::Cancelled | Ended::NotStarted => DaemonExit::Stopped,
                Ended::Succeeded => DaemonExit::Once { succeeded: true },
                Ended::Failed => DaemonExit::Once { succeeded: false },
            });
        }
        let next_fire = self.prepare(&mut cycle, carry).await?;
        self.serve(
            &mut cycle,
            &mut conn.notifications,
            &mut carry.unfinished,
            next_fire,
        )
        .await
    }

    /// Connect (migrating the schema if it is behind), and take the daemon lock;
    /// `None` when a stop came while standing by for it.
    async fn connect(&self, backoff: &mut Backoff) -> Result<Option<Connection>, DaemonError> {
        let target = Target::resolve(self.config).await?;
        let follow::Session {
            mut client,
            notifications,
        } = follow::connect(&target.url).await?;
        if db::schema_version(&client).await? != Some(db::latest_known_version()) {
            db::migrate(&mut client).await?;
        }
        // reads ahead on a second connection, like `dvault load`: while a batch is
        // written the next is read, and a first load follows the files being ingested
        let mut loader = Loader::new(&client, self.mappings.clone())
            .await?
            .with_read_ahead(&target.url);
        loader.batch_size = self.opts.batch_size.max(1);
        match lock::take(&client, self.opts.no_wait, self.shutdown)
            .await
            .doing("taking the daemon lock")?
        {
            lock::Taken::Yes => {}
            lock::Taken::Busy(holder) => return Err(DaemonError::AnotherDaemon { holder }),
            lock::Taken::Stopped => return Ok(None),
        }
        backoff.reset();
        self.metrics.set_db_up(true);
        tracing::info!(database = %target.describe(), "connected, holding the daemon lock");
        seed_metrics(&client, self.metrics).await?;
        Ok(Some(Connection {
            loader,
            notifications,
            client,
            target,
        }))
    }

    /// Before serving: listen for appends (following), schedule the nightly cycle,
    /// and with `--catch-up` run the one the schedule fired while no daemon ran
    /// (once per daemon, not per connection). Returns when the next cycle is due.
    async fn prepare(
        &self,
        cycle: &mut Cycle<'_>,
        carry: &mut Carry,
    ) -> Result<Option<DateTime<Utc>>, DaemonError> {
        let opts = self.opts;
        if opts.follow {
            follow::listen(cycle.client)
                .await
                .doing("listening for appends")?;
            self.metrics.set_following(true);
            tracing::info!(channel = follow::CHANNEL, "following the event log");
        }
        let next_fire = opts.schedule.as_ref().and_then(|s| s.next_fire(Utc::now()));
        self.metrics.set_next_run(next_fire);
        if let (Some(s), Some(at)) = (&opts.schedule, next_fire) {
            tracing::info!(schedule = %s, next = %at.with_timezone(&s.time_zone()), "nightly cycle scheduled");
        }
        if opts.catch_up && !carry.caught_up {
            carry.caught_up = true;
            if let Some(s) = &opts.schedule {
                let last = crate::ops::runs::last_scheduled_start(&*cycle.client)
                    .await
                    .doing("reading the run history")?;
                if s.missed(last, Utc::now()) {
                    tracing::info!(
                        "the schedule fired while no daemon ran: running the nightly cycle now (--catch-up)"
                    );
                    cycle.run(Trigger::Schedule, &mut carry.unfinished).await?;
                }
            }
        }
        Ok(next_fire)
    }

    /// Serve until a stop or an error: the nightly cycle when it is due, a follow
    /// run when a burst of notifications has settled (and rechecks after it), and
    /// the lag poll, which also catches a missed notification.
    async fn serve(
        &self,
        cycle: &mut Cycle<'_>,
        notifications: &mut mpsc::UnboundedReceiver<()>,
        unfinished: &mut Option<Unfinished>,
        mut next_fire: Option<DateTime<Utc>>,
    ) -> Result<DaemonExit, DaemonError> {
        let opts = self.opts;
        let mut debounce = Debounce::new(opts.debounce, opts.max_delay);
        let mut recheck = Recheck::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut recheck_at: Option<Instant> = None;
        if opts.follow {
            // events appended while no daemon followed
            debounce.notice(Instant::now());
        }
        let mut poll = tokio::time::interval(opts.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = Instant::now() + Duration::from_secs(3600);
        loop {
            if self.shutdown.requested() {
                release(cycle.client).await;
                return Ok(DaemonExit::Stopped);
            }
            let fire_in = next_fire.map(|at| {
                (at - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(60))
            });
            let due = debounce.due();
            tokio::select! {
                biased;
                _ = self.shutdown.wait() => {}
                n = notifications.recv() => match n {
                    None => return Err(DaemonError::ConnectionLost),
                    Some(()) => {
                        debounce.notice(Instant::now());
                        while notifications.try_recv().is_ok() {}
                    }
                },
                _ = tokio::time::sleep(fire_in.unwrap_or_default()), if fire_in.is_some() => {
                    if next_fire.is_some_and(|at| Utc::now() >= at) {
                        cycle.run(Trigger::Schedule, unfinished).await?;
                        next_fire = opts.schedule.as_ref().and_then(|s| s.next_fire(Utc::now()));
                        self.metrics.set_next_run(next_fire);
                        if let Some(at) = next_fire {
                            tracing::info!(next = %at, "next nightly cycle");
                        }
                    }
                }
                _ = tokio::time::sleep_until(due.unwrap_or(far).into()), if due.is_some() => {
                    debounce.clear();
                    follow_once(cycle, unfinished, &mut recheck, &mut recheck_at).await?;
                }
                _ = tokio::time::sleep_until(recheck_at.unwrap_or(far).into()), if recheck_at.is_some() => {
                    recheck_at = None;
                    follow_once(cycle, unfinished, &mut recheck, &mut recheck_at).await?;
                }
                _ = poll.tick() => {
                    let pending = refresh_lag(&*cycle.client, self.metrics).await?;
                    if opts.follow && pending > 0 && recheck_at.is_none() && debounce.due().is_none() {
                        debounce.notice(Instant::now());
                    }
                }
            }
        }
    }
}

/// A follow run, then: if events are still waiting (committed during the run, or
/// held back by an open transaction), look again soon, backing off.
async fn follow_once(
    cycle: &mut Cycle<'_>,
    unfinished: &mut Option<Unfinished>,
    recheck: &mut Recheck,
    recheck_at: &mut Option<Instant>,
) -> Result<(), DaemonError> {
    let ended = cycle.run(Trigger::Follow, unfinished).await?;
    let pending = refresh_lag(&*cycle.client, cycle.metrics).await?;
    if pending > 0 || ended == Ended::Failed {
        *recheck_at = Some(Instant::now() + recheck.delay());
    } else {
        recheck.reset();
    }
    Ok(())
}

/// Events after the loader's checkpoint (committed or not), into the lag metrics.
async fn refresh_lag(client: &Client, metrics: &Metrics) -> Result<i64, DaemonError> {
    let lag = crate::events::lag(client, CONSUMER)
        .await
        .doing("measuring the lag")?;
    metrics.set_lag(lag.events, lag.oldest_seconds);
    let streams = crate::stream::offsets::lags(client)
        .await
        .doing("reading dvault stream's offsets")?;
    metrics.set_stream_lags(streams);
    Ok(lag.events)
}

/// Fill the gauges that outlive the process from the database.
async fn seed_metrics(client: &Client, metrics: &Metrics) -> Result<(), DaemonError> {
    for (trigger, at) in crate::ops::runs::last_success(client)
        .await
        .doing("reading the run history")?
    {
        metrics.set_last_success(&trigger, at);
    }
    if let Some(report) = crate::ops::quality::latest(client)
        .await
        .doing("reading the latest quality gate")?
    {
        metrics.set_quality(&report);
    }
    refresh_lag(client, metrics).await?;
    Ok(())
}

/// Let go of the locks before closing (closing would too, a little later).
async fn release(client: &Client) {
    let unlock = client.batch_execute("SELECT pg_advisory_unlock_all()");
    let _ = tokio::time::timeout(Duration::from_secs(1), unlock).await;
}
