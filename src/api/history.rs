//! GET /customers/{id}/history: the SCD2 versions of a customer's profile and contact
//! (`business_vault.sat_customer_profile_history`, `..._contact_history`).

use axum::extract::State;
use chrono::NaiveDate;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use super::params::{self, NoParams};
use super::state::AppState;
use super::values::{Timestamp, col, time, time_opt};

/// One version of the customer's profile (name, location, signup).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileVersion {
    /// Business time the version took effect.
    pub valid_from: Timestamp,
    /// Business time the next version took effect; null for the current one.
    pub valid_to: Option<Timestamp>,
    pub is_current: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub signup_date: Option<NaiveDate>,
    pub record_source: String,
}

/// One version of the customer's contact details.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactVersion {
    pub valid_from: Timestamp,
    pub valid_to: Option<Timestamp>,
    pub is_current: bool,
    /// Personal data: null unless the server's database role may read it.
    pub email: Option<String>,
    pub phone: Option<String>,
    pub record_source: String,
}

/// The SCD2 history of a customer's attributes, oldest version first.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub customer_id: String,
    pub profile: Vec<ProfileVersion>,
    pub contact: Vec<ContactVersion>,
}

const PROFILE_HISTORY: &str = "
    SELECT h.customer_id, h.valid_from, nullif(h.valid_to, 'infinity') AS valid_to, h.is_current,
           h.first_name, h.last_name, h.city, h.country, h.signup_date, h.record_source
      FROM business_vault.sat_customer_profile_history h
     WHERE h.hk_customer = $1
     ORDER BY h.valid_from, h.event_seq";

const CONTACT_HISTORY: &str = "
    SELECT h.customer_id, h.valid_from, nullif(h.valid_to, 'infinity') AS valid_to, h.is_current,
           h.email, h.phone, h.record_source
      FROM business_vault.sat_customer_contact_history h
     WHERE h.hk_customer = $1
     ORDER BY h.valid_from, h.event_seq";

/// The attribute history (SCD2 versions) of a customer's profile and contact.
#[utoipa::path(
    get,
    path = "/customers/{id}/history",
    operation_id = "getCustomerHistory",
    tag = "customers",
    params(("id" = String, Path, description = "Customer id")),
    responses(
        (status = 200, description = "Every version, oldest first", body = History),
        (status = 400, description = "An unknown parameter, or a path segment that is not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn customer_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Json<History>, ApiError> {
    let not_found = || ApiError::not_found("customer", &id);
    let hk = params::hash_key(&id).ok_or_else(not_found)?;
    let client = state.reads().await?;
    let stmt = client.prepare_cached(PROFILE_HISTORY).await?;
    let profile_rows = client.query(&stmt, &[&hk.as_slice()]).await?;
    let stmt = client.prepare_cached(CONTACT_HISTORY).await?;
    let contact_rows = client.query(&stmt, &[&hk.as_slice()]).await?;
    let customer_id: String = match (profile_rows.first(), contact_rows.first()) {
        (Some(r), _) | (None, Some(r)) => col(r, "customer_id")?,
        (None, None) => {
            if !params::customer_exists(&client, &hk).await? {
                return Err(not_found());
            }
            id.trim().to_string()
        }
    };
    let profile = profile_rows
        .iter()
        .map(|r| {
            Ok(ProfileVersion {
                valid_from: time(r, "valid_from")?,
                valid_to: time_opt(r, "valid_to")?,
                is_current: col(r, "is_current")?,
                first_name: col(r, "first_name")?,
                last_name: col(r, "last_name")?,
                city: col(r, "city")?,
                country: col(r, "country")?,
                signup_date: col(r, "signup_date")?,
                record_source: col(r, "record_source")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let contact = contact_rows
        .iter()
        .map(|r| {
            Ok(ContactVersion {
                valid_from: time(r, "valid_from")?,
                valid_to: time_opt(r, "valid_to")?,
                is_current: col(r, "is_current")?,
                email: col(r, "email")?,
                phone: col(r, "phone")?,
                record_source: col(r, "record_source")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(History {
        customer_id,
        profile,
        contact,
    }))
}
