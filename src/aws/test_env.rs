//! Serializes the tests that change process environment variables, and restores them.

use std::ffi::OsString;

/// Held by every test that reads or writes AWS_* variables.
pub(crate) static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every variable the SDK, its HTTP client or we read; cleared for each test so the host's own
/// configuration (or another test's) never leaks in.
const AWS_VARS: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_STS",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_POLL_DELAY_SECONDS",
    "AWS_MAX_ATTEMPTS",
    "AWS_TIMEOUT_SECONDS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_NAMESPACE",
    "VAULT_CACERT",
    "VAULT_SKIP_VERIFY",
];

/// Clears the AWS variables, applies `vars`, and puts everything back on drop.
pub(crate) struct ScopedEnv {
    saved: Vec<(&'static str, Option<OsString>)>,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl ScopedEnv {
    pub(crate) async fn new(vars: &[(&'static str, &str)]) -> ScopedEnv {
        let lock = LOCK.lock().await;
        let mut saved: Vec<(&'static str, Option<OsString>)> = AWS_VARS
            .iter()
            .map(|&name| (name, std::env::var_os(name)))
            .collect();
        for (name, _) in &saved {
            std::env::remove_var(name);
        }
        // Point the SDK's own config files at nothing unless a test says otherwise,
        // and keep IMDS on loopback: no test may reach 169.254.169.254.
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/aws-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        );
        std::env::set_var("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9");
        for (name, value) in vars {
            if !saved.iter().any(|(n, _)| n == name) {
                saved.push((name, std::env::var_os(name)));
            }
            std::env::set_var(name, value);
        }
        ScopedEnv { saved, _lock: lock }
    }
}

impl Drop for ScopedEnv {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }
}
