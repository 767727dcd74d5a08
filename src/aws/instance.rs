//! The EC2 instance the build runs on.

use super::connect::Ec2;
use super::error::AwsError;

impl Ec2 {
    /// The instance this build runs on, as EC2 describes it (zone, block devices…).
    ///
    /// A "not found" here almost always means the connection's region is not the
    /// instance's, so the error says so.
    pub async fn describe_instance(
        &self,
        instance_id: &str,
    ) -> Result<aws_sdk_ec2::types::Instance, AwsError> {
        let not_found = || AwsError::ResourceFailed {
            what: format!("looking up instance {instance_id}"),
            reason: format!(
                "EC2 in region {} does not know it; amazon-chroot must use the region of the \
                 instance it runs on (check `region`, AWS_REGION and the profile)",
                self.region()
            ),
        };
        let out = match self
            .client()
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let err = AwsError::api("DescribeInstances", instance_id.to_owned(), e);
                return Err(if err.is_not_found() {
                    not_found()
                } else {
                    self.explain(err).await
                });
            }
        };
        out.reservations
            .unwrap_or_default()
            .into_iter()
            .flat_map(|r| r.instances.unwrap_or_default())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(not_found)
    }
}
