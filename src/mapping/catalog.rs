//! Check the mappings against the live catalog: every table and column they name
//! exists in the vault schema (`raw_vault` unless the mappings name another) with a
//! type that fits.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use super::{Hub, Link, MappingError, MappingErrors, Mappings, Parent, Satellite};

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
            .entry(r.try_get(0)?)
            .or_default()
            .insert(r.try_get(1)?, r.try_get(2)?);
    }
    Ok(catalog)
}

/// Compare the mappings with the database; all problems are reported together.
pub async fn check(
    client: &impl GenericClient,
    mappings: &Mappings,
) -> Result<Result<(), MappingErrors>, tokio_postgres::Error> {
    let catalog = read_catalog(client, &mappings.schema).await?;
    let mut checker = Checker {
        catalog: &catalog,
        schema: &mappings.schema,
        errors: Vec::new(),
    };
    for hub in &mappings.hubs {
        let entry = format!("hub \"{}\"", hub.name);
        checker.expect(&hub.file, &entry, &hub.name, &hub_columns(hub));
    }
    for link in &mappings.links {
        let entry = format!("link \"{}\"", link.name);
        checker.expect(
            &link.file,
            &entry,
            &link.name,
            &link_columns(mappings, link),
        );
    }
    for sat in &mappings.satellites {
        let entry = format!("satellite \"{}\"", sat.name);
        checker.expect(
            &sat.file,
            &entry,
            &sat.name,
            &satellite_columns(mappings, sat),
        );
    }
    Ok(if checker.errors.is_empty() {
        Ok(())
    } else {
        Err(MappingErrors(checker.errors))
    })
}

/// The columns a vault table needs: name and type as `format_type` prints it.
type Columns<'a> = Vec<(&'a str, String)>;

const TS: &str = "timestamp with time zone";

/// Hash key, load metadata, then the business key.
fn hub_columns(hub: &Hub) -> Columns<'_> {
    let mut cols = vec![
        (hub.hash_key.as_str(), "bytea".to_string()),
        ("load_dts", TS.to_string()),
        ("record_source", "text".to_string()),
    ];
    cols.extend(
        hub.business_key
            .iter()
            .map(|c| (c.as_str(), "text".to_string())),
    );
    cols
}

/// Hash key, load metadata, the joined hubs' hash keys, then the dependent keys.
fn link_columns<'a>(mappings: &'a Mappings, link: &'a Link) -> Columns<'a> {
    let mut cols = vec![
        (link.hash_key.as_str(), "bytea".to_string()),
        ("load_dts", TS.to_string()),
        ("record_source", "text".to_string()),
    ];
    cols.extend(
        link.hubs
            .iter()
            .map(|&h| (mappings.hubs[h].hash_key.as_str(), "bytea".to_string())),
    );
    cols.extend(
        link.dependent_keys
            .iter()
            .map(|(c, t)| (c.as_str(), t.to_string())),
    );
    cols
}

/// The parent's hash key, the satellite's metadata, then its payload columns.
fn satellite_columns<'a>(mappings: &'a Mappings, sat: &'a Satellite) -> Columns<'a> {
    let parent_key = match sat.parent {
        Parent::Hub(h) => mappings.hubs[h].hash_key.as_str(),
        Parent::Link(l) => mappings.links[l].hash_key.as_str(),
    };
    let mut cols = vec![
        (parent_key, "bytea".to_string()),
        ("applied_dts", TS.to_string()),
        ("event_seq", "bigint".to_string()),
        ("load_dts", TS.to_string()),
        ("hashdiff", "bytea".to_string()),
        ("record_source", "text".to_string()),
    ];
    cols.extend(sat.columns.iter().map(|(c, t)| (c.as_str(), t.to_string())));
    cols
}

/// The catalog read once, and the problems found in it so far.
struct Checker<'a> {
    catalog: &'a Catalog,
    schema: &'a str,
    errors: Vec<MappingError>,
}

impl Checker<'_> {
    /// `table` exists with each of `cols`, of a type that fits.
    fn expect(&mut self, file: &str, entry: &str, table: &str, cols: &Columns<'_>) {
        let schema = self.schema;
        let mut push = |problem: String| {
            self.errors.push(MappingError {
                file: file.to_string(),
                entry: entry.to_string(),
                problem,
            })
        };
        let Some(have) = self.catalog.get(table) else {
            push(format!(
                "table {schema}.{table} does not exist; create it (for the built-in model: a migration vault/schema/V<n>__<what>.sql) or fix the name"
            ));
            return;
        };
        for (col, ty) in cols {
            match have.get(*col) {
                None => {
                    let mut existing: Vec<&str> = have.keys().map(String::as_str).collect();
                    existing.sort();
                    push(format!(
                        "column \"{col}\" does not exist in {schema}.{table} (its columns: {}); fix the name or add the column in a migration",
                        existing.join(", ")
                    ))
                }
                Some(actual) if !fits(ty, actual) => push(format!(
                    "column \"{col}\" of {schema}.{table} is {actual}, the mapping says {ty}; make them agree"
                )),
                Some(_) => {}
            }
        }
    }
}

/// Whether a value of mapping type `declared` can be stored in a column of type `actual`.
fn fits(declared: &str, actual: &str) -> bool {
    declared == actual
}
