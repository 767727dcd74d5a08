//! Decoding of `Builder.Prepare`'s `Configs` (PROTOCOL.md §5) into
//! [`PrepareArgs`].
//!
//! An element sent as msgpack bin is the cty JSON of an HCL2 body (the
//! discriminator the Go SDK uses too); map elements are the raw JSON
//! template object and Packer's settings. Keys starting with `packer_` are
//! Packer's settings wherever they come from.

use std::collections::BTreeMap;

use rmpv::Value;

use crate::plugin::api::{Map, OnError, PackerSettings, PrepareArgs, TemplateKind};
use crate::plugin::cty::{decode_cty_json, CtyError};
use crate::plugin::msgpack;

/// Why `Configs` could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum PrepareDecodeError {
    /// The body is not `{"Configs": [...]}`.
    #[error("Builder.Prepare: arguments are not {{\"Configs\": [...]}}")]
    NotConfigs,
    /// An element is neither a map, nil nor bin.
    #[error("Builder.Prepare: Configs[{index}] is neither a map nor cty JSON")]
    UnexpectedElement {
        /// Position in `Configs`.
        index: usize,
    },
    /// The HCL2 cty JSON did not decode.
    #[error("Builder.Prepare: Configs[{index}]: {source}")]
    Cty {
        /// Position in `Configs`.
        index: usize,
        /// The decoding failure.
        source: CtyError,
    },
}

/// Turns the `Builder.Prepare` body into [`PrepareArgs`].
pub fn decode_prepare_args(body: &Value) -> Result<PrepareArgs, PrepareDecodeError> {
    let configs = match msgpack::field(body, "Configs") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(Value::Nil) => &[],
        _ => return Err(PrepareDecodeError::NotConfigs),
    };
    let mut kind = TemplateKind::Json;
    let mut config = Map::new();
    let mut settings = Map::new();
    for (index, element) in configs.iter().enumerate() {
        let entries = match element {
            Value::Nil => continue,
            Value::Binary(json) => {
                kind = TemplateKind::Hcl2;
                decode_cty_json(json).map_err(|source| PrepareDecodeError::Cty { index, source })?
            }
            Value::Map(_) => match msgpack::to_json(element) {
                serde_json::Value::Object(m) => m,
                _ => unreachable!("a msgpack map converts to a JSON object"),
            },
            _ => return Err(PrepareDecodeError::UnexpectedElement { index }),
        };
        for (key, value) in entries {
            if key.starts_with("packer_") {
                // HCL2 bodies hold declared-but-unset packer_* attributes
                // as null; the real values come from Configs[0].
                if !value.is_null() {
                    settings.insert(key, value);
                }
            } else {
                config.insert(key, value);
            }
        }
    }
    Ok(PrepareArgs {
        kind,
        config,
        packer: packer_settings(&settings),
    })
}

fn packer_settings(m: &Map) -> PackerSettings {
    let text = |key: &str| match m.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    // HCL2 sends "true"/"false" strings, JSON templates real booleans.
    let flag = |key: &str| match m.get(key) {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    };
    let on_error = match text("packer_on_error").as_deref() {
        None | Some("") | Some("cleanup") => OnError::Cleanup,
        Some("abort") => OnError::Abort,
        Some("ask") => OnError::Ask,
        Some("run-cleanup-provisioner") => OnError::RunCleanupProvisioner,
        Some(other) => {
            tracing::warn!("unknown packer_on_error {other:?}; cleaning up on error");
            OnError::Cleanup
        }
    };
    let user_variables: BTreeMap<String, String> = match m.get("packer_user_variables") {
        Some(serde_json::Value::Object(vars)) => vars
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let sensitive_variables = match m.get("packer_sensitive_variables") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    PackerSettings {
        build_name: text("packer_build_name").unwrap_or_default(),
        builder_type: text("packer_builder_type").unwrap_or_default(),
        core_version: text("packer_core_version"),
        debug: flag("packer_debug"),
        force: flag("packer_force"),
        on_error,
        template_path: text("packer_template_path"),
        user_variables,
        sensitive_variables,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn configs(items: Vec<Value>) -> Value {
        msgpack::map([("Configs", Value::Array(items))])
    }

    #[test]
    fn hcl2_body_is_cty_json_plus_string_settings() {
        let settings = msgpack::from_json(&json!({
            "packer_build_name": "example", "packer_builder_type": "amazon-chroot",
            "packer_core_version": "1.16.0", "packer_debug": "false", "packer_force": "true",
            "packer_on_error": "abort"
        }));
        let cty = br#"{"value":{"foo":"bar","count":3,"packer_build_name":null},"type":["object",{"count":"number","foo":"string","packer_build_name":"string"}]}"#;
        let args =
            decode_prepare_args(&configs(vec![settings, Value::Binary(cty.to_vec())])).unwrap();
        assert_eq!(args.kind, TemplateKind::Hcl2);
        assert_eq!(
            serde_json::Value::Object(args.config),
            json!({"foo": "bar", "count": 3})
        );
        assert_eq!(args.packer.build_name, "example");
        assert_eq!(args.packer.builder_type, "amazon-chroot");
        assert_eq!(args.packer.core_version.as_deref(), Some("1.16.0"));
        assert!(!args.packer.debug);
        assert!(args.packer.force);
        assert_eq!(args.packer.on_error, OnError::Abort);
    }

    #[test]
    fn json_template_is_raw_map_plus_typed_settings() {
        let builder = msgpack::from_json(&json!({"ami_name": "x {{timestamp}}", "size": 8.0}));
        let packer = msgpack::from_json(&json!({
            "packer_build_name": "amazon-chroot", "packer_builder_type": "amazon-chroot",
            "packer_core_version": "1.6.6", "packer_debug": true, "packer_force": false,
            "packer_on_error": "", "packer_template_path": "/t/x.json",
            "packer_user_variables": {"region": "eu-west-1", "": ""},
            "packer_sensitive_variables": ["secret"]
        }));
        let args = decode_prepare_args(&configs(vec![builder, packer])).unwrap();
        assert_eq!(args.kind, TemplateKind::Json);
        assert_eq!(
            serde_json::Value::Object(args.config),
            json!({"ami_name": "x {{timestamp}}", "size": 8.0})
        );
        assert!(args.packer.debug);
        assert_eq!(args.packer.on_error, OnError::Cleanup);
        assert_eq!(args.packer.template_path.as_deref(), Some("/t/x.json"));
        assert_eq!(
            args.packer.user_variables.get("region").map(String::as_str),
            Some("eu-west-1")
        );
        assert_eq!(args.packer.sensitive_variables, ["secret"]);
        assert_eq!(args.packer.core_version.as_deref(), Some("1.6.6"));
    }

    #[test]
    fn nil_builder_config_and_missing_core_version() {
        let packer = msgpack::from_json(
            &json!({"packer_build_name": "b", "packer_on_error": "run-cleanup-provisioner"}),
        );
        let args = decode_prepare_args(&configs(vec![Value::Nil, packer])).unwrap();
        assert!(args.config.is_empty());
        assert_eq!(args.packer.core_version, None);
        assert_eq!(args.packer.on_error, OnError::RunCleanupProvisioner);
    }

    #[test]
    fn rejects_non_configs_and_bad_cty() {
        assert!(matches!(
            decode_prepare_args(&Value::from(3u64)),
            Err(PrepareDecodeError::NotConfigs)
        ));
        let bad = configs(vec![Value::Binary(b"{".to_vec())]);
        assert!(matches!(
            decode_prepare_args(&bad),
            Err(PrepareDecodeError::Cty { index: 0, .. })
        ));
        let odd = configs(vec![Value::from(1u64)]);
        assert!(matches!(
            decode_prepare_args(&odd),
            Err(PrepareDecodeError::UnexpectedElement { index: 0 })
        ));
    }
}
