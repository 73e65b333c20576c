//! Integration tests of the batch tier (issue 20, `--batch on`): the launch
//! template, the Auto Scaling group with its policies and alarms, a no-op
//! second `up`, an instance type change rolled by an instance refresh, and a
//! `down` that leaves nothing, checked through the AWS SDK against a local
//! emulator (see tests/common/mod.rs).
//!
//! ```sh
//! PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5411 PAYOPS_TEST_EMULATOR=moto \
//!     cargo nextest run --test batch --run-ignored only
//! ```

mod common;

use aws_sdk_autoscaling::types::AutoScalingGroup;
use aws_sdk_ec2::types::ResponseLaunchTemplateData;

use common::{Aws, TestEnv, actions, assert_no_mutation, outcomes, remaining};

async fn group(aws: &Aws, env: &str) -> Option<AutoScalingGroup> {
    aws.c
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(format!("payops-{env}-batch"))
        .send()
        .await
        .expect("autoscaling:DescribeAutoScalingGroups")
        .auto_scaling_groups()
        .first()
        .cloned()
}

async fn template_version(aws: &Aws, id: &str, version: &str) -> ResponseLaunchTemplateData {
    aws.c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions(version)
        .send()
        .await
        .expect("ec2:DescribeLaunchTemplateVersions")
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .cloned()
        .expect("the version's data")
}

async fn templates(aws: &Aws, env: &str) -> Vec<String> {
    aws.c
        .ec2
        .describe_launch_templates()
        .filters(common::tag_filter(common::TAG_ENV, env))
        .send()
        .await
        .expect("ec2:DescribeLaunchTemplates")
        .launch_templates()
        .iter()
        .filter_map(|t| t.launch_template_id().map(str::to_owned))
        .collect()
}

/// What the tier leaves when gone: its group, template and instance profile.
async fn batch_left(aws: &Aws, env: &str) -> Vec<String> {
    let mut left = Vec::new();
    if let Some(g) = group(aws, env).await {
        left.push(format!("group {:?}", g.auto_scaling_group_name()));
    }
    left.extend(
        templates(aws, env)
            .await
            .into_iter()
            .map(|t| format!("template {t}")),
    );
    let profile = format!("payops-{env}-{}-batch", aws.region);
    if aws
        .c
        .iam
        .get_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .is_ok()
    {
        left.push(format!("instance profile {profile}"));
    }
    left
}

#[tokio::test]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn up_builds_the_batch_tier_a_second_up_changes_nothing_and_down_removes_it() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    let name = env.name.clone();
    env.up(&["--batch", "on", "--batch-capacity", "0-1-2"]);
    let outputs = env.outputs();

    let g = group(&aws, &name).await.expect("the batch group");
    assert_eq!(
        (g.min_size(), g.desired_capacity(), g.max_size()),
        (Some(0), Some(1), Some(2))
    );
    let lt = g.launch_template().expect("a launch template");
    assert_eq!(
        lt.launch_template_id(),
        Some(outputs["BatchLaunchTemplateId"].as_str())
    );
    // An explicit version, never $Latest/$Default.
    assert_eq!(
        lt.version(),
        Some(outputs["BatchLaunchTemplateVersion"].as_str())
    );
    let mut subnets: Vec<&str> = g
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .collect();
    subnets.sort();
    let mut private: Vec<&str> = outputs["PrivateSubnetIds"].split(',').collect();
    private.sort();
    assert_eq!(subnets, private, "the group runs in the private subnets");
    assert!(
        g.tags()
            .iter()
            .any(|t| t.key() == Some(common::TAG_ENV) && t.value() == Some(name.as_str())),
        "{:?}",
        g.tags()
    );

    let data = template_version(
        &aws,
        &outputs["BatchLaunchTemplateId"],
        &outputs["BatchLaunchTemplateVersion"],
    )
    .await;
    let md = data.metadata_options().expect("metadata options");
    assert_eq!(
        md.http_tokens().map(|t| t.as_str()),
        Some("required"),
        "IMDSv2"
    );
    assert_eq!(md.http_put_response_hop_limit(), Some(1));
    let root = &data.block_device_mappings()[0];
    let ebs = root.ebs().expect("an EBS root volume");
    assert_eq!(ebs.encrypted(), Some(true));
    assert_eq!(ebs.kms_key_id(), Some(outputs["EbsKmsKeyArn"].as_str()));
    assert!(data.key_name().is_none(), "no SSH key");
    assert_eq!(data.instance_type().map(|t| t.as_str()), Some("t4g.small"));
    assert_eq!(data.image_id(), Some(outputs["BatchAmiId"].as_str()));
    assert_eq!(
        data.security_group_ids(),
        [outputs["BatchSecurityGroupId"].clone()]
    );
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.arn()),
        Some(outputs["BatchInstanceProfileArn"].as_str())
    );

    // No inbound rule on the batch group.
    let sg = aws
        .c
        .ec2
        .describe_security_groups()
        .group_ids(&outputs["BatchSecurityGroupId"])
        .send()
        .await
        .expect("ec2:DescribeSecurityGroups");
    assert!(
        sg.security_groups()[0].ip_permissions().is_empty(),
        "{sg:?}"
    );

    let policies = aws
        .c
        .autoscaling
        .describe_policies()
        .auto_scaling_group_name(format!("payops-{name}-batch"))
        .send()
        .await
        .expect("autoscaling:DescribePolicies");
    let mut names: Vec<&str> = policies
        .scaling_policies()
        .iter()
        .filter_map(|p| p.policy_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("payops-{name}-batch-cpu"),
            format!("payops-{name}-batch-memory")
        ]
    );
    for p in policies.scaling_policies() {
        assert_eq!(p.policy_type(), Some("TargetTrackingScaling"));
    }
    let alarms = aws
        .c
        .cloudwatch
        .describe_alarms()
        .alarm_names(format!("payops-{name}-batch-cpu-high"))
        .alarm_names(format!("payops-{name}-batch-memory-high"))
        .send()
        .await
        .expect("cloudwatch:DescribeAlarms");
    assert_eq!(alarms.metric_alarms().len(), 2);

    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "second up of a batch env");

    // --batch off removes the tier (and a later up keeps it off).
    let (_, off) = env.up_json(&["--batch", "off"]);
    assert_eq!(outcomes(&off)["autoscaling-group:batch"], "deleted");
    assert_eq!(batch_left(&aws, &name).await, Vec::<String>::new());

    let down = env.down();
    down.assert_success();
    assert_eq!(remaining(&aws, &name).await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn another_instance_type_is_planned_then_rolled_by_an_instance_refresh() {
    let mut env = TestEnv::new();
    let aws = Aws::connect().await;
    let name = env.name.clone();
    env.up(&["--batch", "on", "--batch-capacity", "1-1-2"]);
    let before = env.outputs();
    let g = group(&aws, &name).await.expect("the batch group");
    assert_eq!(g.instances().len(), 1, "{g:?}");

    let plan = env.run_env(
        "plan",
        &["--output", "json", "--batch-instance-type", "t4g.medium"],
    );
    plan.assert_success();
    let plan = plan.json();
    assert_eq!(
        actions(&plan)["launch-template:batch"],
        "update",
        "{plan:#}"
    );
    let step = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "launch-template:batch")
        .unwrap();
    let changes = step["changes"].to_string();
    assert!(
        changes.contains("t4g.medium") && changes.contains("refresh"),
        "{changes}"
    );

    let (_, changed) = env.up_json(&["--batch-instance-type", "t4g.medium"]);
    assert_eq!(outcomes(&changed)["launch-template:batch"], "updated");
    assert_eq!(outcomes(&changed)["autoscaling-group:batch"], "updated");
    let after = env.outputs();
    assert_ne!(
        after["BatchLaunchTemplateVersion"],
        before["BatchLaunchTemplateVersion"]
    );
    // The image stays the one the template was made with.
    assert_eq!(after["BatchAmiId"], before["BatchAmiId"]);
    let g = group(&aws, &name).await.expect("the batch group");
    assert_eq!(
        g.launch_template().and_then(|t| t.version()),
        Some(after["BatchLaunchTemplateVersion"].as_str())
    );
    let refreshes = aws
        .c
        .autoscaling
        .describe_instance_refreshes()
        .auto_scaling_group_name(format!("payops-{name}-batch"))
        .send()
        .await
        .expect("autoscaling:DescribeInstanceRefreshes");
    assert_eq!(refreshes.instance_refreshes().len(), 1, "{refreshes:?}");
    assert_eq!(
        refreshes.instance_refreshes()[0]
            .status()
            .map(|s| s.as_str()),
        Some("Successful")
    );
    for i in g.instances() {
        assert_eq!(i.instance_type(), Some("t4g.medium"), "{i:?}");
    }

    let (_, again) = env.up_json(&[]);
    assert_no_mutation(&again, "up after the refresh");

    let down = env.down();
    down.assert_success();
    assert_eq!(batch_left(&aws, &name).await, Vec::<String>::new());
    assert_eq!(remaining(&aws, &name).await, Vec::<String>::new());
}
