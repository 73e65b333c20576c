"""The compliance remediation with real-shaped AWS Config compliance-change
events (as EventBridge delivers them: EventBridge user guide, "AWS Config
events", sample "Config Rules Compliance Change"), against moto's EC2 and
SNS in-process."""

import copy
import json
import pathlib

import boto3
import pytest
from moto import mock_aws

import config_remediation as remediation

ACCOUNT = "123456789012"
RULE = "payops-t1-vpc-flow-logs-enabled"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/payops-t1-flow-logs"
GROUP = "/payops/t1/vpc-flow-logs"

# The sample event AWS documents, with an env's rule and VPC put in; the Rust
# tests of the rule's pattern read the same file (compliance_rule.rs,
# tests/baseline.rs).
with open(pathlib.Path(__file__).parent / "events" / "config-compliance-change.json") as f:
    SAMPLE = json.load(f)


def event(resource_id, rule=RULE, resource_type="AWS::EC2::VPC", compliance="NON_COMPLIANT"):
    e = copy.deepcopy(SAMPLE)
    d = e["detail"]
    d["resourceId"] = resource_id
    d["configRuleName"] = rule
    d["resourceType"] = resource_type
    q = d["newEvaluationResult"]["evaluationResultIdentifier"]["evaluationResultQualifier"]
    q.update(resourceId=resource_id, configRuleName=rule, resourceType=resource_type)
    d["newEvaluationResult"]["complianceType"] = compliance
    return e


@pytest.fixture
def aws():
    with mock_aws():
        ec2 = boto3.client("ec2")
        sns = boto3.client("sns")
        sqs = boto3.client("sqs")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        other = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        boto3.client("logs").create_log_group(logGroupName=GROUP)
        topic = sns.create_topic(Name="payops-t1-compliance")["TopicArn"]
        # The topic's messages, read back through a queue subscribed to it.
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        cfg = {"env": "t1", "vpc": vpc, "log_group": GROUP, "role": ROLE, "topic": topic, "flow_logs_rule": RULE}

        def reports():
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(json.loads(m["Body"])["Message"]) for m in got]

        yield {"ec2": ec2, "sns": sns, "cfg": cfg, "other": other, "reports": reports}


def flow_logs(ec2, vpc):
    return ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vpc]}])["FlowLogs"]


def test_the_sample_event_is_a_non_compliant_finding_and_a_compliant_one_is_not():
    found = remediation.finding(event("vpc-1"))
    assert found["rule"] == RULE
    assert (found["resource_type"], found["resource_id"]) == ("AWS::EC2::VPC", "vpc-1")
    assert remediation.finding(event("vpc-1", compliance="COMPLIANT")) is None
    other = dict(SAMPLE, source="aws.guardduty")
    assert remediation.finding(other) is None


def test_the_envs_vpc_without_flow_logs_gets_the_envs_flow_log_and_a_report(aws):
    ec2, cfg = aws["ec2"], aws["cfg"]
    result = remediation.handle(event(cfg["vpc"]), ec2, aws["sns"], cfg)
    assert result["outcome"] == "remediated"
    logs = flow_logs(ec2, cfg["vpc"])
    assert len(logs) == 1
    log = logs[0]
    assert (log["TrafficType"], log["LogGroupName"], log["DeliverLogsPermissionArn"]) == ("ALL", GROUP, ROLE)
    tags = {t["Key"]: t["Value"] for t in log.get("Tags", [])}
    assert tags["payops:env"] == "t1"
    [sent] = aws["reports"]()
    assert (sent["outcome"], sent["resourceId"]) == ("remediated", cfg["vpc"])

    # Config sends the change again (at least once): nothing more is made.
    again = remediation.handle(event(cfg["vpc"]), ec2, aws["sns"], cfg)
    assert again["outcome"] == "already-compliant"
    assert len(flow_logs(ec2, cfg["vpc"])) == 1


def test_a_flow_log_that_does_not_deliver_is_reported_not_duplicated(aws):
    ec2, cfg = aws["ec2"], aws["cfg"]
    broken = dict(cfg, log_group="/payops/t1/gone")
    # A flow log to a group that does not exist: EC2 reports its delivery FAILED.
    ec2.create_flow_logs(
        ResourceIds=[cfg["vpc"]],
        ResourceType="VPC",
        TrafficType="ALL",
        LogDestinationType="cloud-watch-logs",
        LogGroupName=broken["log_group"],
        DeliverLogsPermissionArn=ROLE,
    )
    result = remediation.handle(event(cfg["vpc"]), ec2, aws["sns"], broken)
    assert result["outcome"] == "not-fixed"
    assert "does not deliver" in result["reason"]
    assert len(flow_logs(ec2, cfg["vpc"])) == 1
    [sent] = aws["reports"]()
    assert sent["outcome"] == "not-fixed"


def test_another_vpc_is_reported_and_never_touched(aws):
    ec2, cfg = aws["ec2"], aws["cfg"]
    result = remediation.handle(event(aws["other"]), ec2, aws["sns"], cfg)
    assert result["outcome"] == "not-fixed"
    assert flow_logs(ec2, aws["other"]) == []
    [sent] = aws["reports"]()
    assert "not this env's VPC" in sent["action"]


@pytest.mark.parametrize(
    "rule,rtype,words",
    [
        ("payops-t1-encrypted-volumes", "AWS::EC2::Volume", "cannot be encrypted in place"),
        ("payops-t1-rds-storage-encrypted", "AWS::RDS::DBInstance", "cannot be encrypted in place"),
        ("payops-t1-s3-bucket-ssl-requests-only", "AWS::S3::Bucket", "bucket policy"),
    ],
)
def test_what_cannot_be_fixed_safely_is_reported_with_why(aws, rule, rtype, words):
    ec2, cfg = aws["ec2"], aws["cfg"]
    result = remediation.handle(event("r-1", rule=rule, resource_type=rtype), ec2, aws["sns"], cfg)
    assert result["outcome"] == "not-fixed"
    assert words in result["reason"]
    [sent] = aws["reports"]()
    assert (sent["rule"], sent["resourceType"], sent["outcome"]) == (rule, rtype, "not-fixed")
    assert flow_logs(ec2, cfg["vpc"]) == []


def test_a_compliant_change_does_nothing(aws):
    ec2, cfg = aws["ec2"], aws["cfg"]
    result = remediation.handle(event(cfg["vpc"], compliance="COMPLIANT"), ec2, aws["sns"], cfg)
    assert result == {"outcome": "ignored"}
    assert aws["reports"]() == []
    assert flow_logs(ec2, cfg["vpc"]) == []
