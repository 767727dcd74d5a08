//! One polling helper for every wait of the build.
//!
//! Upstream copy-pastes a waiter per resource with a fixed 15 s delay, so a
//! volume that is ready in one second still costs fifteen. Here a wait starts
//! fast and backs off, unless the user asked for a fixed pace through
//! `aws_polling` or the environment (upstream's variables, upstream's
//! precedence: the template beats the environment).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::AwsError;
use super::settings::PollingSettings;

/// Fixed delay between polls, in seconds (template's `delay_seconds` wins).
pub const POLL_DELAY_ENV: &str = "AWS_POLL_DELAY_SECONDS";
/// Maximum number of polls (template's `max_attempts` wins).
pub const MAX_ATTEMPTS_ENV: &str = "AWS_MAX_ATTEMPTS";
/// Deprecated upstream: total seconds, turned into attempts of the delay.
pub const TIMEOUT_ENV: &str = "AWS_TIMEOUT_SECONDS";

/// First pause of the default backoff: most EBS state changes take a second or two.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// Longest pause of the default backoff: upstream's fixed delay, so we never poll
/// slower than it, and stay well clear of EC2's Describe* throttling.
const BACKOFF_CAP: Duration = Duration::from_secs(15);
/// Upstream's delay when only `AWS_TIMEOUT_SECONDS` is set.
const TIMEOUT_ENV_DELAY: Duration = Duration::from_secs(2);
/// How long a wait may last when nothing limits it: generous, since a large
/// snapshot can take most of an hour; waiters pick shorter ones where apt.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The answer of one poll.
#[derive(Debug)]
pub enum Probe<T> {
    /// Done, with the value the waiter returns.
    Ready(T),
    /// Not yet; the text says how far along (state, progress) for logs and timeouts.
    Pending(String),
    /// An error: transient ones ([`AwsError::is_transient`]) are polled again, others end the wait.
    Failed(AwsError),
}

/// How long to pause between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Start at `first`, double after every poll, never above `cap`.
    Backoff {
        /// The first pause.
        first: Duration,
        /// The longest pause.
        cap: Duration,
    },
    /// Always the same pause (what `delay_seconds` asks for).
    Fixed(Duration),
}

/// When to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this many polls.
    Attempts(u32),
    /// Once this much time has passed since the first poll.
    Timeout(Duration),
}

/// Polls until a probe says ready, an error is final, the limit is hit or the build is cancelled.
#[derive(Debug, Clone)]
pub struct Poller {
    pace: Pace,
    /// `None`: no user limit, so the waiter's default timeout applies.
    limit: Option<Limit>,
    default_timeout: Duration,
    cancel: CancellationToken,
}

impl Poller {
    /// A poller tuned by `aws_polling` and the process environment.
    pub fn new(polling: PollingSettings, cancel: CancellationToken) -> Self {
        Self::from_sources(polling, |name| std::env::var(name).ok(), cancel)
    }

    /// A poller tuned by `aws_polling` and the variables `env` returns.
    ///
    /// Precedence, as upstream: the template's values, then `AWS_POLL_DELAY_SECONDS` /
    /// `AWS_MAX_ATTEMPTS`, then `AWS_TIMEOUT_SECONDS` (attempts = timeout / delay, delay 2 s
    /// unless set). Zero and unparsable values count as unset.
    pub fn from_sources(
        polling: PollingSettings,
        env: impl Fn(&str) -> Option<String>,
        cancel: CancellationToken,
    ) -> Self {
        let env_number = |name: &str| -> Option<u64> {
            let raw = env(name)?;
            match raw.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => {
                    tracing::warn!("ignoring {name}={raw:?}: not a positive whole number");
                    None
                }
            }
        };
        let timeout_env = env_number(TIMEOUT_ENV).map(Duration::from_secs);
        let delay = polling
            .delay_seconds
            .filter(|&d| d > 0)
            .or_else(|| env_number(POLL_DELAY_ENV))
            .map(Duration::from_secs)
            .or(timeout_env.map(|_| TIMEOUT_ENV_DELAY));
        let attempts = polling
            .max_attempts
            .filter(|&a| a > 0)
            .or_else(|| env_number(MAX_ATTEMPTS_ENV).map(|a| a.min(u64::from(u32::MAX)) as u32));
        let limit = match (attempts, timeout_env) {
            (Some(a), _) => Some(Limit::Attempts(a)),
            (None, Some(total)) => {
                let step = delay.unwrap_or(TIMEOUT_ENV_DELAY).as_secs().max(1);
                let a = (total.as_secs() / step).clamp(1, u64::from(u32::MAX));
                Some(Limit::Attempts(a as u32))
            }
            (None, None) => None,
        };
        Poller {
            pace: delay.map_or(
                Pace::Backoff {
                    first: BACKOFF_FIRST,
                    cap: BACKOFF_CAP,
                },
                Pace::Fixed,
            ),
            limit,
            default_timeout: DEFAULT_TIMEOUT,
            cancel,
        }
    }

    /// A poller with an explicit pace and limit (tests, special waits).
    pub fn with(pace: Pace, limit: Option<Limit>, cancel: CancellationToken) -> Self {
        Poller {
            pace,
            limit,
            default_timeout: DEFAULT_TIMEOUT,
            cancel,
        }
    }

    /// The same poller, with `timeout` as the limit unless the user set one.
    pub fn with_default_timeout(&self, timeout: Duration) -> Self {
        Poller {
            default_timeout: timeout,
            ..self.clone()
        }
    }

    /// The pause between polls.
    pub fn pace(&self) -> Pace {
        self.pace
    }

    /// The limit in force: the user's, else the default timeout.
    pub fn limit(&self) -> Limit {
        self.limit.unwrap_or(Limit::Timeout(self.default_timeout))
    }

    /// The token that cancels every wait of this poller.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The pause after poll number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        match self.pace {
            Pace::Fixed(d) => d,
            Pace::Backoff { first, cap } => {
                let doublings = attempt.saturating_sub(1).min(31);
                first.saturating_mul(1u32 << doublings).min(cap)
            }
        }
    }

    /// Polls `probe` until it is ready; `what` names the wait in logs and errors
    /// ("volume vol-1 to become available").
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut probe: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Probe<T>>,
    {
        let cancelled = || AwsError::Cancelled {
            what: what.to_owned(),
        };
        let limit = self.limit();
        let start = Instant::now();
        let mut last: Option<String> = None;
        let mut attempt: u32 = 0;
        loop {
            if self.cancel.is_cancelled() {
                return Err(cancelled());
            }
            attempt += 1;
            let outcome = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(cancelled()),
                outcome = probe() => outcome,
            };
            match outcome {
                Probe::Ready(value) => {
                    tracing::debug!("done waiting for {what} after {attempt} polls");
                    return Ok(value);
                }
                Probe::Pending(progress) => {
                    if last.as_deref() != Some(progress.as_str()) {
                        tracing::debug!("waiting for {what}: {progress}");
                    }
                    last = Some(progress);
                }
                Probe::Failed(err) if err.is_transient() => {
                    tracing::warn!("waiting for {what}: {err} (will poll again)");
                    last = Some(err.to_string());
                }
                Probe::Failed(err) => return Err(err),
            }
            let mut pause = self.delay_after(attempt);
            let exhausted = match limit {
                Limit::Attempts(max) => attempt >= max,
                Limit::Timeout(total) => {
                    let left = total.saturating_sub(start.elapsed());
                    pause = pause.min(left);
                    left.is_zero()
                }
            };
            if exhausted {
                return Err(AwsError::Timeout {
                    what: what.to_owned(),
                    attempts: attempt,
                    waited: start.elapsed(),
                    last,
                });
            }
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(cancelled()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn poller(polling: PollingSettings, env: &[(&str, &str)]) -> Poller {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Poller::from_sources(polling, |k| env.get(k).cloned(), CancellationToken::new())
    }

    fn polling(delay_seconds: Option<u64>, max_attempts: Option<u32>) -> PollingSettings {
        PollingSettings {
            delay_seconds,
            max_attempts,
        }
    }

    #[test]
    fn default_backoff_starts_at_half_a_second_and_doubles_to_fifteen() {
        let p = poller(PollingSettings::default(), &[]);
        let delays: Vec<u64> = (1..=8)
            .map(|a| p.delay_after(a).as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
        assert_eq!(p.delay_after(u32::MAX), Duration::from_secs(15));
        assert_eq!(p.limit(), Limit::Timeout(DEFAULT_TIMEOUT));
        assert_eq!(
            p.with_default_timeout(Duration::from_secs(600)).limit(),
            Limit::Timeout(Duration::from_secs(600))
        );
    }

    #[test]
    fn template_values_beat_the_environment() {
        let p = poller(
            polling(Some(7), Some(3)),
            &[
                (POLL_DELAY_ENV, "20"),
                (MAX_ATTEMPTS_ENV, "99"),
                (TIMEOUT_ENV, "600"),
            ],
        );
        assert_eq!(p.pace(), Pace::Fixed(Duration::from_secs(7)));
        assert_eq!(p.limit(), Limit::Attempts(3));
        // A user limit is not replaced by a waiter's default.
        assert_eq!(
            p.with_default_timeout(Duration::from_secs(1)).limit(),
            Limit::Attempts(3)
        );
    }

    #[test]
    fn environment_applies_when_template_is_silent() {
        let p = poller(
            PollingSettings::default(),
            &[(POLL_DELAY_ENV, "5"), (MAX_ATTEMPTS_ENV, "12")],
        );
        assert_eq!(p.pace(), Pace::Fixed(Duration::from_secs(5)));
        assert_eq!(p.limit(), Limit::Attempts(12));
    }

    #[test]
    fn timeout_env_becomes_attempts_of_a_two_second_delay() {
        let p = poller(PollingSettings::default(), &[(TIMEOUT_ENV, "300")]);
        assert_eq!(p.pace(), Pace::Fixed(Duration::from_secs(2)));
        assert_eq!(p.limit(), Limit::Attempts(150));
        let p = poller(polling(Some(10), None), &[(TIMEOUT_ENV, "300")]);
        assert_eq!(p.pace(), Pace::Fixed(Duration::from_secs(10)));
        assert_eq!(p.limit(), Limit::Attempts(30));
        let p = poller(
            PollingSettings::default(),
            &[(TIMEOUT_ENV, "300"), (MAX_ATTEMPTS_ENV, "4")],
        );
        assert_eq!(p.limit(), Limit::Attempts(4));
    }

    #[test]
    fn zero_and_garbage_count_as_unset() {
        let p = poller(
            polling(Some(0), Some(0)),
            &[(POLL_DELAY_ENV, "soon"), (MAX_ATTEMPTS_ENV, "0")],
        );
        assert!(matches!(p.pace(), Pace::Backoff { .. }));
        assert_eq!(p.limit(), Limit::Timeout(DEFAULT_TIMEOUT));
    }

    #[tokio::test]
    async fn ready_after_three_polls_takes_only_the_backoff_pauses() {
        let p = poller(PollingSettings::default(), &[]);
        let start = Instant::now();
        let mut polls = 0;
        let value = p
            .wait_for("volume vol-1 to become available", || {
                polls += 1;
                let n = polls;
                async move {
                    if n < 3 {
                        Probe::Pending("creating".into())
                    } else {
                        Probe::Ready(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 3);
        // 0.5 s + 1 s, not upstream's 2 × 15 s (slack for a loaded machine).
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_millis(3000),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_last_progress() {
        let p = Poller::with(
            Pace::Fixed(Duration::from_millis(10)),
            Some(Limit::Attempts(4)),
            CancellationToken::new(),
        );
        let mut polls = 0;
        let err = p
            .wait_for("snapshot snap-1 to complete", || {
                polls += 1;
                let n = polls;
                async move { Probe::<()>::Pending(format!("{}%", n * 10)) }
            })
            .await
            .unwrap_err();
        assert_eq!(polls, 4);
        let shown = err.to_string();
        assert!(
            shown.starts_with("gave up waiting for snapshot snap-1 to complete after 4 polls"),
            "{shown}"
        );
        assert!(shown.ends_with("(last seen: 40%)"), "{shown}");
    }

    #[tokio::test]
    async fn timeout_limit_polls_once_more_at_the_deadline() {
        let p = Poller::with(
            Pace::Fixed(Duration::from_millis(200)),
            Some(Limit::Timeout(Duration::from_millis(500))),
            CancellationToken::new(),
        );
        let start = Instant::now();
        let mut polls = 0;
        let err = p
            .wait_for("x", || {
                polls += 1;
                async { Probe::<()>::Pending("no".into()) }
            })
            .await
            .unwrap_err();
        // Polls at 0, 200, 400 and 500 ms; a machine slow enough to oversleep by
        // 100 ms loses the last one, never the deadline.
        let took = start.elapsed();
        assert!((3..=4).contains(&polls), "{polls} polls");
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        assert!(matches!(err, AwsError::Timeout { attempts, .. } if attempts == polls));
    }

    #[tokio::test]
    async fn transient_errors_are_polled_again_and_final_ones_end_the_wait() {
        let throttled = || AwsError::Api {
            operation: "DescribeVolumes",
            resource: None,
            code: Some("RequestLimitExceeded".into()),
            message: "Request limit exceeded.".into(),
            decoded: None,
            retryable: false,
        };
        let p = poller(PollingSettings::default(), &[]);
        let mut polls = 0;
        let got = p
            .wait_for("x", || {
                polls += 1;
                let n = polls;
                async move {
                    if n == 1 {
                        Probe::Failed(throttled())
                    } else {
                        Probe::Ready("ok")
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(got, "ok");
        let err = p
            .wait_for("x", || async {
                Probe::<()>::Failed(AwsError::ResourceFailed {
                    what: "image ami-1".into(),
                    reason: "broken".into(),
                })
            })
            .await
            .unwrap_err();
        assert!(matches!(err, AwsError::ResourceFailed { .. }));
    }

    #[tokio::test]
    async fn cancel_interrupts_a_pause_at_once() {
        let cancel = CancellationToken::new();
        let p = Poller::with(Pace::Fixed(Duration::from_secs(600)), None, cancel.clone());
        let start = Instant::now();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let err = p
            .wait_for("volume vol-1 to detach", || async {
                Probe::<()>::Pending("detaching".into())
            })
            .await
            .unwrap_err();
        assert!(matches!(&err, AwsError::Cancelled { what } if what == "volume vol-1 to detach"));
        // Not the 600 s pause.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn cancelled_before_start_never_polls() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let p = Poller::with(Pace::Fixed(Duration::from_secs(1)), None, cancel);
        let mut polls = 0;
        let err = p
            .wait_for("x", || {
                polls += 1;
                async { Probe::Ready(()) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, AwsError::Cancelled { .. }));
        assert_eq!(polls, 0);
    }
}
