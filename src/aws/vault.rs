//! `vault_aws_engine`: AWS credentials issued by HashiCorp Vault's AWS secrets engine.
//!
//! Vault is found as its own CLI finds it: `VAULT_ADDR`, `VAULT_TOKEN` (else
//! `~/.vault-token`), `VAULT_NAMESPACE`, `VAULT_CACERT`, `VAULT_SKIP_VERIFY`.

use aws_credential_types::Credentials;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;
use serde::Deserialize;

use super::error::AwsError;
use super::settings::VaultAwsEngineSettings;
use super::tls_client::{self, error_chain, Trust};

/// Vault's own default when `VAULT_ADDR` is unset.
const DEFAULT_VAULT_ADDR: &str = "https://127.0.0.1:8200";

#[derive(Deserialize)]
struct VaultAnswer {
    data: VaultCredentials,
}

#[derive(Deserialize)]
struct VaultCredentials {
    access_key: String,
    secret_key: String,
    #[serde(default)]
    security_token: Option<String>,
}

#[derive(Deserialize)]
struct VaultErrors {
    #[serde(default)]
    errors: Vec<String>,
}

/// Reads (`/creds/<name>`) or, with a role ARN, writes (`/sts/<name>`) the engine's
/// credentials endpoint and turns the answer into AWS credentials.
pub(crate) async fn credentials(engine: &VaultAwsEngineSettings) -> Result<Credentials, AwsError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let address = env("VAULT_ADDR").unwrap_or_else(|| DEFAULT_VAULT_ADDR.to_owned());
    let mount = engine
        .engine_name
        .as_deref()
        .filter(|e| !e.is_empty())
        .unwrap_or("aws")
        .trim_matches('/');
    let role_arn = engine.role_arn.as_deref().filter(|r| !r.is_empty());
    let path = match role_arn {
        Some(_) => format!("{mount}/sts/{}", engine.name),
        None => format!("{mount}/creds/{}", engine.name),
    };
    let failed = |message: String| AwsError::Vault {
        path: path.clone(),
        message,
    };
    let token = match env("VAULT_TOKEN") {
        Some(token) => token,
        None => read_token_file().await.ok_or_else(|| {
            failed("no Vault token: set VAULT_TOKEN or log in (~/.vault-token)".into())
        })?,
    };
    let trust =
        if env("VAULT_SKIP_VERIFY").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
            Trust::Anything
        } else {
            Trust::SystemRootsPlus(env("VAULT_CACERT"))
        };
    let client = tls_client::hyper_client(&trust).map_err(failed)?;

    let uri = format!("{}/v1/{path}", address.trim_end_matches('/'));
    let mut request = http::Request::builder()
        .uri(&uri)
        .header("X-Vault-Request", "true")
        .header("X-Vault-Token", token);
    if let Some(namespace) = env("VAULT_NAMESPACE") {
        request = request.header("X-Vault-Namespace", namespace);
    }
    let request = match role_arn {
        Some(arn) => {
            let mut body = serde_json::json!({ "role_arn": arn });
            if let Some(ttl) = engine.ttl.as_deref().filter(|t| !t.is_empty()) {
                body["ttl"] = serde_json::Value::from(ttl);
            }
            request
                .method("POST")
                .header("Content-Type", "application/json")
                .body(SdkBody::from(body.to_string()))
        }
        None => request.method("GET").body(SdkBody::empty()),
    }
    .map_err(|e| failed(format!("bad Vault address {address:?}: {e}")))?;

    let response = client.request(request).await.map_err(|e| {
        let hint = if tls_client::is_untrusted_certificate(&e) {
            " (set VAULT_CACERT to the PEM file of the CA that signed Vault's certificate)"
        } else {
            ""
        };
        failed(format!(
            "cannot reach Vault at {address}: {}{hint}",
            error_chain(&e)
        ))
    })?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(format!("reading Vault's answer: {e}")))?
        .to_bytes();
    if !status.is_success() {
        let reasons = serde_json::from_slice::<VaultErrors>(&body)
            .map(|e| e.errors.join("; "))
            .unwrap_or_default();
        return Err(failed(format!(
            "Vault answered HTTP {}: {reasons}",
            status.as_u16()
        )));
    }
    let answer: VaultAnswer = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("Vault's answer has no AWS credentials: {e}")))?;
    let data = answer.data;
    Ok(Credentials::new(
        data.access_key,
        data.secret_key,
        data.security_token.filter(|t| !t.is_empty()),
        None,
        "vault_aws_engine",
    ))
}

async fn read_token_file() -> Option<String> {
    let home = std::env::var_os("HOME")?;
    let token = tokio::fs::read_to_string(std::path::Path::new(&home).join(".vault-token"))
        .await
        .ok()?;
    Some(token.trim().to_owned()).filter(|t| !t.is_empty())
}
