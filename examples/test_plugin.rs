//! A fake builder plugin for the wire-protocol tests (tests/wire_*.rs):
//! the real protocol stack (`plugin::cli`) around a builder that talks
//! through Ui, runs the provision hook with a communicator on the local
//! machine, honours cancellation and returns an artifact.
//!
//! Config (all optional): `greeting` (string; `"invalid"` fails Prepare),
//! `fail_run` (bool), `tags` (map of string), `count` (number), blocks
//! `disk { size = N }`.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use amazon_chroot::plugin::api::{
    Artifact, BoxError, BoxRead, BoxWrite, Builder, Communicator, FileInfo, Hook, Map, PrepareArgs,
    PrepareErrors, Prepared, RemoteCommand, Ui, Value,
};
use amazon_chroot::plugin::spec::{CtyType, ObjectSpec, Spec};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    amazon_chroot::plugin::cli::main(Arc::new(WireTestBuilder::default()))
}

#[derive(Default)]
struct WireTestBuilder {
    prepared: Mutex<Option<PrepareArgs>>,
}

fn attr(name: &str, ty: CtyType) -> (String, Spec) {
    (
        name.to_owned(),
        Spec::Attr {
            name: name.to_owned(),
            ty,
            required: false,
        },
    )
}

#[async_trait]
impl Builder for WireTestBuilder {
    fn config_spec(&self) -> ObjectSpec {
        let disk = ObjectSpec([attr("size", CtyType::Number)].into_iter().collect());
        ObjectSpec(
            [
                attr("greeting", CtyType::String),
                attr("fail_run", CtyType::Bool),
                attr("count", CtyType::Number),
                attr("tags", CtyType::Map(Box::new(CtyType::String))),
                (
                    "disk".to_owned(),
                    Spec::BlockList {
                        type_name: "disk".to_owned(),
                        nested: disk,
                        min_items: 0,
                        max_items: 0,
                    },
                ),
            ]
            .into_iter()
            .collect(),
        )
    }

    async fn prepare(&self, args: PrepareArgs) -> Result<Prepared, PrepareErrors> {
        if args.config.get("greeting").and_then(Value::as_str) == Some("invalid") {
            return Err(PrepareErrors(vec![
                "greeting must not be \"invalid\"".into(),
                "second problem".into(),
            ]));
        }
        *self.prepared.lock().unwrap() = Some(args);
        Ok(Prepared {
            generated_vars: vec!["WireTestVar".into()],
            warnings: vec!["wiretest warning".into()],
        })
    }

    async fn run(
        &self,
        ui: Arc<dyn Ui>,
        hook: Arc<dyn Hook>,
        cancel: CancellationToken,
    ) -> Result<Option<Arc<dyn Artifact>>, BoxError> {
        let args = self
            .prepared
            .lock()
            .unwrap()
            .clone()
            .ok_or("Run before Prepare")?;
        ui.say("wiretest: starting").await;
        ui.message(&format!("wiretest: kind {:?}", args.kind)).await;
        ui.message(&format!(
            "wiretest: config {}",
            Value::Object(args.config.clone())
        ))
        .await;
        ui.message(&format!(
            "wiretest: build_name={} builder_type={} debug={} on_error={:?}",
            args.packer.build_name,
            args.packer.builder_type,
            args.packer.debug,
            args.packer.on_error
        ))
        .await;
        ui.error("wiretest: an error line").await;
        if args.config.get("fail_run").and_then(Value::as_bool) == Some(true) {
            return Err("wiretest: failing on purpose".into());
        }
        let mut data = Map::new();
        data.insert("ID".into(), "wiretest-id".into());
        data.insert("ConnType".into(), "wiretest".into());
        data.insert("Host".into(), "".into());
        data.insert("Port".into(), 0.into());
        data.insert("WireTestVar".into(), "wiretest-value".into());
        let comm = Arc::new(LocalCommunicator {
            cancel: cancel.clone(),
        });
        let provisioned = hook.run("packer_provision", data, comm).await;
        if cancel.is_cancelled() {
            ui.error("wiretest: cancelled").await;
            return Err("wiretest: build cancelled".into());
        }
        provisioned.map_err(|e| format!("wiretest: provisioning failed: {e}"))?;
        if std::env::var_os("WIRETEST_UI_EXTRAS").is_some() {
            // Ui calls Packer 1.6.6 cannot answer with a closed stdin.
            let answer = ui.ask("wiretest question?").await?;
            ui.message(&format!("wiretest: answer {answer}")).await;
            ui.machine("artifact", &["0".into(), "id".into()]).await;
            let progress = ui.track_progress("wiretest-src", 10, 2).await?;
            progress.add(8).await;
            progress.close().await;
        }
        ui.say("wiretest: done").await;
        Ok(Some(Arc::new(WireTestArtifact)))
    }
}

struct WireTestArtifact;

#[async_trait]
impl Artifact for WireTestArtifact {
    fn builder_id(&self) -> String {
        "wiretest.builder".into()
    }
    fn files(&self) -> Vec<String> {
        vec!["/nonexistent/wiretest.img".into()]
    }
    fn id(&self) -> String {
        "wiretest-artifact-id".into()
    }
    fn string(&self) -> String {
        "wiretest artifact".into()
    }
    fn state(&self, key: &str) -> Option<Value> {
        (key == "generated_data").then(|| serde_json::json!({"WireTestVar": "wiretest-value"}))
    }
    async fn destroy(&self) -> Result<(), BoxError> {
        Err("wiretest: destroy refused".into())
    }
}

/// Runs commands with `sh -c` on this machine and copies files on it,
/// killing commands when the build is cancelled.
struct LocalCommunicator {
    cancel: CancellationToken,
}

#[async_trait]
impl Communicator for LocalCommunicator {
    async fn start(&self, cmd: RemoteCommand) -> Result<BoxFuture<'static, i32>, BoxError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd.command)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Own process group, so cancelling kills the whole command tree.
            .process_group(0)
            .spawn()?;
        if let (Some(mut from), Some(mut to)) = (cmd.stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
            });
        }
        let out = pump(child.stdout.take(), cmd.stdout);
        let err = pump(child.stderr.take(), cmd.stderr);
        let cancel = self.cancel.clone();
        Ok(async move {
            let status = tokio::select! {
                s = child.wait() => s.ok().and_then(|s| s.code()).unwrap_or(-1),
                _ = cancel.cancelled() => {
                    if let Some(pid) = child.id() {
                        let group = format!("-{pid}");
                        let _ = tokio::process::Command::new("kill").args(["-KILL", "--", &group]).status().await;
                    }
                    let _ = child.wait().await;
                    -1
                }
            };
            let _ = out.await;
            let _ = err.await;
            status
        }
        .boxed())
    }

    async fn upload(
        &self,
        path: &str,
        mut content: BoxRead,
        info: Option<FileInfo>,
    ) -> Result<(), BoxError> {
        let path = PathBuf::from(path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut file = tokio::fs::File::create(&path).await?;
        tokio::io::copy(&mut content, &mut file).await?;
        file.flush().await?;
        if let Some(info) = info.filter(|i| i.mode & 0o777 != 0) {
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(info.mode & 0o777))
                .await?;
        }
        Ok(())
    }

    async fn upload_dir(&self, dst: &str, src: &str, exclude: &[String]) -> Result<(), BoxError> {
        copy_dir(src, dst, exclude).await
    }

    async fn download(&self, path: &str, mut out: BoxWrite) -> Result<(), BoxError> {
        let mut file = tokio::fs::File::open(path).await?;
        tokio::io::copy(&mut file, &mut out).await?;
        out.shutdown().await?;
        Ok(())
    }

    async fn download_dir(&self, src: &str, dst: &str, exclude: &[String]) -> Result<(), BoxError> {
        copy_dir(src, dst, exclude).await
    }
}

fn pump(
    from: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    to: Option<BoxWrite>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Some(mut from) = from {
            match to {
                Some(mut to) => {
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                    let _ = to.shutdown().await;
                }
                None => {
                    let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
                }
            }
        }
    })
}

/// rsync-like: `src/` copies the contents into `dst`, `src` copies the
/// directory itself into `dst`.
async fn copy_dir(src: &str, dst: &str, exclude: &[String]) -> Result<(), BoxError> {
    let from = PathBuf::from(src);
    let to = if src.ends_with('/') {
        PathBuf::from(dst)
    } else {
        Path::new(dst).join(from.file_name().ok_or("source has no name")?)
    };
    let exclude = exclude.to_vec();
    tokio::task::spawn_blocking(move || copy_tree(&from, &to, &exclude)).await??;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path, exclude: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if exclude.iter().any(|e| name.to_string_lossy() == e.as_str()) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to.join(&name), exclude)?;
        } else {
            std::fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}
