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
    let line = m.satellite_id("sat_order_line").expect("sat_order_line");
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
        Some(Field::Path(FieldPath::Top(vec![
            "address".into(),
            "city".into()
        ])))
    );
}

#[test]
fn the_vault_schema_defaults_to_raw_vault_and_can_be_named_once() {
    let m = parse(&[("a.toml", HUBS), ("b.toml", EVENTS)]).expect("valid");
    assert_eq!(m.schema, "raw_vault");
    // a set of its own in raw_vault: no Customer 360 business vault unless it says so
    assert!(!m.is_customer_360());
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
fn the_built_in_model_registers_the_customer_360_business_vault() {
    let m = Mappings::builtin().expect("built-in");
    assert!(m.is_customer_360());
    assert_eq!(
        m.business_vault.map(BusinessVault::name),
        Some("customer_360")
    );

    // the built-in files with one more registering it again: the same, accepted
    let mut files = builtin_files();
    files.push((
        "user.toml".into(),
        "business_vault = \"customer_360\"".into(),
    ));
    assert!(Mappings::parse(&files).expect("valid").is_customer_360());
}

#[test]
fn a_business_vault_must_be_known_and_find_its_tables() {
    let unknown = format!("business_vault = \"customer_720\"\n{HUBS}");
    assert_eq!(
        problems(&[("a.toml", &unknown), ("b.toml", EVENTS)]),
        [
            r#"a.toml: business_vault: "customer_720" is not a business vault dvault knows; known: customer_360"#
        ]
    );
    let registered = format!("business_vault = \"customer_360\"\n{HUBS}");
    assert_eq!(
        problems(&[("a.toml", &registered), ("b.toml", EVENTS)]),
        [
            r#"a.toml: business_vault: "customer_360" reads hub_product, link_order_product, link_product_view, sat_customer_contact, sat_order_details, sat_order_line, sat_order_status, sat_product_details, which this mapping set does not define"#
        ]
    );
    let elsewhere = format!("schema = \"shop\"\n{registered}");
    let p = problems(&[("a.toml", &elsewhere), ("b.toml", EVENTS)]);
    assert_eq!(
        p[0],
        r#"a.toml: business_vault: "customer_360" reads the tables of schema "raw_vault"; this mapping set loads "shop""#
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

// ---- property tests: whatever the text, an answer and never a panic ---------

mod fuzz {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::Value as Json;

    use super::*;
    use crate::load::extract::extract;
    use crate::load::rows::{Origin, Rows};

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "a", "b", "hub_a", "hub_b", "l", "s", "", "é", "a.b", "x y",
        ])
        .prop_map(String::from)
    }

    fn path() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "a",
            "b",
            "a.b",
            "l[].a",
            "l[].b",
            "m[].a",
            "l[].b[].c",
            "",
            ".",
            "[]",
            "l[].",
            "a..b",
        ])
        .prop_map(String::from)
    }

    fn ty() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "text",
            "integer",
            "bigint",
            "numeric(12,2)",
            "numeric(28,28)",
            "numeric(0,0)",
            "numeric(99999999999,1)",
            "numeric(",
            "date",
            "timestamptz",
            "boolean",
            "int",
            "",
        ])
        .prop_map(String::from)
    }

    /// One line of mapping-ish TOML: real keys with made-up names, and typos.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            name().prop_map(|n| format!("[hubs.\"{n}\"]")),
            name().prop_map(|n| format!("hash_key = \"hk_{n}\"")),
            prop::collection::vec(name(), 0..3).prop_map(|v| format!("business_key = {v:?}")),
            name().prop_map(|n| format!("[links.\"{n}\"]")),
            prop::collection::vec(name(), 0..3).prop_map(|v| format!("hubs = {v:?}")),
            (name(), ty()).prop_map(|(c, t)| format!(
                "dependent_keys = [{{ column = \"{c}\", type = \"{t}\" }}]"
            )),
            name().prop_map(|n| format!("[satellites.\"{n}\"]")),
            name().prop_map(|n| format!("parent = \"{n}\"")),
            prop::collection::btree_map(name(), ty(), 0..3).prop_map(|m| {
                let cols: Vec<String> = m
                    .iter()
                    .map(|(c, t)| format!("\"{c}\" = \"{t}\""))
                    .collect();
                format!("columns = {{ {} }}", cols.join(", "))
            }),
            Just("[[events]]".to_string()),
            name().prop_map(|n| format!("type = \"{n}\"")),
            (name(), prop::collection::vec(path(), 0..3))
                .prop_map(|(h, p)| format!("hubs = {{ \"{h}\" = {p:?} }}")),
            (name(), name(), path())
                .prop_map(|(l, c, p)| format!("links.\"{l}\" = {{ \"{c}\" = \"{p}\" }}")),
            (name(), name(), path())
                .prop_map(|(s, c, p)| format!("satellites.\"{s}\" = {{ \"{c}\" = \"{p}\" }}")),
            prop::sample::select(vec![
                "[",
                "]",
                "=",
                "\"",
                "hubs = 3",
                "columns = [\"a\"]",
                "business_key = \"a\"",
                "bussiness_key = []",
                "[[events]",
                "type = 1",
                "schema = \"x\"",
                "\u{feff}",
            ])
            .prop_map(String::from),
            "\\PC{0,12}",
        ]
    }

    /// Made-up lines, or the good model of these tests with a few lines deleted,
    /// replaced or added (most of those still parse, so `extract` gets exercised).
    fn file() -> impl Strategy<Value = String> {
        let edits = prop::collection::vec((0..3u8, any::<prop::sample::Index>(), line()), 0..4);
        prop_oneof![
            prop::collection::vec(line(), 0..24).prop_map(|l| l.join("\n")),
            edits.prop_map(|edits| {
                let mut lines: Vec<String> = format!("{HUBS}\n{EVENTS}")
                    .lines()
                    .map(String::from)
                    .collect();
                for (op, at, line) in edits {
                    let i = at.index(lines.len());
                    match op {
                        0 => {
                            lines.remove(i);
                        }
                        1 => lines[i] = line,
                        _ => lines.insert(i, line),
                    }
                }
                lines.join("\n")
            }),
        ]
    }

    /// Payload keys: the fields of the good model, and the made-up names.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "customer_id",
                "order_id",
                "address",
                "city",
                "signup_date",
                "l"
            ])
            .prop_map(String::from),
            name(),
        ]
    }

    fn payload() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<f64>().prop_map(Json::from),
            "[a-z0-9 |^.:-]{0,12}".prop_map(Json::from),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
                prop::collection::btree_map(key(), inner, 0..4)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        });
        prop::collection::btree_map(key(), value, 0..6)
            .prop_map(|m| Json::Object(m.into_iter().collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Mapping-ish text: the model, or errors naming a file and an entry.
        #[test]
        fn mapping_text_gives_a_model_or_named_errors(
            files in prop::collection::vec(file(), 1..3),
            payloads in prop::collection::vec(payload(), 0..4),
        ) {
            let files: Vec<(String, String)> = files
                .into_iter()
                .enumerate()
                .map(|(i, t)| (format!("m{i}.toml"), t))
                .collect();
            match Mappings::parse(&files) {
                Err(errors) => {
                    prop_assert!(!errors.0.is_empty());
                    for e in &errors.0 {
                        prop_assert!(e.file.starts_with('m') && !e.entry.is_empty() && !e.problem.is_empty(), "{e}");
                    }
                }
                // a model that parses projects any payload without a panic
                Ok(m) => {
                    for em in m.events.values() {
                        for p in &payloads {
                            let origin = Arc::new(Origin {
                                xid: 1,
                                seq: 1,
                                load_dts: chrono::DateTime::UNIX_EPOCH,
                                applied_dts: chrono::DateTime::UNIX_EPOCH,
                                source: Arc::from("s"),
                            });
                            let mut rows = Rows::new(&m);
                            let text = p.to_string();
                            let doc = crate::load::payload::Doc::parse(&text).expect("valid JSON");
                            if extract(&m, em, &doc, origin, &mut rows).is_err() {
                                prop_assert!(rows.is_empty(), "a refused event leaves no rows");
                            }
                        }
                    }
                }
            }
        }

        /// Any text at all.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = Mappings::parse(&[("x.toml".to_string(), text)]);
        }
    }
}

fn compose(files: &[(&str, &str)]) -> Result<Mappings, MappingErrors> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    Mappings::compose(&files)
}

const SHOP_TRANSACTIONS: &str = r#"
[satellites.sat_order_payment]
parent = "hub_order"
columns = { payment_method = "text", total_amount = "numeric(12,2)" }

[[events]]
type = "shop_transaction"
hubs = { hub_order = ["transaction_id"], hub_customer = ["customer_id"], hub_product = ["product_id"] }
links.link_order_customer = {}
links.link_order_product = { line_no = { const = 1 } }
satellites.sat_order_details = { ordered_at = "order_date", channel = { field = "channel", default = "store" } }
satellites.sat_order_status = { status = { field = "order_status", map = { Completed = "delivered", Shipped = "shipped", Processing = "paid" } } }
satellites.sat_order_line = { quantity = "quantity", unit_price = "unit_price" }
satellites.sat_order_payment = { payment_method = "payment_method", total_amount = "total_amount" }
"#;

#[test]
fn user_mappings_add_to_the_built_in_model() {
    let m = compose(&[("mine/shop.toml", SHOP_TRANSACTIONS)]).expect("composes");
    assert!(m.events.contains_key("order_placed"), "built-in kept");
    let e = &m.events["shop_transaction"];
    assert_eq!(e.file, "mine/shop.toml");
    assert!(m.satellite_id("sat_order_payment").is_some());
    let (_, deps) = &e.links[e
        .links
        .iter()
        .position(|(l, _)| m.links[*l].name == "link_order_product")
        .expect("link")];
    assert_eq!(deps, &[Field::Const(Value::Text("1".into()))]);
    let status = m.satellite_id("sat_order_status").expect("sat");
    let (_, cols) = e
        .satellites
        .iter()
        .find(|(s, _)| *s == status)
        .expect("sat");
    assert!(matches!(cols[0], Some(Field::Rule(_))));
}

#[test]
fn a_user_file_overrides_a_built_in_event_type_only_explicitly() {
    let again = r#"
[[events]]
type = "order_status_changed"
hubs = { hub_order = ["id"] }
satellites.sat_order_status = { status = "state" }
"#;
    let p = match compose(&[("mine/status.toml", again)]) {
        Ok(_) => panic!("accepted a second mapping of a built-in type"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(
        p,
        [
            "mine/status.toml: event \"order_status_changed\": mapped again (first in vault/mappings/order.toml); to replace that mapping, say `override = true` in this one"
        ]
    );
    let explicit = again.replace("hubs =", "override = true\nhubs =");
    let m = compose(&[("mine/status.toml", &explicit)]).expect("override");
    let e = &m.events["order_status_changed"];
    assert_eq!(e.file, "mine/status.toml");
    assert_eq!(e.hubs[0].1, [FieldPath::Top(vec!["id".into()])]);

    let nothing = explicit.replace("order_status_changed", "no_such_type");
    let p = match compose(&[("mine/status.toml", &nothing)]) {
        Ok(_) => panic!("accepted an override of nothing"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("no earlier mapping of this event type"),
        "{p:?}"
    );
}

#[test]
fn a_user_file_redefining_a_built_in_table_names_both_files() {
    let hub = "[hubs.hub_customer]\nhash_key = \"hk_customer\"\nbusiness_key = [\"id\"]\n";
    let p = match compose(&[("mine/customer.toml", hub)]) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert_eq!(
        p,
        [
            "mine/customer.toml: hub \"hub_customer\": defined again (first in vault/mappings/customer.toml)"
        ]
    );
}

#[test]
fn a_set_naming_another_schema_stands_alone() {
    let named = format!("schema = \"tpch_vault\"\n{HUBS}");
    let m = compose(&[("a.toml", &named), ("b.toml", EVENTS)]).expect("valid");
    assert_eq!(m.schema, "tpch_vault");
    assert!(!m.events.contains_key("order_line_recorded"));
}

#[test]
fn transformation_mistakes_name_the_file_event_and_column() {
    let bad = SHOP_TRANSACTIONS.replace("{ const = 1 }", "{ const = 1, field = \"x\" }");
    let bad = bad.replace(
        "total_amount = \"total_amount\"",
        "total_amount = { field = \"total_amount\", default = \"n/a\" }",
    );
    let p = match compose(&[("mine/shop.toml", &bad)]) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert!(
        p.iter().any(|e| e.starts_with("mine/shop.toml: event \"shop_transaction\": link \"link_order_product\", dependent key \"line_no\": a constant stands alone")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|e| e.contains("satellite \"sat_order_payment\", column \"total_amount\": default: \"n/a\" is not a valid numeric(12,2)")),
        "{p:?}"
    );
}
