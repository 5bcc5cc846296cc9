//! The shape of a mapping file as written: what `toml` deserializes before any
//! check. Unknown keys are refused here (`deny_unknown_fields`), so a typo is a
//! parse error with its line rather than a silently ignored entry; everything else
//! (names that must exist, types that must parse) is checked in `compile/`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::FieldSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSpec {
    /// The PostgreSQL schema of the vault tables (default `raw_vault`); every file
    /// of a mapping set that names one must name the same.
    pub(super) schema: Option<String>,
    /// A business vault built and refreshed with this model's raw vault
    /// (`customer_360`: the built-in model registers it); at most one per set.
    pub(super) business_vault: Option<String>,
    #[serde(default)]
    pub(super) hubs: BTreeMap<String, HubSpec>,
    #[serde(default)]
    pub(super) links: BTreeMap<String, LinkSpec>,
    #[serde(default)]
    pub(super) satellites: BTreeMap<String, SatSpec>,
    #[serde(default)]
    pub(super) events: Vec<EventSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HubSpec {
    pub(super) hash_key: String,
    pub(super) business_key: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkSpec {
    pub(super) hash_key: String,
    pub(super) hubs: Vec<String>,
    #[serde(default)]
    pub(super) dependent_keys: Vec<ColumnSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ColumnSpec {
    pub(super) column: String,
    #[serde(rename = "type")]
    pub(super) ty: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SatSpec {
    pub(super) parent: String,
    pub(super) columns: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventSpec {
    #[serde(rename = "type")]
    pub(super) event_type: String,
    #[serde(default)]
    pub(super) hubs: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub(super) links: BTreeMap<String, BTreeMap<String, FieldSpec>>,
    #[serde(default)]
    pub(super) satellites: BTreeMap<String, BTreeMap<String, FieldSpec>>,
    /// This mapping replaces one of the same type in an earlier file (a user's
    /// mapping of a built-in event type); without it, mapping a type twice is an error.
    #[serde(default, rename = "override")]
    pub(super) overrides: bool,
}
