//! Step 21: description, launch permissions (users, groups, organizations,
//! OUs), product codes of every AMI, and create-volume permissions of its
//! snapshots.

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    CreateVolumePermission, CreateVolumePermissionModifications, LaunchPermission,
    LaunchPermissionModifications, PermissionGroup,
};

use super::{BuildError, BuildState};
use crate::aws::AwsError;
use crate::builder::runner::{Step, StepContext};
use crate::plugin::api::BoxError;

/// Sets AMI and snapshot attributes.
pub struct ModifyAttributes;

/// The launch permissions to add, one entry per user/group/org/OU.
pub fn launch_permissions(
    users: &[String],
    groups: &[String],
    orgs: &[String],
    ous: &[String],
) -> Vec<LaunchPermission> {
    let mut out = Vec::new();
    out.extend(groups.iter().map(|g| {
        LaunchPermission::builder()
            .group(PermissionGroup::from(g.as_str()))
            .build()
    }));
    out.extend(
        users
            .iter()
            .map(|u| LaunchPermission::builder().user_id(u).build()),
    );
    out.extend(
        orgs.iter()
            .map(|o| LaunchPermission::builder().organization_arn(o).build()),
    );
    out.extend(ous.iter().map(|o| {
        LaunchPermission::builder()
            .organizational_unit_arn(o)
            .build()
    }));
    out
}

#[async_trait]
impl Step<BuildState> for ModifyAttributes {
    fn name(&self) -> &'static str {
        "ModifyAttributes"
    }

    async fn run(&mut self, state: &mut BuildState, ctx: &StepContext) -> Result<(), BoxError> {
        let config = state.config.clone();
        let a = &config.ami;
        let s = &config.snapshot;
        let description = a
            .ami_description
            .render(&state.build_info_data())
            .map_err(|source| BuildError::Render {
                option: "ami_description",
                source,
            })?;
        let permissions =
            launch_permissions(&a.ami_users, &a.ami_groups, &a.ami_org_arns, &a.ami_ou_arns);
        let volume_permissions: Vec<CreateVolumePermission> = s
            .snapshot_groups
            .iter()
            .map(|g| {
                CreateVolumePermission::builder()
                    .group(PermissionGroup::from(g.as_str()))
                    .build()
            })
            .chain(
                s.snapshot_users
                    .iter()
                    .map(|u| CreateVolumePermission::builder().user_id(u).build()),
            )
            .collect();
        if description.is_empty()
            && permissions.is_empty()
            && a.ami_product_codes.is_empty()
            && volume_permissions.is_empty()
        {
            return Ok(());
        }
        ctx.ui.say("Modifying attributes on AMI...").await;
        for (region, ami) in &state.amis {
            let ec2 = state.ec2.in_region(region);
            let modify = || ec2.client().modify_image_attribute().image_id(ami);
            if !description.is_empty() {
                ctx.ui
                    .message(&format!("Modifying: description ({region})"))
                    .await;
                modify()
                    .description(
                        aws_sdk_ec2::types::AttributeValue::builder()
                            .value(&description)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| AwsError::api("ModifyImageAttribute", ami.clone(), e))?;
            }
            if !permissions.is_empty() {
                ctx.ui
                    .message(&format!("Modifying: launch permissions ({region})"))
                    .await;
                modify()
                    .launch_permission(
                        LaunchPermissionModifications::builder()
                            .set_add(Some(permissions.clone()))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| AwsError::api("ModifyImageAttribute", ami.clone(), e))?;
            }
            if !a.ami_product_codes.is_empty() {
                ctx.ui
                    .message(&format!("Modifying: product codes ({region})"))
                    .await;
                modify()
                    .set_product_codes(Some(a.ami_product_codes.clone()))
                    .send()
                    .await
                    .map_err(|e| AwsError::api("ModifyImageAttribute", ami.clone(), e))?;
            }
            if !volume_permissions.is_empty() {
                for snapshot in state.snapshots.get(region).into_iter().flatten() {
                    ctx.ui
                        .message(&format!(
                            "Modifying: create volume permissions of {snapshot} ({region})"
                        ))
                        .await;
                    ec2.client()
                        .modify_snapshot_attribute()
                        .snapshot_id(snapshot)
                        .create_volume_permission(
                            CreateVolumePermissionModifications::builder()
                                .set_add(Some(volume_permissions.clone()))
                                .build(),
                        )
                        .send()
                        .await
                        .map_err(|e| {
                            AwsError::api("ModifySnapshotAttribute", snapshot.clone(), e)
                        })?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::launch_permissions;

    #[test]
    fn one_launch_permission_per_user_group_org_and_ou() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = launch_permissions(
            &s(&["111", "222"]),
            &s(&["all"]),
            &s(&["arn:org"]),
            &s(&["arn:ou"]),
        );
        assert_eq!(p.len(), 5);
        assert_eq!(p[0].group().map(|g| g.as_str()), Some("all"));
        assert_eq!(p[1].user_id(), Some("111"));
        assert_eq!(p[3].organization_arn(), Some("arn:org"));
        assert_eq!(p[4].organizational_unit_arn(), Some("arn:ou"));
    }
}
