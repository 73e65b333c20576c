//! Lambda: the function-policy statements by which other services (API
//! Gateway, ELB, EventBridge, Secrets Manager) may invoke a function.

use crate::aws::{AwsError, OpResult, absent_on, policy};
use crate::resources::context::Context;

/// Whether `function` (its alias `qualifier`, when given) lets `service`
/// invoke it for `source_arn` only, by the statement `sid` (see
/// [`policy::grants_service`]). A function without a policy grants nothing.
pub async fn grants(
    cx: &Context,
    function: &str,
    qualifier: Option<&str>,
    sid: &str,
    service: &str,
    source_arn: &str,
) -> Result<bool, AwsError> {
    let got = cx
        .clients
        .lambda
        .get_policy()
        .function_name(function)
        .set_qualifier(qualifier.map(str::to_owned))
        .send()
        .await
        .op("lambda:GetPolicy");
    Ok(
        absent_on(got, &["ResourceNotFoundException"])?.is_some_and(|out| {
            policy::grants_service(out.policy().unwrap_or("{}"), sid, service, source_arn)
        }),
    )
}
