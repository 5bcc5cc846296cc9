//! Check the mappings against the live catalog: every table and column they name
//! exists in the vault schema (`raw_vault` unless the mappings name another) with a
//! type that fits.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use super::{MappingError, MappingErrors, Mappings, Parent};

/// Vault table → column → type as `format_type` prints it.
type Catalog = HashMap<String, HashMap<String, String>>;

async fn read_catalog(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Catalog, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
                AND a.attnum > 0 AND NOT a.attisdropped",
            &[&schema],
        )
        .await?;
    let mut catalog = Catalog::new();
    for r in rows {
        catalog
            .entry(r.get(0))
            .or_default()
            .insert(r.get(1), r.get(2));
    }
    Ok(catalog)
}

/// Compare the mappings with the database; all problems are reported together.
pub async fn check(
    client: &impl GenericClient,
    mappings: &Mappings,
) -> Result<Result<(), MappingErrors>, tokio_postgres::Error> {
    let catalog = read_catalog(client, &mappings.schema).await?;
    let schema = &mappings.schema;
    let mut errors = Vec::new();
    let mut expect = |file: &str, entry: &str, table: &str, cols: &[(&str, &str)]| {
        let push = |errors: &mut Vec<MappingError>, problem: String| {
            errors.push(MappingError {
                file: file.to_string(),
                entry: entry.to_string(),
                problem,
            })
        };
        let Some(have) = catalog.get(table) else {
            push(
                &mut errors,
                format!(
                    "table {schema}.{table} does not exist; create it (for the built-in model: a migration vault/schema/V<n>__<what>.sql) or fix the name"
                ),
            );
            return;
        };
        for (col, ty) in cols {
            match have.get(*col) {
                None => {
                    let mut existing: Vec<&str> = have.keys().map(String::as_str).collect();
                    existing.sort();
                    push(
                        &mut errors,
                        format!(
                            "column \"{col}\" does not exist in {schema}.{table} (its columns: {}); fix the name or add the column in a migration",
                            existing.join(", ")
                        ),
                    )
                }
                Some(actual) if !fits(ty, actual) => push(
                    &mut errors,
                    format!(
                        "column \"{col}\" of {schema}.{table} is {actual}, the mapping says {ty}; make them agree"
                    ),
                ),
                Some(_) => {}
            }
        }
    };
    const TS: &str = "timestamp with time zone";
    for hub in &mappings.hubs {
        let mut cols = vec![
            (hub.hash_key.as_str(), "bytea"),
            ("load_dts", TS),
            ("record_source", "text"),
        ];
        cols.extend(hub.business_key.iter().map(|c| (c.as_str(), "text")));
        expect(
            &hub.file,
            &format!("hub \"{}\"", hub.name),
            &hub.name,
            &cols,
        );
    }
    for link in &mappings.links {
        let types: Vec<String> = link
            .dependent_keys
            .iter()
            .map(|(_, t)| t.to_string())
            .collect();
        let mut cols = vec![
            (link.hash_key.as_str(), "bytea"),
            ("load_dts", TS),
            ("record_source", "text"),
        ];
        cols.extend(
            link.hubs
                .iter()
                .map(|&h| (mappings.hubs[h].hash_key.as_str(), "bytea")),
        );
        cols.extend(
            link.dependent_keys
                .iter()
                .zip(&types)
                .map(|((c, _), t)| (c.as_str(), t.as_str())),
        );
        expect(
            &link.file,
            &format!("link \"{}\"", link.name),
            &link.name,
            &cols,
        );
    }
    for sat in &mappings.satellites {
        let types: Vec<String> = sat.columns.iter().map(|(_, t)| t.to_string()).collect();
        let parent_key = match sat.parent {
            Parent::Hub(h) => mappings.hubs[h].hash_key.as_str(),
            Parent::Link(l) => mappings.links[l].hash_key.as_str(),
        };
        let mut cols = vec![
            (parent_key, "bytea"),
            ("applied_dts", TS),
            ("event_seq", "bigint"),
            ("load_dts", TS),
            ("hashdiff", "bytea"),
            ("record_source", "text"),
        ];
        cols.extend(
            sat.columns
                .iter()
                .zip(&types)
                .map(|((c, _), t)| (c.as_str(), t.as_str())),
        );
        expect(
            &sat.file,
            &format!("satellite \"{}\"", sat.name),
            &sat.name,
            &cols,
        );
    }
    Ok(if errors.is_empty() {
        Ok(())
    } else {
        Err(MappingErrors(errors))
    })
}

/// Whether a value of mapping type `declared` can be stored in a column of type `actual`.
fn fits(declared: &str, actual: &str) -> bool {
    declared == actual
}
