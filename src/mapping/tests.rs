//! Mapping parsing and structural checks: each kind of mistake, and its message.

use super::*;

fn parse(files: &[(&str, &str)]) -> Result<Mappings, MappingErrors> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    Mappings::parse(&files)
}

fn problems(files: &[(&str, &str)]) -> Vec<String> {
    match parse(files) {
        Ok(_) => panic!("the mappings were accepted"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const HUBS: &str = r#"
[hubs.hub_customer]
hash_key = "hk_customer"
business_key = ["customer_id"]

[hubs.hub_order]
hash_key = "hk_order"
business_key = ["order_id"]

[links.link_order_customer]
hash_key = "hk_order_customer"
hubs = ["hub_order", "hub_customer"]

[satellites.sat_customer_profile]
parent = "hub_customer"
columns = { city = "text", signup_date = "date" }
"#;

const EVENTS: &str = r#"
[[events]]
type = "customer_registered"
hubs = { hub_customer = ["customer_id"] }
satellites.sat_customer_profile = { city = "address.city", signup_date = "signup_date" }

[[events]]
type = "order_placed"
hubs = { hub_order = ["order_id"], hub_customer = ["customer_id"] }
links.link_order_customer = {}
"#;

#[test]
fn the_shipped_mappings_are_valid() {
    let m = Mappings::builtin().expect("vault/mappings/*.toml are valid");
    for t in [
        "customer_registered",
        "customer_updated",
        "product_listed",
        "product_updated",
        "order_placed",
        "order_status_changed",
        "product_viewed",
        "order_line_recorded",
    ] {
        assert!(m.events.contains_key(t), "{t} is mapped");
    }
    let line = m.satellite_index("sat_order_line").expect("sat_order_line");
    let cols: Vec<&str> = m.satellites[line]
        .columns
        .iter()
        .map(|(c, _)| c.as_str())
        .collect();
    assert_eq!(
        cols,
        ["discount", "quantity", "unit_price"],
        "hashdiff order"
    );
}

#[test]
fn a_good_model_compiles() {
    let m = parse(&[("a.toml", HUBS), ("b.toml", EVENTS)]).expect("valid");
    let e = &m.events["customer_registered"];
    let (_, cols) = &e.satellites[0];
    assert_eq!(
        cols[0],
        Some(FieldPath::Top(vec!["address".into(), "city".into()]))
    );
}

#[test]
fn the_vault_schema_defaults_to_raw_vault_and_can_be_named_once() {
    let m = parse(&[("a.toml", HUBS), ("b.toml", EVENTS)]).expect("valid");
    assert_eq!(m.schema, "raw_vault");
    assert!(m.is_customer_360());
    assert_eq!(m.table("hub_order"), r#""raw_vault"."hub_order""#);

    let named = format!("schema = \"tpch_vault\"\n{HUBS}");
    let m = parse(&[("a.toml", &named), ("b.toml", EVENTS)]).expect("valid");
    assert_eq!(m.schema, "tpch_vault");
    assert!(!m.is_customer_360());
    assert_eq!(m.table("hub_order"), r#""tpch_vault"."hub_order""#);

    let other = format!("schema = \"other\"\n{EVENTS}");
    let p = problems(&[("a.toml", &named), ("b.toml", &other)]);
    assert_eq!(
        p,
        [
            r#"b.toml: schema: "other" differs from "tpch_vault" in a.toml; one mapping set loads one schema"#
        ]
    );
    let bad = format!("schema = \"Raw-Vault\"\n{HUBS}");
    let p = problems(&[("a.toml", &bad), ("b.toml", EVENTS)]);
    assert_eq!(
        p,
        [
            r#"a.toml: schema: "Raw-Vault" is not a plain schema name; use lower-case letters, digits and _"#
        ]
    );
}

#[test]
fn toml_typos_name_the_line() {
    let p = problems(&[(
        "typo.toml",
        "[hubs.hub_x]\nhash_key = \"hk_x\"\nbusines_key = [\"x\"]\n",
    )]);
    assert_eq!(p.len(), 1);
    assert!(p[0].starts_with("typo.toml: line 3:"), "{}", p[0]);
    assert!(p[0].contains("unknown field `busines_key`"), "{}", p[0]);
}

#[test]
fn unknown_targets_are_named_with_the_known_ones() {
    let bad = r#"
[[events]]
type = "customer_registered"
hubs = { hub_custmer = ["customer_id"] }
satellites.sat_profile = { city = "city" }
"#;
    let p = problems(&[
        ("a.toml", HUBS),
        ("b.toml", bad),
        ("c.toml", &EVENTS.replace("customer_registered", "x")),
    ]);
    assert!(
        p.iter().any(|e| e == "b.toml: event \"customer_registered\": unknown hub \"hub_custmer\" (defined hubs: hub_customer, hub_order)"),
        "{p:#?}"
    );
    assert!(
        p.iter().any(|e| e.contains(
            "unknown satellite \"sat_profile\" (defined satellites: sat_customer_profile)"
        )),
        "{p:#?}"
    );
}

#[test]
fn unknown_columns_and_types_are_refused() {
    let bad = HUBS.replace("signup_date = \"date\"", "signup_date = \"datetime\"");
    let p = problems(&[("a.toml", &bad), ("b.toml", EVENTS)]);
    assert!(
        p.iter().any(|e| e.starts_with("a.toml: satellite \"sat_customer_profile\", column \"signup_date\": unknown type \"datetime\"")),
        "{p:#?}"
    );
    let bad_col = EVENTS.replace("city = \"address.city\"", "town = \"city\"");
    let p = problems(&[("a.toml", HUBS), ("b.toml", &bad_col)]);
    assert!(
        p.iter().any(|e| e.contains("satellite \"sat_customer_profile\" has no column \"town\" (its columns: city, signup_date)")),
        "{p:#?}"
    );
}

#[test]
fn a_link_needs_its_hubs_keyed_in_the_event() {
    let bad = EVENTS.replace(
        "hubs = { hub_order = [\"order_id\"], hub_customer = [\"customer_id\"] }",
        "hubs = { hub_order = [\"order_id\"] }",
    );
    let p = problems(&[("a.toml", HUBS), ("b.toml", &bad)]);
    assert!(
        p.iter().any(|e| e == "b.toml: event \"order_placed\": feeds link \"link_order_customer\", which needs the key of hub \"hub_customer\": add it to this event's hubs"),
        "{p:#?}"
    );
}

#[test]
fn a_link_to_a_hub_no_mapping_defines_or_feeds() {
    let undefined = HUBS.replace(
        "hubs = [\"hub_order\", \"hub_customer\"]",
        "hubs = [\"hub_order\", \"hub_client\"]",
    );
    let p = problems(&[("a.toml", &undefined)]);
    assert!(
        p.iter().any(|e| e.starts_with("a.toml: link \"link_order_customer\": names hub \"hub_client\", which no mapping defines")),
        "{p:#?}"
    );
    // defined, but no event feeds hub_order
    let only_customers = &EVENTS[..EVENTS
        .find("[[events]]\ntype = \"order_placed\"")
        .expect("second event")];
    let p = problems(&[("a.toml", HUBS), ("b.toml", only_customers)]);
    assert!(
        p.iter().any(|e| e == "a.toml: link \"link_order_customer\": joins hub \"hub_order\", which no event mapping feeds; add it to the `hubs` of an event"),
        "{p:#?}"
    );
}

#[test]
fn wrong_key_arity_duplicates_and_bad_paths() {
    let arity = EVENTS.replace(
        "hub_customer = [\"customer_id\"] }\nsatellites",
        "hub_customer = [\"customer_id\", \"x\"] }\nsatellites",
    );
    let p = problems(&[("a.toml", HUBS), ("b.toml", &arity)]);
    assert!(
        p.iter().any(|e| e
            .contains("has 1 business key column(s) (customer_id), the event gives 2 field(s)")),
        "{p:#?}"
    );

    let p = problems(&[("a.toml", HUBS), ("b.toml", EVENTS), ("c.toml", HUBS)]);
    assert!(
        p.iter()
            .any(|e| e == "c.toml: hub \"hub_customer\": defined again (first in a.toml)"),
        "{p:#?}"
    );

    let path = EVENTS.replace("\"address.city\"", "\"address..city\"");
    let p = problems(&[("a.toml", HUBS), ("b.toml", &path)]);
    assert!(
        p.iter()
            .any(|e| e.contains("bad field path \"address..city\"")),
        "{p:#?}"
    );
}

#[test]
fn two_arrays_in_one_target_are_refused() {
    let bad = EVENTS.replace(
        "satellites.sat_customer_profile = { city = \"address.city\", signup_date = \"signup_date\" }",
        "satellites.sat_customer_profile = { city = \"a[].city\", signup_date = \"b[].date\" }",
    );
    let p = problems(&[("a.toml", HUBS), ("b.toml", &bad)]);
    assert!(
        p.iter()
            .any(|e| e.contains("mixes fields of two arrays (a[] and b[])")),
        "{p:#?}"
    );
}

#[test]
fn field_paths_parse_and_print() {
    for text in ["a", "a.b", "lines[].product_id", "x.lines[].p.q"] {
        let p = FieldPath::parse(text).expect(text);
        assert_eq!(p.to_string(), text);
    }
    assert!(FieldPath::parse("").is_err());
    assert!(FieldPath::parse("a[]").is_err());
    assert!(FieldPath::parse("a[].b[].c").is_err());
}
