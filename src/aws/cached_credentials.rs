//! One credential cache shared by every client of a connection.
//!
//! `connect` resolves credentials up front to report a broken source early;
//! without a shared cache, the EC2 and STS clients would each resolve them
//! again, which for an assumed role means more AssumeRole calls — and an MFA
//! code is accepted only once.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

/// Refresh this long before expiry, so a request never signs with keys that lapse in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Resolves through `inner` once, then again only when the credentials near expiry.
#[derive(Debug)]
pub(crate) struct CachedCredentials {
    inner: SharedCredentialsProvider,
    current: tokio::sync::Mutex<Option<Credentials>>,
}

impl CachedCredentials {
    pub(crate) fn new(inner: SharedCredentialsProvider) -> Self {
        CachedCredentials {
            inner,
            current: tokio::sync::Mutex::new(None),
        }
    }

    async fn get(&self) -> provider::Result {
        // Held across the refresh so concurrent callers wait for one resolution.
        let mut current = self.current.lock().await;
        if let Some(credentials) = current.as_ref() {
            let fresh = credentials
                .expiry()
                .map_or(true, |expiry| expiry > SystemTime::now() + REFRESH_MARGIN);
            if fresh {
                return Ok(credentials.clone());
            }
        }
        let credentials = self.inner.provide_credentials().await?;
        *current = Some(credentials.clone());
        Ok(credentials)
    }
}

impl ProvideCredentials for CachedCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        lifetime: Option<Duration>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let expiry = self.lifetime.map(|l| SystemTime::now() + l);
            provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "s",
                None,
                expiry,
                "test",
            )))
        }
    }

    #[tokio::test]
    async fn resolves_once_while_credentials_are_fresh() {
        let calls = Arc::new(AtomicU32::new(0));
        let cache = CachedCredentials::new(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            lifetime: Some(Duration::from_secs(3600)),
        }));
        for _ in 0..3 {
            assert_eq!(
                cache.provide_credentials().await.unwrap().access_key_id(),
                "AKID0"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refreshes_credentials_about_to_expire() {
        let calls = Arc::new(AtomicU32::new(0));
        let cache = CachedCredentials::new(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            lifetime: Some(Duration::from_secs(60)),
        }));
        cache.provide_credentials().await.unwrap();
        let second = cache.provide_credentials().await.unwrap();
        assert_eq!(second.access_key_id(), "AKID1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
