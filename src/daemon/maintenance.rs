//! The nightly cycle's housekeeping: refresh materialized views (the business vault's
//! tables are kept up to date by the loader inside each batch), and `ANALYZE` the
//! tables a run touched so the planner knows their new sizes.

use std::collections::BTreeSet;

use tokio_postgres::GenericClient;

use crate::load::LoadSummary;

use crate::db::quote_ident as ident;

/// Refresh every materialized view of the business vault and the mart, in name
/// order; `CONCURRENTLY` (readers are not blocked) when the view has a unique index
/// and is populated. Returns the views refreshed.
pub async fn refresh_materialized_views(
    client: &impl GenericClient,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let views = client
        .query(
            "SELECT v.schemaname::text, v.matviewname::text, v.ispopulated,
                    EXISTS (SELECT 1 FROM pg_index i
                             WHERE i.indrelid = format('%I.%I', v.schemaname, v.matviewname)::regclass
                               AND i.indisunique AND i.indpred IS NULL)
               FROM pg_matviews v
              WHERE v.schemaname IN ('business_vault', 'mart')
              ORDER BY 1, 2",
            &[],
        )
        .await?;
    let mut done = Vec::new();
    for v in views {
        let (schema, name): (String, String) = (v.get(0), v.get(1));
        let concurrently = v.get::<_, bool>(2) && v.get::<_, bool>(3);
        let qualified = format!("{}.{}", ident(&schema), ident(&name));
        let started = std::time::Instant::now();
        client
            .batch_execute(&format!(
                "REFRESH MATERIALIZED VIEW {}{qualified}",
                if concurrently { "CONCURRENTLY " } else { "" }
            ))
            .await?;
        tracing::info!(view = %format!("{schema}.{name}"), concurrently, ms = started.elapsed().as_millis() as u64, "refreshed materialized view");
        done.push(format!("{schema}.{name}"));
    }
    Ok(done)
}

/// `ANALYZE` what a run changed: the vault tables it wrote rows to, the business
/// vault's tables and the refreshed views when it loaded anything, and the log.
pub async fn analyze_touched(
    client: &impl GenericClient,
    vault_schema: &str,
    summary: &LoadSummary,
    refreshed: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    if summary.events == 0 && refreshed.is_empty() {
        return Ok(Vec::new());
    }
    let mut tables: BTreeSet<(String, String)> = BTreeSet::new();
    for (table, n) in &summary.rows {
        if *n > 0 {
            tables.insert((vault_schema.into(), table.clone()));
        }
    }
    if summary.events > 0 {
        tables.insert(("event_log".into(), "events".into()));
        for r in client
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'business_vault'",
                &[],
            )
            .await?
        {
            tables.insert(("business_vault".into(), r.get(0)));
        }
    }
    for view in refreshed {
        if let Some((schema, name)) = view.split_once('.') {
            tables.insert((schema.into(), name.into()));
        }
    }
    let list: Vec<String> = tables
        .iter()
        .map(|(s, t)| format!("{}.{}", ident(s), ident(t)))
        .collect();
    if !list.is_empty() {
        let started = std::time::Instant::now();
        client
            .batch_execute(&format!("ANALYZE {}", list.join(", ")))
            .await?;
        tracing::info!(
            tables = list.len(),
            ms = started.elapsed().as_millis() as u64,
            "analyzed touched tables"
        );
    }
    Ok(tables
        .into_iter()
        .map(|(s, t)| format!("{s}.{t}"))
        .collect())
}
