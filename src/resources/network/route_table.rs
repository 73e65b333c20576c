//! Route tables: one for the public tier (default route to the internet
//! gateway), one per AZ for the private tier (default route to that AZ's NAT
//! gateway, or the single one), and one for the database tier with no route
//! out of the VPC at all.

use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, RouteState, RouteTable as Ec2RouteTable};

use crate::aws::{AwsError, OpResult, absent_on, client_token, required};
use crate::engine::{Record, StepCx};
use crate::spec::{AZ_COUNT, AZ_LABELS, NatMode};
use crate::tags::TagMap;

use crate::resources::context::Context;
use crate::resources::resource::Resource;
use crate::resources::sdk::ec2;

const DEFAULT_ROUTE: &str = "0.0.0.0/0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTable {
    Public,
    Private(usize),
    Database,
}

impl RouteTable {
    pub fn step_id(self) -> String {
        match self {
            Self::Public => "route-table:public".into(),
            Self::Private(slot) => format!("route-table:private-{}", AZ_LABELS[slot]),
            Self::Database => "route-table:database".into(),
        }
    }

    fn name(self, cx: &Context) -> String {
        match self {
            Self::Public => cx.names.resource("public"),
            Self::Private(slot) => cx.names.resource(&format!("private-{}", AZ_LABELS[slot])),
            Self::Database => cx.names.resource("database"),
        }
    }

    fn output_key(self) -> String {
        match self {
            Self::Public => "PublicRouteTableId".into(),
            Self::Private(slot) => {
                format!(
                    "PrivateRouteTableId{}",
                    AZ_LABELS[slot].to_ascii_uppercase()
                )
            }
            Self::Database => "DatabaseRouteTableId".into(),
        }
    }

    /// The subnets step and AZ slots this table is associated with.
    fn subnets(self) -> (&'static str, Vec<usize>) {
        match self {
            Self::Public => ("subnets:public", (0..AZ_COUNT).collect()),
            Self::Private(slot) => ("subnets:private", vec![slot]),
            Self::Database => ("subnets:database", (0..AZ_COUNT).collect()),
        }
    }

    /// The step whose NAT gateway a private table routes through.
    pub fn nat_step(slot: usize, mode: NatMode) -> String {
        format!("nat-gateway:{}", AZ_LABELS[mode.nat_for(slot)])
    }

    /// The default route's desired target; `Some(None)` while the target is
    /// not known yet (`plan` before the NAT exists), `None` for no route.
    fn default_target(self, cx: &Context, step: &StepCx<'_>) -> Option<Option<Target>> {
        match self {
            Self::Public => Some(
                step.output("internet-gateway", "InternetGatewayId")
                    .ok()
                    .map(|id| Target::Gateway(id.to_owned())),
            ),
            Self::Private(slot) => Some(
                step.input_resource(&Self::nat_step(slot, cx.spec.nat), "nat")
                    .ok()
                    .map(|id| Target::Nat(id.to_owned())),
            ),
            // Database subnets never reach the internet, not even outbound.
            Self::Database => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Gateway(String),
    Nat(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gateway(id) | Self::Nat(id) => f.write_str(id),
        }
    }
}

pub struct FoundTable {
    id: String,
    default_route: Option<(Option<Target>, bool)>,
    /// (association id, subnet id) of explicit subnet associations.
    associations: Vec<(String, String)>,
    tags: TagMap,
}

pub enum Fix {
    Tags(TagMap),
    CreateRoute(Option<Target>),
    ReplaceRoute(Option<Target>),
    DeleteRoute,
    Associate(String),
    /// The subnet is explicitly associated with another table.
    Reassociate {
        association: String,
        subnet: String,
    },
    Disassociate {
        association: String,
        subnet: String,
    },
}

fn target_or_pending(t: &Option<Target>) -> String {
    t.as_ref().map_or_else(
        || "the gateway being created".to_owned(),
        ToString::to_string,
    )
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tags(t) => f.write_str(&crate::tags::describe_tag_fix(t)),
            Self::CreateRoute(t) => {
                write!(f, "add route {DEFAULT_ROUTE} -> {}", target_or_pending(t))
            }
            Self::ReplaceRoute(t) => {
                write!(f, "point route {DEFAULT_ROUTE} at {}", target_or_pending(t))
            }
            Self::DeleteRoute => write!(f, "remove route {DEFAULT_ROUTE} (no internet route here)"),
            Self::Associate(s) => write!(f, "associate {s}"),
            Self::Reassociate { subnet, .. } => write!(f, "move {subnet} to this route table"),
            Self::Disassociate { subnet, .. } => write!(f, "disassociate {subnet}"),
        }
    }
}

fn found(t: &Ec2RouteTable) -> Option<FoundTable> {
    let default_route = t
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some(DEFAULT_ROUTE))
        .map(|r| {
            let target = r
                .nat_gateway_id()
                .map(|id| Target::Nat(id.to_owned()))
                .or_else(|| r.gateway_id().map(|id| Target::Gateway(id.to_owned())));
            (target, r.state() == Some(&RouteState::Blackhole))
        });
    Some(FoundTable {
        id: t.route_table_id()?.to_owned(),
        default_route,
        associations: t
            .associations()
            .iter()
            .filter(|a| !a.main().unwrap_or(false))
            .filter_map(|a| {
                Some((
                    a.route_table_association_id()?.to_owned(),
                    a.subnet_id()?.to_owned(),
                ))
            })
            .collect(),
        tags: ec2::tag_map(t.tags()),
    })
}

impl RouteTable {
    async fn route(&self, cx: &Context, table: &str, fix: &Fix) -> Result<(), AwsError> {
        let ec2 = &cx.clients.ec2;
        match fix {
            Fix::CreateRoute(t) | Fix::ReplaceRoute(t) => {
                let target = t.as_ref().ok_or(AwsError::Incomplete {
                    op: "ec2:CreateRoute",
                    field: "route target",
                })?;
                let (gateway, nat) = match target {
                    Target::Gateway(id) => (Some(id.clone()), None),
                    Target::Nat(id) => (None, Some(id.clone())),
                };
                // CreateRoute has no client token: when the SDK retried one
                // whose answer was lost, the retry meets the route the first
                // attempt made. ReplaceRoute then sets the target we want,
                // whatever is there.
                let replace = !matches!(fix, Fix::CreateRoute(_))
                    || match ec2
                        .create_route()
                        .route_table_id(table)
                        .destination_cidr_block(DEFAULT_ROUTE)
                        .set_gateway_id(gateway.clone())
                        .set_nat_gateway_id(nat.clone())
                        .send()
                        .await
                        .op("ec2:CreateRoute")
                    {
                        Ok(_) => false,
                        Err(e) if e.is_code(&["RouteAlreadyExists"]) => true,
                        Err(e) => return Err(e),
                    };
                if replace {
                    ec2.replace_route()
                        .route_table_id(table)
                        .destination_cidr_block(DEFAULT_ROUTE)
                        .set_gateway_id(gateway)
                        .set_nat_gateway_id(nat)
                        .send()
                        .await
                        .op("ec2:ReplaceRoute")?;
                }
            }
            Fix::DeleteRoute => {
                ec2.delete_route()
                    .route_table_id(table)
                    .destination_cidr_block(DEFAULT_ROUTE)
                    .send()
                    .await
                    .op("ec2:DeleteRoute")?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[async_trait]
impl Resource for RouteTable {
    type Found = FoundTable;
    type Fix = Fix;

    fn kind(&self) -> &'static str {
        "ec2:route-table"
    }

    /// AssociateRouteTable meets the association its lost first attempt made (see the trait).
    fn already_exists(&self) -> &'static [&'static str] {
        &["Resource.AlreadyAssociated"]
    }

    async fn find(&self, cx: &Context, step: &StepCx<'_>) -> Result<Vec<FoundTable>, AwsError> {
        ec2::find_owned!(
            cx,
            step,
            describe_route_tables,
            "ec2:DescribeRouteTables",
            route_tables,
            found
        )
    }

    fn describe(&self, t: &FoundTable) -> String {
        t.id.clone()
    }

    async fn create(&self, cx: &Context, step: &StepCx<'_>) -> Result<FoundTable, AwsError> {
        let vpc = step.output("vpc", "VpcId")?;
        let out = cx
            .clients
            .ec2
            .create_route_table()
            .vpc_id(vpc)
            // A retry of a call whose answer was lost returns the table the
            // first attempt made instead of making a second one.
            .client_token(client_token(&[cx.env().as_str(), step.id().as_str(), vpc]))
            .tag_specifications(ec2::tag_spec(
                cx,
                ResourceType::RouteTable,
                step.id().as_str(),
                &self.name(cx),
            ))
            .send()
            .await
            .op("ec2:CreateRouteTable")?;
        let table = required(
            out.route_table().and_then(found),
            "ec2:CreateRouteTable",
            "RouteTable",
        )?;
        step.remember("route_table", &table.id);
        Ok(table)
    }

    async fn diff(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        table: &FoundTable,
    ) -> Result<Vec<Fix>, AwsError> {
        let mut fixes = Vec::new();
        let missing = ec2::missing_tags(cx, step.id().as_str(), &self.name(cx), &table.tags);
        if !missing.is_empty() {
            fixes.push(Fix::Tags(missing));
        }

        match (self.default_target(cx, step), &table.default_route) {
            (None, Some(_)) => fixes.push(Fix::DeleteRoute),
            (None, None) => {}
            (Some(want), None) => fixes.push(Fix::CreateRoute(want)),
            (Some(want), Some((have, blackhole))) => {
                if *blackhole || want.is_none() || *have != want {
                    fixes.push(Fix::ReplaceRoute(want));
                }
            }
        }

        let (subnets_step, slots) = self.subnets();
        let wanted: Vec<String> = slots
            .iter()
            .filter_map(|slot| {
                step.input_resource(subnets_step, &format!("subnet:{}", AZ_LABELS[*slot]))
                    .ok()
                    .map(str::to_owned)
            })
            .collect();
        for (association, subnet) in &table.associations {
            if !wanted.contains(subnet) {
                fixes.push(Fix::Disassociate {
                    association: association.clone(),
                    subnet: subnet.clone(),
                });
            }
        }
        let unassociated: Vec<&String> = wanted
            .iter()
            .filter(|s| !table.associations.iter().any(|(_, a)| a == *s))
            .collect();
        if !unassociated.is_empty() {
            // A subnet can be explicitly associated with one table only.
            let elsewhere = cx
                .clients
                .ec2
                .describe_route_tables()
                .filters(ec2::filter(
                    "association.subnet-id",
                    unassociated.iter().map(|s| s.as_str()),
                ))
                .send()
                .await
                .op("ec2:DescribeRouteTables")?;
            for subnet in unassociated {
                let current = elsewhere.route_tables().iter().find_map(|t| {
                    t.associations()
                        .iter()
                        .find(|a| {
                            a.subnet_id() == Some(subnet.as_str()) && !a.main().unwrap_or(false)
                        })
                        .and_then(|a| a.route_table_association_id())
                });
                fixes.push(match current {
                    Some(association) => Fix::Reassociate {
                        association: association.to_owned(),
                        subnet: subnet.clone(),
                    },
                    None => Fix::Associate(subnet.clone()),
                });
            }
        }
        Ok(fixes)
    }

    async fn fix(
        &self,
        cx: &Context,
        _step: &StepCx<'_>,
        table: &mut FoundTable,
        fix: Fix,
    ) -> Result<(), AwsError> {
        let ec2 = &cx.clients.ec2;
        match &fix {
            Fix::Tags(tags) => ec2::add_tags(cx, &table.id, tags).await?,
            Fix::CreateRoute(_) | Fix::ReplaceRoute(_) | Fix::DeleteRoute => {
                self.route(cx, &table.id, &fix).await?
            }
            Fix::Associate(subnet) => {
                let out = ec2
                    .associate_route_table()
                    .route_table_id(&table.id)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .op("ec2:AssociateRouteTable")?;
                let id = required(
                    out.association_id(),
                    "ec2:AssociateRouteTable",
                    "AssociationId",
                )?;
                table.associations.push((id.to_owned(), subnet.clone()));
            }
            Fix::Reassociate {
                association,
                subnet,
            } => {
                let out = ec2
                    .replace_route_table_association()
                    .association_id(association)
                    .route_table_id(&table.id)
                    .send()
                    .await
                    .op("ec2:ReplaceRouteTableAssociation")?;
                let id = out.new_association_id().unwrap_or(association);
                table.associations.push((id.to_owned(), subnet.clone()));
            }
            Fix::Disassociate { association, .. } => {
                ec2.disassociate_route_table()
                    .association_id(association)
                    .send()
                    .await
                    .op("ec2:DisassociateRouteTable")?;
                table.associations.retain(|(a, _)| a != association);
            }
        }
        Ok(())
    }

    fn record(&self, _cx: &Context, table: &FoundTable) -> Record {
        Record::default()
            .resource("route_table", &table.id)
            .output(self.output_key(), &table.id)
    }

    async fn delete(
        &self,
        cx: &Context,
        step: &StepCx<'_>,
        table: FoundTable,
    ) -> Result<Vec<String>, AwsError> {
        for (association, _) in &table.associations {
            absent_on(
                cx.clients
                    .ec2
                    .disassociate_route_table()
                    .association_id(association)
                    .send()
                    .await
                    .op("ec2:DisassociateRouteTable"),
                &["InvalidAssociationID.NotFound"],
            )?;
        }
        // Gateway endpoint routes keep the table busy until the endpoint is gone.
        ec2::delete_patiently(
            cx,
            step,
            &format!("deleting {}", table.id),
            &["DependencyViolation"],
            &["InvalidRouteTableID.NotFound"],
            || async {
                cx.clients
                    .ec2
                    .delete_route_table()
                    .route_table_id(&table.id)
                    .send()
                    .await
                    .op("ec2:DeleteRouteTable")
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
        associate_route_table::AssociateRouteTableOutput, create_route::CreateRouteOutput,
        create_route_table::CreateRouteTableOutput, delete_route::DeleteRouteOutput,
        describe_route_tables::DescribeRouteTablesOutput,
        replace_route_table_association::ReplaceRouteTableAssociationOutput,
    };
    use aws_sdk_ec2::types::{Route, RouteTableAssociation};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    use super::*;
    use crate::engine::{Change, Observation};
    use crate::resources::testing;

    fn table(
        step: &str,
        name: &str,
        route: Option<Route>,
        assoc: &[(&str, &str)],
    ) -> Ec2RouteTable {
        let mut tags = testing::ec2_tags(step);
        tags.retain(|t| t.key() != Some("Name"));
        tags.push(
            aws_sdk_ec2::types::Tag::builder()
                .key("Name")
                .value(name)
                .build(),
        );
        let mut t = Ec2RouteTable::builder()
            .route_table_id("rtb-1")
            .set_tags(Some(tags))
            .routes(
                Route::builder()
                    .destination_cidr_block("10.0.0.0/16")
                    .gateway_id("local")
                    .build(),
            );
        if let Some(r) = route {
            t = t.routes(r);
        }
        for (a, s) in assoc {
            t = t.associations(
                RouteTableAssociation::builder()
                    .route_table_association_id(*a)
                    .subnet_id(*s)
                    .main(false)
                    .build(),
            );
        }
        t.build()
    }

    fn inputs_private() -> Vec<(&'static str, Record)> {
        vec![
            ("vpc", Record::default().output("VpcId", "vpc-1")),
            (
                "subnets:private",
                Record::default().resource("subnet:b", "subnet-pb"),
            ),
            ("nat-gateway:b", Record::default().resource("nat", "nat-b")),
        ]
    }

    /// No table for private-b yet, its subnet in no other table, and
    /// CreateRouteTable answering a new empty one.
    fn no_private_table_b_yet() -> [Rule; 3] {
        let none = mock!(Client::describe_route_tables)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("tag:payops:env"))
            })
            .then_output(|| DescribeRouteTablesOutput::builder().build());
        let not_elsewhere = mock!(Client::describe_route_tables)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("association.subnet-id"))
            })
            .then_output(|| DescribeRouteTablesOutput::builder().build());
        let create = mock!(Client::create_route_table).then_output(|| {
            CreateRouteTableOutput::builder()
                .route_table(table(
                    "route-table:private-b",
                    "payops-pr1-private-b",
                    None,
                    &[],
                ))
                .build()
        });
        [none, not_elsewhere, create]
    }

    #[tokio::test]
    async fn a_private_table_routes_through_its_azs_nat_and_takes_its_subnet() {
        let [none, not_elsewhere, create] = no_private_table_b_yet();
        let route = mock!(Client::create_route)
            .match_requests(|r| {
                r.nat_gateway_id() == Some("nat-b")
                    && r.destination_cidr_block() == Some("0.0.0.0/0")
            })
            .then_output(|| CreateRouteOutput::builder().r#return(true).build());
        let associate = mock!(Client::associate_route_table)
            .match_requests(|r| r.subnet_id() == Some("subnet-pb"))
            .then_output(|| {
                AssociateRouteTableOutput::builder()
                    .association_id("rtbassoc-1")
                    .build()
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&none, &not_elsewhere, &create, &route, &associate]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "route-table:private-b",
            RouteTable::Private(1),
            &inputs_private(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!(route.num_calls(), 1);
        assert_eq!(associate.num_calls(), 1);
        assert_eq!(applied.record.outputs["PrivateRouteTableIdB"], "rtb-1");
    }

    #[tokio::test]
    async fn a_route_made_by_a_retried_create_is_pointed_where_we_want_not_an_error() {
        let [none, not_elsewhere, create] = no_private_table_b_yet();
        // The SDK's retry of a CreateRoute whose answer was lost (AWS's code
        // and message).
        let exists = mock!(Client::create_route).then_error(|| {
            aws_sdk_ec2::operation::create_route::CreateRouteError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("RouteAlreadyExists")
                    .message("The route identified by 0.0.0.0/0 already exists.")
                    .build(),
            )
        });
        let replace = mock!(Client::replace_route)
            .match_requests(|r| {
                r.nat_gateway_id() == Some("nat-b")
                    && r.destination_cidr_block() == Some("0.0.0.0/0")
            })
            .then_output(|| {
                aws_sdk_ec2::operation::replace_route::ReplaceRouteOutput::builder().build()
            });
        let associate = mock!(Client::associate_route_table).then_output(|| {
            AssociateRouteTableOutput::builder()
                .association_id("rtbassoc-1")
                .build()
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [
                &none,
                &not_elsewhere,
                &create,
                &exists,
                &replace,
                &associate
            ]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "route-table:private-b",
            RouteTable::Private(1),
            &inputs_private(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Created);
        assert_eq!((exists.num_calls(), replace.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_internet_route_in_the_database_table_is_drift_and_removed() {
        let found = mock!(Client::describe_route_tables).then_output(|| {
            DescribeRouteTablesOutput::builder()
                .route_tables(table(
                    "route-table:database",
                    "payops-pr1-database",
                    Some(
                        Route::builder()
                            .destination_cidr_block("0.0.0.0/0")
                            .gateway_id("igw-1")
                            .build(),
                    ),
                    &[
                        ("a1", "subnet-da"),
                        ("a2", "subnet-db"),
                        ("a3", "subnet-dc"),
                    ],
                ))
                .build()
        });
        let delete =
            mock!(Client::delete_route).then_output(|| DeleteRouteOutput::builder().build());
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&found, &delete]);
        let cx = testing::context(clients);
        let inputs = vec![
            ("vpc", Record::default().output("VpcId", "vpc-1")),
            (
                "subnets:database",
                Record::default()
                    .resource("subnet:a", "subnet-da")
                    .resource("subnet:b", "subnet-db")
                    .resource("subnet:c", "subnet-dc"),
            ),
        ];
        let observed = testing::observe(&cx, "route-table:database", RouteTable::Database, &inputs)
            .await
            .unwrap();
        assert!(
            matches!(&observed, Observation::Present { drift, .. } if drift[0].contains("no internet route")),
            "{observed:?}"
        );
        let applied = testing::ensure(&cx, "route-table:database", RouteTable::Database, &inputs)
            .await
            .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(delete.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_association_retried_after_a_lost_answer_adopts_what_it_made() {
        // The table without its subnet at the first look, with it at the
        // next: the retried AssociateRouteTable met the association its lost
        // first attempt made, and EC2 answers `Resource.AlreadyAssociated`.
        let nat_route = || {
            Some(
                Route::builder()
                    .destination_cidr_block("0.0.0.0/0")
                    .nat_gateway_id("nat-b")
                    .build(),
            )
        };
        let found = mock!(Client::describe_route_tables)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("tag:payops:env"))
            })
            .sequence()
            .output(move || {
                DescribeRouteTablesOutput::builder()
                    .route_tables(table(
                        "route-table:private-b",
                        "payops-pr1-private-b",
                        nat_route(),
                        &[],
                    ))
                    .build()
            })
            .output(move || {
                DescribeRouteTablesOutput::builder()
                    .route_tables(table(
                        "route-table:private-b",
                        "payops-pr1-private-b",
                        nat_route(),
                        &[("rtbassoc-1", "subnet-pb")],
                    ))
                    .build()
            })
            .repeatedly()
            .build();
        let [_, not_elsewhere, _] = no_private_table_b_yet();
        let associate = mock!(Client::associate_route_table).then_error(|| {
            aws_sdk_ec2::operation::associate_route_table::AssociateRouteTableError::generic(
                testing::error_meta("Resource.AlreadyAssociated"),
            )
        });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&found, &not_elsewhere, &associate]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "route-table:private-b",
            RouteTable::Private(1),
            &inputs_private(),
        )
        .await
        .unwrap();
        assert_eq!(applied.record.outputs["PrivateRouteTableIdB"], "rtb-1");
        assert_eq!(associate.num_calls(), 1);
        assert_eq!(found.num_calls(), 2, "looked again after the conflict");
    }

    #[tokio::test]
    async fn a_subnet_associated_elsewhere_is_moved_not_double_associated() {
        let found = mock!(Client::describe_route_tables)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("tag:payops:env"))
            })
            .then_output(|| {
                DescribeRouteTablesOutput::builder()
                    .route_tables(table(
                        "route-table:private-b",
                        "payops-pr1-private-b",
                        Some(
                            Route::builder()
                                .destination_cidr_block("0.0.0.0/0")
                                .nat_gateway_id("nat-b")
                                .build(),
                        ),
                        &[],
                    ))
                    .build()
            });
        let elsewhere = mock!(Client::describe_route_tables)
            .match_requests(|r| {
                r.filters()
                    .iter()
                    .any(|f| f.name() == Some("association.subnet-id"))
            })
            .then_output(|| {
                DescribeRouteTablesOutput::builder()
                    .route_tables(
                        Ec2RouteTable::builder()
                            .route_table_id("rtb-other")
                            .associations(
                                RouteTableAssociation::builder()
                                    .route_table_association_id("rtbassoc-old")
                                    .subnet_id("subnet-pb")
                                    .main(false)
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let replace = mock!(Client::replace_route_table_association)
            .match_requests(|r| {
                r.association_id() == Some("rtbassoc-old") && r.route_table_id() == Some("rtb-1")
            })
            .then_output(|| {
                ReplaceRouteTableAssociationOutput::builder()
                    .new_association_id("rtbassoc-new")
                    .build()
            });
        let mut clients = testing::clients();
        clients.ec2 = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&found, &elsewhere, &replace]
        );
        let cx = testing::context(clients);
        let applied = testing::ensure(
            &cx,
            "route-table:private-b",
            RouteTable::Private(1),
            &inputs_private(),
        )
        .await
        .unwrap();
        assert_eq!(applied.change, Change::Updated);
        assert_eq!(replace.num_calls(), 1);
    }

    #[test]
    fn single_nat_mode_routes_every_private_table_through_slot_a() {
        assert_eq!(RouteTable::nat_step(2, NatMode::Single), "nat-gateway:a");
        assert_eq!(RouteTable::nat_step(2, NatMode::PerAz), "nat-gateway:c");
    }
}
