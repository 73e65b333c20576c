"""An env's compliance remediation, invoked by the env's EventBridge rule on
AWS Config "Config Rules Compliance Change" events whose new evaluation is
NON_COMPLIANT for one of the env's Config rules.

What it fixes, because the fix is safe and narrow: an env VPC without a
working flow log (rule VPC_FLOW_LOGS_ENABLED). It creates the flow log the
env's `flow-logs` step makes (all traffic, to the env's log group, delivered
with the env's flow-logs role) on the env's own VPC only; any other VPC is
reported, never touched. Its role may do nothing else (ec2:CreateFlowLogs
scoped to the env's VPC, iam:PassRole of the flow-logs role only).

What it reports instead (to the env's compliance topic): everything it
cannot fix safely: an unencrypted EBS volume or RDS instance (encryption
cannot be turned on in place: it takes a snapshot, an encrypted copy and a
replacement, an operator's decision), a bucket without TLS-only or with
public read (changing a bucket policy could cut off its users), a VPC of
another env or none, and any rule it does not know.

Config delivers to EventBridge at least once and on every change, so the
fix is idempotent: a VPC that has an active flow log already is left alone.
The configuration comes from the function's environment:
  PAYOPS_ENV, PAYOPS_VPC_ID, PAYOPS_FLOW_LOG_GROUP, PAYOPS_FLOW_LOGS_ROLE_ARN,
  PAYOPS_COMPLIANCE_TOPIC_ARN, PAYOPS_FLOW_LOGS_RULE (the env's rule name).
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

NON_COMPLIANT = "NON_COMPLIANT"
DETAIL_TYPE = "Config Rules Compliance Change"

# Why each kind of finding is not fixed automatically (for the report).
NOT_FIXED = {
    "AWS::EC2::Volume": "an EBS volume cannot be encrypted in place: snapshot it, copy the snapshot encrypted with the env's key, and replace the volume",
    "AWS::RDS::DBInstance": "RDS storage cannot be encrypted in place: restore an encrypted snapshot copy and switch over",
    "AWS::S3::Bucket": "a bucket policy change could cut off the bucket's users: fix the policy or public access block by hand (payops up puts payops' own buckets back)",
}


def settings() -> dict[str, str]:
    names = {
        "env": "PAYOPS_ENV",
        "vpc": "PAYOPS_VPC_ID",
        "log_group": "PAYOPS_FLOW_LOG_GROUP",
        "role": "PAYOPS_FLOW_LOGS_ROLE_ARN",
        "topic": "PAYOPS_COMPLIANCE_TOPIC_ARN",
        "flow_logs_rule": "PAYOPS_FLOW_LOGS_RULE",
    }
    return {key: os.environ.get(var, "") for key, var in names.items()}


def finding(event: dict[str, Any]) -> dict[str, str] | None:
    """The rule, resource and annotation of a NON_COMPLIANT compliance change;
    None for anything else (a COMPLIANT change, another event)."""
    if event.get("source") != "aws.config" or event.get("detail-type") != DETAIL_TYPE:
        return None
    detail = event.get("detail") or {}
    result = detail.get("newEvaluationResult") or {}
    if result.get("complianceType") != NON_COMPLIANT:
        return None
    qualifier = (result.get("evaluationResultIdentifier") or {}).get("evaluationResultQualifier") or {}
    return {
        "rule": detail.get("configRuleName") or qualifier.get("configRuleName") or "",
        "resource_type": detail.get("resourceType") or qualifier.get("resourceType") or "",
        "resource_id": detail.get("resourceId") or qualifier.get("resourceId") or "",
        "annotation": result.get("annotation") or "",
        "region": detail.get("awsRegion") or event.get("region") or "",
        "account": detail.get("awsAccountId") or event.get("account") or "",
    }


def flow_logs(ec2: Any, vpc_id: str) -> list[dict[str, Any]]:
    return ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc_id]}]).get("FlowLogs", [])


def delivering(log: dict[str, Any]) -> bool:
    return log.get("FlowLogStatus") == "ACTIVE" and log.get("DeliverLogsStatus", "SUCCESS") != "FAILED"


def enable_flow_logs(ec2: Any, cfg: dict[str, str]) -> str:
    """Creates the env's flow log on the env's VPC unless one delivers;
    what was done. A flow log to the env's group whose delivery fails cannot
    be fixed by making another (EC2 refuses a second one to the same group:
    FlowLogAlreadyExists): its role or group is broken, which is reported."""
    logs = flow_logs(ec2, cfg["vpc"])
    if any(delivering(log) for log in logs):
        return "already-compliant"
    if any(log.get("LogGroupName") == cfg["log_group"] for log in logs):
        return "delivery-failing"
    out = ec2.create_flow_logs(
        ResourceIds=[cfg["vpc"]],
        ResourceType="VPC",
        TrafficType="ALL",
        LogDestinationType="cloud-watch-logs",
        LogGroupName=cfg["log_group"],
        DeliverLogsPermissionArn=cfg["role"],
        TagSpecifications=[
            {
                "ResourceType": "vpc-flow-log",
                "Tags": [
                    {"Key": "payops:env", "Value": cfg["env"]},
                    {"Key": "payops:managed-by", "Value": "payops"},
                    {"Key": "payops:step", "Value": "flow-logs"},
                    {"Key": "payops:remediated-by", "Value": "config-remediation"},
                ],
            }
        ],
    )
    refused = out.get("Unsuccessful") or []
    if refused:
        error = refused[0].get("Error") or {}
        raise RuntimeError(f"CreateFlowLogs refused: {error.get('Code')}: {error.get('Message')}")
    return "remediated"


def report(sns: Any, cfg: dict[str, str], found: dict[str, str], outcome: str, why: str) -> None:
    subject = f"payops {cfg['env']}: {found['rule']} NON_COMPLIANT ({outcome})"
    message = {
        "env": cfg["env"],
        "rule": found["rule"],
        "resourceType": found["resource_type"],
        "resourceId": found["resource_id"],
        "annotation": found["annotation"],
        "outcome": outcome,
        "action": why,
    }
    sns.publish(TopicArn=cfg["topic"], Subject=subject[:100], Message=json.dumps(message, indent=2))


def handle(event: dict[str, Any], ec2: Any, sns: Any, cfg: dict[str, str]) -> dict[str, str]:
    found = finding(event)
    if found is None:
        return {"outcome": "ignored"}
    rtype, rid = found["resource_type"], found["resource_id"]
    if found["rule"] == cfg["flow_logs_rule"] and rtype == "AWS::EC2::VPC":
        if rid != cfg["vpc"]:
            why = f"{rid} is not this env's VPC ({cfg['vpc']}): not touched"
            report(sns, cfg, found, "not-fixed", why)
            return {"outcome": "not-fixed", "reason": why}
        outcome = enable_flow_logs(ec2, cfg)
        if outcome == "remediated":
            why = f"created a flow log (ALL traffic) to {cfg['log_group']} on {rid}"
            report(sns, cfg, found, outcome, why)
        elif outcome == "delivery-failing":
            why = (
                f"the flow log to {cfg['log_group']} exists but does not deliver: check the "
                "flow-logs role and the log group (payops up puts both back)"
            )
            report(sns, cfg, found, "not-fixed", why)
            return {"outcome": "not-fixed", "reason": why}
        return {"outcome": outcome, "resource": rid}
    why = NOT_FIXED.get(rtype, f"no automatic fix for {rtype or 'this resource'}: look at it")
    report(sns, cfg, found, "not-fixed", why)
    return {"outcome": "not-fixed", "reason": why}


def handler(event: dict[str, Any], _context: Any) -> dict[str, str]:
    result = handle(event, boto3.client("ec2"), boto3.client("sns"), settings())
    print(json.dumps({"event": event.get("id"), **result}))
    return result
