//! A progress bar for long loads on a terminal: a second connection counts the events
//! behind the loader's checkpoint once a second (each batch commits its checkpoint).
//! Hidden, and no connection made, when stderr is not a terminal or the load is short.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::GenericClient;

use crate::events::{Checkpoint, load_checkpoint};
use crate::load::CONSUMER;

/// Loads shorter than this many events get no bar.
const MIN_EVENTS: i64 = 100_000;

/// The running bar; [`finish`](Self::finish) it when the load ends.
pub struct LoadProgress {
    task: Option<JoinHandle<()>>,
    bar: indicatif::ProgressBar,
}

/// Events after `from`, committed or not (an estimate of what a load will read).
pub async fn pending_after(
    client: &impl GenericClient,
    from: Checkpoint,
) -> Result<i64, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT coalesce(sum(coalesce(bundle_size, 1)), 0)::bigint FROM event_log.events WHERE (xid, seq) > ($1, $2)",
            &[&from.xid, &from.seq],
        )
        .await?
        .try_get(0)
}

/// The bar for a load (or a rebuild), when stderr is a terminal.
pub async fn for_load(client: &impl GenericClient, url: &str, rebuild: bool) -> LoadProgress {
    if !std::io::stderr().is_terminal() {
        return LoadProgress::hidden();
    }
    let from = if rebuild {
        Checkpoint::START
    } else {
        match load_checkpoint(client, CONSUMER).await {
            Ok(at) => at,
            Err(_) => return LoadProgress::hidden(),
        }
    };
    match pending_after(client, from).await {
        Ok(total) => LoadProgress::start(url, from, total).await,
        Err(_) => LoadProgress::hidden(),
    }
}

impl LoadProgress {
    /// A bar that never shows.
    pub fn hidden() -> LoadProgress {
        LoadProgress {
            task: None,
            bar: indicatif::ProgressBar::hidden(),
        }
    }

    /// Start a bar for a load from `from` (the checkpoint before it; `START` for a
    /// rebuild) over about `total` events, polling through a new connection to `url`.
    pub async fn start(url: &str, from: Checkpoint, total: i64) -> LoadProgress {
        if total < MIN_EVENTS || !std::io::stderr().is_terminal() {
            return LoadProgress::hidden();
        }
        let Ok(client) = crate::db::connect(url).await else {
            return LoadProgress::hidden();
        };
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} loading [{bar:40}] {human_pos}/{human_len} events ({rate}), {eta} left",
        ) {
            bar.set_style(
                style
                    .with_key(
                        "rate",
                        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let rate = crate::human::thousands(state.per_sec() as u64);
                            let _ = write!(w, "{rate}/s");
                        },
                    )
                    .progress_chars("=> "),
            );
        }
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Ok(at) = load_checkpoint(&client, CONSUMER).await else {
                    return;
                };
                // (the bar is a nicety: a failure stops it, silently)
                let done: i64 = match client
                    .query_one(
                        "SELECT coalesce(sum(coalesce(bundle_size, 1)), 0)::bigint FROM event_log.events
                          WHERE (xid, seq) > ($1, $2) AND (xid, seq) <= ($3, $4)",
                        &[&from.xid, &from.seq, &at.xid, &at.seq],
                    )
                    .await
                    .and_then(|r| r.try_get(0))
                {
                    Ok(done) => done,
                    Err(_) => return,
                };
                shown.set_position(done.max(0) as u64);
            }
        });
        LoadProgress {
            task: Some(task),
            bar,
        }
    }

    pub fn finish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}
