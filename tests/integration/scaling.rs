//! The Citus plan of docs/scaling.md against the catalog of a freshly migrated
//! database: every vault table is planned, and a distributed table's primary key and
//! unique indexes include its distribution column (Citus enforces uniqueness only
//! within a shard). The plan is the table in docs/scaling.md, read here, so that the
//! document and the check cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

use crate::harness::TestDb;

/// The schemas whose tables the plan covers.
const VAULT_SCHEMAS: [&str; 2] = ["raw_vault", "business_vault"];

#[derive(Debug, PartialEq)]
enum Distribution {
    /// Hash-distributed on `column`, co-located with the other tables of `group`.
    Hash { column: String, group: String },
    /// Copied to every node.
    Reference,
}

/// The rows of the table under `## The plan` in docs/scaling.md.
fn plan() -> BTreeMap<String, Distribution> {
    let doc = include_str!("../../docs/scaling.md");
    let section = doc
        .split("\n## The plan\n")
        .nth(1)
        .expect("docs/scaling.md has a `## The plan` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let unquote = |cell: &str| cell.trim().trim_matches('`').to_string();
    let mut plan = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        assert!(
            cells.len() >= 3,
            "docs/scaling.md: a plan row needs 3 cells: {line}"
        );
        let table = unquote(cells[0]);
        let distribution = match unquote(cells[1]).as_str() {
            "reference" => Distribution::Reference,
            column => Distribution::Hash {
                column: column.to_string(),
                group: cells[2].trim().to_string(),
            },
        };
        assert!(
            plan.insert(table.clone(), distribution).is_none(),
            "docs/scaling.md plans {table} twice"
        );
    }
    assert!(
        plan.len() > 10,
        "docs/scaling.md: only {} plan rows read",
        plan.len()
    );
    plan
}

/// Every unique index of `table` (primary key included): its name and key columns.
async fn unique_keys(client: &tokio_postgres::Client, table: &str) -> Vec<(String, Vec<String>)> {
    client
        .query(
            "SELECT i.indexrelid::regclass::text,
                    array(SELECT a.attname::text
                            FROM unnest(i.indkey) AS k(attnum)
                            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
               FROM pg_index i
              WHERE i.indrelid = $1::text::regclass AND i.indisunique",
            &[&table],
        )
        .await
        .expect("unique indexes")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn the_vault_layout_stays_ready_for_citus() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let plan = plan();
    let tables: BTreeSet<String> = client
        .query(
            "SELECT format('%s.%s', n.nspname, c.relname)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p')",
            &[&VAULT_SCHEMAS.as_slice()],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.contains("raw_vault.hub_customer"), "{tables:?}");

    let mut problems = Vec::new();
    for table in &tables {
        if !plan.contains_key(table) {
            problems.push(format!(
                "{table} is in no row of docs/scaling.md's plan: give it a distribution"
            ));
        }
    }
    let mut group_types: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
    for (table, distribution) in &plan {
        if !tables.contains(table) {
            problems.push(format!(
                "docs/scaling.md plans {table}, which the schema no longer has"
            ));
            continue;
        }
        let Distribution::Hash { column, group } = distribution else {
            continue;
        };
        let column_type: Option<String> = client
            .query_opt(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                  WHERE a.attrelid = $1::text::regclass AND a.attname = $2
                    AND a.attnum > 0 AND NOT a.attisdropped",
                &[table, column],
            )
            .await
            .expect("column type")
            .map(|r| r.get(0));
        let Some(column_type) = column_type else {
            problems.push(format!("{table} has no column {column} to distribute on"));
            continue;
        };
        group_types
            .entry(group)
            .or_default()
            .insert((column_type, table.clone()));
        let keys = unique_keys(&client, table).await;
        if keys.is_empty() {
            problems.push(format!(
                "{table} has no primary key: Citus needs one including {column} for ON CONFLICT"
            ));
        }
        for (index, columns) in keys {
            if !columns.contains(column) {
                problems.push(format!(
                    "{table}: unique index {index} ({}) lacks the distribution column {column}; \
                     Citus cannot enforce it across shards",
                    columns.join(", ")
                ));
            }
        }
    }
    for (group, members) in &group_types {
        let types: BTreeSet<&String> = members.iter().map(|(t, _)| t).collect();
        if types.len() > 1 {
            problems.push(format!(
                "co-location group {group} mixes distribution column types: {members:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
