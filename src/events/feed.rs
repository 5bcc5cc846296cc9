//! The ingest's side of the one pass (`dvault ingest --load`): what a file's ingest
//! stores in the log, it also hands to a bulk load running beside it, as the rows a
//! reader of the log would read back, so the loader neither reads the events back
//! nor waits for the ingest to end before it starts (`crate::load::one_pass`).
//!
//! The log stays the source of truth: the load commits only after every transaction
//! that stored what it was fed, and checks at its end that nothing else was written
//! to the log meanwhile. Where the ingest cannot say exactly what it stored (a batch
//! that went the `ON CONFLICT` way, a bulk ingest rolled back to go batch by batch),
//! it gives up the one pass: the load rolls back and loads from the log afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::StoredEvent;

/// What the ingest hands to the load.
#[derive(Debug)]
pub enum Fed {
    /// Events stored, in log order, by a transaction that commits before its file's
    /// ingest returns; `reserved`: the `seq`s their writer took (those of duplicates
    /// it then skipped included).
    Events {
        events: Vec<StoredEvent>,
        reserved: u64,
    },
    /// The ingest wrote something it cannot hand over exactly: the load must not
    /// commit. Why, for the log.
    GiveUp(String),
}

/// The sending end, cloned into the ingest options of each file.
#[derive(Debug, Clone)]
pub struct Feed {
    tx: mpsc::Sender<Fed>,
    given_up: Arc<AtomicBool>,
}

impl Feed {
    /// A feed and its receiving end; `depth` batches wait at most (the ingest waits
    /// for the load beyond it, so memory stays bounded).
    pub fn channel(depth: usize) -> (Feed, mpsc::Receiver<Fed>) {
        let (tx, rx) = mpsc::channel(depth.max(1));
        let feed = Feed {
            tx,
            given_up: Arc::new(AtomicBool::new(false)),
        };
        (feed, rx)
    }

    /// Hand over stored events. A load that stopped listening (it gave up, or
    /// failed) is not the ingest's concern: the events are in the log.
    pub async fn send(&self, events: Vec<StoredEvent>, reserved: u64) {
        if !self.given_up() {
            // a closed channel: the load has ended, and will load from the log
            let _ = self.tx.send(Fed::Events { events, reserved }).await;
        }
    }

    /// Give up the one pass; what follows is not handed over.
    pub async fn give_up(&self, why: impl Into<String>) {
        if !self.given_up.swap(true, Ordering::SeqCst) {
            let _ = self.tx.send(Fed::GiveUp(why.into())).await;
        }
    }

    pub fn given_up(&self) -> bool {
        self.given_up.load(Ordering::SeqCst)
    }
}
