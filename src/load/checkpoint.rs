//! The loader's checkpoint in a batch's transaction: locked and checked where the
//! batch starts, moved to its last event at the commit, so the vault rows and the
//! checkpoint commit together or not at all.

use tokio_postgres::Transaction;

use super::{CONSUMER, LoadError};
use crate::db::Doing;
use crate::events::{self, Checkpoint};

/// Lock the loader's checkpoint row and check that it is where the batch starts.
pub(super) async fn lock_checkpoint(
    tx: &Transaction<'_>,
    after: Checkpoint,
) -> Result<(), LoadError> {
    let at = tx
        .query_opt(
            "SELECT xid, seq FROM ops.checkpoints WHERE consumer = $1 FOR UPDATE",
            &[&CONSUMER],
        )
        .await
        .doing("locking the checkpoint")?
        .map_or(Ok(Checkpoint::START), |r| {
            Ok(Checkpoint {
                xid: r.try_get(0)?,
                seq: r.try_get(1)?,
            })
        })
        .doing("locking the checkpoint")?;
    if at != after {
        return Err(LoadError::Internal(
            "the checkpoint moved while this batch was prepared (another loader ran without the lock); load again".into(),
        ));
    }
    Ok(())
}

/// Move the checkpoint to the batch's last event and commit.
pub(super) async fn finish_batch(tx: Transaction<'_>, last: Checkpoint) -> Result<(), LoadError> {
    events::save_checkpoint(&tx, CONSUMER, last)
        .await
        .doing("saving the checkpoint")?;
    Ok(tx.commit().await.doing("committing the batch")?)
}
