//! The checks that look at the vault and the log as a whole: referential integrity
//! (link rows whose hub keys are unknown) and freshness (age of the newest event).

use serde_json::{Value as Json, json};
use tokio_postgres::GenericClient;

use super::config::{Freshness, ReferenceRule, Referential};
use super::{Check, CheckResult, QualityError};
use crate::db::Doing;
use crate::mapping::Mappings;

use crate::db::quote_ident as ident;

/// Tables and columns of one rule, quoted.
struct RuleSql {
    subject: String,
    sql: String,
}

fn rule_sql(rule: &ReferenceRule, m: &Mappings) -> Option<RuleSql> {
    m.link_id(&rule.link)?;
    let h = m.hub_id(&rule.hub)?;
    let hub = &m.hubs[h];
    let hk = ident(&hub.hash_key);
    let link = m.table(&rule.link);
    let hub_table = m.table(&hub.name);
    let known = match &rule.satellite {
        Some(sat) => {
            let s = m.satellite_id(sat)?;
            let parent = ident(m.parent_key(m.satellites[s].parent));
            format!(
                "EXISTS (SELECT 1 FROM {} s WHERE s.{parent} = l.{hk})",
                m.table(sat)
            )
        }
        None => "true".into(),
    };
    let bk = hub
        .business_key
        .iter()
        .map(|c| format!("h.{}::text", ident(c)))
        .collect::<Vec<_>>()
        .join(" || '|' || ");
    // orphans: link rows whose hub row is missing, or not known to the satellite
    let sql = format!(
        "WITH o AS (
             SELECT l.{hk} AS hk, {bk} AS bk,
                    (h.{hk} IS NULL OR NOT {known}) AS orphan
               FROM {link} l LEFT JOIN {hub_table} h ON h.{hk} = l.{hk}
         )
         SELECT count(*),
                count(*) FILTER (WHERE orphan),
                coalesce((SELECT array_agg(x) FROM (
                    SELECT DISTINCT coalesce(bk, 'hash ' || encode(hk, 'hex')) AS x
                      FROM o WHERE orphan ORDER BY 1 LIMIT 5) e), '{{}}')
           FROM o"
    );
    let subject = match &rule.satellite {
        Some(sat) => format!("{} -> {} ({sat})", rule.link, rule.hub),
        None => format!("{} -> {}", rule.link, rule.hub),
    };
    Some(RuleSql { subject, sql })
}

/// Link rows whose key in the rule's hub is missing there or (with a satellite) has
/// no row in that satellite.
pub async fn referential(
    client: &impl GenericClient,
    config: &Referential,
    m: &Mappings,
) -> Result<CheckResult, QualityError> {
    let mut result = CheckResult::new(Check::ReferentialIntegrity, config.max_orphans as f64);
    let mut breakdown = serde_json::Map::new();
    let mut details = Vec::new();
    let mut most = 0;
    for rule in &config.rules {
        let Some(q) = rule_sql(rule, m) else {
            return Err(QualityError::Config(format!(
                "[[referential.rules]] link \"{}\", hub \"{}\": not in the mappings",
                rule.link, rule.hub
            )));
        };
        let row = client
            .query_one(&q.sql, &[])
            .await
            .doing("counting orphans")?;
        let (links, orphans, examples): (i64, i64, Option<Vec<String>>) = (
            row.try_get(0).doing("counting orphans")?,
            row.try_get(1).doing("counting orphans")?,
            row.try_get(2).doing("counting orphans")?,
        );
        let examples = examples.unwrap_or_default();
        result.examined += links;
        result.failing += orphans;
        if orphans > 0 {
            if orphans > most {
                most = orphans;
                result.worst = Some(q.subject.clone());
            }
            details.push(format!(
                "{}: {orphans} of {links} link rows (e.g. {})",
                q.subject,
                examples.join(", ")
            ));
        }
        breakdown.insert(
            q.subject,
            json!({"links": links, "orphans": orphans, "examples": examples}),
        );
    }
    result.measured = Some(result.failing as f64);
    result.passed = result.failing <= config.max_orphans;
    result.detail = if details.is_empty() {
        format!(
            "no orphans in {} link rows",
            crate::human::thousands(result.examined as u64)
        )
    } else {
        details.join("; ")
    };
    result.breakdown = Json::Object(breakdown);
    Ok(result)
}

/// How old the newest event of the log is.
pub async fn freshness(
    client: &impl GenericClient,
    config: &Freshness,
) -> Result<CheckResult, QualityError> {
    let mut result = CheckResult::new(Check::Freshness, config.max_age_hours);
    // the newest event by seq: one index probe, whatever the log's size
    let row = client
        .query_opt(
            "SELECT (extract(epoch FROM now() - recorded_at) / 3600)::float8,
                    recorded_at::text, event_type
               FROM event_log.events ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await
        .doing("reading the newest event")?;
    match row {
        None => {
            result.passed = false;
            result.detail = "the event log is empty".into();
        }
        Some(r) => {
            let hours: f64 = r.try_get(0).doing("reading the newest event")?;
            let at: String = r.try_get(1).doing("reading the newest event")?;
            let ty: String = r.try_get(2).doing("reading the newest event")?;
            result.examined = 1;
            result.measured = Some(hours.max(0.0));
            result.passed = hours <= config.max_age_hours;
            if !result.passed {
                result.failing = 1;
            }
            result.worst = Some(ty.clone());
            result.detail = format!("newest event: {ty}, recorded {at}");
        }
    }
    Ok(result)
}
