//! The plugin's command line (PROTOCOL.md §1.1): `describe`,
//! `start builder [--protobuf] NAME`, and no arguments for Packer 1.6's
//! legacy `packer-builder-NAME` start.
//!
//! argv is parsed by hand: the component name Packer passes,
//! `-packer-default-plugin-name-`, starts with a dash and CLI crates take
//! it for a flag.

use std::process::ExitCode;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;

use crate::plugin::api;
use crate::plugin::broker::Broker;
use crate::plugin::handshake::{self, HandshakeStyle};
use crate::plugin::mux::{Role, Session};
use crate::plugin::services::{serve_builder, SpecEncoding};

/// The component name of a plugin's only builder: Packer ≥1.7 then calls
/// it by the plugin's name alone.
pub const DEFAULT_NAME: &str = "-packer-default-plugin-name-";

/// The plugin API version Packer requires (`x5.0`).
pub const API_VERSION: &str = "x5.0";

/// Go SDK release whose wire protocol this crate speaks (informational).
pub const SDK_VERSION: &str = "0.6.10";

/// `v2`: we can send ConfigSpec as protobuf (`--protobuf`, Packer ≥1.12).
pub const PROTOCOL_VERSION: &str = "v2";

/// What argv asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the JSON description.
    Describe,
    /// Serve the builder; `legacy` for Packer 1.6's argument-less start.
    Start {
        /// 3-field handshake (no arguments given).
        legacy: bool,
        /// ConfigSpec as protobuf.
        protobuf: bool,
    },
    /// `--version`.
    Version,
    /// `--help`.
    Help,
}

/// Why argv was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// `start` for something other than our builder.
    #[error(
        "this plugin provides only a builder named {DEFAULT_NAME:?}; cannot start {kind} {name:?}"
    )]
    UnknownComponent {
        /// The component kind asked for.
        kind: String,
        /// The component name asked for.
        name: String,
    },
    /// Anything else.
    #[error("unexpected arguments: {0:?} (try --help)")]
    Unexpected(Vec<String>),
}

/// Parses argv without the program name.
pub fn parse_args(args: &[String]) -> Result<Command, UsageError> {
    let protobuf = args.iter().any(|a| a == "--protobuf");
    let rest: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--protobuf")
        .collect();
    match rest.as_slice() {
        [] => Ok(Command::Start {
            legacy: true,
            protobuf,
        }),
        ["describe"] => Ok(Command::Describe),
        ["start", "builder", name] if *name == DEFAULT_NAME => Ok(Command::Start {
            legacy: false,
            protobuf,
        }),
        ["start", kind, name] => Err(UsageError::UnknownComponent {
            kind: (*kind).into(),
            name: (*name).into(),
        }),
        ["--version"] | ["-v"] | ["version"] => Ok(Command::Version),
        ["--help"] | ["-h"] | ["help"] => Ok(Command::Help),
        _ => Err(UsageError::Unexpected(args.to_vec())),
    }
}

/// The `describe` JSON (one line).
pub fn describe_json() -> String {
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "sdk_version": SDK_VERSION,
        "api_version": API_VERSION,
        "builders": [DEFAULT_NAME],
        "post_processors": [],
        "provisioners": [],
        "datasources": [],
        "protocol_version": PROTOCOL_VERSION,
    })
    .to_string()
}

fn help_text() -> String {
    format!(
        "{name} {version}: a Packer builder plugin.\n\n\
         Packer runs this program itself; install it with\n  \
         packer plugins install --path <this binary> github.com/<org>/<name>\n\
         or, for Packer 1.6, copy it as packer-builder-<name> next to your template.\n\n\
         Commands:\n  \
         describe                          print the plugin description (JSON)\n  \
         start builder [--protobuf] {DEFAULT_NAME}\n                                    serve the builder (needs Packer's environment)\n  \
         (no arguments)                    serve the builder for Packer 1.6\n  \
         --version, --help\n",
        name = env!("CARGO_PKG_NAME"),
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// The whole program: what `main` of a builder plugin calls.
pub fn main(builder: Arc<dyn api::Builder>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(builder, &args)
}

/// [`main`] with explicit arguments (without the program name).
pub fn run(builder: Arc<dyn api::Builder>, args: &[String]) -> ExitCode {
    let command = match parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Describe => {
            println!("{}", describe_json());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help => {
            print!("{}", help_text());
            ExitCode::SUCCESS
        }
        Command::Start { legacy, protobuf } => start(builder, legacy, protobuf),
    }
}

fn start(builder: Arc<dyn api::Builder>, legacy: bool, protobuf: bool) -> ExitCode {
    if !handshake::has_magic_cookie() {
        eprintln!("{}", handshake::HandshakeError::NoMagicCookie);
        return ExitCode::FAILURE;
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        ignore_interrupts();
        let style = if legacy {
            HandshakeStyle::Legacy
        } else {
            HandshakeStyle::Current
        };
        let conn = match handshake::listen_and_accept(style).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let broker = Broker::new(Session::new(conn, Role::Server));
        let encoding = if protobuf {
            SpecEncoding::Protobuf
        } else {
            SpecEncoding::Gob(None)
        };
        serve_builder(broker, builder, encoding).await;
        tracing::debug!("Packer closed the connection; exiting");
        ExitCode::SUCCESS
    });
    // serve_builder already cancelled and awaited a build Packer abandoned;
    // what is left is stray blocking work, not worth waiting for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Ctrl-C reaches the whole process group; Packer turns it into
/// `Builder.Cancel`, so the plugin must survive it. A handler (not
/// SIG_IGN) is installed so commands we start still get default signals.
fn ignore_interrupts() {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
    ] {
        match signal(kind) {
            Ok(mut stream) => {
                tokio::spawn(async move {
                    let mut count = 0u32;
                    while stream.recv().await.is_some() {
                        count += 1;
                        tracing::info!("received {name} (count: {count}); ignoring, Packer cancels through RPC");
                    }
                });
            }
            Err(e) => tracing::warn!("cannot install a {name} handler: {e}"),
        }
    }
}

/// `tracing` to stderr (Packer logs plugin stderr with `PACKER_LOG=1`).
/// Logs go to stderr, which Packer copies into its own log only when the
/// user set `PACKER_LOG`; Packer 1.6 also removes that variable from its
/// plugins' environment. So, as Go plugins do, this crate always logs at
/// debug level and Packer decides whether it is shown; the dependencies
/// (the AWS SDK, hyper …) log at debug level only when this process itself
/// sees `PACKER_LOG` (run by hand, or by Packer versions that pass it on).
fn log_filter(packer_log: Option<&str>) -> &'static str {
    match packer_log {
        Some(v) if !v.is_empty() && v != "0" => "debug",
        _ => "info,amazon_chroot=debug",
    }
}

fn init_logging() {
    let packer_log = std::env::var("PACKER_LOG").ok();
    let filter = EnvFilter::new(log_filter(packer_log.as_deref()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_this_crate_at_debug_level_even_when_packer_hides_packer_log() {
        assert_eq!(log_filter(None), "info,amazon_chroot=debug");
        assert_eq!(log_filter(Some("0")), "info,amazon_chroot=debug");
        assert_eq!(log_filter(Some("")), "info,amazon_chroot=debug");
        assert_eq!(log_filter(Some("1")), "debug");
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn protobuf_flag_anywhere_and_dash_names() {
        let want = Ok(Command::Start {
            legacy: false,
            protobuf: true,
        });
        assert_eq!(
            parse_args(&args(&["start", "builder", "--protobuf", DEFAULT_NAME])),
            want
        );
        assert_eq!(
            parse_args(&args(&["--protobuf", "start", "builder", DEFAULT_NAME])),
            want
        );
        assert_eq!(
            parse_args(&args(&["start", "builder", DEFAULT_NAME, "--protobuf"])),
            want
        );
        assert_eq!(
            parse_args(&args(&["start", "builder", DEFAULT_NAME])),
            Ok(Command::Start {
                legacy: false,
                protobuf: false
            })
        );
    }

    #[test]
    fn no_arguments_is_the_legacy_start() {
        assert_eq!(
            parse_args(&[]),
            Ok(Command::Start {
                legacy: true,
                protobuf: false
            })
        );
    }

    #[test]
    fn rejects_unknown_components_and_arguments() {
        assert!(matches!(
            parse_args(&args(&["start", "provisioner", DEFAULT_NAME])),
            Err(UsageError::UnknownComponent { .. })
        ));
        assert!(matches!(
            parse_args(&args(&["start", "builder", "other"])),
            Err(UsageError::UnknownComponent { .. })
        ));
        assert!(matches!(
            parse_args(&args(&["bogus"])),
            Err(UsageError::Unexpected(_))
        ));
    }

    #[test]
    fn describe_has_every_field_packer_reads() {
        let v: serde_json::Value = serde_json::from_str(&describe_json()).unwrap();
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["api_version"], "x5.0");
        assert_eq!(v["protocol_version"], "v2");
        assert_eq!(v["builders"], serde_json::json!([DEFAULT_NAME]));
        for empty in ["post_processors", "provisioners", "datasources"] {
            assert_eq!(v[empty], serde_json::json!([]), "{empty}");
        }
        assert!(v["sdk_version"].is_string());
    }
}
