//! The nightly cycle's housekeeping: refresh materialized views (the business vault's
//! tables are kept up to date by the loader inside each batch). What a run analyzes
//! afterwards is `crate::ops::analyze`.

use tokio_postgres::GenericClient;

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
        let (schema, name): (String, String) = (v.try_get(0)?, v.try_get(1)?);
        let concurrently = v.try_get::<_, bool>(2)? && v.try_get::<_, bool>(3)?;
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
