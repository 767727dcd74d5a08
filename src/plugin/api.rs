//! The Rust side of Packer's component interfaces: what a builder
//! implements ([`Builder`], [`Artifact`], [`Communicator`]) and what it is
//! handed ([`Ui`], [`Hook`]). The wire layer maps these onto RPC calls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::plugin::spec::ObjectSpec;

/// Any error crossing this interface; only its `Display` reaches Packer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Configuration values, hook data and artifact state travel as JSON-like
/// values: Packer decodes them into Go `interface{}` on its side anyway.
pub type Value = serde_json::Value;

/// A JSON object: string keys, as Packer requires for hook data and state.
pub type Map = serde_json::Map<String, Value>;

/// A byte source handed to a [`Communicator`] (stdin, an uploaded file).
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;

/// A byte sink handed to a [`Communicator`] (stdout, stderr, a download).
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Which kind of template a Prepare call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// HCL2: values arrive decoded by Packer with our [`ObjectSpec`];
    /// attributes the user did not set are `null`.
    Hcl2,
    /// Legacy JSON: the raw template object, strings still holding
    /// uninterpolated Go templates, numbers as floats.
    Json,
}

/// What `-on-error` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Clean up everything (also what `""` means).
    #[default]
    Cleanup,
    /// Leave everything as it is for inspection.
    Abort,
    /// Ask the user through [`Ui::ask`].
    Ask,
    /// Run the error-cleanup provisioner, then clean up.
    RunCleanupProvisioner,
}

/// Settings Packer core passes to every Prepare next to the builder's own
/// configuration (`packer_*` keys).
#[derive(Debug, Clone, Default)]
pub struct PackerSettings {
    /// `packer_build_name`: the source's name label (HCL2) or build name (JSON).
    pub build_name: String,
    /// `packer_builder_type`: the builder type as written in the template.
    pub builder_type: String,
    /// `packer_core_version`: absent before Packer 1.7.5 in HCL2 mode.
    pub core_version: Option<String>,
    /// `packer_debug`: `-debug` was given.
    pub debug: bool,
    /// `packer_force`: `-force` was given.
    pub force: bool,
    /// `packer_on_error`.
    pub on_error: OnError,
    /// `packer_template_path` (JSON templates only).
    pub template_path: Option<String>,
    /// `packer_user_variables` (JSON templates only), for `{{user "x"}}`.
    pub user_variables: BTreeMap<String, String>,
    /// `packer_sensitive_variables` (JSON templates, Packer 1.14+).
    pub sensitive_variables: Vec<String>,
}

/// The arguments of one `Builder.Prepare` call, decoded from the wire.
#[derive(Debug, Clone)]
pub struct PrepareArgs {
    /// Which template kind the configuration came from.
    pub kind: TemplateKind,
    /// The builder's own options (without `type`/`name`, without `packer_*`).
    pub config: Map,
    /// Packer's settings for this build.
    pub packer: PackerSettings,
}

/// A successful Prepare.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared {
    /// Keys the builder puts in the provision hook data (`build.X` in HCL2).
    pub generated_vars: Vec<String>,
    /// Warnings Packer prints before the build.
    pub warnings: Vec<String>,
}

/// A failed Prepare: every problem of the configuration, reported at once.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareErrors(pub Vec<String>);

impl std::fmt::Display for PrepareErrors {
    /// The layout of Go's `multierror`, which Packer users know.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "1 error occurred:\n\t* {one}\n\n"),
            many => {
                writeln!(f, "{} errors occurred:", many.len())?;
                for e in many {
                    writeln!(f, "\t* {e}")?;
                }
                writeln!(f)
            }
        }
    }
}

impl std::error::Error for PrepareErrors {}

/// A Packer builder, served on broker stream 0.
#[async_trait]
pub trait Builder: Send + Sync + 'static {
    /// The HCL2 spec of the configuration (sent as protobuf or gob).
    fn config_spec(&self) -> ObjectSpec;

    /// Decodes and validates the configuration and keeps it for [`Builder::run`].
    async fn prepare(&self, args: PrepareArgs) -> Result<Prepared, PrepareErrors>;

    /// Runs the build. `cancel` fires when Packer calls `Builder.Cancel`
    /// (Ctrl-C); `run` must then clean up and return, typically with an
    /// error. The wire layer itself sends `Hook.Cancel` for a pending
    /// [`Hook::run`] when `cancel` fires.
    async fn run(
        &self,
        ui: Arc<dyn Ui>,
        hook: Arc<dyn Hook>,
        cancel: CancellationToken,
    ) -> Result<Option<Arc<dyn Artifact>>, BoxError>;
}

/// Packer's user interface, reached over the Run stream.
///
/// Output calls never fail the build: a broken Ui is logged, not returned.
#[async_trait]
pub trait Ui: Send + Sync {
    /// A step announcement (`==> name: ...`).
    async fn say(&self, msg: &str);
    /// A detail line (`    name: ...`).
    async fn message(&self, msg: &str);
    /// An error line (shown in red).
    async fn error(&self, msg: &str);
    /// Machine-readable output (`-machine-readable`).
    async fn machine(&self, category: &str, args: &[String]);
    /// Asks the user a question and returns the answer line.
    async fn ask(&self, query: &str) -> Result<String, BoxError>;
    /// Starts a progress bar for `src` of `total` bytes, `current` done.
    async fn track_progress(
        &self,
        src: &str,
        total: i64,
        current: i64,
    ) -> Result<Box<dyn Progress>, BoxError>;
}

/// A progress bar started by [`Ui::track_progress`].
#[async_trait]
pub trait Progress: Send + Sync {
    /// Adds `n` bytes to the progress.
    async fn add(&self, n: i64);
    /// Ends the progress bar.
    async fn close(&self);
}

/// Packer's hooks, reached over the Run stream.
#[async_trait]
pub trait Hook: Send + Sync {
    /// Runs hook `name` (`packer_provision`, `packer_cleanup_provision`)
    /// with `data` (string keys) and `communicator` served to Packer for
    /// the duration of the call.
    async fn run(
        &self,
        name: &str,
        data: Map,
        communicator: Arc<dyn Communicator>,
    ) -> Result<(), BoxError>;
}

/// A command started by [`Communicator::start`], with its streams.
pub struct RemoteCommand {
    /// The shell command line, as the provisioner wrote it.
    pub command: String,
    /// Standard input, when the provisioner sends one.
    pub stdin: Option<BoxRead>,
    /// Where standard output goes, when wanted.
    pub stdout: Option<BoxWrite>,
    /// Where standard error goes, when wanted.
    pub stderr: Option<BoxWrite>,
}

/// Go's `os.FileInfo` as Packer sends it with an upload.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    /// Base name.
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// Go `os.FileMode` bits (permission bits in the low 9 bits; `1<<31` is a directory).
    pub mode: u32,
    /// Modification time; `None` for Go's zero time.
    pub mtime: Option<SystemTime>,
}

/// How provisioners reach the machine being built (here: the chroot).
#[async_trait]
pub trait Communicator: Send + Sync {
    /// Starts `cmd` and returns once it runs. The returned future resolves
    /// to the exit status after the command ended and its stdout/stderr
    /// writers were shut down (or dropped).
    async fn start(&self, cmd: RemoteCommand) -> Result<BoxFuture<'static, i32>, BoxError>;
    /// Writes everything read from `content` to `path`.
    async fn upload(
        &self,
        path: &str,
        content: BoxRead,
        info: Option<FileInfo>,
    ) -> Result<(), BoxError>;
    /// Copies the local directory `src` to `dst` (rsync semantics of the
    /// trailing slash, as Packer's communicators), skipping `exclude`.
    async fn upload_dir(&self, dst: &str, src: &str, exclude: &[String]) -> Result<(), BoxError>;
    /// Writes the content of `path` to `out`.
    async fn download(&self, path: &str, out: BoxWrite) -> Result<(), BoxError>;
    /// Copies the remote directory `src` to the local `dst`, skipping `exclude`.
    async fn download_dir(&self, src: &str, dst: &str, exclude: &[String]) -> Result<(), BoxError>;
}

/// The result of a build, served to Packer after `Run`.
#[async_trait]
pub trait Artifact: Send + Sync {
    /// Unique id of the builder that made it.
    fn builder_id(&self) -> String;
    /// Local files belonging to the artifact (none for an AMI).
    fn files(&self) -> Vec<String>;
    /// Machine id of the artifact (`region:ami-…,region:ami-…`).
    fn id(&self) -> String;
    /// Human description shown at the end of the build.
    fn string(&self) -> String;
    /// State by key (`generated_data`, `par.artifact.metadata`, …).
    fn state(&self, key: &str) -> Option<Value>;
    /// Deletes what the artifact consists of.
    async fn destroy(&self) -> Result<(), BoxError>;
}
