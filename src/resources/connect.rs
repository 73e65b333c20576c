//! Opening an env: SDK configuration, clients and the account we run in.

use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use crate::aws::config::{self, AwsSettings};
use crate::aws::{ApiCounter, AwsError, Clients, OpResult, required};
use crate::naming::{EnvName, Names};
use crate::spec::EnvSpec;
use crate::tags::Tagger;

use super::context::Context;

/// Now, as payops writes timestamps (RFC 3339, UTC, seconds).
pub fn now() -> String {
    DateTime::from(SystemTime::now())
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// Builds the context for `env` and asks STS who we are (one read call): the
/// account id is part of the bucket name and of every ARN.
pub async fn connect(
    settings: &AwsSettings,
    env: &EnvName,
    spec: EnvSpec,
) -> Result<(Context, ApiCounter), AwsError> {
    let sdk = config::load(settings).await;
    let counter = ApiCounter::new();
    let custom_endpoint = settings.endpoint_url.is_some() || sdk.endpoint_url().is_some();
    let clients = Clients::new(&sdk, &counter, custom_endpoint);
    let identity = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .op("sts:GetCallerIdentity")?;
    let account = required(identity.account(), "sts:GetCallerIdentity", "Account")?.to_owned();
    let names = Names::new(env.clone(), &account, &settings.region);
    let tagger = Tagger::new(env.clone(), spec.cost_center.clone(), now());
    let cx = Context::new(names, tagger, spec, clients, account, &settings.region);
    Ok((cx, counter))
}
