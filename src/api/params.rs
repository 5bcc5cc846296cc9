//! Parsing the parameters the read endpoints share: ids (hashed like the vault does),
//! times and dates, segment names. Every refusal names the parameter and what it takes.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};

use super::error::ApiError;
use crate::hash;

/// The hash key of a business key, as the loader computes it: ids match trimmed and
/// case-insensitively. `None` for a key that cannot exist (empty, ambiguous).
pub fn hash_key(id: &str) -> Option<[u8; 32]> {
    hash::hash_key(id).ok()
}

/// The query of an endpoint that takes no parameters: any name is refused (400), so a
/// typo never goes unnoticed.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// The query of an endpoint that answers now or as of a past business time.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AsOfParams {
    /// The answer as it was at this business time: RFC 3339, or a date (its end, UTC).
    /// Without contact details. The first request for a given `as_of` computes the
    /// population's figures at that time (seconds on a large vault); later ones for the
    /// same `as_of` read them back until a load changes that past.
    #[param(value_type = Option<String>, example = "2025-06-30")]
    pub as_of: Option<String>,
}

impl AsOfParams {
    /// The business time asked for; `None` for now.
    pub fn time(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.as_of
            .as_deref()
            .filter(|raw| !raw.is_empty())
            .map(|raw| parse_as_of("as_of", raw))
            .transpose()
    }
}

/// The rows of `now`, or at the business time `as_of` those of `then` (the same
/// columns): an endpoint's two readings. Both take `params` as `$1`, `$2`, ...; `then`
/// also takes the time, as the parameter after them.
pub async fn now_or_then(
    client: &deadpool_postgres::Client,
    as_of: Option<DateTime<Utc>>,
    now: &str,
    then: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    Ok(match as_of {
        None => {
            client
                .query(&client.prepare_cached(now).await?, params)
                .await?
        }
        Some(ts) => {
            let mut params = params.to_vec();
            params.push(&ts);
            client
                .query(&client.prepare_cached(then).await?, &params)
                .await?
        }
    })
}

/// The years a time parameter may have: what PostgreSQL's `timestamptz` and `date`
/// both hold with room to add a day (earlier dates answered 500 before).
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

const TIME_FORMS: &[&str] = &[
    "RFC 3339, e.g. 2025-06-30T12:00:00Z",
    "a date, e.g. 2025-06-30",
];

/// A timestamp (RFC 3339) or a date (then `at` picks a time of that day, UTC).
fn parse_time(
    name: &str,
    raw: &str,
    at: impl Fn(NaiveDate) -> Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, ApiError> {
    use chrono::Datelike;
    let raw = raw.trim();
    let bad = || {
        ApiError::bad_param(
            name,
            format!("{raw:?} is not a timestamp or a date"),
            TIME_FORMS,
        )
    };
    // the year as written (before conversion to UTC) must be in range
    let (year, t) = match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => (t.year(), Some(t.with_timezone(&Utc))),
        Err(_) => {
            let d = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| bad())?;
            (d.year(), at(d))
        }
    };
    if !YEARS.contains(&year) {
        return Err(ApiError::bad_param(
            name,
            format!(
                "{raw:?} is out of range: years {} to {}",
                YEARS.start(),
                YEARS.end()
            ),
            TIME_FORMS,
        ));
    }
    t.ok_or_else(bad)
}

/// `as_of`: a date means the end of that day (UTC).
pub fn parse_as_of(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_time(name, raw, |d| {
        Some(crate::load::business::past_days::day_end(d))
    })
}

/// A range's start, inclusive: a date means its midnight (UTC).
pub fn parse_from(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_time(name, raw, |d| Some(d.and_time(NaiveTime::MIN).and_utc()))
}

/// A range's end, exclusive for a timestamp; a date includes that whole day.
pub fn parse_to(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_time(name, raw, |d| {
        Some(
            d.checked_add_days(Days::new(1))?
                .and_time(NaiveTime::MIN)
                .and_utc(),
        )
    })
}

/// A date (or the UTC date of a timestamp).
pub fn parse_date(name: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    Ok(parse_from(name, raw)?.date_naive())
}

/// The canonical name of an RFM segment (matched case-insensitively), from the rule
/// table in the database.
pub async fn segment(
    client: &deadpool_postgres::Client,
    name: &str,
    raw: &str,
) -> Result<String, ApiError> {
    let names = segment_names(client).await?;
    names
        .iter()
        .find(|s| s.eq_ignore_ascii_case(raw.trim()))
        .cloned()
        .ok_or_else(|| ApiError::BadParameter {
            name: name.to_string(),
            message: format!("unknown segment {raw:?}"),
            allowed: names,
        })
}

/// Every RFM segment, in the rule table's order.
pub async fn segment_names(client: &deadpool_postgres::Client) -> Result<Vec<String>, ApiError> {
    let stmt = client
        .prepare_cached("SELECT segment FROM mart.rfm_segment_rules ORDER BY sort_order")
        .await?;
    let names = client.query(&stmt, &[]).await?;
    Ok(names
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

pub async fn customer_exists(
    client: &deadpool_postgres::Client,
    hk: &[u8; 32],
) -> Result<bool, ApiError> {
    let stmt = client
        .prepare_cached("SELECT EXISTS (SELECT FROM mart.customer_360 c WHERE c.hk_customer = $1)")
        .await?;
    Ok(client
        .query_one(&stmt, &[&hk.as_slice()])
        .await?
        .try_get(0)?)
}

/// Check that a range's start is before its end.
pub fn check_range<T: PartialOrd>(from: Option<T>, to: Option<T>) -> Result<(), ApiError> {
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::bad_param(
            "to",
            "`to` is before `from`",
            &["a time at or after `from`"],
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_dates() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().expect("valid");
        assert_eq!(
            parse_from("from", "2025-06-30").ok(),
            Some(t("2025-06-30T00:00:00Z"))
        );
        assert_eq!(
            parse_to("to", "2025-06-30").ok(),
            Some(t("2025-07-01T00:00:00Z"))
        );
        assert_eq!(
            parse_as_of("as_of", "2025-06-30").ok(),
            Some(t("2025-06-30T23:59:59.999999Z"))
        );
        assert_eq!(
            parse_from("from", "2025-06-30T14:00:00+02:00").ok(),
            Some(t("2025-06-30T12:00:00Z"))
        );
        let err = parse_as_of("as_of", "yesterday").expect_err("bad");
        let p = err.problem();
        assert_eq!(p.parameter.as_deref(), Some("as_of"));
        assert!(
            p.detail
                .contains("\"yesterday\" is not a timestamp or a date"),
            "{}",
            p.detail
        );
        assert!(check_range(Some(2), Some(1)).is_err());
        for far in [
            "-5000-01-01",
            "0000-12-31",
            "+10000-01-01",
            "0000-01-01T00:00:00Z",
        ] {
            let p = parse_to("to", far).expect_err(far).problem();
            assert!(p.detail.contains("out of range"), "{far}: {}", p.detail);
        }
        assert!(parse_from("from", "0001-01-01T00:00:00+01:00").is_ok());
        assert!(parse_to("to", "9999-12-31").is_ok());
        assert!(parse_as_of("as_of", "9999-12-31").is_ok());
        assert!(check_range(Some(1), None).is_ok());
    }

    #[test]
    fn ids_hash_like_the_vault() {
        assert_eq!(hash_key(" c1 "), hash_key("C1"));
        assert!(hash_key("   ").is_none());
    }
}
