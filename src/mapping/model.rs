//! The compiled model: hubs, links and satellites with typed columns, and per event
//! type the compiled sources of each target. Built once from the mapping files
//! (`compile/`), then only read: by the loader to extract rows, by the catalog check,
//! the preview and the quality checks. Targets refer to each other by typed index
//! ([`HubId`], [`LinkId`], [`SatId`]) into [`Mappings`]' vectors, so a lookup while
//! loading is an array access.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::files::BUILTIN_DIR;
use super::id::{HubId, IdVec, LinkId, SatId};
use super::{ColumnType, Field};
use crate::db::quote_ident;

/// Where a value comes from in the payload: `a.b` (nested objects) or
/// `lines[].b` (each element of an array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    Top(Vec<String>),
    Each {
        array: Vec<String>,
        field: Vec<String>,
    },
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let split = |s: &str| -> Result<Vec<String>, String> {
            let parts: Vec<String> = s.split('.').map(str::to_string).collect();
            if parts.iter().any(|p| p.is_empty() || p.contains("[]")) {
                return Err(format!(
                    "bad field path \"{text}\": use `field`, `a.b` or `array[].field`"
                ));
            }
            Ok(parts)
        };
        match text.split_once("[].") {
            Some((array, field)) => Ok(FieldPath::Each {
                array: split(array)?,
                field: split(field)?,
            }),
            None => Ok(FieldPath::Top(split(text)?)),
        }
    }

    /// The array this path iterates, if any.
    pub fn array(&self) -> Option<&[String]> {
        match self {
            FieldPath::Top(_) => None,
            FieldPath::Each { array, .. } => Some(array),
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Top(p) => f.write_str(&p.join(".")),
            FieldPath::Each { array, field } => {
                write!(f, "{}[].{}", array.join("."), field.join("."))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hub {
    pub name: String,
    pub file: String,
    pub hash_key: String,
    pub business_key: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub file: String,
    pub hash_key: String,
    /// Its hubs, in hashing order.
    pub hubs: Vec<HubId>,
    pub dependent_keys: Vec<(String, ColumnType)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Hub(HubId),
    Link(LinkId),
}

#[derive(Debug, Clone)]
pub struct Satellite {
    pub name: String,
    pub file: String,
    pub parent: Parent,
    /// Payload columns in alphabetical order (the hashdiff order).
    pub columns: Vec<(String, ColumnType)>,
}

/// What one event type feeds. Each target is emitted once per event, or once per
/// element of the array its paths iterate.
#[derive(Debug, Clone)]
pub struct EventMapping {
    pub event_type: String,
    pub file: String,
    /// hub and the paths of its business key columns
    pub hubs: Vec<(HubId, Vec<FieldPath>)>,
    /// link and the sources of its dependent keys
    pub links: Vec<(LinkId, Vec<Field>)>,
    /// satellite and, per column of the satellite, its source if mapped
    pub satellites: Vec<(SatId, Vec<Option<Field>>)>,
}

/// The statuses an order of the built-in Customer 360 model can have
/// (`raw_vault.sat_order_status.status`): what the API's `?status=` filter accepts and
/// the default quality gate's domain for that column.
pub const ORDER_STATUSES: [&str; 6] = [
    "placed",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "returned",
];

/// The schema of the vault tables unless the mapping files name another.
pub const DEFAULT_SCHEMA: &str = "raw_vault";

/// A business vault that a model's mapping files may register
/// (`business_vault = "customer_360"`): its SQL (`src/load/business/`) reads the raw
/// vault tables of [`BusinessVault::reads`], by name, in `raw_vault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusinessVault {
    /// Customer 360: PIT, bridge, order and customer summaries, scores, products.
    Customer360,
}

impl BusinessVault {
    /// Every one, by the name the mapping files give it.
    pub const ALL: [(&'static str, BusinessVault); 1] =
        [("customer_360", BusinessVault::Customer360)];

    pub fn named(name: &str) -> Option<BusinessVault> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map_or("", |(n, _)| n)
    }

    /// The schema whose tables it reads.
    pub fn schema(self) -> &'static str {
        DEFAULT_SCHEMA
    }

    /// The hubs, links and satellites it reads, which the model must define.
    pub fn reads(self) -> &'static [&'static str] {
        match self {
            BusinessVault::Customer360 => &[
                "hub_customer",
                "hub_order",
                "hub_product",
                "link_order_customer",
                "link_order_product",
                "link_product_view",
                "sat_customer_contact",
                "sat_customer_profile",
                "sat_order_details",
                "sat_order_line",
                "sat_order_status",
                "sat_product_details",
            ],
        }
    }
}

/// The whole, validated model.
#[derive(Debug, Clone)]
pub struct Mappings {
    /// The PostgreSQL schema holding the hubs, links and satellites.
    pub schema: String,
    /// The business vault the mapping files register, if any: the loader builds it
    /// on a first load and refreshes it in each batch's transaction.
    pub business_vault: Option<BusinessVault>,
    pub hubs: IdVec<HubId, Hub>,
    pub links: IdVec<LinkId, Link>,
    pub satellites: IdVec<SatId, Satellite>,
    pub events: HashMap<String, EventMapping>,
    /// Event types the loader passes over on purpose (`dvault model skip`): neither
    /// held back nor quarantined.
    pub skipped: HashSet<String>,
}

impl Default for Mappings {
    fn default() -> Self {
        Mappings {
            schema: DEFAULT_SCHEMA.into(),
            business_vault: None,
            hubs: IdVec::new(),
            links: IdVec::new(),
            satellites: IdVec::new(),
            events: HashMap::new(),
            skipped: HashSet::new(),
        }
    }
}

impl Mappings {
    pub fn hub_id(&self, name: &str) -> Option<HubId> {
        self.hubs.position(|h| h.name == name)
    }
    pub fn link_id(&self, name: &str) -> Option<LinkId> {
        self.links.position(|l| l.name == name)
    }
    pub fn satellite_id(&self, name: &str) -> Option<SatId> {
        self.satellites.position(|s| s.name == name)
    }

    /// `schema.table`, quoted, for a vault table of this model.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(name))
    }

    /// Whether the mapping files register the Customer 360 business vault (the
    /// built-in model's do), so that the loader maintains it with the raw vault.
    pub fn is_customer_360(&self) -> bool {
        self.business_vault == Some(BusinessVault::Customer360)
    }

    /// The hash key column of a satellite's parent.
    pub fn parent_key(&self, parent: Parent) -> &str {
        match parent {
            Parent::Hub(h) => &self.hubs[h].hash_key,
            Parent::Link(l) => &self.links[l].hash_key,
        }
    }
}

impl EventMapping {
    /// Whether this mapping is one of the built-in model's (not a user's).
    pub fn is_builtin(&self) -> bool {
        self.file.starts_with(BUILTIN_DIR)
    }

    /// The array (if any) a hub of this event iterates.
    pub fn hub_array(&self, hub: HubId) -> Option<&[String]> {
        self.hubs
            .iter()
            .find(|(h, _)| *h == hub)
            .and_then(|(_, paths)| paths.iter().find_map(FieldPath::array))
    }

    /// The array a link of this event iterates: its hubs' and its own paths'.
    pub fn link_array<'a>(&'a self, m: &Mappings, link: LinkId) -> Option<&'a [String]> {
        let own = self
            .links
            .iter()
            .find(|(l, _)| *l == link)
            .and_then(|(_, paths)| paths.iter().find_map(Field::array));
        own.or_else(|| m.links[link].hubs.iter().find_map(|&h| self.hub_array(h)))
    }
}
