//! Drives the example plugin (examples/test_plugin.rs, built by `cargo
//! test`) exactly as Packer does: magic cookie, handshake line, yamux
//! client, broker, net/rpc over msgpack, Packer's Ui+Hook served on the
//! Run stream, a provisioner's Communicator calls, the Artifact, Cancel.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amazon_chroot::plugin::broker::Broker;
use amazon_chroot::plugin::cli::DEFAULT_NAME;
use amazon_chroot::plugin::handshake::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use amazon_chroot::plugin::msgpack::{self, map};
use amazon_chroot::plugin::mux::{Role, Session, Stream};
use amazon_chroot::plugin::rpc::{self, CallError, Client, ClientError, Handler};
use amazon_chroot::plugin::spec::gob::encode_command_finished;
use amazon_chroot::plugin::spec::proto;
use async_trait::async_trait;
use prost::Message;
use rmpv::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Notify;

/// Every test is bounded: a protocol bug must fail, not hang CI.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn plugin_binary() -> PathBuf {
    // target/debug/deps/wire_protocol-… → target/debug/examples/test_plugin
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("test_plugin");
    assert!(
        path.exists(),
        "{} missing: run `cargo test` (it builds the examples)",
        path.display()
    );
    path
}

/// The plugin process plus Packer's side of the connection.
struct Plugin {
    child: tokio::process::Child,
    handshake: String,
    broker: Broker,
    main: Arc<Client>,
    extra_stdout: Arc<Mutex<Vec<u8>>>,
}

async fn start_plugin(args: &[&str]) -> Plugin {
    let mut child = tokio::process::Command::new(plugin_binary())
        .args(args)
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("PACKER_LOG", "1")
        .env("WIRETEST_UI_EXTRAS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    let handshake = line.trim().to_owned();
    let extra_stdout = Arc::new(Mutex::new(Vec::new()));
    let sink = extra_stdout.clone();
    tokio::spawn(async move {
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest).await;
        sink.lock().unwrap().extend(rest);
    });
    let socket = handshake.rsplit('|').next().unwrap().to_owned();
    let conn = UnixStream::connect(&socket).await.unwrap();
    // The socket file goes away once the one connection was accepted.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Path::new(&socket).exists() {
        assert!(
            Instant::now() < deadline,
            "socket {socket} was not unlinked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let broker = Broker::new(Session::new(conn, Role::Client));
    let main = Arc::new(Client::new(broker.dial(0).await.unwrap()));
    Plugin {
        child,
        handshake,
        broker,
        main,
        extra_stdout,
    }
}

fn hcl2_prepare_args(greeting: &str) -> Value {
    let settings = msgpack::from_json(&serde_json::json!({
        "packer_build_name": "wire", "packer_builder_type": "wiretest", "packer_core_version": "1.16.0",
        "packer_debug": "false", "packer_force": "false", "packer_on_error": "abort"
    }));
    let cty = serde_json::json!({
        "value": {"greeting": greeting, "count": 3, "fail_run": null, "tags": {"a": "b"}, "disk": [{"size": 10}]},
        "type": ["object", {"count": "number", "disk": ["list", ["object", {"size": "number"}]],
                 "fail_run": "bool", "greeting": "string", "tags": ["map", "string"]}]
    });
    map([(
        "Configs",
        Value::Array(vec![settings, Value::Binary(cty.to_string().into_bytes())]),
    )])
}

/// What Packer's side saw on the Run stream and while provisioning.
#[derive(Default)]
struct Seen {
    events: Vec<String>,
    hook_data: Option<serde_json::Value>,
    provision: Option<Result<Provisioned, String>>,
}

#[derive(Debug, Default)]
struct Provisioned {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    response: Vec<u8>,
    stdin_echo: Vec<u8>,
    stdin_response: Vec<u8>,
    downloaded: Vec<u8>,
    unknown_method: Option<ClientError>,
    upload_dir_reply: Option<Value>,
    big_roundtrip: Vec<u8>,
}

fn big_payload() -> Vec<u8> {
    (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum HookScenario {
    /// Act as Packer's shell and file provisioners.
    Provision,
    /// Block until Hook.Cancel, then fail like Packer (`context canceled`).
    WaitForCancel,
}

/// Packer's Ui and Hook, served on the Run stream.
struct PackerSide {
    broker: Broker,
    seen: Arc<Mutex<Seen>>,
    scenario: HookScenario,
    workdir: PathBuf,
    hook_started: Arc<Notify>,
    hook_cancelled: Arc<Notify>,
}

impl PackerSide {
    fn event(&self, e: String) {
        self.seen.lock().unwrap().events.push(e);
    }
}

#[async_trait]
impl Handler for PackerSide {
    async fn call(&self, service_method: &str, body: Value) -> Result<Value, CallError> {
        match service_method {
            "Ui.Say" | "Ui.Message" | "Ui.Error" => {
                self.event(format!(
                    "{service_method}: {}",
                    msgpack::as_string(&body).unwrap()
                ));
                Ok(Value::Nil)
            }
            "Ui.Ask" => {
                self.event(format!(
                    "{service_method}: {}",
                    msgpack::as_string(&body).unwrap()
                ));
                Ok(Value::from("forty-two"))
            }
            "Ui.Machine" => {
                self.event(format!("{service_method}: {}", msgpack::to_json(&body)));
                Ok(Value::Nil)
            }
            "Ui.NewTrackProgress" => {
                self.event(format!("{service_method}: {}", msgpack::to_json(&body)));
                Ok(Value::from("trk1"))
            }
            "Uitrk1.Add" | "Uitrk1.Close" => {
                self.event(format!("{service_method}: {}", msgpack::to_json(&body)));
                Ok(Value::Nil)
            }
            "Hook.Cancel" => {
                self.event("Hook.Cancel".into());
                self.hook_cancelled.notify_one();
                Ok(Value::Nil)
            }
            "Hook.Run" => {
                let name = msgpack::as_string(msgpack::field(&body, "Name").unwrap()).unwrap();
                self.event(format!("Hook.Run: {name}"));
                self.seen.lock().unwrap().hook_data =
                    Some(msgpack::to_json(msgpack::field(&body, "Data").unwrap()));
                let id = msgpack::as_u32(msgpack::field(&body, "StreamId").unwrap()).unwrap();
                let hook = Client::new(self.broker.dial(id).await.map_err(CallError::failed)?);
                self.hook_started.notify_one();
                match self.scenario {
                    HookScenario::WaitForCancel => {
                        self.hook_cancelled.notified().await;
                        hook.close().await;
                        Err(CallError::Failed("context canceled".into()))
                    }
                    HookScenario::Provision => {
                        let result = provision(&hook, &self.broker, &self.workdir).await;
                        let failed = result.as_ref().err().cloned();
                        self.seen.lock().unwrap().provision = Some(result);
                        // Packer closes the hook stream before it replies.
                        hook.close().await;
                        match failed {
                            Some(e) => Err(CallError::Failed(e)),
                            None => Ok(Value::Nil),
                        }
                    }
                }
            }
            m => Err(CallError::NoMethod(m.to_owned())),
        }
    }
}

/// Packer's side of a broker id it allocated: accept in the background.
fn accept_later(broker: &Broker) -> (u32, tokio::task::JoinHandle<Stream>) {
    let id = broker.next_id();
    let b = broker.clone();
    (
        id,
        tokio::spawn(async move { b.accept(id, Duration::from_secs(5)).await.unwrap() }),
    )
}

async fn read_all(task: tokio::task::JoinHandle<Stream>) -> Vec<u8> {
    let mut s = task.await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

/// What Packer's provisioners do over the hook stream.
async fn provision(hook: &Client, broker: &Broker, dir: &Path) -> Result<Provisioned, String> {
    let e = |e: ClientError| e.to_string();
    let mut got = Provisioned::default();
    hook.call("Ui.Say", Value::from("from the provisioner"))
        .await
        .map_err(e)?;
    let trk = hook
        .call(
            "Ui.NewTrackProgress",
            map([
                ("Src", Value::from("f")),
                ("TotalSize", Value::from(10u64)),
                ("CurrentSize", Value::from(0u64)),
            ]),
        )
        .await
        .map_err(e)?;
    let trk = msgpack::as_string(&trk).unwrap();
    hook.call(&format!("Ui{trk}.Add"), Value::from(5u64))
        .await
        .map_err(e)?;
    hook.call(&format!("Ui{trk}.Close"), Value::Nil)
        .await
        .map_err(e)?;

    // Communicator.Start: stdout, stderr, response streams (ids from Packer).
    let (out_id, out) = accept_later(broker);
    let (err_id, err) = accept_later(broker);
    let (resp_id, resp) = accept_later(broker);
    let start = map([
        (
            "Command",
            Value::from("echo out-line; echo err-line >&2; exit 3"),
        ),
        ("StdinStreamId", Value::from(0u32)),
        ("StdoutStreamId", Value::from(out_id)),
        ("StderrStreamId", Value::from(err_id)),
        ("ResponseStreamId", Value::from(resp_id)),
    ]);
    hook.call("Communicator.Start", start).await.map_err(e)?;
    got.stdout = read_all(out).await;
    got.stderr = read_all(err).await;
    got.response = read_all(resp).await;

    // A command with stdin.
    let (in_id, stdin) = accept_later(broker);
    let (out_id, out) = accept_later(broker);
    let (resp_id, resp) = accept_later(broker);
    let start = map([
        ("Command", Value::from("cat")),
        ("StdinStreamId", Value::from(in_id)),
        ("StdoutStreamId", Value::from(out_id)),
        ("StderrStreamId", Value::from(0u32)),
        ("ResponseStreamId", Value::from(resp_id)),
    ]);
    let feeder = tokio::spawn(async move {
        let mut s = stdin.await.unwrap();
        s.write_all(b"piped input").await.unwrap();
        s.shutdown().await.unwrap();
        s
    });
    hook.call("Communicator.Start", start).await.map_err(e)?;
    got.stdin_echo = read_all(out).await;
    got.stdin_response = read_all(resp).await;
    drop(feeder.await.unwrap());

    // Upload with a FileInfo as Packer ≥1.7 sends it (T as ext −1).
    let (reader_id, reader) = accept_later(broker);
    let writer = tokio::spawn(async move {
        let mut s = reader.await.unwrap();
        s.write_all(b"uploaded bytes").await.unwrap();
        s.shutdown().await.unwrap();
        s
    });
    let upload = map([
        (
            "Path",
            Value::from(dir.join("up/file.txt").to_str().unwrap()),
        ),
        ("ReaderStreamId", Value::from(reader_id)),
        (
            "FileInfo",
            map([
                ("N", Value::from("file.txt")),
                ("S", Value::from(14i64)),
                ("M", Value::from(0o640u32)),
                ("T", Value::Ext(-1, 1_704_164_645u32.to_be_bytes().to_vec())),
            ]),
        ),
    ]);
    hook.call("Communicator.Upload", upload).await.map_err(e)?;
    drop(writer.await.unwrap());

    let src = format!("{}/", dir.join("srcdir").display());
    let dir_args = |dst: &Path, src: &str| {
        map([
            ("Dst", Value::from(dst.to_str().unwrap())),
            ("Src", Value::from(src)),
            ("Exclude", Value::Array(vec![Value::from("skip.txt")])),
        ])
    };
    got.upload_dir_reply = Some(
        hook.call("Communicator.UploadDir", dir_args(&dir.join("updir"), &src))
            .await
            .map_err(e)?,
    );

    let (writer_id, download) = accept_later(broker);
    let args = map([
        (
            "Path",
            Value::from(dir.join("up/file.txt").to_str().unwrap()),
        ),
        ("WriterStreamId", Value::from(writer_id)),
    ]);
    hook.call("Communicator.Download", args).await.map_err(e)?;
    got.downloaded = read_all(download).await;

    // Several flow-control windows each way, FileInfo absent (nil).
    let big = big_payload();
    let (reader_id, reader) = accept_later(broker);
    let writer = tokio::spawn(async move {
        let mut s = reader.await.unwrap();
        s.write_all(&big).await.unwrap();
        s.shutdown().await.unwrap();
        s
    });
    let big_path = dir.join("big.bin");
    let upload = map([
        ("Path", Value::from(big_path.to_str().unwrap())),
        ("ReaderStreamId", Value::from(reader_id)),
        ("FileInfo", Value::Nil),
    ]);
    hook.call("Communicator.Upload", upload).await.map_err(e)?;
    drop(writer.await.unwrap());
    let (writer_id, download) = accept_later(broker);
    let args = map([
        ("Path", Value::from(big_path.to_str().unwrap())),
        ("WriterStreamId", Value::from(writer_id)),
    ]);
    // Packer reads the download while the call is in flight.
    let reading = tokio::spawn(read_all(download));
    hook.call("Communicator.Download", args).await.map_err(e)?;
    got.big_roundtrip = reading.await.unwrap();

    let src = dir.join("srcdir").display().to_string();
    hook.call(
        "Communicator.DownloadDir",
        dir_args(&dir.join("downdir"), &src),
    )
    .await
    .map_err(e)?;

    got.unknown_method = hook.call("Communicator.Nope", Value::Nil).await.err();
    Ok(got)
}

struct RunOutcome {
    seen: Arc<Mutex<Seen>>,
    result: Result<Value, ClientError>,
}

async fn run_build(
    plugin: &Plugin,
    scenario: HookScenario,
    workdir: &Path,
    cancel_mid_hook: bool,
) -> RunOutcome {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let hook_started = Arc::new(Notify::new());
    let side = Arc::new(PackerSide {
        broker: plugin.broker.clone(),
        seen: seen.clone(),
        scenario,
        workdir: workdir.to_owned(),
        hook_started: hook_started.clone(),
        hook_cancelled: Arc::new(Notify::new()),
    });
    let (run_id, run_stream) = accept_later(&plugin.broker);
    tokio::spawn(async move { rpc::serve(run_stream.await.unwrap(), side).await });
    let main = plugin.main.clone();
    let run = tokio::spawn(async move { main.call("Builder.Run", Value::from(run_id)).await });
    if cancel_mid_hook {
        hook_started.notified().await;
        plugin
            .main
            .call("Builder.Cancel", Value::Nil)
            .await
            .unwrap();
    }
    let result = run.await.unwrap();
    RunOutcome { seen, result }
}

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("srcdir/sub")).unwrap();
    std::fs::write(dir.path().join("srcdir/a.txt"), "file a").unwrap();
    std::fs::write(dir.path().join("srcdir/skip.txt"), "excluded").unwrap();
    std::fs::write(dir.path().join("srcdir/sub/b.txt"), "file b").unwrap();
    dir
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

#[tokio::test]
async fn packer_1_12_hcl2_build_with_protobuf_spec_provisioning_and_artifact() {
    bounded(async {
        let plugin = start_plugin(&["start", "builder", "--protobuf", DEFAULT_NAME]).await;
        assert!(plugin.handshake.starts_with("5|0|unix|/"), "{}", plugin.handshake);

        let reply = plugin.main.call("Builder.ConfigSpec", Value::Nil).await.unwrap();
        let Some(Value::Binary(bytes)) = msgpack::field(&reply, "ConfigSpec") else { panic!("{reply}") };
        let spec = proto::Spec::decode(bytes.as_slice()).unwrap();
        let Some(proto::spec::Block::Object(object)) = spec.block else { panic!("not an object spec") };
        let keys: Vec<_> = object.attributes.keys().cloned().collect();
        assert_eq!(keys, ["count", "disk", "fail_run", "greeting", "tags"]);

        let reply = plugin.main.call("Builder.Prepare", hcl2_prepare_args("hello")).await.unwrap();
        assert_eq!(
            msgpack::to_json(&reply),
            serde_json::json!({"GeneratedVars": ["WireTestVar"], "Warnings": ["wiretest warning"], "Error": null})
        );

        let dir = workdir();
        let outcome = run_build(&plugin, HookScenario::Provision, dir.path(), false).await;
        let artifact_id = msgpack::as_u32(&outcome.result.unwrap()).unwrap();
        assert!(artifact_id > 0);
        let seen = std::mem::take(&mut *outcome.seen.lock().unwrap());
        let events = &seen.events;
        assert_eq!(events[0], "Ui.Say: wiretest: starting");
        assert_eq!(events[1], "Ui.Message: wiretest: kind Hcl2");
        assert_eq!(
            events[2],
            r#"Ui.Message: wiretest: config {"count":3,"disk":[{"size":10}],"fail_run":null,"greeting":"hello","tags":{"a":"b"}}"#
        );
        assert_eq!(events[3], "Ui.Message: wiretest: build_name=wire builder_type=wiretest debug=false on_error=Abort");
        assert_eq!(events[4], "Ui.Error: wiretest: an error line");
        assert_eq!(events[5], "Hook.Run: packer_provision");
        // Ui calls on the hook stream reach Packer's Ui on the Run stream.
        assert_eq!(events[6], "Ui.Say: from the provisioner");
        assert_eq!(events[7], r#"Ui.NewTrackProgress: {"CurrentSize":0,"Src":"f","TotalSize":10}"#);
        assert_eq!(events[8], "Uitrk1.Add: 5");
        assert_eq!(events[9], "Uitrk1.Close: null");
        let n = events.len();
        assert_eq!(
            events[n - 7..],
            [
                "Ui.Ask: wiretest question?",
                "Ui.Message: wiretest: answer forty-two",
                r#"Ui.Machine: {"Args":["0","id"],"Category":"artifact"}"#,
                r#"Ui.NewTrackProgress: {"CurrentSize":2,"Src":"wiretest-src","TotalSize":10}"#,
                "Uitrk1.Add: 8",
                "Uitrk1.Close: null",
                "Ui.Say: wiretest: done",
            ]
        );
        let data = seen.hook_data.as_ref().unwrap();
        assert_eq!(data["WireTestVar"], "wiretest-value");
        assert_eq!(data["ID"], "wiretest-id");

        let p = seen.provision.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(p.stdout, b"out-line\n");
        assert_eq!(p.stderr, b"err-line\n");
        assert_eq!(p.response, encode_command_finished(3));
        assert_eq!(p.stdin_echo, b"piped input");
        assert_eq!(p.stdin_response, encode_command_finished(0));
        assert_eq!(p.downloaded, b"uploaded bytes");
        let big = big_payload();
        assert!(p.big_roundtrip == big, "1.5 MB upload+download corrupted: {} bytes back, first difference at {:?}", p.big_roundtrip.len(), p.big_roundtrip.iter().zip(&big).position(|(a, b)| a != b));
        assert_eq!(p.upload_dir_reply, Some(Value::Nil), "typed error reply must be nil (c0)");
        assert_eq!(
            p.unknown_method,
            Some(ClientError::Server("rpc: can't find method Communicator.Nope".into()))
        );
        let d = dir.path();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("up/file.txt")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(std::fs::read_to_string(d.join("updir/a.txt")).unwrap(), "file a");
        assert_eq!(std::fs::read_to_string(d.join("updir/sub/b.txt")).unwrap(), "file b");
        assert!(!d.join("updir/skip.txt").exists());
        assert_eq!(std::fs::read_to_string(d.join("downdir/srcdir/sub/b.txt")).unwrap(), "file b");

        let artifact = Client::new(plugin.broker.dial(artifact_id).await.unwrap());
        assert_eq!(artifact.call("Artifact.BuilderId", Value::Nil).await.unwrap(), Value::from("wiretest.builder"));
        assert_eq!(artifact.call("Artifact.Id", Value::Nil).await.unwrap(), Value::from("wiretest-artifact-id"));
        assert_eq!(artifact.call("Artifact.String", Value::Nil).await.unwrap(), Value::from("wiretest artifact"));
        assert_eq!(
            msgpack::to_json(&artifact.call("Artifact.Files", Value::Nil).await.unwrap()),
            serde_json::json!(["/nonexistent/wiretest.img"])
        );
        assert_eq!(
            msgpack::to_json(&artifact.call("Artifact.State", Value::from("generated_data")).await.unwrap()),
            serde_json::json!({"WireTestVar": "wiretest-value"})
        );
        assert_eq!(artifact.call("Artifact.State", Value::from("par.artifact.metadata")).await.unwrap(), Value::Nil);
        assert_eq!(
            artifact.call("Artifact.Destroy", Value::Nil).await,
            Err(ClientError::Server("wiretest: destroy refused".into()))
        );
        assert!(plugin.extra_stdout.lock().unwrap().is_empty(), "stdout after the handshake line");
    })
    .await;
}

#[tokio::test]
async fn cancel_mid_run_sends_hook_cancel_and_run_returns() {
    bounded(async {
        let plugin = start_plugin(&["start", "builder", "--protobuf", DEFAULT_NAME]).await;
        plugin
            .main
            .call("Builder.Prepare", hcl2_prepare_args("hello"))
            .await
            .unwrap();
        let dir = workdir();
        let outcome = run_build(&plugin, HookScenario::WaitForCancel, dir.path(), true).await;
        assert_eq!(
            outcome.result,
            Err(ClientError::Server("wiretest: build cancelled".into()))
        );
        let events = outcome.seen.lock().unwrap().events.clone();
        let hook_run = events
            .iter()
            .position(|e| e == "Hook.Run: packer_provision")
            .unwrap();
        let hook_cancel = events
            .iter()
            .position(|e| e == "Hook.Cancel")
            .expect("Hook.Cancel was sent");
        assert!(hook_cancel > hook_run);
        assert_eq!(events.last().unwrap(), "Ui.Error: wiretest: cancelled");
    })
    .await;
}

#[tokio::test]
async fn prepare_errors_come_back_in_the_reply_error_message() {
    bounded(async {
        let plugin = start_plugin(&["start", "builder", DEFAULT_NAME]).await;
        let reply = plugin.main.call("Builder.Prepare", hcl2_prepare_args("invalid")).await.unwrap();
        assert_eq!(
            msgpack::to_json(&reply),
            serde_json::json!({"GeneratedVars": null, "Warnings": null, "Error": {
                "Message": "2 errors occurred:\n\t* greeting must not be \"invalid\"\n\t* second problem\n\n"}})
        );
    })
    .await;
}

#[tokio::test]
async fn packer_1_11_gob_spec_and_json_template_prepare() {
    bounded(async {
        let plugin = start_plugin(&["start", "builder", DEFAULT_NAME]).await;
        assert!(plugin.handshake.starts_with("5|0|unix|/"), "{}", plugin.handshake);
        let reply = plugin.main.call("Builder.ConfigSpec", Value::Nil).await.unwrap();
        let Some(Value::Binary(gob)) = msgpack::field(&reply, "ConfigSpec") else { panic!("{reply}") };
        let contains = |needle: &str| gob.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(contains("*hcldec.AttrSpec") && contains("*hcldec.BlockListSpec") && contains("greeting"));
        assert!(contains("github.com/zclconf/go-cty/cty.primitiveType"));

        // JSON template: raw builder map (float numbers, raw Go templates),
        // then Packer's config with real booleans; 2015-codec key order.
        let builder = msgpack::from_json(&serde_json::json!({"greeting": "hi {{user `who`}}", "count": 3.0}));
        let packer = msgpack::from_json(&serde_json::json!({
            "packer_build_name": "wiretest", "packer_builder_type": "wiretest", "packer_core_version": "1.11.2",
            "packer_debug": true, "packer_force": false, "packer_on_error": "",
            "packer_template_path": "/t.json", "packer_user_variables": {"who": "world"}
        }));
        let reply = plugin
            .main
            .call("Builder.Prepare", map([("Configs", Value::Array(vec![builder, packer]))]))
            .await
            .unwrap();
        assert_eq!(msgpack::field(&reply, "Error"), Some(&Value::Nil));
        let dir = workdir();
        let outcome = run_build(&plugin, HookScenario::Provision, dir.path(), false).await;
        assert!(outcome.result.is_ok());
        let events = outcome.seen.lock().unwrap().events.clone();
        assert_eq!(events[1], "Ui.Message: wiretest: kind Json");
        assert_eq!(events[2], r#"Ui.Message: wiretest: config {"count":3.0,"greeting":"hi {{user `who`}}"}"#);
        assert_eq!(events[3], "Ui.Message: wiretest: build_name=wiretest builder_type=wiretest debug=true on_error=Cleanup");
    })
    .await;
}

#[tokio::test]
async fn legacy_start_without_arguments_prints_three_field_handshake() {
    bounded(async {
        let plugin = start_plugin(&[]).await;
        assert!(
            plugin.handshake.starts_with("5|unix|/"),
            "{}",
            plugin.handshake
        );
        let reply = plugin
            .main
            .call("Builder.ConfigSpec", Value::Nil)
            .await
            .unwrap();
        assert!(
            matches!(msgpack::field(&reply, "ConfigSpec"), Some(Value::Binary(b)) if !b.is_empty())
        );
        assert_eq!(
            plugin.main.call("Builder.Nope", Value::Nil).await,
            Err(ClientError::Server(
                "rpc: can't find method Builder.Nope".into()
            ))
        );
    })
    .await;
}

#[tokio::test]
async fn failed_run_reports_the_error_in_the_response_header() {
    bounded(async {
        let plugin = start_plugin(&["start", "builder", DEFAULT_NAME]).await;
        let builder = msgpack::from_json(&serde_json::json!({"fail_run": true}));
        let packer = msgpack::from_json(&serde_json::json!({"packer_build_name": "x"}));
        plugin
            .main
            .call(
                "Builder.Prepare",
                map([("Configs", Value::Array(vec![builder, packer]))]),
            )
            .await
            .unwrap();
        let outcome = run_build(
            &plugin,
            HookScenario::Provision,
            Path::new("/nonexistent"),
            false,
        )
        .await;
        assert_eq!(
            outcome.result,
            Err(ClientError::Server("wiretest: failing on purpose".into()))
        );
    })
    .await;
}

#[tokio::test]
async fn plugin_exits_cleanly_when_packer_hangs_up() {
    bounded(async {
        let mut plugin = start_plugin(&["start", "builder", DEFAULT_NAME]).await;
        plugin
            .main
            .call("Builder.Prepare", hcl2_prepare_args("hello"))
            .await
            .unwrap();
        plugin.broker.session().close();
        let status = tokio::time::timeout(Duration::from_secs(5), plugin.child.wait())
            .await
            .expect("plugin still running after the connection closed")
            .unwrap();
        assert!(status.success(), "{status}");
    })
    .await;
}

#[test]
fn describe_is_json_and_fast() {
    // Packer ≥1.11 runs `describe` for every installed plugin on every
    // invocation. Best of three, so a busy CI machine does not flake.
    let mut fastest = Duration::MAX;
    let mut out = None;
    for _ in 0..3 {
        let started = Instant::now();
        let o = std::process::Command::new(plugin_binary())
            .arg("describe")
            .env_remove(MAGIC_COOKIE_KEY)
            .output()
            .unwrap();
        fastest = fastest.min(started.elapsed());
        out = Some(o);
    }
    let out = out.unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["builders"], serde_json::json!([DEFAULT_NAME]));
    assert_eq!(v["api_version"], "x5.0");
    assert_eq!(v["protocol_version"], "v2");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(out.stdout.ends_with(b"}\n"));
    assert!(
        fastest < Duration::from_millis(50),
        "describe took {fastest:?}"
    );
}

#[test]
fn refuses_to_start_without_the_magic_cookie() {
    let out = std::process::Command::new(plugin_binary())
        .args(["start", "builder", DEFAULT_NAME])
        .env_remove(MAGIC_COOKIE_KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no handshake without the cookie");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Packer starts it itself"));
}

#[test]
fn plugin_survives_sigint_while_serving() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bounded(async {
        let plugin = start_plugin(&["start", "builder", DEFAULT_NAME]).await;
        let pid = plugin.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reply = plugin
            .main
            .call("Builder.Prepare", hcl2_prepare_args("hello"))
            .await
            .unwrap();
        assert_eq!(msgpack::field(&reply, "Error"), Some(&Value::Nil));
    }));
}
