//! Step 3: the source AMI, by id or by `source_ami_filter`; exactly one
//! must match (or the newest with `most_recent`), and it must be EBS-backed.

use async_trait::async_trait;
use aws_sdk_ec2::types::{DeviceType, Filter, Image, VirtualizationType};

use super::{BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::config::{AmiFilter, Config};
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::{BoxError, Value};

/// Finds and checks the source AMI; publishes its build info.
pub struct SourceAmiInfo;

#[async_trait]
impl Step<BuildState> for SourceAmiInfo {
    fn name(&self) -> &'static str {
        "SourceAmiInfo"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        ctx.ui.say("Inspecting the source AMI...").await;
        let mut request = state.ec2.client().describe_images();
        let what;
        if !config.chroot.source_ami.is_empty() {
            request = request.image_ids(&config.chroot.source_ami);
            what = format!("source_ami {}", config.chroot.source_ami);
        } else {
            let filter = &config.chroot.source_ami_filter;
            for f in ec2_filters(filter).map_err(BuildError::Invalid)? {
                request = request.filters(f);
            }
            for owner in &filter.owners {
                request = request.owners(owner);
            }
            if filter.include_deprecated {
                request = request.include_deprecated(true);
            }
            what = format!(
                "source_ami_filter (filters {:?}, owners {:?})",
                filter.filters, filter.owners
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| AwsError::api("DescribeImages", None, e))?;
        let image = choose_image(
            out.images().to_vec(),
            config.chroot.source_ami_filter.most_recent,
            &what,
        )?;
        check_image(&image, &config)?;
        ctx.ui
            .message(&format!(
                "Found Image ID: {}",
                image.image_id().unwrap_or_default()
            ))
            .await;
        state.source_image = Some(image);
        let info = state.build_info();
        let data = &mut state.generated_data;
        for (key, value) in [
            ("SourceAMI", info.source_ami),
            ("SourceAMIName", info.source_ami_name),
            ("SourceAMIOwner", info.source_ami_owner),
            ("SourceAMIOwnerName", info.source_ami_owner_name),
            ("SourceAMICreationDate", info.source_ami_creation_date),
        ] {
            data.insert(key.to_string(), Value::String(value));
        }
        // Not `SourceAMITags`: Packer up to at least 1.6.6 fails every HCL2
        // build whose hook data holds a map ("unhandled buildvar type"). The
        // tags stay available to tag and description templates.
        Ok(())
    }
}

/// DescribeImages filters from `source_ami_filter.filters`; each value is a
/// CSV record, so `"a,b"` is two values and `"\"a,b\""` is one.
pub fn ec2_filters(filter: &AmiFilter) -> Result<Vec<Filter>, String> {
    filter
        .filters
        .iter()
        .map(|(name, csv)| {
            let values =
                csv_values(csv).map_err(|e| format!("source_ami_filter.filters.{name}: {e}"))?;
            Ok(Filter::builder()
                .name(name)
                .set_values(Some(values))
                .build())
        })
        .collect()
}

/// Splits one CSV record (RFC 4180 quoting) into its fields.
pub fn csv_values(record: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = record.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err(format!("bare \" in non-quoted field of {record:?}")),
            (false, ',') => {
                out.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("extraneous or missing \" in {record:?}"));
    }
    out.push(field);
    Ok(out)
}

/// The exactly-one rule: none is an error, several are an error unless
/// `most_recent` picks the newest by creation date.
pub fn choose_image(
    mut images: Vec<Image>,
    most_recent: bool,
    what: &str,
) -> Result<Image, BuildError> {
    match images.len() {
        0 => Err(BuildError::NoSourceAmi(what.to_string())),
        1 => Ok(images.remove(0)),
        n if !most_recent => Err(BuildError::ManySourceAmis {
            query: what.to_string(),
            count: n,
            ids: images
                .iter()
                .map(|i| i.image_id().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
        _ => {
            // RFC 3339 timestamps in one format sort as text.
            images.sort_by(|a, b| a.creation_date().cmp(&b.creation_date()));
            Ok(images.pop().expect("len >= 2 checked above"))
        }
    }
}

/// Root device must be EBS; enhanced networking needs HVM.
fn check_image(image: &Image, config: &Config) -> Result<(), BuildError> {
    let id = image.image_id().unwrap_or_default().to_string();
    if image.root_device_type() != Some(&DeviceType::Ebs) {
        return Err(BuildError::NotEbsBacked {
            ami: id,
            kind: image
                .root_device_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_else(|| "unknown".into()),
        });
    }
    let enhanced = config.ami.ena_support.is_true() || config.ami.sriov_support;
    let hvm = match config.ami.ami_virtualization_type.as_str() {
        "" => image.virtualization_type() == Some(&VirtualizationType::Hvm),
        t => t == "hvm",
    };
    if enhanced && !hvm {
        return Err(BuildError::EnhancedNetworkingNeedsHvm(id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, created: &str) -> Image {
        Image::builder().image_id(id).creation_date(created).build()
    }

    #[test]
    fn csv_values_split_on_commas_and_keep_quoted_commas() {
        assert_eq!(csv_values("a,b").unwrap(), vec!["a", "b"]);
        assert_eq!(csv_values("\"a,b\",c").unwrap(), vec!["a,b", "c"]);
        assert!(csv_values("say \"\"x\"\"").is_err());
        assert_eq!(csv_values("\"q\"\"x\"").unwrap(), vec!["q\"x"]);
        assert_eq!(
            csv_values("ubuntu/*-22.04-*").unwrap(),
            vec!["ubuntu/*-22.04-*"]
        );
        assert!(csv_values("\"open").is_err());
    }

    #[test]
    fn filters_become_describe_images_filters_with_csv_values() {
        let mut filter = AmiFilter::default();
        filter.filters.insert("name".into(), "ubuntu-*".into());
        filter
            .filters
            .insert("architecture".into(), "x86_64,arm64".into());
        let f = ec2_filters(&filter).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name(), Some("architecture"));
        assert_eq!(f[0].values(), ["x86_64", "arm64"]);
        assert_eq!(f[1].values(), ["ubuntu-*"]);
    }

    #[test]
    fn no_match_names_the_query() {
        let e = choose_image(vec![], false, "source_ami ami-1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "No AMI was found matching source_ami ami-1. Check the filters and owners: the AMI \
             must exist in this region and be visible to this account."
        );
    }

    #[test]
    fn several_matches_fail_without_most_recent() {
        let e = choose_image(
            vec![
                image("ami-1", "2020-01-01T00:00:00.000Z"),
                image("ami-2", "2021-01-01T00:00:00.000Z"),
            ],
            false,
            "source_ami_filter (filters {\"name\": \"ubuntu-*\"}, owners [\"self\"])",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Your query returned more than one result (2: ami-1, ami-2) for source_ami_filter \
             (filters {\"name\": \"ubuntu-*\"}, owners [\"self\"]). Please try a more specific \
             search, or set most_recent to true."
        );
    }

    #[test]
    fn instance_store_source_ami_is_refused_with_what_to_choose() {
        let args = crate::plugin::api::PrepareArgs {
            kind: crate::plugin::api::TemplateKind::Json,
            config: serde_json::json!({"ami_name": "test-ami", "source_ami": "ami-src"})
                .as_object()
                .cloned()
                .unwrap(),
            packer: crate::plugin::api::PackerSettings::default(),
        };
        let config = Config::from_prepare(&args).expect("valid test config").0;
        let source = Image::builder()
            .image_id("ami-src")
            .root_device_type(DeviceType::InstanceStore)
            .build();
        let e = check_image(&source, &config).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The root device of the source AMI must be EBS-backed (source ami-src has root device \
             type \"instance-store\"). Choose an EBS-backed source AMI: amazon-chroot copies the \
             root snapshot, and instance-store AMIs have none."
        );
    }

    #[test]
    fn most_recent_picks_the_newest() {
        let chosen = choose_image(
            vec![
                image("ami-old", "2020-01-01T00:00:00.000Z"),
                image("ami-new", "2023-05-01T00:00:00.000Z"),
                image("ami-mid", "2021-01-01T00:00:00.000Z"),
            ],
            true,
            "x",
        )
        .unwrap();
        assert_eq!(chosen.image_id(), Some("ami-new"));
    }
}
