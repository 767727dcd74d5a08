//! Device names: choosing a free attachment point, and finding the local
//! node of an attached volume (Xen `xvdX`/`sdX` or Nitro NVMe).
//!
//! Upstream guessed the prefix from `/sys/block` (failing on NVMe hosts,
//! and on hosts whose root disk is `vda`), checked only `/dev`, and never
//! verified which node the volume became. Here the free letter must be free
//! locally *and* in the instance's EC2 block device mappings, and the
//! attached volume is found by its id first.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Letters EC2 recommends for EBS data volumes on Linux (`/dev/sd[f-p]`).
const LETTERS: std::ops::RangeInclusive<char> = 'f'..='p';

/// How often the local node is looked for after attach; udev usually
/// creates it within a second.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The prefix of the udev by-id links of EBS volumes on Nitro instances.
const EBS_BY_ID_PREFIX: &str = "nvme-Amazon_Elastic_Block_Store_";

/// Errors of device naming and discovery.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Every letter f–p is in use locally or on the instance.
    #[error("no free device: /dev/sd[f-p] and /dev/xvd[f-p] are all in use (locally under {dev_root:?} or attached to the instance: {attached:?}). Detach volumes left attached by earlier builds, or set device_path to a name you know is free.")]
    NoneFree {
        /// The /dev root looked at.
        dev_root: PathBuf,
        /// Names EC2 reported attached.
        attached: Vec<String>,
    },
    /// `device_path` names a node that already exists.
    #[error("Device is in use: {0}. Another volume is attached there (a parallel build, or one left by an earlier build): leave device_path empty to pick a free device, set it to a free /dev/sd[f-p] name, or wait for the other build to finish.")]
    InUse(String),
    /// `device_path` is not of the form `/dev/sdX` or `/dev/xvdX`.
    #[error("device_path {0:?} is not a /dev/sdX or /dev/xvdX name")]
    BadName(String),
    /// Reading /dev or /sys failed.
    #[error("cannot inspect {path:?}: {source}")]
    Io {
        /// What was inspected.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The attached volume's node did not appear in time.
    #[error("volume {volume_id} (attached as {api_name}) did not appear on this host within {waited:?}; looked for: {looked_for}. On Nitro instances the volume is an NVMe device found through udev's /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_* links: check that udev runs and the EBS NVMe rules (amazon-ec2-utils or ec2-utils) are installed, or set nvme_device_path to the device node.")]
    NotFound {
        /// The volume.
        volume_id: String,
        /// The name given to AttachVolume.
        api_name: String,
        /// How long was waited.
        waited: Duration,
        /// Every path checked, comma separated.
        looked_for: String,
    },
    /// The partition to mount did not appear in time.
    #[error("partition {partition} of {device:?} did not appear within {waited:?} (is mount_partition right? \"0\" mounts the whole device); looked for: {looked_for}")]
    PartitionNotFound {
        /// The device found for the volume.
        device: PathBuf,
        /// The `mount_partition` asked for.
        partition: String,
        /// How long was waited.
        waited: Duration,
        /// Every path checked, comma separated.
        looked_for: String,
    },
    /// The build was cancelled while waiting for the node.
    #[error("cancelled while waiting for {0} to appear on this host")]
    Cancelled(String),
}

/// A device name chosen for AttachVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChoice {
    /// The name for the EC2 API, always `/dev/sdX`.
    pub api_name: String,
    /// The name the kernel is expected to use on a Xen host (`/dev/xvdX`
    /// for auto-picked names, or the `device_path` as given).
    pub local_name: PathBuf,
}

/// The letter of `f`–`p` a device name uses, for `/dev/sdf`, `sdf`,
/// `/dev/xvdf`, `xvdf1`, …; `None` for other names (`/dev/xvda`, nvme).
pub fn device_letter(name: &str) -> Option<char> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let rest = base
        .strip_prefix("xvd")
        .or_else(|| base.strip_prefix("sd"))?;
    let mut chars = rest.chars();
    let letter = chars.next()?;
    if !LETTERS.contains(&letter) || !chars.all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(letter)
}

/// The name to give AttachVolume for a local name: `/xvdX` becomes `/sdX`,
/// as EC2 expects (and as upstream did).
pub fn api_device_name(local: &str) -> String {
    local.replacen("/xvd", "/sd", 1)
}

/// Picks the first letter in f–p free both under `dev_root` (no `sdX`,
/// `xvdX`, `sdX1` or `xvdX1` node, which also covers a volume still
/// detaching) and among `attached` (device names from the instance's EC2
/// block device mappings, in any of the spellings [`device_letter`] knows).
pub fn pick_free_device(dev_root: &Path, attached: &[String]) -> Result<DeviceChoice, DeviceError> {
    let taken: BTreeSet<char> = attached.iter().filter_map(|n| device_letter(n)).collect();
    for letter in LETTERS {
        if taken.contains(&letter) {
            continue;
        }
        let mut used = false;
        for name in [
            format!("sd{letter}"),
            format!("xvd{letter}"),
            format!("sd{letter}1"),
            format!("xvd{letter}1"),
        ] {
            let p = dev_root.join(&name);
            match std::fs::symlink_metadata(&p) {
                Ok(_) => used = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(DeviceError::Io { path: p, source }),
            }
        }
        if !used {
            return Ok(DeviceChoice {
                api_name: format!("/dev/sd{letter}"),
                local_name: dev_root.join(format!("xvd{letter}")),
            });
        }
    }
    Err(DeviceError::NoneFree {
        dev_root: dev_root.to_path_buf(),
        attached: attached.to_vec(),
    })
}

/// Checks a user's `device_path`: it must be an sd/xvd name (EC2 accepts
/// no other) not existing locally, and not among `attached`.
pub fn choose_device_path(
    device_path: &str,
    attached: &[String],
) -> Result<DeviceChoice, DeviceError> {
    let letter = device_letter(device_path).filter(|_| device_path.starts_with('/'));
    let Some(letter) = letter else {
        return Err(DeviceError::BadName(device_path.to_string()));
    };
    let in_use_on_instance = attached.iter().any(|n| device_letter(n) == Some(letter));
    if in_use_on_instance || std::fs::symlink_metadata(device_path).is_ok() {
        return Err(DeviceError::InUse(device_path.to_string()));
    }
    Ok(DeviceChoice {
        api_name: api_device_name(device_path),
        local_name: PathBuf::from(device_path),
    })
}

/// How the local node of an attached volume was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    /// The user's `nvme_device_path`.
    NvmeOverride,
    /// udev's `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol…` link.
    ById,
    /// An NVMe controller whose serial is the volume id.
    NvmeSerial,
    /// The Xen name (`xvdX`, then `sdX`).
    XenName,
}

/// The local node of an attached volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedDevice {
    /// The node to mount (or take partitions of).
    pub path: PathBuf,
    /// How it was found.
    pub found_by: FoundBy,
}

impl AttachedDevice {
    /// The node of partition `partition` ([`partition_path`]).
    pub fn partition(&self, partition: &str) -> PathBuf {
        partition_path(&self.path, partition)
    }

    /// Where partition `partition` may appear, preferred first: by the
    /// name found (`…-part1` for a by-id link), then by the kernel name the
    /// link points to (`/dev/nvme1n1p1`), for hosts whose udev rules make
    /// no `-partN` links.
    pub fn partition_candidates(&self, partition: &str) -> Vec<PathBuf> {
        let mut out = vec![self.partition(partition)];
        if let Ok(real) = std::fs::canonicalize(&self.path) {
            let alt = partition_path(&real, partition);
            if !out.contains(&alt) {
                out.push(alt);
            }
        }
        out
    }

    /// Waits until partition `partition` has a node (the kernel and udev
    /// add partitions shortly after the disk) and returns it.
    pub async fn wait_for_partition(
        &self,
        partition: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<PathBuf, DeviceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let candidates = self.partition_candidates(partition);
            for c in &candidates {
                if exists(c)? {
                    return Ok(c.clone());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DeviceError::PartitionNotFound {
                    device: self.path.clone(),
                    partition: partition.to_string(),
                    waited: timeout,
                    looked_for: candidates
                        .iter()
                        .map(|c| c.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(DeviceError::Cancelled(self.path.display().to_string())),
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }
}

/// What to look for after AttachVolume.
#[derive(Debug, Clone)]
pub struct AttachedDeviceQuery {
    /// Where device nodes live (`/dev`; a temp tree in tests).
    pub dev_root: PathBuf,
    /// Where sysfs lives (`/sys`).
    pub sys_root: PathBuf,
    /// The EBS volume id (`vol-0123…`).
    pub volume_id: String,
    /// The name given to AttachVolume (`/dev/sdf`).
    pub api_name: String,
    /// The user's `nvme_device_path`, used as is when set.
    pub nvme_device_path: Option<PathBuf>,
}

impl AttachedDeviceQuery {
    /// A query against the real `/dev` and `/sys`.
    pub fn new(volume_id: &str, api_name: &str, nvme_device_path: Option<PathBuf>) -> Self {
        Self {
            dev_root: PathBuf::from("/dev"),
            sys_root: PathBuf::from("/sys"),
            volume_id: volume_id.to_string(),
            api_name: api_name.to_string(),
            nvme_device_path,
        }
    }

    /// Every place looked at, in order, for error messages.
    fn looked_for(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.nvme_device_path {
            out.push(p.display().to_string());
        }
        out.push(self.by_id_path().display().to_string());
        out.push(format!(
            "an NVMe controller with serial {} in {}",
            self.serial(),
            self.sys_root.join("class/nvme/*/serial").display()
        ));
        for n in self.xen_names() {
            out.push(n.display().to_string());
        }
        out
    }

    /// The volume id as EBS spells it in NVMe serials and by-id links.
    fn serial(&self) -> String {
        self.volume_id.replacen('-', "", 1)
    }

    fn by_id_path(&self) -> PathBuf {
        self.dev_root
            .join("disk/by-id")
            .join(format!("{EBS_BY_ID_PREFIX}{}", self.serial()))
    }

    fn xen_names(&self) -> Vec<PathBuf> {
        match device_letter(&self.api_name) {
            Some(l) => vec![
                self.dev_root.join(format!("xvd{l}")),
                self.dev_root.join(format!("sd{l}")),
            ],
            None => Vec::new(),
        }
    }

    /// Looks once; `None` when nothing is there yet.
    pub fn find(&self) -> Result<Option<AttachedDevice>, DeviceError> {
        if let Some(p) = &self.nvme_device_path {
            // Upstream's documented form ends in `p` (`/dev/nvme1n1p`) and
            // names no node itself; the partition is appended later.
            let probe = match p.to_str() {
                Some(s) if s.ends_with('p') => PathBuf::from(&s[..s.len() - 1]),
                _ => p.clone(),
            };
            if exists(&probe)? {
                return Ok(Some(AttachedDevice {
                    path: p.clone(),
                    found_by: FoundBy::NvmeOverride,
                }));
            }
            return Ok(None);
        }
        let by_id = self.by_id_path();
        if exists(&by_id)? {
            return Ok(Some(AttachedDevice {
                path: by_id,
                found_by: FoundBy::ById,
            }));
        }
        if let Some(ctrl) = self.nvme_controller_with_serial()? {
            let ns = self.dev_root.join(format!("{ctrl}n1"));
            if exists(&ns)? {
                return Ok(Some(AttachedDevice {
                    path: ns,
                    found_by: FoundBy::NvmeSerial,
                }));
            }
        }
        for n in self.xen_names() {
            if exists(&n)? {
                return Ok(Some(AttachedDevice {
                    path: n,
                    found_by: FoundBy::XenName,
                }));
            }
        }
        Ok(None)
    }

    fn nvme_controller_with_serial(&self) -> Result<Option<String>, DeviceError> {
        let class = self.sys_root.join("class/nvme");
        let entries = match std::fs::read_dir(&class) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(DeviceError::Io {
                    path: class,
                    source,
                })
            }
        };
        let want = self.serial();
        for entry in entries.flatten() {
            let serial = match std::fs::read_to_string(entry.path().join("serial")) {
                Ok(s) => s,
                Err(_) => continue,
            };
            if serial.trim() == want {
                return Ok(Some(entry.file_name().to_string_lossy().into_owned()));
            }
        }
        Ok(None)
    }

    /// Waits until the volume's node appears, at most `timeout`.
    pub async fn wait(
        &self,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<AttachedDevice, DeviceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let query = self.clone();
            let found = tokio::task::spawn_blocking(move || query.find())
                .await
                .unwrap_or_else(|join| {
                    Err(DeviceError::Io {
                        path: self.dev_root.clone(),
                        source: io::Error::other(join),
                    })
                })?;
            if let Some(dev) = found {
                tracing::info!(volume = %self.volume_id, device = %dev.path.display(), by = ?dev.found_by, "attached volume found");
                return Ok(dev);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DeviceError::NotFound {
                    volume_id: self.volume_id.clone(),
                    api_name: self.api_name.clone(),
                    waited: timeout,
                    looked_for: self.looked_for().join(", "),
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(DeviceError::Cancelled(self.volume_id.clone())),
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }
}

/// The node of partition `partition` of `device`: `"0"` (or `""`) is the
/// whole device; by-id links get `-partN`; names ending in a digit
/// (`nvme1n1`, `loop3`) get `pN`; others (`xvdf`, upstream's `nvme1n1p`)
/// get `N`.
pub fn partition_path(device: &Path, partition: &str) -> PathBuf {
    if partition.is_empty() || partition == "0" {
        return device.to_path_buf();
    }
    let s = device.to_string_lossy();
    let is_by_id = device
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "by-id");
    if is_by_id {
        PathBuf::from(format!("{s}-part{partition}"))
    } else if s.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{s}p{partition}"))
    } else {
        PathBuf::from(format!("{s}{partition}"))
    }
}

fn exists(p: &Path) -> Result<bool, DeviceError> {
    // Follows links: a dangling by-id link is not an attached volume.
    match std::fs::metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DeviceError::Io {
            path: p.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chroot::test_fixtures::LoopDevice;
    use std::os::unix::fs::symlink;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    #[test]
    fn knows_the_letter_of_every_spelling() {
        assert_eq!(device_letter("/dev/sdf"), Some('f'));
        assert_eq!(device_letter("xvdp"), Some('p'));
        assert_eq!(device_letter("/dev/xvdg1"), Some('g'));
        assert_eq!(device_letter("/dev/xvda"), None);
        assert_eq!(device_letter("/dev/sdq"), None);
        assert_eq!(device_letter("/dev/nvme1n1"), None);
        assert_eq!(device_letter("/dev/sdfx"), None);
    }

    #[test]
    fn rewrites_xvd_to_sd_for_the_api() {
        assert_eq!(api_device_name("/dev/xvdh"), "/dev/sdh");
        assert_eq!(api_device_name("/dev/sdh"), "/dev/sdh");
    }

    #[test]
    fn picks_first_letter_free_locally_and_on_the_instance() {
        let dev = tempfile::tempdir().unwrap();
        let d = dev.path();
        assert_eq!(pick_free_device(d, &[]).unwrap().api_name, "/dev/sdf");
        touch(&d.join("xvdf"));
        touch(&d.join("sdg"));
        // A partition node left behind by a volume still detaching.
        touch(&d.join("xvdh1"));
        let attached = vec!["/dev/xvda".to_string(), "/dev/sdi".into(), "xvdj".into()];
        let choice = pick_free_device(d, &attached).unwrap();
        assert_eq!(choice.api_name, "/dev/sdk");
        assert_eq!(choice.local_name, d.join("xvdk"));
    }

    #[test]
    fn reports_when_no_letter_is_free() {
        let dev = tempfile::tempdir().unwrap();
        let attached: Vec<String> = ('f'..='p').map(|l| format!("/dev/sd{l}")).collect();
        let err = pick_free_device(dev.path(), &attached).unwrap_err();
        assert!(matches!(err, DeviceError::NoneFree { .. }), "{err}");
        assert!(
            err.to_string().ends_with(
                "Detach volumes left attached by earlier builds, or set device_path to a name \
                 you know is free."
            ),
            "{err}"
        );
    }

    #[test]
    fn device_path_override_is_checked_and_rewritten() {
        let dev = tempfile::tempdir().unwrap();
        let free = format!("{}/xvdm", dev.path().display());
        let got = choose_device_path(&free, &[]).unwrap();
        assert_eq!(got.api_name, format!("{}/sdm", dev.path().display()));
        assert_eq!(got.local_name, PathBuf::from(&free));
        touch(Path::new(&free));
        assert!(matches!(
            choose_device_path(&free, &[]),
            Err(DeviceError::InUse(_))
        ));
        assert!(matches!(
            choose_device_path("/dev/xvdn", &["/dev/sdn".into()]),
            Err(DeviceError::InUse(_))
        ));
        assert!(matches!(
            choose_device_path("/dev/nvme1n1", &[]),
            Err(DeviceError::BadName(_))
        ));
    }

    #[test]
    fn device_in_use_says_how_to_pick_another() {
        let err = choose_device_path("/dev/xvdn", &["/dev/sdn".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Device is in use: /dev/xvdn. Another volume is attached there (a parallel build, or \
             one left by an earlier build): leave device_path empty to pick a free device, set \
             it to a free /dev/sd[f-p] name, or wait for the other build to finish."
        );
    }

    #[test]
    fn partition_paths_follow_the_kernel_naming() {
        let p = |d: &str, n: &str| partition_path(Path::new(d), n);
        assert_eq!(p("/dev/xvdf", "0"), PathBuf::from("/dev/xvdf"));
        assert_eq!(p("/dev/xvdf", "1"), PathBuf::from("/dev/xvdf1"));
        assert_eq!(p("/dev/nvme1n1", "1"), PathBuf::from("/dev/nvme1n1p1"));
        assert_eq!(p("/dev/nvme1n1p", "2"), PathBuf::from("/dev/nvme1n1p2"));
        assert_eq!(p("/dev/loop7", "1"), PathBuf::from("/dev/loop7p1"));
        assert_eq!(
            p(
                "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc",
                "1"
            ),
            PathBuf::from("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc-part1")
        );
    }

    fn query(dev: &Path, sys: &Path) -> AttachedDeviceQuery {
        AttachedDeviceQuery {
            dev_root: dev.to_path_buf(),
            sys_root: sys.to_path_buf(),
            volume_id: "vol-0abc123".into(),
            api_name: "/dev/sdg".into(),
            nvme_device_path: None,
        }
    }

    #[tokio::test]
    async fn finds_the_volume_by_id_link_before_xen_names() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        let d = dev.path();
        touch(&d.join("nvme1n1"));
        touch(&d.join("xvdg"));
        std::fs::create_dir_all(d.join("disk/by-id")).unwrap();
        symlink(
            d.join("nvme1n1"),
            d.join("disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc123"),
        )
        .unwrap();
        let q = query(d, sys.path());
        let got = q
            .wait(Duration::from_secs(1), &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(got.found_by, FoundBy::ById);
        assert_eq!(
            got.partition("1"),
            d.join("disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc123-part1")
        );
    }

    #[tokio::test]
    async fn finds_the_volume_by_nvme_serial() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        touch(&dev.path().join("nvme2n1"));
        std::fs::create_dir_all(sys.path().join("class/nvme/nvme1")).unwrap();
        std::fs::write(sys.path().join("class/nvme/nvme1/serial"), "vol0other   \n").unwrap();
        std::fs::create_dir_all(sys.path().join("class/nvme/nvme2")).unwrap();
        std::fs::write(
            sys.path().join("class/nvme/nvme2/serial"),
            "vol0abc123          \n",
        )
        .unwrap();
        let got = query(dev.path(), sys.path())
            .wait(Duration::from_secs(1), &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(got.found_by, FoundBy::NvmeSerial);
        assert_eq!(got.path, dev.path().join("nvme2n1"));
        assert_eq!(got.partition("1"), dev.path().join("nvme2n1p1"));
    }

    #[tokio::test]
    async fn waits_for_a_xen_node_that_appears_late() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        let late = dev.path().join("sdg");
        let late2 = late.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            touch(&late2);
        });
        let got = query(dev.path(), sys.path())
            .wait(Duration::from_secs(5), &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            got,
            AttachedDevice {
                path: late,
                found_by: FoundBy::XenName
            }
        );
    }

    #[tokio::test]
    async fn explains_what_was_looked_for_when_nothing_appears() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        let err = query(dev.path(), sys.path())
            .wait(Duration::from_millis(300), &CancellationToken::new())
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("vol-0abc123"), "{msg}");
        assert!(
            msg.contains("nvme-Amazon_Elastic_Block_Store_vol0abc123"),
            "{msg}"
        );
        assert!(msg.contains("serial vol0abc123"), "{msg}");
        assert!(msg.contains("xvdg") && msg.contains("sdg"), "{msg}");
        assert!(
            msg.ends_with(
                "On Nitro instances the volume is an NVMe device found through udev's \
                 /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_* links: check that udev runs \
                 and the EBS NVMe rules (amazon-ec2-utils or ec2-utils) are installed, or set \
                 nvme_device_path to the device node."
            ),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn nvme_override_is_used_as_given() {
        let dev = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        touch(&dev.path().join("nvme3n1"));
        let mut q = query(dev.path(), sys.path());
        q.nvme_device_path = Some(dev.path().join("nvme3n1p"));
        let got = q
            .wait(Duration::from_secs(1), &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(got.found_by, FoundBy::NvmeOverride);
        assert_eq!(got.partition("1"), dev.path().join("nvme3n1p1"));
    }

    #[tokio::test]
    async fn finds_the_partition_of_a_real_disk_without_part_links() {
        let disk = LoopDevice::with_ext4(32, true);
        let dev = tempfile::tempdir().unwrap();
        let by_id = dev.path().join("disk/by-id");
        std::fs::create_dir_all(&by_id).unwrap();
        let link = by_id.join("nvme-Amazon_Elastic_Block_Store_vol0feed");
        symlink(&disk.path, &link).unwrap();
        let sys = tempfile::tempdir().unwrap();
        let mut q = query(dev.path(), sys.path());
        q.volume_id = "vol-0feed".into();
        let never = CancellationToken::new();
        let found = q.wait(Duration::from_secs(2), &never).await.unwrap();
        assert_eq!(found.path, link);
        let part = found
            .wait_for_partition("1", Duration::from_secs(2), &never)
            .await
            .unwrap();
        assert_eq!(part, disk.partition1());
        let whole = found
            .wait_for_partition("0", Duration::from_secs(2), &never)
            .await
            .unwrap();
        assert_eq!(whole, link);
        let err = found
            .wait_for_partition("3", Duration::from_millis(300), &never)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("-part3") && msg.contains(&format!("{}p3", disk.path.display())),
            "{msg}"
        );
    }
}
