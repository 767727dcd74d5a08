//! The result of a build: the AMIs it made, one per region.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::aws::Ec2;
use crate::builder::steps::destroy_ami;
use crate::plugin::api::{Artifact, BoxError, Map, Value};

/// HashiCorp's id for this builder's artifacts: post-processors (manifest,
/// amazon-import …) key on it, so ours says the same.
pub const BUILDER_ID: &str = "mitchellh.amazon.chroot";

/// AMIs by region, with the build's generated data.
pub struct AmiArtifact {
    /// AMI id by region.
    pub amis: BTreeMap<String, String>,
    /// The generated data of the build (`build.X`).
    pub generated_data: Map,
    /// EC2 access for Destroy (`None` in tests).
    pub ec2: Option<Ec2>,
}

impl AmiArtifact {
    /// `region:ami` pairs in region order.
    fn pairs(&self) -> impl Iterator<Item = (&String, &String)> {
        self.amis.iter()
    }
}

#[async_trait]
impl Artifact for AmiArtifact {
    fn builder_id(&self) -> String {
        BUILDER_ID.to_string()
    }

    fn files(&self) -> Vec<String> {
        Vec::new()
    }

    fn id(&self) -> String {
        let mut parts: Vec<String> = self.pairs().map(|(r, a)| format!("{r}:{a}")).collect();
        parts.sort();
        parts.join(",")
    }

    fn string(&self) -> String {
        let mut lines: Vec<String> = self.pairs().map(|(r, a)| format!("{r}: {a}")).collect();
        lines.sort();
        format!("AMIs were created:\n{}\n", lines.join("\n"))
    }

    fn state(&self, key: &str) -> Option<Value> {
        match key {
            "generated_data" => Some(Value::Object(self.generated_data.clone())),
            "atlas.artifact.metadata" => Some(Value::Object(
                self.pairs()
                    .map(|(r, a)| (format!("region.{r}"), Value::String(a.clone())))
                    .collect(),
            )),
            "par.artifact.metadata" => {
                let source = self.generated_data.get("SourceAMI").and_then(Value::as_str);
                Some(Value::Array(
                    self.pairs()
                        .map(|(r, a)| {
                            let mut image = Map::new();
                            image.insert("ImageID".into(), Value::String(a.clone()));
                            image.insert("ProviderName".into(), Value::String("aws".into()));
                            image.insert("ProviderRegion".into(), Value::String(r.clone()));
                            // from_scratch builds have no source (upstream panicked here).
                            if let Some(s) = source {
                                image.insert("SourceImageID".into(), Value::String(s.to_string()));
                            }
                            Value::Object(image)
                        })
                        .collect(),
                ))
            }
            _ => None,
        }
    }

    async fn destroy(&self) -> Result<(), BoxError> {
        let Some(ec2) = &self.ec2 else {
            return Err("no EC2 connection to destroy the AMIs with".into());
        };
        let mut errors = Vec::new();
        for (region, ami) in self.pairs() {
            if let Err(e) = destroy_ami(&ec2.in_region(region), ami).await {
                errors.extend(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> AmiArtifact {
        let mut amis = BTreeMap::new();
        amis.insert("us-east-1".to_string(), "ami-2".to_string());
        amis.insert("eu-west-1".to_string(), "ami-1".to_string());
        let mut data = Map::new();
        data.insert("SourceAMI".into(), Value::String("ami-src".into()));
        AmiArtifact {
            amis,
            generated_data: data,
            ec2: None,
        }
    }

    #[test]
    fn id_is_sorted_region_ami_pairs_joined_by_commas() {
        assert_eq!(artifact().id(), "eu-west-1:ami-1,us-east-1:ami-2");
        assert_eq!(artifact().builder_id(), "mitchellh.amazon.chroot");
    }

    #[test]
    fn string_lists_each_ami_on_its_line() {
        assert_eq!(
            artifact().string(),
            "AMIs were created:\neu-west-1: ami-1\nus-east-1: ami-2\n"
        );
    }

    #[test]
    fn state_serves_generated_data_and_hcp_metadata() {
        let a = artifact();
        assert_eq!(
            a.state("generated_data").unwrap()["SourceAMI"],
            Value::String("ami-src".into())
        );
        let par = a.state("par.artifact.metadata").unwrap();
        assert_eq!(par[0]["ImageID"], "ami-1");
        assert_eq!(par[0]["ProviderRegion"], "eu-west-1");
        assert_eq!(par[0]["SourceImageID"], "ami-src");
        assert_eq!(
            a.state("atlas.artifact.metadata").unwrap()["region.us-east-1"],
            "ami-2"
        );
        assert_eq!(a.state("nope"), None);
    }

    #[test]
    fn hcp_metadata_without_source_ami_has_no_source_id() {
        let mut a = artifact();
        a.generated_data.clear();
        let par = a.state("par.artifact.metadata").unwrap();
        assert!(par[0].get("SourceImageID").is_none());
    }
}
