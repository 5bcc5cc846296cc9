//! Dropping a table's indexes for a bulk write and building them again.
//!
//! Used by the bulk ingest (the event log) and the bulk load (the vault's empty
//! tables): a large write into a table with B-tree indexes on random keys costs a
//! random descent per row and index; `CREATE INDEX` sorts instead. Both drop the
//! indexes inside the writing transaction and build them before it commits, so a
//! crash leaves every index in place.

use tokio_postgres::GenericClient;

/// An index that was dropped, and how to build it again.
#[derive(Debug, Clone)]
pub struct Dropped {
    /// Its name, qualified (what `to_regclass` finds while it exists).
    pub name: String,
    /// Statements that build it again with its comments.
    pub build: Vec<String>,
}

/// Per index of a table (`$2`: unique ones too): how to drop it, how to build it
/// again, its comments. Constraint indexes (primary keys, unique and exclusion
/// constraints) are dropped and added back as constraints.
const INDEXES: &str = "
    SELECT i.indexrelid::regclass::text,
           CASE WHEN c.oid IS NULL THEN format('DROP INDEX %s', i.indexrelid::regclass)
                ELSE format('ALTER TABLE %s DROP CONSTRAINT %I', i.indrelid::regclass, c.conname)
           END,
           CASE WHEN c.oid IS NULL
                THEN pg_get_indexdef(i.indexrelid)
                     || coalesce(' TABLESPACE ' || quote_ident(ts.spcname), '')
                ELSE format('ALTER TABLE %s ADD CONSTRAINT %I %s', i.indrelid::regclass,
                            c.conname, pg_get_constraintdef(c.oid))
                     || coalesce(' USING INDEX TABLESPACE ' || quote_ident(ts.spcname), '')
           END,
           CASE WHEN obj_description(i.indexrelid, 'pg_class') IS NOT NULL
                THEN format('COMMENT ON INDEX %s IS %L', i.indexrelid::regclass,
                            obj_description(i.indexrelid, 'pg_class'))
           END,
           CASE WHEN obj_description(c.oid, 'pg_constraint') IS NOT NULL
                THEN format('COMMENT ON CONSTRAINT %I ON %s IS %L', c.conname,
                            i.indrelid::regclass, obj_description(c.oid, 'pg_constraint'))
           END
      FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      LEFT JOIN pg_tablespace ts ON ts.oid = ic.reltablespace
      LEFT JOIN pg_constraint c
             ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
            AND c.contype IN ('p', 'u', 'x')
     WHERE i.indrelid = $1::text::regclass
       AND ($2 OR NOT i.indisunique)
     ORDER BY c.oid IS NULL, i.indexrelid";

/// Drop every index of `qualified` (which the caller has locked); how to build each
/// again comes back in the order they must be built (constraints first).
pub async fn drop_all(
    tx: &impl GenericClient,
    qualified: &str,
) -> Result<Vec<Dropped>, tokio_postgres::Error> {
    drop_where(tx, qualified, true).await
}

/// Drop the indexes of `qualified` that are not unique (which the caller has locked):
/// its keys stay, for lookups and `ON CONFLICT`, the rest is built again after a
/// bulk write, as [`drop_all`]'s.
pub async fn drop_secondary(
    tx: &impl GenericClient,
    qualified: &str,
) -> Result<Vec<Dropped>, tokio_postgres::Error> {
    drop_where(tx, qualified, false).await
}

async fn drop_where(
    tx: &impl GenericClient,
    qualified: &str,
    unique_too: bool,
) -> Result<Vec<Dropped>, tokio_postgres::Error> {
    let rows = tx.query(INDEXES, &[&qualified, &unique_too]).await?;
    let mut dropped = Vec::with_capacity(rows.len());
    for r in &rows {
        let drop: String = r.try_get(1)?;
        let mut build: Vec<String> = vec![r.try_get(2)?];
        build.extend(r.try_get::<_, Option<String>>(3)?);
        build.extend(r.try_get::<_, Option<String>>(4)?);
        tx.batch_execute(&drop).await?;
        dropped.push(Dropped {
            name: r.try_get(0)?,
            build,
        });
    }
    Ok(dropped)
}

/// Build `index` again unless it exists (an index build that a savepoint rolled back
/// is built again). Returns whether it was built.
pub async fn build_missing(
    tx: &impl GenericClient,
    index: &Dropped,
) -> Result<bool, tokio_postgres::Error> {
    let exists: bool = tx
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&index.name])
        .await?
        .try_get(0)?;
    if exists {
        return Ok(false);
    }
    for sql in &index.build {
        tx.batch_execute(sql).await?;
    }
    Ok(true)
}
