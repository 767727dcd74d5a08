//! The step runner: runs a build's steps in order and, whatever happens,
//! the cleanups of every step that started, in reverse order.
//!
//! Packer's `-on-error` and `-debug` change how a failure and each step are
//! handled; this is the one place that knows how.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::plugin::api::{BoxError, OnError, Ui};

/// How the steps that ran before a cleanup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every step succeeded.
    Succeeded,
    /// A step failed.
    Failed,
    /// The build was cancelled (Ctrl-C).
    Cancelled,
}

/// What a step sees besides the build state.
#[derive(Clone)]
pub struct StepContext {
    /// Packer's Ui, for progress messages.
    pub ui: Arc<dyn Ui>,
    /// Fires when the build is cancelled; long waits must watch it.
    pub cancel: CancellationToken,
}

/// One step of a build: a small type with `run` and `cleanup`.
///
/// `cleanup` runs for every step whose `run` was called, including the one
/// that failed, so it must cope with a half-done `run` (clean what the
/// state says was created, nothing else).
#[async_trait]
pub trait Step<S: Send>: Send + Sync {
    /// The step's name, shown by `-debug` pauses and in errors.
    fn name(&self) -> &'static str;

    /// Does the step's work.
    async fn run(&mut self, state: &mut S, ctx: &StepContext) -> Result<(), BoxError>;

    /// Undoes what `run` left behind. The default has nothing to undo.
    async fn cleanup(
        &mut self,
        _state: &mut S,
        _ctx: &StepContext,
        _outcome: Outcome,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// Whether this step's cleanup runs the error-cleanup provisioner, so
    /// that `-on-error=run-cleanup-provisioner` runs it although it skips
    /// every other cleanup.
    fn runs_cleanup_provisioner(&self) -> bool {
        false
    }
}

/// How the runner behaves, from Packer's command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunnerOptions {
    /// `-on-error`.
    pub on_error: OnError,
    /// `-debug`: pause after each step and before each cleanup.
    pub debug: bool,
}

/// A step's failure, with the step's name.
#[derive(Debug)]
pub struct StepFailure {
    /// The step that failed (or whose cleanup failed).
    pub step: &'static str,
    /// What went wrong.
    pub error: BoxError,
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// Why a build did not succeed, or what its cleanup could not undo.
#[derive(Debug)]
pub enum RunError {
    /// A step failed; `cleanup` lists cleanups that failed afterwards.
    Step {
        /// The failure that stopped the build.
        failure: StepFailure,
        /// Cleanup failures after it.
        cleanup: Vec<StepFailure>,
    },
    /// The build was cancelled; `cleanup` lists cleanups that failed.
    Cancelled {
        /// Cleanup failures after the cancel.
        cleanup: Vec<StepFailure>,
    },
    /// Every step succeeded but some cleanups failed: something was left behind.
    Cleanup(Vec<StepFailure>),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cleanup = match self {
            RunError::Step { failure, cleanup } => {
                write!(f, "{failure}")?;
                cleanup
            }
            RunError::Cancelled { cleanup } => {
                write!(f, "Build was cancelled.")?;
                cleanup
            }
            RunError::Cleanup(cleanup) => {
                write!(f, "The build succeeded but its cleanup failed.")?;
                cleanup
            }
        };
        for c in cleanup {
            write!(f, "\nCleanup of step '{}' failed: {}", c.step, c.error)?;
        }
        Ok(())
    }
}

impl std::error::Error for RunError {}

/// What the user chose at an `-on-error=ask` prompt.
enum AskChoice {
    Cleanup,
    Abort,
    Retry,
}

/// Runs `steps` over `state`; see the module doc.
pub async fn run_steps<S: Send>(
    steps: &mut [Box<dyn Step<S>>],
    state: &mut S,
    ctx: &StepContext,
    opts: RunnerOptions,
) -> Result<(), RunError> {
    let mut started = 0;
    let mut failure = None;
    let mut outcome = Outcome::Succeeded;
    let mut skip_cleanup = false;

    'steps: while started < steps.len() {
        if ctx.cancel.is_cancelled() {
            outcome = Outcome::Cancelled;
            break;
        }
        let step = &mut steps[started];
        started += 1;
        loop {
            match step.run(state, ctx).await {
                Ok(()) if ctx.cancel.is_cancelled() => {
                    outcome = Outcome::Cancelled;
                    break 'steps;
                }
                Ok(()) => break,
                Err(_) if ctx.cancel.is_cancelled() => {
                    outcome = Outcome::Cancelled;
                    break 'steps;
                }
                Err(error) => {
                    outcome = Outcome::Failed;
                    let name = step.name();
                    match opts.on_error {
                        OnError::Cleanup => {}
                        OnError::Abort | OnError::RunCleanupProvisioner => skip_cleanup = true,
                        OnError::Ask => match ask(ctx, name, &error).await {
                            AskChoice::Cleanup => {}
                            AskChoice::Abort => skip_cleanup = true,
                            AskChoice::Retry => {
                                outcome = Outcome::Succeeded;
                                continue;
                            }
                        },
                    }
                    failure = Some(StepFailure { step: name, error });
                    break 'steps;
                }
            }
        }
        if opts.debug {
            pause(
                ctx,
                &format!(
                    "Pausing after run of step '{}'. Press enter to continue.",
                    steps[started - 1].name()
                ),
            )
            .await;
        }
    }

    let abort_only_cleanup_provisioner =
        skip_cleanup && opts.on_error == OnError::RunCleanupProvisioner;
    if outcome == Outcome::Cancelled
        && matches!(
            opts.on_error,
            OnError::Abort | OnError::RunCleanupProvisioner
        )
    {
        skip_cleanup = true;
    }

    let mut cleanup_failures = Vec::new();
    for step in steps[..started].iter_mut().rev() {
        if skip_cleanup && !(abort_only_cleanup_provisioner && step.runs_cleanup_provisioner()) {
            continue;
        }
        if opts.debug {
            pause(
                ctx,
                &format!(
                    "Pausing before cleanup of step '{}'. Press enter to continue.",
                    step.name()
                ),
            )
            .await;
        }
        if let Err(error) = step.cleanup(state, ctx, outcome).await {
            let f = StepFailure {
                step: step.name(),
                error,
            };
            ctx.ui
                .error(&format!(
                    "Error cleaning up in step '{}': {}",
                    f.step, f.error
                ))
                .await;
            cleanup_failures.push(f);
        }
    }
    if skip_cleanup {
        ctx.ui
            .error("Step failed and -on-error asked to leave everything as it is: mounts, volumes and the device lock were not cleaned up.")
            .await;
    }

    match (outcome, failure) {
        (Outcome::Cancelled, _) => Err(RunError::Cancelled {
            cleanup: cleanup_failures,
        }),
        (_, Some(failure)) => Err(RunError::Step {
            failure,
            cleanup: cleanup_failures,
        }),
        _ if !cleanup_failures.is_empty() => Err(RunError::Cleanup(cleanup_failures)),
        _ => Ok(()),
    }
}

async fn pause(ctx: &StepContext, text: &str) {
    // Packer's DebugRunner waits on an Ask; an error (no terminal) just continues.
    let _ = ctx.ui.ask(text).await;
}

async fn ask(ctx: &StepContext, step: &str, error: &BoxError) -> AskChoice {
    ctx.ui
        .error(&format!("Step '{step}' failed: {error}"))
        .await;
    loop {
        let answer = ctx
            .ui
            .ask("[c] Clean up and exit, [a] abort without cleanup, or [r] retry step (build may fail even if retry succeeds)?")
            .await;
        match answer.as_deref().map(str::trim) {
            Ok("c") | Ok("C") => return AskChoice::Cleanup,
            Ok("a") | Ok("A") => return AskChoice::Abort,
            Ok("r") | Ok("R") => return AskChoice::Retry,
            Ok(_) => continue,
            // No way to ask (no terminal): the safe default is to clean up.
            Err(_) => return AskChoice::Cleanup,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::api::Progress;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A Ui that records every line and answers `ask` from a script.
    #[derive(Default)]
    struct ScriptedUi {
        lines: Mutex<Vec<String>>,
        answers: Mutex<VecDeque<String>>,
    }

    impl ScriptedUi {
        fn answering(answers: &[&str]) -> Arc<Self> {
            let ui = ScriptedUi::default();
            ui.answers
                .lock()
                .unwrap()
                .extend(answers.iter().map(|a| a.to_string()));
            Arc::new(ui)
        }
        fn lines(&self) -> Vec<String> {
            self.lines.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Ui for ScriptedUi {
        async fn say(&self, msg: &str) {
            self.lines.lock().unwrap().push(format!("say: {msg}"));
        }
        async fn message(&self, msg: &str) {
            self.lines.lock().unwrap().push(format!("message: {msg}"));
        }
        async fn error(&self, msg: &str) {
            self.lines.lock().unwrap().push(format!("error: {msg}"));
        }
        async fn machine(&self, _category: &str, _args: &[String]) {}
        async fn ask(&self, query: &str) -> Result<String, BoxError> {
            self.lines.lock().unwrap().push(format!("ask: {query}"));
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .ok_or_else(|| "no terminal".into())
        }
        async fn track_progress(
            &self,
            _: &str,
            _: i64,
            _: i64,
        ) -> Result<Box<dyn Progress>, BoxError> {
            Err("not supported".into())
        }
    }

    /// The state: a journal of what ran.
    type Journal = Vec<String>;

    struct Recorder {
        name: &'static str,
        fail_runs: usize,
        fail_cleanup: bool,
        provision: bool,
        cancel_on_run: Option<CancellationToken>,
    }

    fn step(name: &'static str) -> Recorder {
        Recorder {
            name,
            fail_runs: 0,
            fail_cleanup: false,
            provision: false,
            cancel_on_run: None,
        }
    }

    #[async_trait]
    impl Step<Journal> for Recorder {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn run(&mut self, j: &mut Journal, _ctx: &StepContext) -> Result<(), BoxError> {
            j.push(format!("run {}", self.name));
            if let Some(token) = &self.cancel_on_run {
                token.cancel();
            }
            if self.fail_runs > 0 {
                self.fail_runs -= 1;
                return Err(format!("{} broke", self.name).into());
            }
            Ok(())
        }
        async fn cleanup(
            &mut self,
            j: &mut Journal,
            _ctx: &StepContext,
            outcome: Outcome,
        ) -> Result<(), BoxError> {
            j.push(format!("cleanup {} {:?}", self.name, outcome));
            if self.fail_cleanup {
                return Err(format!("{} cleanup broke", self.name).into());
            }
            Ok(())
        }
        fn runs_cleanup_provisioner(&self) -> bool {
            self.provision
        }
    }

    fn ctx(ui: Arc<ScriptedUi>) -> StepContext {
        StepContext {
            ui,
            cancel: CancellationToken::new(),
        }
    }

    async fn run(
        steps: Vec<Recorder>,
        ctx: &StepContext,
        opts: RunnerOptions,
    ) -> (Journal, Result<(), RunError>) {
        let mut steps: Vec<Box<dyn Step<Journal>>> =
            steps.into_iter().map(|s| Box::new(s) as _).collect();
        let mut journal = Journal::new();
        let result = run_steps(&mut steps, &mut journal, ctx, opts).await;
        (journal, result)
    }

    fn on_error(on_error: OnError) -> RunnerOptions {
        RunnerOptions {
            on_error,
            debug: false,
        }
    }

    #[tokio::test]
    async fn cleans_up_every_step_in_reverse_order_after_success() {
        let (j, r) = run(
            vec![step("a"), step("b"), step("c")],
            &ctx(ScriptedUi::answering(&[])),
            on_error(OnError::Cleanup),
        )
        .await;
        r.unwrap();
        assert_eq!(
            j,
            [
                "run a",
                "run b",
                "run c",
                "cleanup c Succeeded",
                "cleanup b Succeeded",
                "cleanup a Succeeded"
            ]
        );
    }

    #[tokio::test]
    async fn cleans_up_the_failed_step_too_and_runs_no_later_step() {
        let mut b = step("b");
        b.fail_runs = 1;
        let (j, r) = run(
            vec![step("a"), b, step("c")],
            &ctx(ScriptedUi::answering(&[])),
            on_error(OnError::Cleanup),
        )
        .await;
        assert_eq!(
            j,
            ["run a", "run b", "cleanup b Failed", "cleanup a Failed"]
        );
        assert_eq!(r.unwrap_err().to_string(), "b broke");
    }

    #[tokio::test]
    async fn attempts_every_cleanup_even_after_one_fails_and_reports_all() {
        let mut b = step("b");
        b.fail_cleanup = true;
        let mut c = step("c");
        c.fail_cleanup = true;
        let ui = ScriptedUi::answering(&[]);
        let (j, r) = run(
            vec![step("a"), b, c],
            &ctx(ui.clone()),
            on_error(OnError::Cleanup),
        )
        .await;
        assert_eq!(
            j[3..],
            [
                "cleanup c Succeeded",
                "cleanup b Succeeded",
                "cleanup a Succeeded"
            ]
        );
        let msg = r.unwrap_err().to_string();
        assert!(
            msg.contains("Cleanup of step 'c' failed: c cleanup broke"),
            "{msg}"
        );
        assert!(
            msg.contains("Cleanup of step 'b' failed: b cleanup broke"),
            "{msg}"
        );
        assert_eq!(
            ui.lines()
                .iter()
                .filter(|l| l.starts_with("error: Error cleaning up"))
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn abort_leaves_everything_after_a_failure() {
        let mut b = step("b");
        b.fail_runs = 1;
        let ui = ScriptedUi::answering(&[]);
        let (j, r) = run(
            vec![step("a"), b],
            &ctx(ui.clone()),
            on_error(OnError::Abort),
        )
        .await;
        assert_eq!(j, ["run a", "run b"]);
        assert!(r.is_err());
        assert!(ui.lines().iter().any(|l| l.contains("were not cleaned up")));
    }

    #[tokio::test]
    async fn abort_still_cleans_up_after_success() {
        let (j, r) = run(
            vec![step("a")],
            &ctx(ScriptedUi::answering(&[])),
            on_error(OnError::Abort),
        )
        .await;
        r.unwrap();
        assert_eq!(j, ["run a", "cleanup a Succeeded"]);
    }

    #[tokio::test]
    async fn ask_retry_runs_the_failed_step_again() {
        let mut b = step("b");
        b.fail_runs = 1;
        let ui = ScriptedUi::answering(&["x", "r"]);
        let (j, r) = run(
            vec![step("a"), b, step("c")],
            &ctx(ui.clone()),
            on_error(OnError::Ask),
        )
        .await;
        r.unwrap();
        assert_eq!(j[..4], ["run a", "run b", "run b", "run c"]);
        // An unknown answer is asked again.
        assert_eq!(
            ui.lines()
                .iter()
                .filter(|l| l.starts_with("ask: [c] Clean up"))
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn ask_abort_skips_cleanup_and_ask_cleanup_runs_it() {
        let mut b = step("b");
        b.fail_runs = 1;
        let (j, _) = run(
            vec![step("a"), b],
            &ctx(ScriptedUi::answering(&["a"])),
            on_error(OnError::Ask),
        )
        .await;
        assert_eq!(j, ["run a", "run b"]);
        let mut b = step("b");
        b.fail_runs = 1;
        let (j, _) = run(
            vec![step("a"), b],
            &ctx(ScriptedUi::answering(&["c"])),
            on_error(OnError::Ask),
        )
        .await;
        assert_eq!(
            j,
            ["run a", "run b", "cleanup b Failed", "cleanup a Failed"]
        );
    }

    #[tokio::test]
    async fn run_cleanup_provisioner_runs_only_the_provision_cleanup() {
        let mut p = step("provision");
        p.provision = true;
        let mut c = step("c");
        c.fail_runs = 1;
        let (j, _) = run(
            vec![step("a"), p, c],
            &ctx(ScriptedUi::answering(&[])),
            on_error(OnError::RunCleanupProvisioner),
        )
        .await;
        assert_eq!(
            j,
            [
                "run a",
                "run provision",
                "run c",
                "cleanup provision Failed"
            ]
        );
    }

    #[tokio::test]
    async fn cancel_stops_before_the_next_step_and_cleans_up() {
        let ctx = ctx(ScriptedUi::answering(&[]));
        let mut b = step("b");
        b.cancel_on_run = Some(ctx.cancel.clone());
        let (j, r) = run(
            vec![step("a"), b, step("c")],
            &ctx,
            on_error(OnError::Cleanup),
        )
        .await;
        assert_eq!(
            j,
            [
                "run a",
                "run b",
                "cleanup b Cancelled",
                "cleanup a Cancelled"
            ]
        );
        assert!(matches!(r, Err(RunError::Cancelled { .. })));
    }

    #[tokio::test]
    async fn debug_pauses_after_each_step_and_before_each_cleanup() {
        let ui = ScriptedUi::answering(&["", "", "", ""]);
        let (_, r) = run(
            vec![step("a"), step("b")],
            &ctx(ui.clone()),
            RunnerOptions {
                on_error: OnError::Cleanup,
                debug: true,
            },
        )
        .await;
        r.unwrap();
        let asks: Vec<_> = ui
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("ask: "))
            .collect();
        assert_eq!(
            asks,
            [
                "ask: Pausing after run of step 'a'. Press enter to continue.",
                "ask: Pausing after run of step 'b'. Press enter to continue.",
                "ask: Pausing before cleanup of step 'b'. Press enter to continue.",
                "ask: Pausing before cleanup of step 'a'. Press enter to continue.",
            ]
        );
    }
}
