//! The communicator against a real busybox chroot (run as root).

use std::os::unix::fs::MetadataExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, UNIX_EPOCH};

use tokio::io::AsyncWrite;

use super::tree::{glob_match, is_excluded};
use super::*;
use crate::chroot::host_shell::identity_wrapper;
use crate::chroot::mounts::processes_using;
use crate::chroot::test_fixtures::busybox_rootfs;

/// A writer collecting what a command wrote, readable after it ended.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl AsyncWrite for Captured {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct Chroot {
    dir: tempfile::TempDir,
    comm: ChrootCommunicator,
    cancel: CancellationToken,
}

impl Drop for Chroot {
    /// Leaves no process behind in the chroot, even when a test failed.
    fn drop(&mut self) {
        for p in processes_using(self.dir.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn chroot() -> Chroot {
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    std::fs::write(dir.path().join("etc/marker"), "inside-the-chroot\n").unwrap();
    let cancel = CancellationToken::new();
    let comm = ChrootCommunicator::new(dir.path(), identity_wrapper(), cancel.clone());
    Chroot { dir, comm, cancel }
}

/// Runs `command` with optional stdin; returns (exit code, stdout, stderr).
async fn run(c: &ChrootCommunicator, command: &str, stdin: Option<&str>) -> (i32, String, String) {
    let out = Captured::default();
    let err = Captured::default();
    let stdin: Option<BoxRead> =
        stdin.map(|s| Box::new(io::Cursor::new(s.as_bytes().to_vec())) as BoxRead);
    let done = c
        .start(RemoteCommand {
            command: command.to_string(),
            stdin,
            stdout: Some(Box::new(out.clone())),
            stderr: Some(Box::new(err.clone())),
        })
        .await
        .unwrap();
    let code = tokio::time::timeout(Duration::from_secs(30), done)
        .await
        .unwrap();
    (code, out.text(), err.text())
}

#[tokio::test]
async fn runs_commands_in_the_chroot_with_exit_code_stdout_and_stderr() {
    let c = chroot();
    let (code, out, err) = run(&c.comm, "cat /etc/marker; echo oops >&2; exit 3", None).await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (3, "inside-the-chroot\n", "oops\n")
    );
    let (code, out, _) = run(&c.comm, "cat", Some("from stdin\n")).await;
    assert_eq!((code, out.as_str()), (0, "from stdin\n"));
}

#[tokio::test]
async fn host_shell_expands_nothing() {
    let c = chroot();
    // Were `$X`, `$(…)` or backticks expanded on the host, X would be
    // empty and the host has no /etc/marker.
    let cmd = r#"X=set-in-chroot; echo "$X $(cat /etc/marker)" `echo tick`; echo 'it'"'"'s'"#;
    let (code, out, err) = run(&c.comm, cmd, None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "set-in-chroot inside-the-chroot tick\nit's\n");
}

#[tokio::test]
async fn multi_line_commands_work() {
    let c = chroot();
    let (code, out, _) = run(&c.comm, "echo one\nif true; then\n  echo two\nfi\n", None).await;
    assert_eq!((code, out.as_str()), (0, "one\ntwo\n"));
}

#[tokio::test]
async fn death_by_signal_is_128_plus_the_signal() {
    let c = chroot();
    let (code, _, _) = run(&c.comm, "kill -9 $$", None).await;
    assert_eq!(code, 128 + 9);
}

#[tokio::test]
async fn cancel_kills_the_command_and_frees_the_chroot() {
    let c = chroot();
    let done = c
        .comm
        .start(RemoteCommand {
            command: "sleep 600 & sleep 600".into(),
            stdin: None,
            stdout: Some(Box::new(Captured::default())),
            stderr: None,
        })
        .await
        .unwrap();
    // Wait until the shell and its background sleep run in the chroot
    // (busybox may run the foreground sleep inside the shell process).
    let root = c.dir.path().to_path_buf();
    for _ in 0..100 {
        if processes_using(&root).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = processes_using(&root);
    assert!(running.len() >= 2, "{running:?}");
    assert!(running.iter().any(|p| p.comm == "sleep"), "{running:?}");
    let started = Instant::now();
    c.cancel.cancel();
    let code = tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .unwrap();
    assert_eq!(code, 128 + 9);
    assert!(started.elapsed() < Duration::from_secs(5));
    for _ in 0..50 {
        if processes_using(&root).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        processes_using(&root),
        vec![],
        "processes survived the cancel"
    );
}

#[tokio::test]
async fn a_background_process_holding_stdout_does_not_hang_the_command() {
    let c = chroot();
    let started = Instant::now();
    let (code, out, _) = run(&c.comm, "(sleep 60 &); echo done", None).await;
    assert_eq!((code, out.as_str()), (0, "done\n"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

fn reader(s: &str) -> BoxRead {
    Box::new(io::Cursor::new(s.as_bytes().to_vec()))
}

#[tokio::test]
async fn upload_creates_parents_and_applies_the_mode() {
    let c = chroot();
    let info = FileInfo {
        name: "run.sh".into(),
        size: 10,
        // Go's os.FileMode: 0755 | ModeSetgid.
        mode: 0o755 | (1 << 22),
        mtime: Some(UNIX_EPOCH + Duration::from_secs(1_600_000_000)),
    };
    c.comm
        .upload(
            "/opt/app/run.sh",
            reader("#!/bin/sh\necho hi\n"),
            Some(info),
        )
        .await
        .unwrap();
    let p = c.dir.path().join("opt/app/run.sh");
    let meta = std::fs::metadata(&p).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o2755);
    assert_eq!(meta.mtime(), 1_600_000_000);
    let (code, out, _) = run(&c.comm, "/opt/app/run.sh", None).await;
    assert_eq!((code, out.as_str()), (0, "hi\n"));

    c.comm.upload("tmp/plain", reader("x"), None).await.unwrap();
    let meta = std::fs::metadata(c.dir.path().join("tmp/plain")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
}

#[tokio::test]
async fn uploads_and_downloads_never_leave_the_chroot() {
    let c = chroot();
    let outside = tempfile::tempdir().unwrap();
    for path in ["../../etc/x", "/tmp/../../x"] {
        let err = c.comm.upload(path, reader("x"), None).await.unwrap_err();
        assert!(
            err.to_string().contains("leaves the chroot"),
            "{path}: {err}"
        );
    }
    // An absolute link in the image pointing at a host path lands inside.
    std::os::unix::fs::symlink(outside.path(), c.dir.path().join("etc/escape")).unwrap();
    c.comm
        .upload("/etc/escape/f", reader("x"), None)
        .await
        .unwrap();
    assert!(!outside.path().join("f").exists(), "wrote on the host");
    let inside = crate::chroot::confine::resolve_in_root(
        c.dir.path(),
        Path::new("/etc/escape/f"),
        FinalSymlink::Follow,
    )
    .unwrap();
    assert!(inside.starts_with(c.dir.path()) && inside.is_file());
    let err = c
        .comm
        .download("../../../etc/hostname", Box::new(Captured::default()))
        .await;
    assert!(err.is_err());
}

/// Removes a host file a failing test might have written.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_dir_linked_to_host_etc_confines_uploads_and_downloads_to_the_chroot_etc() {
    let c = chroot();
    let name = format!("packer-confine-test-{}", std::process::id());
    let host_file = PathBuf::from("/etc").join(&name);
    let _cleanup = RemoveOnDrop(host_file.clone());
    std::fs::create_dir_all(c.dir.path().join("srv")).unwrap();
    std::os::unix::fs::symlink("/etc", c.dir.path().join("srv/conf")).unwrap();
    let requested = format!("/srv/conf/{name}");
    c.comm
        .upload(&requested, reader("confined\n"), None)
        .await
        .unwrap();
    assert!(!host_file.exists(), "wrote into the host's /etc");
    let inside = c.dir.path().join("etc").join(&name);
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "confined\n");

    // The image's /etc/marker, never the host's /etc.
    let out = Captured::default();
    c.comm
        .download("/srv/conf/marker", Box::new(out.clone()))
        .await
        .unwrap();
    assert_eq!(out.text(), "inside-the-chroot\n");
}

#[tokio::test]
async fn fallback_without_openat2_creates_parents_inside_the_chroot() {
    let c = chroot();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), c.dir.path().join("etc/escape")).unwrap();
    let mut file = c
        .comm
        .create_resolved("/etc/escape/d/f", 0o600)
        .await
        .unwrap();
    file.write_all(b"x").await.unwrap();
    file.flush().await.unwrap();
    assert!(!outside.path().join("d").exists(), "wrote on the host");
    let inside = c
        .dir
        .path()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("d/f");
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "x");
}

#[tokio::test]
async fn download_reads_a_file_in_the_chroot() {
    let c = chroot();
    let out = Captured::default();
    c.comm
        .download("/etc/marker", Box::new(out.clone()))
        .await
        .unwrap();
    assert_eq!(out.text(), "inside-the-chroot\n");
}

fn local_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("a.txt"), "a").unwrap();
    std::fs::write(src.join(".hidden"), "h").unwrap();
    std::fs::write(src.join("skip.log"), "l").unwrap();
    std::fs::write(src.join("sub/b.txt"), "b").unwrap();
    std::fs::write(src.join("sub/deeper/c.log"), "c").unwrap();
    std::fs::write(src.join("tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("tool"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    d
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                pending.push(e.path());
                out.push(format!("{rel}/"));
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn upload_dir_follows_the_trailing_slash_rule_and_excludes() {
    let c = chroot();
    let local = local_tree();
    let src = local.path().join("src");
    c.comm
        .upload_dir("/dst", &format!("{}/", src.display()), &["*.log".into()])
        .await
        .unwrap();
    let dst = c.dir.path().join("dst");
    assert_eq!(
        listing(&dst),
        vec![
            ".hidden",
            "a.txt",
            "link",
            "sub/",
            "sub/b.txt",
            "sub/deeper/",
            "tool"
        ]
    );
    assert_eq!(
        std::fs::read_link(dst.join("link")).unwrap(),
        PathBuf::from("a.txt")
    );
    assert_eq!(
        std::fs::metadata(dst.join("tool")).unwrap().mode() & 0o777,
        0o750
    );

    c.comm
        .upload_dir("/dst2", &src.display().to_string(), &["sub/deeper".into()])
        .await
        .unwrap();
    assert_eq!(
        listing(&c.dir.path().join("dst2")),
        vec![
            "src/",
            "src/.hidden",
            "src/a.txt",
            "src/link",
            "src/skip.log",
            "src/sub/",
            "src/sub/b.txt",
            "src/tool"
        ]
    );
}

#[tokio::test]
async fn download_dir_copies_out_of_the_chroot() {
    let c = chroot();
    let local = local_tree();
    c.comm
        .upload_dir(
            "/var/data/",
            &format!("{}/", local.path().join("src").display()),
            &[],
        )
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    c.comm
        .download_dir(
            "/var/data",
            &out.path().display().to_string(),
            &["*.log".into(), ".hidden".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        listing(out.path()),
        vec![
            "data/",
            "data/a.txt",
            "data/link",
            "data/sub/",
            "data/sub/b.txt",
            "data/sub/deeper/",
            "data/tool"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("data/sub/b.txt")).unwrap(),
        "b"
    );
}

#[tokio::test]
async fn upload_dir_into_links_at_the_destination_stays_in_the_chroot() {
    let c = chroot();
    let outside = tempfile::tempdir().unwrap();
    let local = local_tree();
    std::fs::create_dir_all(c.dir.path().join("srv")).unwrap();
    // A directory of the tree lands on a link to the host's temp dir
    // (absolute) and on one climbing out with "..": both are followed the
    // way the chroot sees them.
    std::os::unix::fs::symlink(outside.path(), c.dir.path().join("srv/sub")).unwrap();
    c.comm
        .upload_dir(
            "/srv",
            &format!("{}/", local.path().join("src").display()),
            &[],
        )
        .await
        .unwrap();
    std::fs::create_dir_all(c.dir.path().join("opt")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", c.dir.path().join("opt/sub")).unwrap();
    c.comm
        .upload_dir(
            "/opt",
            &format!("{}/", local.path().join("src").display()),
            &[],
        )
        .await
        .unwrap();

    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "wrote on the host"
    );
    let inside = c.dir.path().join(outside.path().strip_prefix("/").unwrap());
    assert_eq!(std::fs::read_to_string(inside.join("b.txt")).unwrap(), "b");
    assert_eq!(
        std::fs::read_to_string(c.dir.path().join("b.txt")).unwrap(),
        "b"
    );
}

#[tokio::test]
async fn download_dir_copies_links_in_the_chroot_as_links() {
    let c = chroot();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("host-secret"), "host").unwrap();
    let data = c.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(outside.path(), data.join("to-host")).unwrap();
    std::os::unix::fs::symlink("/etc", data.join("etc")).unwrap();
    let out = tempfile::tempdir().unwrap();
    c.comm
        .download_dir("/data/", &out.path().display().to_string(), &[])
        .await
        .unwrap();
    assert_eq!(listing(out.path()), vec!["etc", "to-host"]);
    assert_eq!(
        std::fs::read_link(out.path().join("to-host")).unwrap(),
        outside.path()
    );
}

/// Keeps swapping `dir` between a real directory and a link to `to`, as a
/// process in the chroot could while a tree is copied, until stopped.
fn keep_swapping(
    dir: PathBuf,
    to: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let link = dir.with_extension("link");
        let real = dir.with_extension("real");
        let _ = std::fs::create_dir_all(&real);
        let _ = std::os::unix::fs::symlink(&to, &link);
        let mut swaps = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // rename(2) replaces atomically: `dir` is always one or the other.
            let from = if swaps % 2 == 0 { &link } else { &real };
            let keep = if swaps % 2 == 0 { &real } else { &link };
            let _ = std::fs::rename(&dir, keep);
            let _ = std::fs::rename(from, &dir);
            swaps += 1;
        }
        swaps
    })
}

#[tokio::test]
async fn a_directory_swapped_for_a_link_during_a_tree_copy_cannot_redirect_it() {
    let c = chroot();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("host-secret"), "host").unwrap();
    let local = local_tree();
    let src = format!("{}/", local.path().join("src").display());
    let work = c.dir.path().join("work");
    std::fs::create_dir_all(work.join("tree")).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = keep_swapping(
        work.join("tree"),
        outside.path().to_path_buf(),
        stop.clone(),
    );
    let downloads = tempfile::tempdir().unwrap();
    for i in 0..200 {
        // Either outcome is fine (a copy, or an error when the link was
        // there at the start): what must never happen is touching the host.
        let _ = c.comm.upload_dir("/work/tree", &src, &[]).await;
        let into = downloads.path().join(i.to_string());
        let _ = c
            .comm
            .download_dir("/work/tree/", &into.display().to_string(), &[])
            .await;
        assert!(
            !into.join("host-secret").exists(),
            "download {i} read the host's directory"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(swapper.join().unwrap() > 0);
    let host_names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        host_names,
        vec![std::ffi::OsString::from("host-secret")],
        "an upload wrote on the host"
    );
}

#[test]
fn globs_match_like_the_shell() {
    assert!(glob_match(b"*.log", b"x.log"));
    assert!(!glob_match(b"*.log", b"a/x.log"));
    assert!(glob_match(b"a/*/c", b"a/b/c"));
    assert!(glob_match(b"file?.[ch]", b"file1.c"));
    assert!(!glob_match(b"file?.[!ch]", b"file1.c"));
    assert!(glob_match(b"[a-c]x", b"bx"));
    assert!(glob_match(br"\*", b"*"));
    assert!(is_excluded(
        Path::new("sub/deeper/c.log"),
        &["*.log".into()]
    ));
    assert!(is_excluded(
        Path::new("sub/deeper"),
        &["./sub/deeper/".into()]
    ));
    assert!(!is_excluded(Path::new("sub/b.txt"), &["*.log".into()]));
}
