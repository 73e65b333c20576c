//! Opening AWS: SDK configuration and clients (no call yet), then, per env,
//! the context steps run with.

use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use tokio::sync::OnceCell;

use crate::aws::config::{self, AwsSettings};
use crate::aws::{ApiCounter, AwsError, Clients, OpResult, required};
use crate::naming::{EnvName, Names};
use crate::spec::EnvSpec;
use crate::tags::Tagger;

use crate::resources::context::Context;

/// Now, as payops writes timestamps (RFC 3339, UTC).
pub fn now() -> String {
    DateTime::from(SystemTime::now())
        .fmt(Format::DateTime)
        .unwrap_or_default()
}

/// The SDK clients of one payops process, counting their calls.
pub struct Aws {
    pub clients: Clients,
    pub counter: ApiCounter,
    pub region: String,
    account: OnceCell<String>,
}

impl Aws {
    /// Reads the SDK configuration (region, credentials chain, endpoint);
    /// makes no AWS call.
    pub async fn new(settings: &AwsSettings) -> Self {
        let sdk = config::load(settings).await;
        let counter = ApiCounter::new();
        let custom_endpoint = settings.endpoint_url.is_some() || sdk.endpoint_url().is_some();
        Self {
            clients: Clients::new(&sdk, &counter, custom_endpoint),
            counter,
            region: settings.region.clone(),
            account: OnceCell::new(),
        }
    }

    /// The account the credentials belong to (one STS call, then cached): it
    /// is part of the bucket name and of every ARN.
    pub async fn account(&self) -> Result<&str, AwsError> {
        self.account
            .get_or_try_init(|| async {
                let identity = self
                    .clients
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .op("sts:GetCallerIdentity")?;
                Ok(required(identity.account(), "sts:GetCallerIdentity", "Account")?.to_owned())
            })
            .await
            .map(String::as_str)
    }

    /// The context `env`'s steps run with.
    pub async fn context(&self, env: &EnvName, spec: EnvSpec) -> Result<Context, AwsError> {
        let account = self.account().await?.to_owned();
        let names = Names::new(env.clone(), &account, &self.region);
        let tagger =
            Tagger::new(env.clone(), spec.cost_center.clone(), now()).protect(spec.protect);
        Ok(Context::new(
            names,
            tagger,
            spec,
            self.clients.clone(),
            account,
            &self.region,
        ))
    }
}
