//! A customer's churn risk and predicted value at the end of a past day, for the
//! population figures the sweep keeps: `business_vault.customer_scores` of
//! `views/20_rules.sql`, with PostgreSQL's `numeric` arithmetic reproduced digit for
//! digit. The RFM segment is not here: the sweep reads the segment of every score
//! triple from `business_vault.rfm_segment` itself. `tests/integration/views.rs`
//! compares these functions with the SQL ones over thousands of figures, and the kept
//! days' population with `business_vault.population_computed`.

use chrono::NaiveDate;

/// `business_vault.churn_risk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Churn {
    Active,
    AtRisk,
    Churned,
}

/// A number as PostgreSQL's `numeric` holds it: `units × 10^-scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numeric {
    pub units: i128,
    pub scale: u32,
}

/// The scores of one customer with counted orders at the end of `day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scored {
    pub days_since_last_order: i64,
    /// `avg_days_between_orders` in tenths of a day (none with one order).
    pub gap_tenths: Option<i64>,
    pub churn: Churn,
    /// `clv_predicted_12m` in cents.
    pub clv_cents: i128,
}

/// What [`score`] cannot compute exactly: a value beyond 128-bit arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge;

/// `business_vault.customer_scores` of a customer whose counted orders were placed
/// from `first` to `last` (UTC days), `orders` of them for `spent_cents`, at the end of
/// `day`.
pub fn score(
    day: NaiveDate,
    first: NaiveDate,
    last: NaiveDate,
    orders: u32,
    spent_cents: i128,
) -> Result<Scored, TooLarge> {
    let days = (day - last).num_days();
    let gap_tenths = gap_tenths(first, last, orders)?;
    let churn = churn_risk(days, gap_tenths);
    Ok(Scored {
        days_since_last_order: days,
        gap_tenths,
        churn,
        clv_cents: clv_cents(spent_cents, (day - first).num_days(), churn)?,
    })
}

/// `avg_days_between_orders` in tenths: round((last - first)::numeric / (orders - 1),
/// 1); none with fewer than two orders. (Below a million days the exact quotient,
/// rounded once, is PostgreSQL's: it keeps twelve decimals or more, and a quotient by
/// `orders - 1` not on a half tenth is at least 1 / (2 × (orders - 1)) tenths from one.)
pub fn gap_tenths(first: NaiveDate, last: NaiveDate, orders: u32) -> Result<Option<i64>, TooLarge> {
    if orders < 2 {
        return Ok(None);
    }
    let span = (last - first).num_days();
    let between = i64::from(orders - 1);
    if span.abs() < 1_000_000 {
        return Ok(Some(
            div_half_away((span * 10).into(), between.into()) as i64
        ));
    }
    let gap = divide(
        Numeric {
            units: span.into(),
            scale: 0,
        },
        Numeric {
            units: between.into(),
            scale: 0,
        },
    )?;
    i64::try_from(round(gap, 1)?)
        .map(Some)
        .map_err(|_| TooLarge)
}

/// `clv_predicted_12m` in cents: round(total_spent * 365 / greatest(days since the
/// first order, 90) * retention, 2).
///
/// Most quotients are below 10^8: then PostgreSQL keeps at least 12 decimals of the
/// division, and the exact quotient of `cents × 365 × retention` by the days is never
/// nearer a half cent than 1 / (4 × days) without being on it (and when it is on it,
/// its decimals are finite, so kept whole): rounding the exact quotient once gives the
/// same cents, in 64-bit integers. Larger ones take PostgreSQL's way ([`divide`]).
pub fn clv_cents(spent_cents: i128, since_first: i64, churn: Churn) -> Result<i128, TooLarge> {
    let (num, den) = match churn {
        Churn::Active => (1, 1),
        Churn::AtRisk => (1, 2),
        Churn::Churned => return Ok(0),
    };
    let days = since_first.max(90);
    if let Ok(cents) = i64::try_from(spent_cents)
        && days <= 1_000_000
        && cents.unsigned_abs() < (10_000_000_000 / 365 * days).unsigned_abs()
    {
        let (n, d) = (cents * 365 * num, days * den);
        let (q, r) = (n / d, n % d);
        return Ok(i128::from(match (2 * r.abs()).cmp(&d) {
            std::cmp::Ordering::Less => q,
            _ => q + n.signum(),
        }));
    }
    clv_by_numeric(spent_cents, days, (num, den))
}

/// [`clv_cents`] the way PostgreSQL computes it, digit for digit.
fn clv_by_numeric(spent_cents: i128, days: i64, retention: (i64, i64)) -> Result<i128, TooLarge> {
    let rate = divide(
        Numeric {
            units: spent_cents.checked_mul(365).ok_or(TooLarge)?,
            scale: 2,
        },
        Numeric {
            units: days.into(),
            scale: 0,
        },
    )?;
    round(
        Numeric {
            units: rate
                .units
                .checked_mul((10 * retention.0 / retention.1).into())
                .ok_or(TooLarge)?,
            scale: rate.scale + 1,
        },
        2,
    )
}

/// `business_vault.churn_risk(days, gap)`: churned past max(90, 3 gaps), at risk past
/// min(60, max(14, 1.5 gaps)) (past 60 with one order), compared exactly (in
/// twentieths of a day, where 1.5 tenths are whole).
pub fn churn_risk(days: i64, gap_tenths: Option<i64>) -> Churn {
    let days_20 = days * 20;
    match gap_tenths {
        None if days > 90 => Churn::Churned,
        None if days > 60 => Churn::AtRisk,
        None => Churn::Active,
        Some(g) if days_20 > (90 * 20).max(6 * g) => Churn::Churned,
        Some(g) if days_20 > (60 * 20).min((14 * 20).max(3 * g)) => Churn::AtRisk,
        Some(_) => Churn::Active,
    }
}

/// `a / b` as PostgreSQL's `numeric_div` computes it: the exact quotient rounded (half
/// away from zero) at the scale `select_div_scale` picks, at least 16 significant
/// digits.
pub fn divide(a: Numeric, b: Numeric) -> Result<Numeric, TooLarge> {
    let (w1, d1) = weight_and_first_digit(a)?;
    let (w2, d2) = weight_and_first_digit(b)?;
    let mut qweight = w1 - w2;
    if d1 <= d2 {
        qweight -= 1;
    }
    let scale = (16 - qweight * 4)
        .max(a.scale as i64)
        .max(b.scale as i64)
        .clamp(0, 1000) as u32;
    // a.units / 10^a.scale / (b.units / 10^b.scale) = units / 10^scale
    let shift = i64::from(scale) + i64::from(b.scale) - i64::from(a.scale);
    let (num, den) = if shift >= 0 {
        (a.units.checked_mul(pow10(shift)?).ok_or(TooLarge)?, b.units)
    } else {
        (
            a.units,
            b.units.checked_mul(pow10(-shift)?).ok_or(TooLarge)?,
        )
    };
    if den == 0 {
        return Err(TooLarge);
    }
    Ok(Numeric {
        units: div_half_away(num, den),
        scale,
    })
}

/// `round(x, scale)` of PostgreSQL (half away from zero), as units of 10^-scale.
pub fn round(x: Numeric, scale: u32) -> Result<i128, TooLarge> {
    if x.scale <= scale {
        return x
            .units
            .checked_mul(pow10(i64::from(scale - x.scale))?)
            .ok_or(TooLarge);
    }
    Ok(div_half_away(x.units, pow10(i64::from(x.scale - scale))?))
}

/// The weight of the first non-zero base-10,000 digit of `x` and that digit, as
/// PostgreSQL's `numeric` stores it (0 and 0 for zero).
fn weight_and_first_digit(x: Numeric) -> Result<(i64, i128), TooLarge> {
    let magnitude = x.units.checked_abs().ok_or(TooLarge)?;
    if magnitude == 0 {
        return Ok((0, 0));
    }
    // the digits are aligned on the decimal point: pad the fraction to whole digits
    let pad = (4 - x.scale % 4) % 4;
    let mut m = magnitude.checked_mul(pow10(pad.into())?).ok_or(TooLarge)?;
    let fraction_digits = i64::from((x.scale + pad) / 4);
    let mut digits = 0i64;
    while m >= 10_000 {
        m /= 10_000;
        digits += 1;
    }
    Ok((digits - fraction_digits, m))
}

fn pow10(e: i64) -> Result<i128, TooLarge> {
    u32::try_from(e)
        .ok()
        .and_then(|e| 10i128.checked_pow(e))
        .ok_or(TooLarge)
}

/// `n / d` rounded half away from zero.
fn div_half_away(n: i128, d: i128) -> i128 {
    let (q, r) = (n / d, n % d);
    if 2 * r.unsigned_abs() >= d.unsigned_abs() {
        if (n < 0) != (d < 0) { q - 1 } else { q + 1 }
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(units: i128, scale: u32) -> Numeric {
        Numeric { units, scale }
    }

    #[test]
    fn division_keeps_sixteen_significant_digits_as_postgresql_does() {
        // (a / b, and what PostgreSQL 15 answers for it)
        for (a, b, quotient) in [
            // SELECT 1::numeric / 3  → 0.33333333333333333333 (20 places)
            (n(1, 0), n(3, 0), n(33_333_333_333_333_333_333, 20)),
            // SELECT 2::numeric / 3  → 0.66666666666666666667
            (n(2, 0), n(3, 0), n(66_666_666_666_666_666_667, 20)),
            // SELECT 10000::numeric / 3 → 3333.3333333333333333
            (n(10_000, 0), n(3, 0), n(33_333_333_333_333_333_333, 16)),
            // SELECT 4565.25 / 90 → 50.7250000000000000
            (n(456_525, 2), n(90, 0), n(507_250_000_000_000_000, 16)),
            // SELECT -7::numeric / 2 → -3.5000000000000000
            (n(-7, 0), n(2, 0), n(-35_000_000_000_000_000, 16)),
        ] {
            assert_eq!(divide(a, b), Ok(quotient), "{a:?} / {b:?}");
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(round(n(125, 2), 1), Ok(13));
        assert_eq!(round(n(-125, 2), 1), Ok(-13));
        assert_eq!(round(n(124, 2), 1), Ok(12));
        assert_eq!(round(n(12, 0), 2), Ok(1200));
    }

    #[test]
    fn the_quick_predicted_value_is_the_digit_for_digit_one() {
        let mut random = super::super::tests::random(11);
        for i in 0..200_000 {
            // cents up to 10^(i % 12), negative now and then; days near 90 and beyond
            let cents = random(10u64.pow(i % 12)) as i128 * if i % 17 == 0 { -1 } else { 1 };
            let days = random(3_000) as i64;
            for (churn, retention) in [(Churn::Active, (1, 1)), (Churn::AtRisk, (1, 2))] {
                assert_eq!(
                    clv_cents(cents, days, churn),
                    clv_by_numeric(cents, days.max(90), retention),
                    "{cents} cents, {days} days, {churn:?}"
                );
            }
        }
        assert_eq!(clv_cents(123, 500, Churn::Churned), Ok(0));
    }

    #[test]
    fn churn_follows_the_documented_thresholds() {
        // one order: at risk past 60 days, churned past 90
        assert_eq!(churn_risk(60, None), Churn::Active);
        assert_eq!(churn_risk(61, None), Churn::AtRisk);
        assert_eq!(churn_risk(91, None), Churn::Churned);
        // a gap of 10 days: at risk past 15 (1.5 gaps), churned past 90
        assert_eq!(churn_risk(15, Some(100)), Churn::Active);
        assert_eq!(churn_risk(16, Some(100)), Churn::AtRisk);
        // a gap of 5 days: at risk past 14 at least
        assert_eq!(churn_risk(14, Some(50)), Churn::Active);
        assert_eq!(churn_risk(15, Some(50)), Churn::AtRisk);
        // a gap of 50.1 days: at risk past 60 at most, churned past 150.3
        assert_eq!(churn_risk(61, Some(501)), Churn::AtRisk);
        assert_eq!(churn_risk(150, Some(501)), Churn::AtRisk);
        assert_eq!(churn_risk(151, Some(501)), Churn::Churned);
    }

    #[test]
    fn a_customer_is_scored_as_the_rules_say() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        // one order of 45.99, 22 days ago: active, 45.99 × 365 / 90 = 186.5150 → 186.52
        assert_eq!(
            score(d("2025-02-01"), d("2025-01-10"), d("2025-01-10"), 1, 4599),
            Ok(Scored {
                days_since_last_order: 22,
                gap_tenths: None,
                churn: Churn::Active,
                clv_cents: 18652,
            })
        );
        // three orders over 31 days (gap 15.5), the last 30 days ago: at risk, half of
        // 300.00 × 365 / max(61, 90) = 1216.666... → 608.33
        assert_eq!(
            score(d("2025-03-03"), d("2025-01-01"), d("2025-02-01"), 3, 30000),
            Ok(Scored {
                days_since_last_order: 30,
                gap_tenths: Some(155),
                churn: Churn::AtRisk,
                clv_cents: 60833,
            })
        );
    }
}
