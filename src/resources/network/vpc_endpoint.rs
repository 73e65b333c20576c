//! Gateway endpoints for S3 and DynamoDB on the private and database route
//! tables: that traffic stays on the AWS network (and off the NAT bill), and
//! the endpoint policy only lets it reach this account's buckets and tables.

use std::collections::BTreeSet;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, VpcEndpoint, VpcEndpointType};
use serde_json::json;

use crate::aws::{AwsError, Budget, OpResult, Poll, client_token, policy, poll_until, required};
use crate::engine::{Record, StepCx};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;

pub struct GatewayEndpoint {
    service: &'static str,
    /// Steps of the route tables the endpoint adds its routes to.
    route_tables: Vec<String>,
}

impl GatewayEndpoint {
    pub fn new(service: &'static str, route_tables: Vec<String>) -> Self {
        Self {
            service,
            route_tables,
        }
    }

    fn service_name(&self, cx: &Context) -> String {
        format!("com.amazonaws.{}.{}", cx.region, self.service)
    }

    fn name(&self, cx: &Context) -> String {
        cx.names.resource(&format!("{}-endpoint", self.service))
    }

    fn output_key(&self) -> &'static str {
        match self.service {
            "s3" => "S3GatewayEndpointId",
            _ => "DynamoDbGatewayEndpointId",
        }
    }

    /// A data perimeter: through this endpoint, only resources owned by this
    /// account are reachable (no copying audit data to someone else's bucket).
    fn policy(&self, cx: &Context) -> String {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "OnlyThisAccountsResources",
                "Effect": "Allow",
                "Principal": "*",
                "Action": format!("{}:*", self.service),
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:ResourceAccount": cx.account_id}},
            }]
        })
        .to_string()
    }

    fn wanted_tables(&self, step: &StepCx<'_>) -> Result<BTreeSet<String>, AwsError> {
        self.route_tables
            .iter()
            .map(|s| Ok(step.input_resource(s, "route_table")?.to_owned()))
            .collect()
    }
}

pub struct FoundEndpoint {
    id: String,
    route_tables: BTreeSet<String>,
    policy: String,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    RouteTables {
        add: Vec<String>,
        remove: Vec<String>,
    },
    Policy(String),
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&crate::tags::describe_tag_fix(t)),
            Self::RouteTables { add, remove } => {
                write!(
                    f,
                    "route tables: add [{}] remove [{}]",
                    add.join(","),
                    remove.join(",")
                )
            }
            Self::Policy(_) => f.write_str("restore the endpoint policy"),
        }
    }
}

fn found(e: &VpcEndpoint) -> Option<FoundEndpoint> {
    Some(FoundEndpoint {
        id: e.vpc_endpoint_id()?.to_owned(),
        route_tables: e.route_table_ids().iter().cloned().collect(),
        policy: e.policy_document().unwrap_or_default().to_owned(),
        tags: ec2::tag_map(e.tags()),
    })
}

/// The endpoint's state, lowercased: AWS answers `available`, `deleting`,
/// ... while the SDK's model spells them `Available`, `Deleting`, so the
/// typed enum would see an unknown value (Terraform compares strings too).
fn state(e: &VpcEndpoint) -> String {
    e.state()
        .map(|s| s.as_str().to_ascii_lowercase())
        .unwrap_or_default()
}

fn live(e: &VpcEndpoint) -> bool {
    matches!(
        state(e).as_str(),
        "available" | "pending" | "pendingacceptance" | ""
    )
}

#[async_trait]
impl Resource for GatewayEndpoint {
    type Found = FoundEndpoint;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:vpc-endpoint"
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundEndpoint>, AwsError> {
        ec2::find_owned!(
            cx,
            step,
            describe_vpc_endpoints,
            "ec2:DescribeVpcEndpoints",
            vpc_endpoints,
            |e| if live(e) { found(e) } else { None }
        )
    }

    fn describe(&self, e: &FoundEndpoint) -> String {
        e.id.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundEndpoint, AwsError> {
        let vpc = step.output("vpc", "VpcId")?;
        let out = cx
            .clients
            .ec2
            .create_vpc_endpoint()
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .vpc_id(vpc)
            .service_name(self.service_name(cx))
            .set_route_table_ids(Some(self.wanted_tables(step)?.into_iter().collect()))
            .policy_document(self.policy(cx))
            .client_token(client_token(&[cx.env().as_str(), self.service, vpc]))
            .tag_specifications(ec2::tag_spec(
                cx,
                ResourceType::VpcEndpoint,
                step.id().as_str(),
                &self.name(cx),
            ))
            .send()
            .await
            .op("ec2:CreateVpcEndpoint")?;
        let endpoint = required(
            out.vpc_endpoint().and_then(found),
            "ec2:CreateVpcEndpoint",
            "VpcEndpoint",
        )?;
        step.remember("endpoint", &endpoint.id);
        Ok(endpoint)
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        e: &FoundEndpoint,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let missing = ec2::missing_tags(cx, step.id().as_str(), &self.name(cx), &e.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }
        // Unknown while route tables are yet to be created (`plan`).
        if let Ok(want) = self.wanted_tables(step) {
            let add: Vec<String> = want.difference(&e.route_tables).cloned().collect();
            let remove: Vec<String> = e.route_tables.difference(&want).cloned().collect();
            if !add.is_empty() || !remove.is_empty() {
                fixes.push(Fix::RouteTables { add, remove });
            }
        }
        let want = self.policy(cx);
        if !policy::same(&e.policy, &want) {
            fixes.push(Fix::Policy(want));
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        e: &mut FoundEndpoint,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let modify = cx.clients.ec2.modify_vpc_endpoint().vpc_endpoint_id(&e.id);
        match fix {
            Fix::Tags(tags) => return ec2::add_tags(cx, &e.id, &tags).await,
            Fix::RouteTables { add, remove } => modify
                .set_add_route_table_ids(Some(add).filter(|v| !v.is_empty()))
                .set_remove_route_table_ids(Some(remove).filter(|v| !v.is_empty())),
            Fix::Policy(doc) => modify.policy_document(doc),
        }
        .send()
        .await
        .op("ec2:ModifyVpcEndpoint")?;
        Ok(())
    }

    fn record(&self, _cx: &Context, e: &FoundEndpoint) -> Record {
        Record::default()
            .resource("endpoint", &e.id)
            .output(self.output_key(), &e.id)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        e: FoundEndpoint,
    ) -> Result<Vec<String>, AwsError> {
        let out = cx
            .clients
            .ec2
            .delete_vpc_endpoints()
            .vpc_endpoint_ids(&e.id)
            .send()
            .await
            .op("ec2:DeleteVpcEndpoints")?;
        if let Some(failure) = out
            .unsuccessful()
            .iter()
            .filter_map(|u| u.error())
            .find(|err| err.code() != Some("InvalidVpcEndpoint.NotFound"))
        {
            return Err(AwsError::Api {
                op: "ec2:DeleteVpcEndpoints",
                code: failure.code().map(str::to_owned),
                message: failure.message().unwrap_or_default().to_owned(),
            });
        }
        // The route tables cannot be deleted while the endpoint's routes remain.
        let progress = |m: String| step.progress(m);
        poll_until(
            format!("{} to be deleted", e.id),
            Budget::new(std::time::Duration::from_secs(300)),
            &progress,
            || async {
                let out = cx
                    .clients
                    .ec2
                    .describe_vpc_endpoints()
                    .vpc_endpoint_ids(&e.id)
                    .send()
                    .await
                    .op("ec2:DescribeVpcEndpoints");
                Ok(match out {
                    Err(err) if err.is_code(&["InvalidVpcEndpointId.NotFound"]) => Poll::Ready(()),
                    Err(err) => return Err(err),
                    Ok(out) => match out.vpc_endpoints().first() {
                        Some(ep) if live(ep) || state(ep) == "deleting" => Poll::Pending(state(ep)),
                        _ => Poll::Ready(()),
                    },
                })
            },
        )
        .await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::{
        create_vpc_endpoint::CreateVpcEndpointOutput,
        describe_vpc_endpoints::DescribeVpcEndpointsOutput,
        modify_vpc_endpoint::ModifyVpcEndpointOutput,
    };
    use aws_sdk_ec2::types::State;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::Change;
    use crate::resources::testing;

    fn endpoint(policy: &str, tables: &[&str]) -> VpcEndpoint {
        let mut tags = testing::ec2_tags("vpc-endpoint:s3");
        tags.retain(|t| t.key() != Some("Name"));
        tags.push(
            aws_sdk_ec2::types::Tag::builder()
                .key("Name")
                .value("payops-pr1-s3-endpoint")
                .build(),
        );
        VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-1")
            // As AWS spells it, not as the SDK's enum does.
            .state(State::from("available"))
            .policy_document(policy)
            .set_route_table_ids(Some(tables.iter().map(|s| s.to_string()).collect()))
            .set_tags(Some(tags))
            .build()
    }

    fn inputs() -> Vec<(&'static str, Record)> {
        vec![
            ("vpc", Record::default().output("VpcId", "vpc-1")),
            (
                "route-table:private-a",
                Record::default().resource("route_table", "rtb-a"),
            ),
            (
                "route-table:database",
                Record::default().resource("route_table", "rtb-d"),
            ),
        ]
    }

    fn s3() -> GatewayEndpoint {
        GatewayEndpoint::new(
            "s3",
            vec![
                "route-table:private-a".into(),
                "route-table:database".into(),
            ],
        )
    }

    #[tokio::test]
    async fn creates_a_gateway_endpoint_on_the_private_and_database_tables() {
        let none = mock!(Client::describe_vpc_endpoints)
            .then_output(|| DescribeVpcEndpointsOutput::builder().build());
        let create = mock!(Client::create_vpc_endpoint)
            .match_requests(|r| {
                r.service_name() == Some("com.amazonaws.us-east-1.s3")
                    && r.route_table_ids() == ["rtb-a", "rtb-d"]
                    && r.vpc_endpoint_type() == Some(&VpcEndpointType::Gateway)
                    && r.policy_document()
                        .is_some_and(|p| p.contains("aws:ResourceAccount"))
                    && r.client_token().is_some()
            })
            .then_compute_output(|r| {
                CreateVpcEndpointOutput::builder()
                    .vpc_endpoint(endpoint(r.policy_document().unwrap(), &["rtb-a", "rtb-d"]))
                    .build()
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&none, &create]);
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "vpc-endpoint:s3", s3(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(applied.record.outputs["S3GatewayEndpointId"], "vpce-1");
    }

    #[tokio::test]
    async fn a_lost_route_table_and_a_loosened_policy_are_repaired() {
        let found = mock!(Client::describe_vpc_endpoints).then_output(|| {
            DescribeVpcEndpointsOutput::builder()
                .vpc_endpoints(endpoint(
                    r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#,
                    &["rtb-a"],
                ))
                .build()
        });
        let modify = mock!(Client::modify_vpc_endpoint)
            .then_output(|| ModifyVpcEndpointOutput::builder().r#return(true).build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &modify]);
        let cx = testing::context(clients);
        let applied = testing::ensure(&cx, "vpc-endpoint:s3", s3(), &inputs())
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(modify.num_calls(), 2, "{:?}", applied.notes);
        assert!(
            applied.notes[0].contains("add [rtb-d]"),
            "{:?}",
            applied.notes
        );
    }
}
