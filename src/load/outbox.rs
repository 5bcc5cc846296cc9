//! The bulk path's `COPY`s, streamed beside the writer ([`Outbox`]).
//!
//! A bulk run writes every batch on one connection, in one transaction, so
//! PostgreSQL's side of the load is one backend taking `COPY` data. Written in turn
//! (the writer decides a table's rows, encodes them, waits for the `COPY` to end,
//! then goes on), that backend waited for the writer's decisions and encoding and
//! the writer for the backend: at TPC-H SF1 each was busy about half of the batches'
//! time. With an outbox the writer hands each table's encoded rows over as it
//! encodes them and goes on with the next table and the next batch; a drain
//! ([`Outbox::drain`], joined with the writer on the same task) runs the `COPY`s in
//! the order they were handed over, so the backend always has the next rows waiting.
//!
//! Order is everything: a statement the writer sends itself on the run's connection
//! runs when it is sent, possibly before `COPY`s still waiting here. The writer
//! therefore [settles](Outbox::settle) the outbox before it reads a vault table or
//! changes one (a key or version lookup, an index build for a table the run must look
//! into): every `COPY` handed over is then done. The run's own end (the remaining
//! index builds, the checkpoint) comes after the drain has ended. Nothing else reads
//! what the `COPY`s write.
//!
//! What waits here is bounded ([`Outbox::BUDGET`] bytes): a writer that gets ahead
//! waits for room. The first `COPY` that fails ends the drain; the writer's next
//! hand-over or settle returns [`LoadError::Internal`] and the drain's own result
//! carries the database's error (which decides, as before, whether the run goes on
//! batch by batch). A writer that fails itself (a value it cannot encode) drops the
//! table's stream unfinished: that `COPY` fails, the drain ends without an error of
//! its own, and the writer's error is the run's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, pin_mut};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_postgres::Transaction;

use super::LoadError;
use crate::db::Doing;

/// One table's `COPY`: its statement, then its data as the writer encodes it, and
/// `None` at its end (a stream dropped before it fails the `COPY`).
struct Copy {
    statement: String,
    data: mpsc::UnboundedReceiver<Option<Bytes>>,
}

/// `COPY`s handed over by the writer, run in order by [`Outbox::drain`].
pub struct Outbox {
    copies: Mutex<Option<mpsc::UnboundedSender<Copy>>>,
    waiting: Mutex<Option<mpsc::UnboundedReceiver<Copy>>>,
    /// Room for data waiting, in kB.
    room: Semaphore,
    /// `COPY`s handed over and not yet done.
    pending: AtomicUsize,
    done: Notify,
    failed: Mutex<Option<LoadError>>,
}

/// The data of one table's `COPY`, handed over chunk by chunk ([`Outbox::start`]).
pub struct Stream<'a> {
    outbox: &'a Outbox,
    data: mpsc::UnboundedSender<Option<Bytes>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("pending", &self.pending.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new()
    }
}

impl Outbox {
    /// Encoded rows that may wait, at most: about a batch of TPC-H line items.
    pub const BUDGET: usize = 16 * 1024 * 1024;

    pub fn new() -> Outbox {
        let (copies, waiting) = mpsc::unbounded_channel();
        Outbox {
            copies: Mutex::new(Some(copies)),
            waiting: Mutex::new(Some(waiting)),
            room: Semaphore::new(Self::BUDGET / 1024),
            pending: AtomicUsize::new(0),
            done: Notify::new(),
            failed: Mutex::new(None),
        }
    }

    fn ended() -> LoadError {
        LoadError::Internal("the run's COPY stream ended early".into())
    }

    /// Hand over a `COPY` whose data follows through the returned stream.
    pub fn start(&self, statement: String) -> Result<Stream<'_>, LoadError> {
        let (data, rx) = mpsc::unbounded_channel();
        self.pending.fetch_add(1, Ordering::SeqCst);
        let sent = self
            .copies
            .lock()
            .map_err(|_| Self::ended())?
            .as_ref()
            .is_some_and(|c| {
                c.send(Copy {
                    statement,
                    data: rx,
                })
                .is_ok()
            });
        if !sent {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(Self::ended());
        }
        Ok(Stream { outbox: self, data })
    }

    /// Wait until every `COPY` handed over is done.
    pub async fn settle(&self) -> Result<(), LoadError> {
        loop {
            let done = self.done.notified();
            pin_mut!(done);
            done.as_mut().enable();
            if self.room.is_closed() {
                return Err(Self::ended());
            }
            if self.pending.load(Ordering::SeqCst) == 0 {
                return Ok(());
            }
            done.await;
        }
    }

    /// No more `COPY`s: the drain ends once the last one is done.
    pub fn close(&self) {
        if let Ok(mut copies) = self.copies.lock() {
            copies.take();
        }
    }

    /// Run the `COPY`s handed over, in order, on the run's transaction, until the
    /// outbox is closed; the first error ends it (and every hand-over after it).
    pub async fn drain(&self, tx: &Transaction<'_>) -> Result<(), LoadError> {
        let waiting = self.waiting.lock().map_err(|_| Self::ended())?.take();
        let Some(mut waiting) = waiting else {
            return Err(LoadError::Internal("an outbox drained twice".into()));
        };
        while let Some(copy) = waiting.recv().await {
            let ran = self.run(tx, copy).await;
            if !matches!(ran, Ok(true)) {
                if let (Err(e), Ok(mut failed)) = (ran, self.failed.lock()) {
                    failed.get_or_insert(e);
                }
                // the writer's waits for room and settles end with it
                self.room.close();
                self.done.notify_waiters();
                break;
            }
            self.pending.fetch_sub(1, Ordering::SeqCst);
            self.done.notify_waiters();
        }
        match self.failed.lock().map(|mut f| f.take()) {
            Ok(Some(e)) => Err(e),
            Ok(None) => Ok(()),
            Err(_) => Err(Self::ended()),
        }
    }

    /// One `COPY`; `false` if the writer gave up on it (its own error is the run's):
    /// the sink, dropped unfinished, fails the `COPY`.
    async fn run(&self, tx: &Transaction<'_>, mut copy: Copy) -> Result<bool, LoadError> {
        let sink = tx
            .copy_in::<_, Bytes>(&copy.statement)
            .await
            .doing("starting a COPY into the vault")?;
        pin_mut!(sink);
        loop {
            match copy.data.recv().await {
                Some(Some(chunk)) => {
                    let kb = chunk.len() / 1024;
                    sink.send(chunk)
                        .await
                        .doing("writing rows into the vault")?;
                    self.room.add_permits(kb);
                }
                Some(None) => break,
                None => return Ok(false),
            }
        }
        sink.finish().await.doing("writing rows into the vault")?;
        Ok(true)
    }
}

impl Stream<'_> {
    /// Hand over the next chunk of the `COPY`'s data (waiting for room if the
    /// writer is far ahead of the database).
    pub async fn send(&self, chunk: Bytes) -> Result<(), LoadError> {
        let kb = u32::try_from(chunk.len() / 1024).map_err(|_| Outbox::ended())?;
        self.outbox
            .room
            .acquire_many(kb)
            .await
            .map_err(|_| Outbox::ended())?
            .forget();
        self.data.send(Some(chunk)).map_err(|_| Outbox::ended())?;
        // let the drain, joined with the writer on this task, pass it on
        tokio::task::yield_now().await;
        Ok(())
    }

    /// The `COPY`'s data is complete.
    pub fn end(self) -> Result<(), LoadError> {
        self.data.send(None).map_err(|_| Outbox::ended())
    }
}
