//! How values look in JSON: money as decimal strings with exactly two decimals,
//! timestamps as RFC 3339 in UTC (`Z`), dates as `YYYY-MM-DD`; and reading them from
//! rows without panicking.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Serialize, Serializer};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};

use super::error::ApiError;

/// An amount of money: serialized as a string with exactly two decimals, e.g.
/// `"1234.50"`, so that no client loses cents to floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(pub Decimal);

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rounded = self
            .0
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        s.collect_str(&format_args!("{rounded:.2}"))
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("decimal".into())))
            .description(Some(
                "Money: a decimal string with exactly two decimals (no currency conversion is done)",
            ))
            .examples(["1234.50"])
            .into()
    }
}

impl utoipa::ToSchema for Money {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Money")
    }
}

/// A point in time: RFC 3339 in UTC, e.g. `"2024-01-20T12:00:00Z"` (fractional seconds
/// only when there are some).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub DateTime<Utc>);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("date-time".into())))
            .description(Some("RFC 3339 timestamp in UTC"))
            .examples(["2024-01-20T12:00:00Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

/// A column's value; a missing column or a type mismatch is our fault (500), not a panic.
pub fn col<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, ApiError> {
    row.try_get(name)
        .map_err(|e| ApiError::Internal(format!("column {name}: {e}")))
}

pub fn money(row: &Row, name: &str) -> Result<Money, ApiError> {
    Ok(Money(col::<Decimal>(row, name)?))
}

pub fn money_opt(row: &Row, name: &str) -> Result<Option<Money>, ApiError> {
    Ok(col::<Option<Decimal>>(row, name)?.map(Money))
}

pub fn time_opt(row: &Row, name: &str) -> Result<Option<Timestamp>, ApiError> {
    Ok(col::<Option<DateTime<Utc>>>(row, name)?.map(Timestamp))
}

pub fn time(row: &Row, name: &str) -> Result<Timestamp, ApiError> {
    Ok(Timestamp(col(row, name)?))
}

/// A `numeric` that is not money (a rate, an average) as a JSON number.
pub fn number_opt(row: &Row, name: &str) -> Result<Option<f64>, ApiError> {
    Ok(col::<Option<Decimal>>(row, name)?.and_then(|d| d.to_f64()))
}

/// A `numeric` holding a whole number (a sum of integers).
pub fn whole(row: &Row, name: &str) -> Result<i64, ApiError> {
    let d: Decimal = col(row, name)?;
    d.to_i64()
        .ok_or_else(|| ApiError::Internal(format!("column {name}: {d} is not a whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn json<T: Serialize>(v: T) -> String {
        serde_json::to_string(&v).expect("json")
    }

    #[test]
    fn money_has_two_decimals() {
        let m = |s: &str| Money(Decimal::from_str(s).expect("decimal"));
        assert_eq!(json(m("12")), "\"12.00\"");
        assert_eq!(json(m("12.5")), "\"12.50\"");
        assert_eq!(json(m("12.345")), "\"12.35\"");
        assert_eq!(json(m("-0.005")), "\"-0.01\"");
        assert_eq!(json(m("1234567.891")), "\"1234567.89\"");
        assert_eq!(json(m("0")), "\"0.00\"");
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = |s: &str| {
            Timestamp(
                DateTime::parse_from_rfc3339(s)
                    .expect("valid")
                    .with_timezone(&Utc),
            )
        };
        assert_eq!(
            json(t("2024-01-20T14:00:00+02:00")),
            "\"2024-01-20T12:00:00Z\""
        );
        assert_eq!(
            json(t("2024-01-20T12:00:00.250Z")),
            "\"2024-01-20T12:00:00.250Z\""
        );
    }
}
