//! Following the log in near real time: the daemon's connection passes on the
//! `dvault_events` notifications that every append sends (a statement-level trigger
//! on `event_log.events`), and a debounce turns a burst of them into one load.

use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::config::redact_url;
use crate::db::DbError;

/// The channel the log's append trigger notifies.
pub const CHANNEL: &str = "dvault_events";

/// The daemon's one connection: its client, and the notifications it receives. The
/// receiver closes when the connection does.
pub struct Session {
    pub client: Client,
    pub notifications: mpsc::UnboundedReceiver<()>,
}

/// Connect to `url`, forwarding `dvault_events` notifications.
pub async fn connect(url: &str) -> Result<Session, DbError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|source| DbError::BadUrl {
        url: redact_url(url),
        source,
    })?;
    if config.get_application_name().is_none() {
        // who holds the daemon lock, for the standby's message and pg_stat_activity
        let name: String = format!("dvault daemon {}", crate::ops::runs::runner())
            .chars()
            .take(63)
            .collect();
        config.application_name(&name);
    }
    config.connect_timeout(Duration::from_secs(10));
    // notice a vanished server within a minute even when idle
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    let (client, mut connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| DbError::Connect {
                target: redact_url(url),
                source,
            })?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    let _ = tx.send(());
                }
                Ok(AsyncMessage::Notice(notice)) => {
                    tracing::debug!(notice = %notice, "server notice");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::db::chain(&e), "the database connection failed");
                    break;
                }
            }
        }
        tracing::debug!("the database connection closed");
    });
    Ok(Session {
        client,
        notifications: rx,
    })
}

/// Start receiving notifications of appends.
pub async fn listen(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await
}

/// Turns notifications into loads: a load starts once the log has been quiet for
/// `quiet`, or `max_delay` after the first notification of a burst that does not stop.
#[derive(Debug, Clone)]
pub struct Debounce {
    pub quiet: Duration,
    pub max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debounce {
    pub fn new(quiet: Duration, max_delay: Duration) -> Debounce {
        Debounce {
            quiet,
            max_delay: max_delay.max(quiet),
            first: None,
            last: None,
        }
    }

    /// A notification (or anything else saying there may be events) at `now`.
    pub fn notice(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When to load, if something is waiting.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.quiet).min(first + self.max_delay))
    }

    /// The load is starting: notifications from now on are for the next one.
    pub fn clear(&mut self) {
        self.first = None;
        self.last = None;
    }
}

/// How often to look again when events are in the log but not yet visible to the
/// loader (a transaction older than them is still open), or when a follow load failed.
#[derive(Debug, Clone)]
pub struct Recheck {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Recheck {
    pub fn new(min: Duration, max: Duration) -> Recheck {
        Recheck {
            next: min,
            min,
            max: max.max(min),
        }
    }

    /// The delay before looking again; each call doubles the next one, up to `max`.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads that a stream of notifications at `times` (ms) triggers, when each load
    /// takes no time.
    fn loads(d: &mut Debounce, times: &[u64], until: u64) -> Vec<u64> {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut out = Vec::new();
        let mut i = 0;
        for now in 0..=until {
            while i < times.len() && times[i] == now {
                d.notice(at(now));
                i += 1;
            }
            if d.due().is_some_and(|due| due <= at(now)) {
                out.push(now);
                d.clear();
            }
        }
        out
    }

    #[test]
    fn a_single_event_loads_after_the_quiet_time() {
        let mut d = Debounce::new(Duration::from_millis(200), Duration::from_secs(1));
        assert_eq!(d.due(), None);
        assert_eq!(loads(&mut d, &[100], 2000), [300]);
    }

    #[test]
    fn a_burst_loads_once() {
        let mut d = Debounce::new(Duration::from_millis(200), Duration::from_secs(1));
        let burst: Vec<u64> = (0..20).map(|i| 100 + i * 10).collect();
        assert_eq!(loads(&mut d, &burst, 2000), [490]);
    }

    #[test]
    fn an_endless_stream_still_loads_every_max_delay() {
        let mut d = Debounce::new(Duration::from_millis(200), Duration::from_secs(1));
        let stream: Vec<u64> = (0..300).map(|i| i * 10).collect();
        assert_eq!(loads(&mut d, &stream, 3200), [1000, 2010, 3020]);
    }

    #[test]
    fn rechecks_back_off() {
        let mut r = Recheck::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u128> = (0..5).map(|_| r.delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        r.reset();
        assert_eq!(r.delay(), Duration::from_millis(100));
    }
}
