//! The quality config without a database: the documented file is the default, the
//! defaults fit the built-in mappings and a user's model, sections left out keep
//! theirs, and each mistake is named.

use super::*;

#[test]
fn the_documented_file_is_the_default() {
    let text = include_str!("../../../deploy/quality.toml");
    let parsed = QualityConfig::parse("deploy/quality.toml", text).expect("parses");
    assert_eq!(parsed, QualityConfig::default());
}

#[test]
fn the_defaults_fit_the_builtin_mappings() {
    let m = Mappings::builtin().expect("mappings");
    QualityConfig::default().check(&m).expect("defaults fit");
}

#[test]
fn a_user_model_gets_defaults_for_what_the_config_does_not_name() {
    let files = [(
        "c360.toml".to_string(),
        include_str!("../../../examples/c360/mappings/c360.toml").to_string(),
    )];
    let m = Mappings::compose(&files).expect("c360 composes");
    let c = QualityConfig::default().with_model_defaults(&m);
    assert_eq!(
        c.completeness.required["c360_transaction"],
        ["customer_id", "product_id", "transaction_id"]
    );
    assert_eq!(
        c.completeness.required["order_placed"],
        QualityConfig::default().completeness.required["order_placed"],
        "configured entries are kept"
    );
    assert!(
        !c.completeness.required.contains_key("customer_updated"),
        "built-in types keep the documented defaults"
    );
    assert_eq!(c.uniqueness.keys["c360_customer"], "customer_id");
    assert_eq!(c.uniqueness.keys["c360_product"], "product_id");
    assert!(!c.uniqueness.keys.contains_key("c360_transaction"));
    // sat_order_status.status is fed by plain paths too (order_placed): no derived
    // vocabulary, the configured domain stays
    assert_eq!(
        c.validity.domains["sat_order_status.status"],
        QualityConfig::default().validity.domains["sat_order_status.status"]
    );
    c.check(&m).expect("derived defaults fit the model");

    let mapped_only = r#"
[satellites.sat_ticket]
parent = "hub_customer"
columns = { priority = "text" }

[[events]]
type = "ticket_opened"
hubs = { hub_customer = ["customer"] }
satellites.sat_ticket = { priority = { field = "prio", map = { P1 = "high", P2 = "low", P3 = "low" } } }
"#;
    let m = Mappings::compose(&[("t.toml".into(), mapped_only.into())]).expect("ok");
    let c = QualityConfig::default().with_model_defaults(&m);
    assert_eq!(
        c.validity.domains["sat_ticket.priority"].values,
        Some(vec!["high".to_string(), "low".to_string()])
    );
}

#[test]
fn sections_left_out_keep_their_defaults() {
    let c = QualityConfig::parse("q.toml", "[freshness]\nmax_age_hours = 4\n").expect("ok");
    assert_eq!(c.freshness.max_age_hours, 4.0);
    assert!(c.freshness.enabled);
    assert_eq!(c.completeness, Completeness::default());
}

#[test]
fn mistakes_are_named() {
    let e = QualityConfig::parse("q.toml", "[completeness]\nmin_ratio = 95\n").unwrap_err();
    assert!(e.contains("between 0 and 1"), "{e}");
    let e = QualityConfig::parse("q.toml", "[freshnes]\n").unwrap_err();
    assert!(e.contains("q.toml"), "{e}");
    let m = Mappings::builtin().expect("mappings");
    let c = QualityConfig::parse(
        "q.toml",
        "[validity.domains]\n\"sat_order.stat\" = { min = 1 }\n\
             [[referential.rules]]\nlink = \"link_order_customer\"\nhub = \"hub_product\"\n",
    )
    .expect("parses");
    let e = c.check(&m).unwrap_err();
    assert!(
        e.contains("\"sat_order.stat\" is no satellite column"),
        "{e}"
    );
    assert!(e.contains("does not join hub \"hub_product\""), "{e}");
}
