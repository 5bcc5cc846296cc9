//! Where a column's value comes from: a field of the payload as it is (a rename), a
//! constant, or a field through a value map and a default. Declared in TOML, compiled
//! once when the mappings load; applying them is pure and allocates nothing beyond
//! the value itself. See `docs/mappings.md` (Transformations).
//!
//! ```toml
//! satellites.sat_order_status = { status = { field = "order_status", map = { Completed = "delivered", Shipped = "shipped" } } }
//! links.link_order_product = { line_no = { const = "1" } }
//! satellites.sat_order_details = { channel = { field = "channel", default = "store" } }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::FieldPath;
use super::types::{ColumnType, Value, parse_scalar};
use crate::load::payload::Scalar;

// ---- the TOML shape --------------------------------------------------------

/// A column's source as written: `"path"` or `{ field, map, default }` / `{ const }`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSpec {
    Path(String),
    Rule(RuleSpec),
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The payload field read (`a.b`, `lines[].x`).
    pub field: Option<String>,
    /// A value every event gives, whatever its payload.
    #[serde(rename = "const")]
    pub constant: Option<toml::Value>,
    /// Source value → stored value. A value the map does not name rejects the event.
    pub map: Option<BTreeMap<String, toml::Value>>,
    /// The value when the field is missing or null.
    pub default: Option<toml::Value>,
}

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = FieldSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a field path (\"a.b\") or a table { field, map, default } or { const }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldSpec, E> {
                Ok(FieldSpec::Path(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldSpec, A::Error> {
                RuleSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FieldSpec::Rule)
            }
        }
        d.deserialize_any(Visit)
    }
}

// ---- the compiled form -----------------------------------------------------

/// A column's source, compiled: paths parsed, constants, map values and defaults
/// typed (so a wrong one is a mapping error, not a rejected event).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The value at a path, as it is (the common case: nothing else is done).
    Path(FieldPath),
    /// The same value for every event.
    Const(Value),
    /// A path through a value map and/or a default.
    Rule(Box<Rule>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub path: FieldPath,
    pub map: Option<ValueMap>,
    pub default: Option<Value>,
}

/// A vocabulary translation: source text (trimmed of spaces) → typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueMap {
    entries: HashMap<String, Value>,
    /// The source values, sorted and joined, for messages.
    known: String,
}

impl ValueMap {
    /// The stored values this map can give (for a vocabulary check).
    pub fn targets(&self) -> impl Iterator<Item = &Value> {
        self.entries.values()
    }
}

/// A TOML scalar as text (what a payload field would hold).
fn toml_text(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        other => Err(format!(
            "expected a string, number or boolean, got {}",
            other.type_str()
        )),
    }
}

/// A TOML scalar as a value of `ty`.
fn toml_value(v: &toml::Value, ty: ColumnType) -> Result<Value, String> {
    let text = toml_text(v)?;
    let scalar = match v {
        toml::Value::String(_) | toml::Value::Datetime(_) => Scalar::String(&text),
        toml::Value::Boolean(b) => Scalar::Bool(*b),
        _ => Scalar::Number(text.as_str().into()),
    };
    parse_scalar(&scalar, ty, &|| format!("{v}"))?.ok_or_else(|| format!("{v} is not a valid {ty}"))
}

impl Field {
    /// Compile a column source for a column of type `ty`.
    pub fn compile(spec: &FieldSpec, ty: ColumnType) -> Result<Field, String> {
        let rule = match spec {
            FieldSpec::Path(p) => return FieldPath::parse(p).map(Field::Path),
            FieldSpec::Rule(r) => r,
        };
        if let Some(c) = &rule.constant {
            if rule.field.is_some() || rule.map.is_some() || rule.default.is_some() {
                return Err(
                    "a constant stands alone: give `const` or `field` (with `map`, `default`), not both"
                        .into(),
                );
            }
            return toml_value(c, ty)
                .map(Field::Const)
                .map_err(|e| format!("const: {e}"));
        }
        let Some(field) = &rule.field else {
            return Err("name the payload field (`field = \"...\"`) or give a `const`".into());
        };
        let path = FieldPath::parse(field)?;
        let default = match &rule.default {
            Some(d) => Some(toml_value(d, ty).map_err(|e| format!("default: {e}"))?),
            None => None,
        };
        let map = match &rule.map {
            None => None,
            Some(m) if m.is_empty() => return Err("map is empty: name the values it maps".into()),
            Some(m) => {
                let mut entries = HashMap::with_capacity(m.len());
                for (from, to) in m {
                    let v = toml_value(to, ty).map_err(|e| format!("map, \"{from}\": {e}"))?;
                    entries.insert(from.trim_matches(' ').to_string(), v);
                }
                let known = m.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
                Some(ValueMap { entries, known })
            }
        };
        if map.is_none() && default.is_none() {
            return Ok(Field::Path(path));
        }
        Ok(Field::Rule(Box::new(Rule { path, map, default })))
    }

    /// The payload path read, if any (a constant reads none).
    pub fn path(&self) -> Option<&FieldPath> {
        match self {
            Field::Path(p) => Some(p),
            Field::Const(_) => None,
            Field::Rule(r) => Some(&r.path),
        }
    }

    /// The array this source iterates, if any.
    pub fn array(&self) -> Option<&[String]> {
        self.path().and_then(FieldPath::array)
    }

    /// The value, given what the payload holds at [`path`](Self::path) (`None`:
    /// missing); `shown` renders the raw value for messages.
    pub fn value(
        &self,
        raw: Option<&Scalar<'_>>,
        ty: ColumnType,
        shown: &dyn Fn() -> String,
    ) -> Result<Option<Value>, String> {
        match self {
            Field::Path(_) => match raw {
                None => Ok(None),
                Some(s) => parse_scalar(s, ty, shown),
            },
            Field::Const(v) => Ok(Some(v.clone())),
            Field::Rule(r) => r.value(raw, ty, shown),
        }
    }
}

impl Rule {
    fn value(
        &self,
        raw: Option<&Scalar<'_>>,
        ty: ColumnType,
        shown: &dyn Fn() -> String,
    ) -> Result<Option<Value>, String> {
        let raw = match raw {
            None | Some(Scalar::Null) => return Ok(self.default.clone()),
            Some(s) => s,
        };
        let Some(map) = &self.map else {
            return Ok(parse_scalar(raw, ty, shown)?.or_else(|| self.default.clone()));
        };
        let key: &str = match raw {
            Scalar::String(s) => s.trim_matches(' '),
            Scalar::Number(n) => n,
            Scalar::Bool(true) => "true",
            Scalar::Bool(false) => "false",
            Scalar::Null => return Ok(self.default.clone()),
            Scalar::Composite(kind) => {
                return Err(format!("expected a value of the map, got a JSON {kind}"));
            }
        };
        match map.entries.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if key.is_empty() => Ok(self.default.clone()),
            None => Err(format!(
                "value {} is not in the value map (it maps: {}); add it to the map",
                crate::events::cloudevents::preview(&shown()),
                map.known
            )),
        }
    }
}

impl fmt::Display for Field {
    /// The path read, or the constant: for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Path(p) => write!(f, "{p}"),
            Field::Const(v) => write!(f, "const {}", v.canonical()),
            Field::Rule(r) => write!(f, "{}", r.path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> FieldSpec {
        #[derive(serde::Deserialize)]
        struct T {
            x: FieldSpec,
        }
        toml::from_str::<T>(toml_text).expect(toml_text).x
    }

    fn shown() -> String {
        "\"raw\"".into()
    }

    #[test]
    fn a_path_is_a_rename_and_compiles_to_a_plain_path() {
        let f = Field::compile(&spec(r#"x = "a.b""#), ColumnType::Text).expect("ok");
        assert_eq!(f, Field::Path(FieldPath::Top(vec!["a".into(), "b".into()])));
        let f = Field::compile(&spec(r#"x = { field = "a" }"#), ColumnType::Text).expect("ok");
        assert!(matches!(f, Field::Path(_)), "no rule, no overhead");
    }

    #[test]
    fn constants_are_typed_once() {
        let f = Field::compile(&spec("x = { const = 1 }"), ColumnType::Text).expect("ok");
        assert_eq!(f, Field::Const(Value::Text("1".into())));
        assert_eq!(f.path(), None);
        assert_eq!(
            f.value(None, ColumnType::Text, &shown),
            Ok(Some(Value::Text("1".into())))
        );
        let f = Field::compile(&spec(r#"x = { const = "7" }"#), ColumnType::Integer).expect("ok");
        assert_eq!(f, Field::Const(Value::Int(7)));
        let e = Field::compile(&spec(r#"x = { const = "seven" }"#), ColumnType::Integer)
            .expect_err("bad");
        assert!(e.starts_with("const: "), "{e}");
        let e = Field::compile(&spec(r#"x = { const = 1, field = "a" }"#), ColumnType::Text)
            .expect_err("both");
        assert!(e.contains("stands alone"), "{e}");
    }

    #[test]
    fn value_maps_translate_and_refuse_what_they_do_not_name() {
        let f = Field::compile(
            &spec(r#"x = { field = "s", map = { Completed = "delivered", Shipped = "shipped" } }"#),
            ColumnType::Text,
        )
        .expect("ok");
        let v = |s: &str| f.value(Some(&Scalar::String(s)), ColumnType::Text, &shown);
        assert_eq!(v("Shipped"), Ok(Some(Value::Text("shipped".into()))));
        assert_eq!(v(" Completed "), Ok(Some(Value::Text("delivered".into()))));
        let e = v("Cancelled").expect_err("unmapped");
        assert!(
            e.contains("\"raw\" is not in the value map (it maps: Completed, Shipped)"),
            "{e}"
        );
        assert_eq!(f.value(None, ColumnType::Text, &shown), Ok(None));
        assert_eq!(
            f.value(Some(&Scalar::Null), ColumnType::Text, &shown),
            Ok(None)
        );
    }

    #[test]
    fn defaults_fill_missing_and_null_values() {
        let f = Field::compile(
            &spec(r#"x = { field = "q", default = 1 }"#),
            ColumnType::Integer,
        )
        .expect("ok");
        assert_eq!(
            f.value(None, ColumnType::Integer, &shown),
            Ok(Some(Value::Int(1)))
        );
        assert_eq!(
            f.value(Some(&Scalar::Null), ColumnType::Integer, &shown),
            Ok(Some(Value::Int(1)))
        );
        assert_eq!(
            f.value(
                Some(&Scalar::Number("3".into())),
                ColumnType::Integer,
                &shown
            ),
            Ok(Some(Value::Int(3)))
        );
        let e = Field::compile(
            &spec(r#"x = { field = "q", default = "x" }"#),
            ColumnType::Integer,
        )
        .expect_err("bad default");
        assert!(e.starts_with("default: "), "{e}");
        let e = Field::compile(
            &spec(r#"x = { field = "q", map = { a = "b" } }"#),
            ColumnType::Integer,
        )
        .expect_err("bad map value");
        assert!(e.starts_with("map, \"a\": "), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            x: FieldSpec,
        }
        let e = toml::from_str::<T>(r#"x = { feild = "a" }"#).expect_err("typo");
        assert!(e.to_string().contains("unknown field `feild`"), "{e}");
    }
}
