//! `dvault rebuild`: empty the vault and replay the whole log.

use tokio_postgres::Client;

use super::{CONSUMER, LoadError, LoadSummary, Loader, business};
use crate::db::Doing;
use crate::hash::HASH_VERSION;

/// Empty the vault and the loader's checkpoint, then replay the whole log.
pub async fn rebuild(client: &mut Client, loader: &Loader) -> Result<LoadSummary, LoadError> {
    let m = loader.mappings();
    let mut tables: Vec<String> = m.hubs.iter().map(|h| h.name.clone()).collect();
    tables.extend(m.links.iter().map(|l| l.name.clone()));
    tables.extend(m.satellites.iter().map(|s| s.name.clone()));
    let list: Vec<String> = tables.iter().map(|t| m.table(t)).collect();
    let tx = client.transaction().await.doing("starting the rebuild")?;
    tx.batch_execute(&format!("TRUNCATE {}", list.join(", ")))
        .await
        .doing("emptying the vault")?;
    if m.is_customer_360() {
        business::truncate(&tx).await?;
    }
    tx.execute("DELETE FROM event_log.rejected WHERE stage = 'load'", &[])
        .await
        .doing("clearing load rejections")?;
    tx.execute("DELETE FROM ops.held_events", &[])
        .await
        .doing("clearing held-back events")?;
    tx.execute(
        "DELETE FROM ops.checkpoints WHERE consumer = $1",
        &[&CONSUMER],
    )
    .await
    .doing("resetting the checkpoint")?;
    tx.execute(
        "INSERT INTO ops.settings (name, value) VALUES ('hash_version', $1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[&HASH_VERSION],
    )
    .await
    .doing("recording the hash version")?;
    tx.commit().await.doing("committing the rebuild's reset")?;
    loader.run(client).await
}
