//! Decoding of the cty JSON Packer sends as the second `Prepare` argument of
//! an HCL2 build (PROTOCOL.md §5.1): `{"value": …, "type": …}` as written by
//! go-cty's `ctyjson.Marshal(value, cty.DynamicPseudoType)`.
//!
//! The result is plain JSON: the type information is used to check the
//! value and to strip the `{"value","type"}` wrappers cty puts around values
//! of declared type `dynamic`, then dropped.

use serde_json::{Map, Value};

/// Why a cty JSON document could not be decoded. `path` fields name the
/// place in the value, e.g. `.disk[0].size`.
#[derive(Debug, thiserror::Error)]
pub enum CtyError {
    /// The bytes are not JSON (or hold a number JSON cannot represent).
    #[error("cty JSON is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A `{"value": …, "type": …}` wrapper was expected.
    #[error("expected a {{\"value\",\"type\"}} object at {path:?}, found {found}")]
    NotWrapped {
        /// Where in the value.
        path: String,
        /// A short description of what was there.
        found: String,
    },
    /// A type description cty does not produce.
    #[error("invalid cty type at {path:?}: {detail}")]
    InvalidType {
        /// Where in the value.
        path: String,
        /// What is wrong with the type JSON.
        detail: String,
    },
    /// The value does not have the shape its type declares.
    #[error("cty value at {path:?} should be {expected}, found {found}")]
    Mismatch {
        /// Where in the value.
        path: String,
        /// The declared type.
        expected: String,
        /// A short description of what was there.
        found: String,
    },
    /// An object attribute the type declares is absent from the value.
    #[error("cty object at {path:?} lacks attribute {attribute:?}")]
    MissingAttribute {
        /// Where the object is.
        path: String,
        /// The missing attribute.
        attribute: String,
    },
    /// An object attribute that the type does not declare.
    #[error("cty object at {path:?} has undeclared attribute {attribute:?}")]
    UnexpectedAttribute {
        /// Where the object is.
        path: String,
        /// The extra attribute.
        attribute: String,
    },
    /// The whole configuration must be an object (a builder's body).
    #[error("cty configuration must be a non-null object, found type {found}")]
    NotAnObject {
        /// The top-level type or value found.
        found: String,
    },
}

/// A cty type as `cty.Type.MarshalJSON` writes it.
#[derive(Debug, Clone, PartialEq)]
enum TypeJson {
    String,
    Number,
    Bool,
    Dynamic,
    List(Box<TypeJson>),
    Set(Box<TypeJson>),
    Map(Box<TypeJson>),
    Object(Map<String, Value>),
    Tuple(Vec<Value>),
}

impl TypeJson {
    fn parse(json: &Value, path: &str) -> Result<TypeJson, CtyError> {
        let invalid = |detail: String| CtyError::InvalidType {
            path: path.to_owned(),
            detail,
        };
        match json {
            Value::String(name) => match name.as_str() {
                "string" => Ok(TypeJson::String),
                "number" => Ok(TypeJson::Number),
                "bool" => Ok(TypeJson::Bool),
                "dynamic" => Ok(TypeJson::Dynamic),
                other => Err(invalid(format!("unknown primitive type {other:?}"))),
            },
            Value::Array(parts) => {
                let kind = parts.first().and_then(Value::as_str).ok_or_else(|| {
                    invalid("a compound type must start with its kind name".to_owned())
                })?;
                let element = || -> Result<Box<TypeJson>, CtyError> {
                    match parts.as_slice() {
                        [_, element] => Ok(Box::new(TypeJson::parse(element, path)?)),
                        _ => Err(invalid(format!("{kind} takes exactly one element type"))),
                    }
                };
                match kind {
                    "list" => Ok(TypeJson::List(element()?)),
                    "set" => Ok(TypeJson::Set(element()?)),
                    "map" => Ok(TypeJson::Map(element()?)),
                    // A third element lists optional attributes (cty ≥1.7);
                    // it does not change the value's shape.
                    "object" => match parts.get(1) {
                        Some(Value::Object(attrs)) if parts.len() <= 3 => {
                            Ok(TypeJson::Object(attrs.clone()))
                        }
                        _ => Err(invalid("object takes a map of attribute types".to_owned())),
                    },
                    "tuple" => match parts.as_slice() {
                        [_, Value::Array(elements)] => Ok(TypeJson::Tuple(elements.clone())),
                        _ => Err(invalid("tuple takes a list of element types".to_owned())),
                    },
                    other => Err(invalid(format!("unknown type kind {other:?}"))),
                }
            }
            other => Err(invalid(format!("unexpected JSON {}", describe(other)))),
        }
    }

    fn name(&self) -> String {
        match self {
            TypeJson::String => "string".to_owned(),
            TypeJson::Number => "number".to_owned(),
            TypeJson::Bool => "bool".to_owned(),
            TypeJson::Dynamic => "dynamic".to_owned(),
            TypeJson::List(e) => format!("list({})", e.name()),
            TypeJson::Set(e) => format!("set({})", e.name()),
            TypeJson::Map(e) => format!("map({})", e.name()),
            TypeJson::Object(_) => "object".to_owned(),
            TypeJson::Tuple(_) => "tuple".to_owned(),
        }
    }
}

/// Decodes Packer's cty JSON for a builder body into the body's attributes.
///
/// Numbers that are integers fitting `i64`/`u64` stay integers, others
/// become `f64`; null stays null; sets and tuples become arrays; values of
/// declared type `dynamic` lose their `{"value","type"}` wrapper.
pub fn decode_cty_json(bytes: &[u8]) -> Result<Map<String, Value>, CtyError> {
    let document: Value = serde_json::from_slice(bytes)?;
    let (value, ty) = unwrap_dynamic(document, "")?;
    if !matches!(ty, TypeJson::Object(_)) {
        return Err(CtyError::NotAnObject { found: ty.name() });
    }
    match decode_value(value, &ty, "")? {
        Value::Object(attributes) => Ok(attributes),
        other => Err(CtyError::NotAnObject {
            found: describe(&other),
        }),
    }
}

/// Splits a `{"value": …, "type": …}` wrapper.
fn unwrap_dynamic(wrapper: Value, path: &str) -> Result<(Value, TypeJson), CtyError> {
    let not_wrapped = |found: &Value| CtyError::NotWrapped {
        path: path.to_owned(),
        found: describe(found),
    };
    let Value::Object(mut fields) = wrapper else {
        return Err(not_wrapped(&wrapper));
    };
    if fields.len() != 2 || !fields.contains_key("value") || !fields.contains_key("type") {
        return Err(not_wrapped(&Value::Object(fields)));
    }
    let ty = TypeJson::parse(&fields["type"], path)?;
    let value = fields.remove("value").unwrap_or(Value::Null);
    Ok((value, ty))
}

fn decode_value(value: Value, ty: &TypeJson, path: &str) -> Result<Value, CtyError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let mismatch = |found: &Value| CtyError::Mismatch {
        path: path.to_owned(),
        expected: ty.name(),
        found: describe(found),
    };
    match ty {
        TypeJson::String if value.is_string() => Ok(value),
        TypeJson::Number if value.is_number() => Ok(value),
        TypeJson::Bool if value.is_boolean() => Ok(value),
        TypeJson::Dynamic => {
            let (inner, inner_ty) = unwrap_dynamic(value, path)?;
            decode_value(inner, &inner_ty, path)
        }
        TypeJson::List(element) | TypeJson::Set(element) => match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| decode_value(item, element, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Err(mismatch(&other)),
        },
        TypeJson::Tuple(elements) => match value {
            Value::Array(items) if items.len() == elements.len() => items
                .into_iter()
                .zip(elements)
                .enumerate()
                .map(|(i, (item, element))| {
                    let item_path = format!("{path}[{i}]");
                    decode_value(item, &TypeJson::parse(element, &item_path)?, &item_path)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Err(mismatch(&other)),
        },
        TypeJson::Map(element) => match value {
            Value::Object(entries) => entries
                .into_iter()
                .map(|(key, item)| {
                    let item_path = format!("{path}[{key:?}]");
                    Ok((key, decode_value(item, element, &item_path)?))
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            other => Err(mismatch(&other)),
        },
        TypeJson::Object(attribute_types) => match value {
            Value::Object(mut attributes) => {
                if let Some(extra) = attributes
                    .keys()
                    .find(|k| !attribute_types.contains_key(*k))
                {
                    return Err(CtyError::UnexpectedAttribute {
                        path: path.to_owned(),
                        attribute: extra.clone(),
                    });
                }
                let mut decoded = Map::new();
                for (name, attribute_type) in attribute_types {
                    let attribute_path = format!("{path}.{name}");
                    let attribute_type = TypeJson::parse(attribute_type, &attribute_path)?;
                    let item =
                        attributes
                            .remove(name)
                            .ok_or_else(|| CtyError::MissingAttribute {
                                path: path.to_owned(),
                                attribute: name.clone(),
                            })?;
                    decoded.insert(
                        name.clone(),
                        decode_value(item, &attribute_type, &attribute_path)?,
                    );
                }
                Ok(Value::Object(decoded))
            }
            other => Err(mismatch(&other)),
        },
        _ => Err(mismatch(&value)),
    }
}

/// A short description of a JSON value for error messages (never the whole
/// value: it may hold secrets).
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a bool".to_owned(),
        Value::Number(_) => "a number".to_owned(),
        Value::String(_) => "a string".to_owned(),
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Object(fields) => {
            let keys: Vec<&str> = fields.keys().map(String::as_str).take(5).collect();
            format!("an object with keys {keys:?}")
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(document: Value) -> Result<Map<String, Value>, CtyError> {
        decode_cty_json(document.to_string().as_bytes())
    }

    fn decode_one(ty: Value, value: Value) -> Result<Value, CtyError> {
        let mut attributes = decode(json!({
            "value": {"x": value},
            "type": ["object", {"x": ty}],
        }))?;
        Ok(attributes.remove("x").expect("attribute x"))
    }

    #[test]
    fn decodes_the_protocol_example() {
        let bytes = br#"{"value":{"count":3,"disk":[{"size":10}],"name":"bar","tags":{"a":"b"}},
 "type":["object",{"count":"number","disk":["list",["object",{"size":"number"}]],"name":"string","tags":["map","string"]}]}"#;
        let attributes = decode_cty_json(bytes).unwrap();
        assert_eq!(
            Value::Object(attributes),
            json!({"count": 3, "disk": [{"size": 10}], "name": "bar", "tags": {"a": "b"}})
        );
    }

    #[test]
    fn keeps_strings_bools_and_nulls() {
        assert_eq!(
            decode_one(json!("string"), json!("a<b>&\u{e9}")).unwrap(),
            json!("a<b>&\u{e9}")
        );
        assert_eq!(decode_one(json!("bool"), json!(true)).unwrap(), json!(true));
        for ty in [
            json!("string"),
            json!("number"),
            json!(["list", "string"]),
            json!(["object", {}]),
        ] {
            assert_eq!(decode_one(ty, Value::Null).unwrap(), Value::Null);
        }
    }

    #[test]
    fn escaped_html_characters_arrive_unescaped() {
        let attributes = decode_cty_json(
            br#"{"value":{"x":"\u003cb\u003e \u0026"},"type":["object",{"x":"string"}]}"#,
        )
        .unwrap();
        assert_eq!(attributes["x"], json!("<b> &"));
    }

    #[test]
    fn integers_stay_integers_and_other_numbers_become_floats() {
        let number = |text: &str| {
            let doc = format!(r#"{{"value":{{"x":{text}}},"type":["object",{{"x":"number"}}]}}"#);
            decode_cty_json(doc.as_bytes()).map(|mut a| a.remove("x").unwrap())
        };
        assert_eq!(number("3").unwrap().as_i64(), Some(3));
        assert_eq!(number("-42").unwrap().as_i64(), Some(-42));
        assert_eq!(
            number("12345678901234567890").unwrap().as_u64(),
            Some(12_345_678_901_234_567_890)
        );
        assert_eq!(number("0.5").unwrap().as_f64(), Some(0.5));
        let huge = number("123456789012345678901234567890").unwrap();
        assert!(huge.is_f64());
        assert_eq!(huge.as_f64(), Some(1.2345678901234568e29));
        assert!(matches!(number("1e400"), Err(CtyError::Json(_))));
    }

    #[test]
    fn rejects_a_string_where_a_number_is_declared() {
        let err = decode_one(json!("number"), json!("3")).unwrap_err();
        assert!(
            matches!(&err, CtyError::Mismatch { path, expected, .. } if path == ".x" && expected == "number"),
            "{err}"
        );
    }

    #[test]
    fn rejects_values_of_the_wrong_shape() {
        for (ty, value) in [
            (json!("string"), json!(1)),
            (json!("bool"), json!("true")),
            (json!(["list", "string"]), json!({"a": "b"})),
            (json!(["map", "string"]), json!(["a"])),
            (json!(["object", {"a": "string"}]), json!("a")),
            (json!(["tuple", ["string", "number"]]), json!(["a"])),
        ] {
            let err = decode_one(ty.clone(), value).unwrap_err();
            assert!(matches!(err, CtyError::Mismatch { .. }), "{ty}: {err}");
        }
    }

    #[test]
    fn sets_and_tuples_become_arrays() {
        assert_eq!(
            decode_one(json!(["set", "string"]), json!(["a", "b"])).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            decode_one(
                json!(["tuple", ["string", "number", "bool"]]),
                json!(["a", 1, false])
            )
            .unwrap(),
            json!(["a", 1, false])
        );
        let err = decode_one(json!(["set", "number"]), json!([1, "two"])).unwrap_err();
        assert!(
            matches!(&err, CtyError::Mismatch { path, .. } if path == ".x[1]"),
            "{err}"
        );
    }

    #[test]
    fn nested_lists_maps_and_objects_are_checked_all_the_way_down() {
        let ty = json!(["map", ["list", ["object", {"n": "number", "s": "string"}]]]);
        let value = json!({"k": [{"n": 1, "s": "a"}, {"n": 2, "s": null}]});
        assert_eq!(decode_one(ty.clone(), value.clone()).unwrap(), value);
        let err = decode_one(ty, json!({"k": [{"n": "one", "s": "a"}]})).unwrap_err();
        assert!(
            matches!(&err, CtyError::Mismatch { path, .. } if path == r#".x["k"][0].n"#),
            "{err}"
        );
    }

    #[test]
    fn unwraps_values_of_dynamic_type() {
        let attributes = decode(json!({
            "value": {
                "any": {"value": {"a": [1, 2]}, "type": ["object", {"a": ["list", "number"]}]},
                "list": [{"value": "s", "type": "string"}, {"value": true, "type": "bool"}],
                "null_typed": {"value": null, "type": "string"},
                "null_dynamic": null,
            },
            "type": ["object", {
                "any": "dynamic",
                "list": ["list", "dynamic"],
                "null_typed": "dynamic",
                "null_dynamic": "dynamic",
            }],
        }))
        .unwrap();
        assert_eq!(
            Value::Object(attributes),
            json!({"any": {"a": [1, 2]}, "list": ["s", true], "null_typed": null, "null_dynamic": null})
        );
    }

    #[test]
    fn rejects_a_dynamic_value_without_its_wrapper() {
        let err = decode_one(json!("dynamic"), json!("bare")).unwrap_err();
        assert!(
            matches!(&err, CtyError::NotWrapped { path, .. } if path == ".x"),
            "{err}"
        );
    }

    #[test]
    fn accepts_the_optional_attributes_form_of_object_types() {
        let attributes = decode(json!({
            "value": {"a": "x", "b": null},
            "type": ["object", {"a": "string", "b": "number"}, ["b"]],
        }))
        .unwrap();
        assert_eq!(Value::Object(attributes), json!({"a": "x", "b": null}));
    }

    #[test]
    fn rejects_missing_and_undeclared_attributes() {
        let missing =
            decode(json!({"value": {}, "type": ["object", {"a": "string"}]})).unwrap_err();
        assert!(
            matches!(&missing, CtyError::MissingAttribute { attribute, .. } if attribute == "a"),
            "{missing}"
        );
        let extra = decode(json!({"value": {"b": 1}, "type": ["object", {}]})).unwrap_err();
        assert!(
            matches!(&extra, CtyError::UnexpectedAttribute { attribute, .. } if attribute == "b"),
            "{extra}"
        );
    }

    #[test]
    fn rejects_unknown_type_descriptions() {
        for ty in [
            json!("strin"),
            json!(["list"]),
            json!(["bag", "string"]),
            json!(42),
            json!(["object", []]),
        ] {
            let err = decode_one(ty.clone(), json!(null)).unwrap_err();
            assert!(matches!(err, CtyError::InvalidType { .. }), "{ty}: {err}");
        }
    }

    #[test]
    fn rejects_documents_that_are_not_an_object_configuration() {
        assert!(matches!(
            decode_cty_json(b"{not json"),
            Err(CtyError::Json(_))
        ));
        assert!(matches!(
            decode(json!([1])),
            Err(CtyError::NotWrapped { .. })
        ));
        assert!(matches!(
            decode(json!({"value": {}})),
            Err(CtyError::NotWrapped { .. })
        ));
        assert!(matches!(
            decode(json!({"value": "x", "type": "string"})),
            Err(CtyError::NotAnObject { .. })
        ));
        assert!(matches!(
            decode(json!({"value": null, "type": ["object", {}]})),
            Err(CtyError::NotAnObject { .. })
        ));
        let empty = decode(json!({"value": {}, "type": ["object", {}]})).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn error_messages_do_not_echo_values() {
        let err = decode_one(json!("number"), json!("hunter2-secret")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
