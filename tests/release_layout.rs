//! `scripts/release.sh` (what `make release` runs) produces what
//! `packer init` downloads, checked the way Packer's GitHub getter reads it
//! (PROTOCOL.md §7.3), and `scripts/install-plugin.sh` (what `make dev`
//! runs) lays the binary out the way `packer plugins install --path` does
//! (§7.2).
//!
//! To keep CI fast the release is made from the test profile's binary with
//! `--binary` (the same packaging code `make release` runs after its release
//! build).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const NAME: &str = "amazon-chroot";
const ORG: &str = "release-test-org";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn plugin_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_packer-plugin-amazon-chroot"))
}

/// Runs a command to completion; panics with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The binary's `describe` JSON.
fn describe(binary: &Path) -> serde_json::Value {
    let out = Command::new(binary).arg("describe").output().unwrap();
    assert!(out.status.success(), "{} describe failed", binary.display());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

/// `packer-plugin-NAME_vX.Y.Z_x5.0_OS_ARCH.zip` split as Packer's getter
/// splits it: (name, version, api, os, arch).
fn parse_zip_name(file: &str) -> Option<(String, String, String, String, String)> {
    let stem = file.strip_prefix("packer-plugin-")?.strip_suffix(".zip")?;
    let parts: Vec<&str> = stem.split('_').collect();
    let [name, version, api, os, arch] = parts.as_slice() else {
        return None;
    };
    let version = version.strip_prefix('v')?;
    let numbers: Vec<&str> = version.split('.').collect();
    let semver = numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let api_ok = api
        .strip_prefix('x')
        .is_some_and(|v| v.split('.').count() == 2);
    (semver && api_ok).then(|| {
        (
            name.to_string(),
            version.to_string(),
            api.to_string(),
            os.to_string(),
            arch.to_string(),
        )
    })
}

/// Names and contents of a zip's entries, read by Python's zipfile (an
/// independent reader; Packer uses Go's archive/zip).
fn zip_entries(zip: &Path) -> BTreeMap<String, Vec<u8>> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile, json; z = zipfile.ZipFile(sys.argv[1]); \
             print(json.dumps({i.filename: z.read(i).hex() for i in z.infolist()}))",
        ])
        .arg(zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map: BTreeMap<String, String> = serde_json::from_slice(&out.stdout).unwrap();
    map.into_iter()
        .map(|(k, hex)| {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (k, bytes)
        })
        .collect()
}

#[test]
fn release_passes_the_packer_getter_checks_installs_and_is_reproducible() {
    let binary = plugin_binary();
    let described = describe(&binary);
    let version = described["version"].as_str().unwrap().to_string();
    assert_eq!(described["api_version"], "x5.0");

    let tmp = tempfile::tempdir().unwrap();
    let dist = tmp.path().join("dist");
    let log = run(Command::new(repo().join("scripts/release.sh"))
        .arg("--binary")
        .arg(&binary)
        .arg("--out")
        .arg(&dist));

    // Checksums file, named for the tag.
    let sums_name = format!("packer-plugin-{NAME}_v{version}_SHA256SUMS");
    let sums = std::fs::read_to_string(dist.join(&sums_name))
        .unwrap_or_else(|e| panic!("{sums_name}: {e}\n{log}"));
    let mut listed = BTreeMap::new();
    for line in sums.lines() {
        let (hash, file) = line.split_once(char::is_whitespace).unwrap();
        let file = file.trim_start().trim_start_matches('*');
        assert_eq!(hash.len(), 64, "{line}");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
        assert_eq!(sha256_hex(&dist.join(file)), hash, "checksum of {file}");
        if file.ends_with(".json") {
            continue; // the getter skips these entries
        }
        listed.insert(file.to_string(), hash.to_string());
    }

    // Every zip is listed, and every listed name parses as Packer expects.
    let zips: Vec<String> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".zip"))
        .collect();
    assert_eq!(
        zips.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        listed.keys().cloned().collect(),
        "zips in dist/ vs SHA256SUMS entries"
    );
    let amd64 = format!("packer-plugin-{NAME}_v{version}_x5.0_linux_amd64.zip");
    assert!(listed.contains_key(&amd64), "{amd64} missing: {listed:?}");

    for file in listed.keys() {
        let (name, file_version, api, os, arch) =
            parse_zip_name(file).unwrap_or_else(|| panic!("{file} does not parse as a plugin zip"));
        assert_eq!(name, NAME);
        assert_eq!(
            file_version, version,
            "{file}: version differs from describe"
        );
        assert_eq!(api, "x5.0");
        assert_eq!(os, "linux");
        assert!(arch == "amd64" || arch == "arm64", "{file}");

        // The zip holds exactly the binary named as Packer looks it up.
        let entries = zip_entries(&dist.join(file));
        let inner = file.strip_suffix(".zip").unwrap().to_string();
        assert_eq!(entries.keys().collect::<Vec<_>>(), vec![&inner], "{file}");
        if arch != "amd64" {
            continue; // cannot run it here
        }
        let bytes = &entries[&inner];
        assert_eq!(
            bytes,
            &std::fs::read(&binary).unwrap(),
            "{file} holds another binary"
        );

        // Install it as Packer does: binary + _SHA256SUM of the extracted binary.
        let plugin_dir = tmp
            .path()
            .join("plugins")
            .join("github.com")
            .join(ORG)
            .join(NAME);
        std::fs::create_dir_all(&plugin_dir).unwrap();
        let installed = plugin_dir.join(&inner);
        std::fs::write(&installed, bytes).unwrap();
        std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sum_file = plugin_dir.join(format!("{inner}_SHA256SUM"));
        std::fs::write(&sum_file, sha256_hex(&installed)).unwrap();

        // What Packer >= 1.11 checks on discovery.
        assert_eq!(
            std::fs::read_to_string(&sum_file).unwrap(),
            sha256_hex(&installed)
        );
        let d = describe(&installed);
        assert_eq!(d["version"].as_str(), Some(file_version.as_str()));
        assert_eq!(d["api_version"].as_str(), Some(api.as_str()));
    }

    let manifest_name = format!("packer-plugin-{NAME}_v{version}_manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dist.join(manifest_name)).unwrap()).unwrap();
    assert_eq!(manifest["metadata"]["protocol_version"], "5.0");
    assert_eq!(manifest["version"], 1);

    // Reproducible: the same binary gives the same zips (fixed timestamps).
    let again = tmp.path().join("again");
    run(Command::new(repo().join("scripts/release.sh"))
        .arg("--binary")
        .arg(&binary)
        .arg("--out")
        .arg(&again));
    assert_eq!(
        std::fs::read_to_string(again.join(&sums_name)).unwrap(),
        sums
    );
}

#[test]
fn release_refuses_a_binary_whose_version_differs_from_cargo_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("packer-plugin-amazon-chroot");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '{\"version\":\"9.9.9\",\"api_version\":\"x5.0\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(repo().join("scripts/release.sh"))
        .arg("--binary")
        .arg(&fake)
        .arg("--out")
        .arg(tmp.path().join("dist"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("describe says version 9.9.9"), "{err}");
    assert!(!tmp.path().join("dist").exists(), "nothing may be written");
}

#[test]
fn dev_install_matches_packer_plugins_install_and_the_legacy_name() {
    let binary = plugin_binary();
    let version = describe(&binary)["version"].as_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let legacy = tmp.path().join("home/.packer.d/plugins");
    run(Command::new(repo().join("scripts/install-plugin.sh"))
        .arg(&binary)
        .arg(ORG)
        .arg("--plugin-dir")
        .arg(&plugins)
        .arg("--legacy-dir")
        .arg(&legacy));

    let dir = plugins.join("github.com").join(ORG).join(NAME);
    let name = format!("packer-plugin-{NAME}_v{version}_x5.0_linux_amd64");
    let installed = dir.join(&name);
    let sum_file = dir.join(format!("{name}_SHA256SUM"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&installed), 0o755);
    assert_eq!(mode(&sum_file), 0o644);
    let sum = std::fs::read_to_string(&sum_file).unwrap();
    assert_eq!(sum, sha256_hex(&installed), "lower-case hex, no newline");
    assert!(!sum.ends_with('\n'));
    assert_eq!(sum, sum.to_lowercase());
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&binary).unwrap()
    );
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 2, "only the binary and its checksum");
    assert_eq!(
        std::fs::read(legacy.join("packer-builder-amazon-chroot")).unwrap(),
        std::fs::read(&binary).unwrap()
    );
}

#[test]
fn packer_1_6_finds_the_legacy_install_in_the_home_plugin_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    run(Command::new(repo().join("scripts/install-plugin.sh"))
        .arg(plugin_binary())
        .arg(ORG)
        .arg("--plugin-dir")
        .arg(tmp.path().join("plugins"))
        .arg("--legacy-dir")
        .arg(home.join(".packer.d/plugins")));
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // An unknown key only our Prepare names with a suggestion: proves the
    // installed plugin (not Packer 1.6's builtin builder) answered.
    std::fs::write(
        work.join("t.json"),
        r#"{"builders":[{"type":"amazon-chroot","source_ami":"ami-1","ami_name":"t","mount_partiton":"1"}]}"#,
    )
    .unwrap();
    let packer = std::env::var_os("PACKER_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/packer"), PathBuf::from);
    let out = Command::new(packer)
        .args(["validate", "t.json"])
        .current_dir(&work)
        .env("HOME", &home)
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("PACKER_PLUGIN_PATH")
        .env_remove("PACKER_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    // Packer wraps long lines.
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("did you mean \"mount_partition\""), "{text}");
}

#[test]
fn binary_links_only_glibc_and_libgcc() {
    // Near-static: Rust code and C dependencies are linked in; only glibc's
    // libraries are loaded at run time (no OpenSSL), so one build runs on
    // every glibc distribution at least as new as the build machine's.
    let out = run(Command::new("readelf").arg("-d").arg(plugin_binary()));
    let needed: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(!needed.is_empty(), "no NEEDED entries: {out}");
    let glibc = [
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
    ];
    let other: Vec<&&str> = needed.iter().filter(|n| !glibc.contains(n)).collect();
    assert!(other.is_empty(), "links more than glibc: {other:?}");
}

#[test]
fn zip_names_parse_like_packers_getter() {
    assert_eq!(
        parse_zip_name("packer-plugin-amazon-chroot_v0.1.0_x5.0_linux_amd64.zip"),
        Some((
            "amazon-chroot".into(),
            "0.1.0".into(),
            "x5.0".into(),
            "linux".into(),
            "amd64".into()
        ))
    );
    assert_eq!(
        parse_zip_name("packer-plugin-amazon-chroot_0.1.0_x5.0_linux_amd64.zip"),
        None
    );
    assert_eq!(
        parse_zip_name("packer-plugin-amazon-chroot_v0.1_x5.0_linux_amd64.zip"),
        None
    );
    assert_eq!(
        parse_zip_name("packer-plugin-amazon-chroot_v0.1.0_linux_amd64.zip"),
        None
    );
}
