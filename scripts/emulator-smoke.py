#!/usr/bin/env python3
"""Smoke test for the local AWS emulators (moto server, LocalStack host mode).

Exercises, with the same API calls a real payops deployment makes, KMS, IAM,
CloudWatch Logs, EC2 networking, S3, DynamoDB, SNS, SSM and the Resource
Groups Tagging API, asserts on the answers, then tears everything down in the
order real AWS requires.

    <emulator venv>/bin/python scripts/emulator-smoke.py --endpoint http://127.0.0.1:5055
    scripts/emulator smoke moto          # same, using the running emulator

Prints one line per call group and a summary. Exit status: 0 when every
check passed or failed only as a *known gap* of that emulator (listed in
KNOWN_GAPS below and in <emulator>/README.md), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"

# Checks that a given emulator is known to fail, with what was observed.
# A failing check whose id is listed for the emulator under test is reported
# as KNOWN GAP instead of FAIL; a listed check that passes is reported so the
# list can be pruned.
_NAT_TOKEN = ("ClientToken is ignored: the retry tries to create a second NAT gateway and fails with "
              "Resource.AlreadyAssociated on the EIP (real AWS returns the first NAT gateway)")
_EC2_TAGGING = "the tagging API does not list this EC2 resource type although it is tagged (DescribeX shows the tags)"
_LS_NATIVE_TAGGING = ("LocalStack's tagging API is moto-backed and only sees moto-backed services; this service "
                      "is LocalStack-native, so tag-based discovery misses it")
KNOWN_GAPS: dict[str, dict[str, str]] = {
    "moto": {
        "nat-client-token": _NAT_TOKEN,
        "tagging-ec2-elastic-ip": _EC2_TAGGING,
        "tagging-ec2-vpc-endpoint": _EC2_TAGGING,
        "kms-schedule-deletion-fields": "ScheduleKeyDeletion's answer has only KeyId and DeletionDate "
                                        "(DescribeKey does report PendingDeletion)",
    },
    "localstack": {
        # EC2 in LocalStack is moto underneath: same EC2 gaps as moto.
        "nat-client-token": _NAT_TOKEN,
        "tagging-ec2-elastic-ip": _EC2_TAGGING,
        "tagging-ec2-vpc-endpoint": _EC2_TAGGING,
        "tagging-s3-bucket": _LS_NATIVE_TAGGING,
        "tagging-sns-topic": _LS_NATIVE_TAGGING,
    },
}


class SmokeFailure(Exception):
    pass


class Smoke:
    def __init__(self, endpoint: str, emulator: str, verbose: bool):
        self.endpoint = endpoint
        self.emulator = emulator
        self.verbose = verbose
        self.run_id = uuid.uuid4().hex[:8]
        self.name = f"payops-smoke-{self.run_id}"
        self.tags = {"payops:smoke": self.run_id, "Project": "payops"}
        self.failures: list[str] = []
        self.gaps: list[str] = []
        self.gaps_not_seen: list[str] = []
        self.groups_ok = 0
        self.groups_total = 0
        self.state: dict[str, Any] = {}
        self._group_calls = 0
        self._group_issues: list[str] = []
        cfg = Config(
            region_name=REGION,
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        self._clients: dict[str, Any] = {}
        self._session = boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
        )
        self._cfg = cfg

    # ------------------------------------------------------------ helpers
    def c(self, service: str):
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service, endpoint_url=self.endpoint, config=self._cfg
            )
        return self._clients[service]

    def call(self, service: str, op: str, **kwargs) -> dict:
        """One API call (counted); raises on error."""
        self._group_calls += 1
        fn = getattr(self.c(service), op)
        if self.verbose:
            print(f"    -> {service}.{op}", file=sys.stderr)
        return fn(**kwargs)

    def check(self, cond: bool, what: str, gap: str | None = None, observed: Any = None) -> bool:
        """Assert `cond`. `gap` is the id looked up in KNOWN_GAPS[emulator]."""
        known = KNOWN_GAPS.get(self.emulator, {})
        detail = f" (observed: {observed!r})" if observed is not None else ""
        if cond:
            if gap and gap in known:
                self.gaps_not_seen.append(f"{gap}: passed now, remove it from KNOWN_GAPS")
            return True
        if gap and gap in known:
            self.gaps.append(f"{gap}: {what}{detail} -- {known[gap]}")
            self._group_issues.append(f"known gap {gap}")
        else:
            msg = f"{what}{detail}" + (f" [gap id {gap}]" if gap else "")
            self.failures.append(msg)
            self._group_issues.append(f"FAILED {what}")
        return False

    def expect_error(self, code_prefix: str, what: str, gap: str | None, service: str, op: str, **kw):
        """Call that real AWS rejects; checks the error code starts with code_prefix."""
        try:
            self.call(service, op, **kw)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            self.check(code.startswith(code_prefix), what, gap, observed=code)
            return
        self.check(False, what, gap, observed="call succeeded")

    def group(self, title: str, fn: Callable[[], None]) -> None:
        self.groups_total += 1
        self._group_calls = 0
        self._group_issues = []
        t0 = time.monotonic()
        try:
            fn()
            err = None
        except Exception as e:  # noqa: BLE001 - report and continue
            err = e
        ms = int((time.monotonic() - t0) * 1000)
        if err is not None:
            if isinstance(err, ClientError):
                where = f"{err.operation_name}: {err.response['Error'].get('Code')}: {err.response['Error'].get('Message')}"
            else:
                where = f"{type(err).__name__}: {err}"
            tb = traceback.extract_tb(err.__traceback__)
            line = next((f.lineno for f in reversed(tb) if f.filename == __file__), "?")
            self.failures.append(f"{title}: {where} (smoke line {line})")
            status = "FAIL"
            extra = f" -- {where}"
        elif any(i.startswith("FAILED") for i in self._group_issues):
            status = "FAIL"
            extra = " -- " + "; ".join(self._group_issues)
        else:
            self.groups_ok += 1
            status = "ok"
            extra = (" -- " + "; ".join(self._group_issues)) if self._group_issues else ""
        print(f"[{status:>4}] {title} ({self._group_calls} calls, {ms} ms){extra}", flush=True)

    def wait(self, what: str, fn: Callable[[], bool], timeout: float = 60, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while True:
            if fn():
                return
            if time.monotonic() > deadline:
                raise SmokeFailure(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    @staticmethod
    def tag_list(tags: dict[str, str], k: str = "Key", v: str = "Value") -> list[dict[str, str]]:
        return [{k: key, v: val} for key, val in tags.items()]

    def tag_spec(self, rtype: str, name: str | None = None) -> list[dict]:
        tags = dict(self.tags, Name=name or self.name)
        return [{"ResourceType": rtype, "Tags": self.tag_list(tags)}]

    def tags_in(self, tag_list: list[dict] | None, k: str = "Key", v: str = "Value") -> bool:
        have = {t[k]: t[v] for t in (tag_list or [])}
        return all(have.get(key) == val for key, val in self.tags.items())

    # ------------------------------------------------------------ up
    def sts(self):
        ident = self.call("sts", "get_caller_identity")
        self.state["account"] = ident["Account"]
        self.check(len(ident["Account"]) == 12 and ident["Account"].isdigit(), "STS account id is 12 digits", observed=ident["Account"])
        self.check(ident["Arn"].startswith("arn:aws:"), "STS Arn", observed=ident["Arn"])

    def kms_up(self):
        acct = self.state["account"]
        policy = {
            "Version": "2012-10-17",
            "Id": "payops-key-policy",
            "Statement": [
                {"Sid": "AccountAdmin", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:root"},
                 "Action": "kms:*", "Resource": "*"},
                {"Sid": "CloudWatchLogs", "Effect": "Allow",
                 "Principal": {"Service": f"logs.{REGION}.amazonaws.com"},
                 "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                 "Resource": "*",
                 "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{REGION}:{acct}:log-group:*"}}},
                {"Sid": "SNS", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                 "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"},
            ],
        }
        md = self.call("kms", "create_key", Policy=json.dumps(policy), Description=f"{self.name} data key",
                       KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]
        self.state["key_id"], self.state["key_arn"] = md["KeyId"], md["Arn"]
        self.check(md["KeyState"] == "Enabled", "KMS new key Enabled", observed=md["KeyState"])
        self.check(md["Arn"].endswith(md["KeyId"]), "KMS key Arn ends with KeyId")
        self.call("kms", "enable_key_rotation", KeyId=md["KeyId"])
        rot = self.call("kms", "get_key_rotation_status", KeyId=md["KeyId"])
        self.check(rot["KeyRotationEnabled"] is True, "KMS rotation enabled")
        alias = f"alias/{self.name}"
        self.state["alias"] = alias
        self.call("kms", "create_alias", AliasName=alias, TargetKeyId=md["KeyId"])
        aliases = self.call("kms", "list_aliases", KeyId=md["KeyId"])["Aliases"]
        self.check(any(a["AliasName"] == alias and a.get("TargetKeyId") == md["KeyId"] for a in aliases),
                   "KMS ListAliases(KeyId) shows the alias", observed=[a["AliasName"] for a in aliases])
        self.call("kms", "tag_resource", KeyId=md["KeyId"], Tags=self.tag_list(self.tags, "TagKey", "TagValue"))
        tags = self.call("kms", "list_resource_tags", KeyId=md["KeyId"])["Tags"]
        self.check(self.tags_in(tags, "TagKey", "TagValue"), "KMS ListResourceTags", observed=tags)
        got = json.loads(self.call("kms", "get_key_policy", KeyId=md["KeyId"], PolicyName="default")["Policy"])
        principals = json.dumps(got)
        self.check(f"logs.{REGION}.amazonaws.com" in principals and "sns.amazonaws.com" in principals,
                   "KMS GetKeyPolicy returns the service principals")

    def iam_up(self):
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                 "Principal": {"Service": "vpc-flow-logs.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        role = self.call("iam", "create_role", RoleName=f"{self.name}-flowlogs", AssumeRolePolicyDocument=json.dumps(trust),
                         Description="payops smoke flow logs", Tags=self.tag_list(self.tags))["Role"]
        self.state["role_name"], self.state["role_arn"] = role["RoleName"], role["Arn"]
        self.check(role["Arn"] == f"arn:aws:iam::{self.state['account']}:role/{role['RoleName']}", "IAM role Arn", observed=role["Arn"])
        acct = self.state["account"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                  "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"],
                  "Resource": f"arn:aws:logs:{REGION}:{acct}:log-group:/payops/{self.name}/*"}]}
        self.call("iam", "put_role_policy", RoleName=role["RoleName"], PolicyName="flowlogs", PolicyDocument=json.dumps(policy))
        got = self.call("iam", "get_role", RoleName=role["RoleName"])["Role"]
        self.check(got["Arn"] == role["Arn"], "IAM GetRole Arn")
        doc = got["AssumeRolePolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        self.check(doc["Statement"][0]["Principal"]["Service"] == "vpc-flow-logs.amazonaws.com", "IAM trust policy round-trips")
        tags = self.call("iam", "list_role_tags", RoleName=role["RoleName"])["Tags"]
        self.check(self.tags_in(tags), "IAM ListRoleTags", observed=tags)
        pols = self.call("iam", "list_role_policies", RoleName=role["RoleName"])["PolicyNames"]
        self.check(pols == ["flowlogs"], "IAM ListRolePolicies", observed=pols)
        # AWS-managed policy used by VPC Lambdas (role attachment in the real stack).
        try:
            self.call("iam", "get_policy", PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole")
            ok = True
        except ClientError as e:
            ok = False
            self.state["managed_policy_err"] = e.response["Error"]["Code"]
        self.check(ok, "IAM AWS-managed policy service-role/AWSLambdaVPCAccessExecutionRole exists", "iam-managed-policy",
                   observed=self.state.get("managed_policy_err"))

    def logs_up(self):
        lg = f"/payops/{self.name}/vpc-flow-logs"
        self.state["log_group"] = lg
        self.call("logs", "create_log_group", logGroupName=lg, kmsKeyId=self.state["key_arn"])
        self.call("logs", "put_retention_policy", logGroupName=lg, retentionInDays=30)
        self.call("logs", "tag_log_group", logGroupName=lg, tags={"payops:smoke": self.run_id})
        groups = self.call("logs", "describe_log_groups", logGroupNamePrefix=lg)["logGroups"]
        self.check(len(groups) == 1, "Logs DescribeLogGroups finds the group", observed=len(groups))
        g = groups[0]
        arn = g["arn"].removesuffix(":*")
        self.state["log_group_arn"] = arn
        self.call("logs", "tag_resource", resourceArn=arn, tags={"Project": "payops"})
        self.check(g.get("retentionInDays") == 30, "Logs retentionInDays 30", observed=g.get("retentionInDays"))
        self.check(g.get("kmsKeyId") == self.state["key_arn"], "Logs kmsKeyId is the key ARN", observed=g.get("kmsKeyId"))
        tags = self.call("logs", "list_tags_for_resource", resourceArn=arn)["tags"]
        self.check(tags.get("payops:smoke") == self.run_id and tags.get("Project") == "payops",
                   "Logs tags from TagLogGroup + TagResource", observed=tags)

    def ec2_vpc_up(self):
        ec2 = "ec2"
        vpc = self.call(ec2, "create_vpc", CidrBlock="10.42.0.0/16", TagSpecifications=self.tag_spec("vpc"))["Vpc"]
        vid = self.state["vpc_id"] = vpc["VpcId"]
        self.check(self.tags_in(vpc.get("Tags")), "EC2 CreateVpc returns TagSpecifications tags", observed=vpc.get("Tags"))
        self.wait("vpc available", lambda: self.call(ec2, "describe_vpcs", VpcIds=[vid])["Vpcs"][0]["State"] == "available")
        self.call(ec2, "modify_vpc_attribute", VpcId=vid, EnableDnsSupport={"Value": True})
        self.call(ec2, "modify_vpc_attribute", VpcId=vid, EnableDnsHostnames={"Value": True})
        a = self.call(ec2, "describe_vpc_attribute", VpcId=vid, Attribute="enableDnsHostnames")
        self.check(a["EnableDnsHostnames"]["Value"] is True, "EC2 enableDnsHostnames true")
        azs = self.call(ec2, "describe_availability_zones", Filters=[{"Name": "state", "Values": ["available"]}])["AvailabilityZones"]
        names = sorted(z["ZoneName"] for z in azs if z.get("ZoneType", "availability-zone") == "availability-zone")
        self.check(len(names) >= 3 and all(n.startswith(REGION) for n in names), "EC2 >= 3 AZs in us-east-1", observed=names)
        subnets = []
        for i, az in enumerate(names[:3]):
            sn = self.call(ec2, "create_subnet", VpcId=vid, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=az,
                           TagSpecifications=self.tag_spec("subnet", f"{self.name}-{i}"))["Subnet"]
            self.check(sn["AvailabilityZone"] == az, f"EC2 subnet {i} in {az}", observed=sn["AvailabilityZone"])
            subnets.append(sn["SubnetId"])
        self.state["subnets"] = subnets
        igw = self.call(ec2, "create_internet_gateway", TagSpecifications=self.tag_spec("internet-gateway"))["InternetGateway"]
        self.state["igw_id"] = igw["InternetGatewayId"]
        self.call(ec2, "attach_internet_gateway", InternetGatewayId=igw["InternetGatewayId"], VpcId=vid)
        att = self.call(ec2, "describe_internet_gateways", InternetGatewayIds=[igw["InternetGatewayId"]])["InternetGateways"][0]["Attachments"]
        self.check(att and att[0]["VpcId"] == vid, "EC2 IGW attached", observed=att)

    def ec2_nat_up(self):
        ec2 = "ec2"
        eip = self.call(ec2, "allocate_address", Domain="vpc", TagSpecifications=self.tag_spec("elastic-ip"))
        self.state["eip_alloc"] = eip["AllocationId"]
        addr = self.call(ec2, "describe_addresses", AllocationIds=[eip["AllocationId"]])["Addresses"][0]
        self.check(addr.get("Domain") == "vpc" and self.tags_in(addr.get("Tags")), "EC2 EIP domain vpc + tags", observed=addr.get("Tags"))
        token = f"{self.name}-nat"
        kw = dict(SubnetId=self.state["subnets"][0], AllocationId=eip["AllocationId"], ClientToken=token,
                  ConnectivityType="public", TagSpecifications=self.tag_spec("natgateway"))
        nat = self.call(ec2, "create_nat_gateway", **kw)["NatGateway"]
        self.state["nat_ids"] = [nat["NatGatewayId"]]
        self.check(nat["State"] in ("pending", "available"), "EC2 NAT initial state", observed=nat["State"])
        # A retried create with the same ClientToken must return the same NAT gateway (idempotency),
        # as the SDK's retry or a re-run after a timeout does.
        try:
            nat2 = self.call(ec2, "create_nat_gateway", **kw)["NatGateway"]
            if nat2["NatGatewayId"] != nat["NatGatewayId"]:
                self.state["nat_ids"].append(nat2["NatGatewayId"])
            observed = [nat["NatGatewayId"], nat2["NatGatewayId"]]
            same = nat2["NatGatewayId"] == nat["NatGatewayId"]
        except ClientError as e:
            observed, same = f"{e.response['Error']['Code']}: {e.response['Error']['Message']}", False
        self.check(same, "EC2 CreateNatGateway retry with same ClientToken returns the same NAT", "nat-client-token", observed=observed)

        def available():
            n = self.call(ec2, "describe_nat_gateways", NatGatewayIds=[nat["NatGatewayId"]])["NatGateways"][0]
            if n["State"] == "failed":
                raise SmokeFailure(f"NAT gateway failed: {n.get('FailureMessage')}")
            return n["State"] == "available"

        self.wait("NAT gateway available", available, timeout=300, interval=1)
        n = self.call(ec2, "describe_nat_gateways", NatGatewayIds=[nat["NatGatewayId"]])["NatGateways"][0]
        addrs = n.get("NatGatewayAddresses") or []
        self.check(addrs and addrs[0].get("AllocationId") == eip["AllocationId"], "EC2 NAT uses the EIP", observed=addrs)

    def ec2_routes_up(self):
        ec2 = "ec2"
        vid, subnets = self.state["vpc_id"], self.state["subnets"]
        pub = self.call(ec2, "create_route_table", VpcId=vid, TagSpecifications=self.tag_spec("route-table", f"{self.name}-public"))["RouteTable"]["RouteTableId"]
        priv = self.call(ec2, "create_route_table", VpcId=vid, TagSpecifications=self.tag_spec("route-table", f"{self.name}-private"))["RouteTable"]["RouteTableId"]
        self.state["rt_public"], self.state["rt_private"] = pub, priv
        r = self.call(ec2, "create_route", RouteTableId=pub, DestinationCidrBlock="0.0.0.0/0", GatewayId=self.state["igw_id"])
        self.check(r.get("Return") is True, "EC2 CreateRoute to IGW")
        r = self.call(ec2, "create_route", RouteTableId=priv, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=self.state["nat_ids"][0])
        self.check(r.get("Return") is True, "EC2 CreateRoute to NAT")
        assoc = {}
        assoc[subnets[0]] = self.call(ec2, "associate_route_table", RouteTableId=pub, SubnetId=subnets[0])["AssociationId"]
        for s in subnets[1:]:
            assoc[s] = self.call(ec2, "associate_route_table", RouteTableId=priv, SubnetId=s)["AssociationId"]
        # Move the last subnet back to the main route table, as a re-plan would.
        self.call(ec2, "disassociate_route_table", AssociationId=assoc.pop(subnets[2]))
        self.state["rt_assocs"] = list(assoc.values())
        rts = {t["RouteTableId"]: t for t in self.call(ec2, "describe_route_tables", RouteTableIds=[pub, priv])["RouteTables"]}
        pub_routes = {r.get("DestinationCidrBlock"): r for r in rts[pub]["Routes"]}
        priv_routes = {r.get("DestinationCidrBlock"): r for r in rts[priv]["Routes"]}
        self.check(pub_routes.get("0.0.0.0/0", {}).get("GatewayId") == self.state["igw_id"], "EC2 public default route -> IGW", observed=pub_routes.get("0.0.0.0/0"))
        self.check(priv_routes.get("0.0.0.0/0", {}).get("NatGatewayId") == self.state["nat_ids"][0], "EC2 private default route -> NAT", observed=priv_routes.get("0.0.0.0/0"))
        priv_subnets = sorted(a.get("SubnetId") for a in rts[priv]["Associations"] if a.get("SubnetId"))
        self.check(priv_subnets == [subnets[1]], "EC2 private RT associations after disassociate", observed=priv_subnets)

    def ec2_endpoints_flowlogs_up(self):
        ec2 = "ec2"
        vid = self.state["vpc_id"]
        eps = []
        for svc in ("s3", "dynamodb"):
            ep = self.call(ec2, "create_vpc_endpoint", VpcEndpointType="Gateway", VpcId=vid,
                           ServiceName=f"com.amazonaws.{REGION}.{svc}",
                           RouteTableIds=[self.state["rt_private"], self.state["rt_public"]],
                           TagSpecifications=self.tag_spec("vpc-endpoint", f"{self.name}-{svc}"))["VpcEndpoint"]
            eps.append(ep["VpcEndpointId"])
            self.check(ep.get("State", "").lower() in ("available", "pending"), f"EC2 {svc} gateway endpoint state", observed=ep.get("State"))
            self.check(sorted(ep.get("RouteTableIds", [])) == sorted([self.state["rt_private"], self.state["rt_public"]]),
                       f"EC2 {svc} endpoint route tables", observed=ep.get("RouteTableIds"))
        self.state["endpoints"] = eps
        rt = self.call(ec2, "describe_route_tables", RouteTableIds=[self.state["rt_private"]])["RouteTables"][0]
        pl_routes = [r for r in rt["Routes"] if r.get("DestinationPrefixListId")]
        self.check(len(pl_routes) == 2, "EC2 gateway endpoints add prefix-list routes to the route table", "endpoint-prefix-list-routes",
                   observed=len(pl_routes))
        fl = self.call(ec2, "create_flow_logs", ResourceIds=[vid], ResourceType="VPC", TrafficType="ALL",
                       LogDestinationType="cloud-watch-logs", LogGroupName=self.state["log_group"],
                       DeliverLogsPermissionArn=self.state["role_arn"], MaxAggregationInterval=60,
                       TagSpecifications=self.tag_spec("vpc-flow-log"))
        self.check(not fl.get("Unsuccessful"), "EC2 CreateFlowLogs no Unsuccessful", observed=fl.get("Unsuccessful"))
        self.state["flow_logs"] = fl["FlowLogIds"]
        got = self.call(ec2, "describe_flow_logs", FlowLogIds=fl["FlowLogIds"])["FlowLogs"]
        self.check(len(got) == 1 and got[0].get("LogGroupName") == self.state["log_group"]
                   and got[0].get("DeliverLogsPermissionArn") == self.state["role_arn"], "EC2 DescribeFlowLogs", observed=got)

    def ec2_sg_up(self):
        ec2 = "ec2"
        vid = self.state["vpc_id"]
        app = self.call(ec2, "create_security_group", GroupName=f"{self.name}-app", Description="payops app", VpcId=vid,
                        TagSpecifications=self.tag_spec("security-group", f"{self.name}-app"))["GroupId"]
        db = self.call(ec2, "create_security_group", GroupName=f"{self.name}-db", Description="payops db", VpcId=vid,
                       TagSpecifications=self.tag_spec("security-group", f"{self.name}-db"))["GroupId"]
        self.state["sg_app"], self.state["sg_db"] = app, db
        perm_from_app = [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                          "UserIdGroupPairs": [{"GroupId": app, "Description": "app to db"}]}]
        perm_to_db = [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                       "UserIdGroupPairs": [{"GroupId": db, "Description": "app to db"}]}]
        r = self.call(ec2, "authorize_security_group_ingress", GroupId=db, IpPermissions=perm_from_app)
        self.check(r.get("Return") is True and len(r.get("SecurityGroupRules", [])) == 1, "EC2 AuthorizeSecurityGroupIngress returns the rule",
                   observed=r.get("SecurityGroupRules"))
        r = self.call(ec2, "authorize_security_group_egress", GroupId=app, IpPermissions=perm_to_db)
        self.check(r.get("Return") is True, "EC2 AuthorizeSecurityGroupEgress")
        # Drop the default allow-all egress so the app SG only talks to the DB SG (+ endpoints).
        r = self.call(ec2, "revoke_security_group_egress", GroupId=app,
                      IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        self.check(r.get("Return") is True and not r.get("UnknownIpPermissions"), "EC2 RevokeSecurityGroupEgress default rule",
                   observed=r.get("UnknownIpPermissions"))
        rules = self.call(ec2, "describe_security_group_rules", Filters=[{"Name": "group-id", "Values": [app, db]}])["SecurityGroupRules"]
        app_egress = [r for r in rules if r["GroupId"] == app and r["IsEgress"]]
        db_ingress = [r for r in rules if r["GroupId"] == db and not r["IsEgress"]]
        self.check(len(app_egress) == 1 and app_egress[0].get("ReferencedGroupInfo", {}).get("GroupId") == db
                   and app_egress[0].get("FromPort") == 5432,
                   "EC2 app SG egress = only tcp/5432 to db SG", observed=app_egress)
        self.check(len(db_ingress) == 1 and db_ingress[0].get("ReferencedGroupInfo", {}).get("GroupId") == app,
                   "EC2 db SG ingress from app SG", observed=db_ingress)
        self.state["sg_perm_from_app"], self.state["sg_perm_to_db"] = perm_from_app, perm_to_db

    def s3_up(self):
        b = self.state["bucket"] = f"{self.name}-data"
        self.call("s3", "create_bucket", Bucket=b)
        self.call("s3", "put_bucket_versioning", Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        self.call("s3", "put_bucket_encryption", Bucket=b, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": self.state["key_arn"]},
            "BucketKeyEnabled": True}]})
        pab = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
        self.call("s3", "put_public_access_block", Bucket=b, PublicAccessBlockConfiguration=pab)
        policy = {"Version": "2012-10-17", "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
        self.call("s3", "put_bucket_policy", Bucket=b, Policy=json.dumps(policy))
        lifecycle = {"Rules": [{
            "ID": "archive-then-expire", "Status": "Enabled", "Filter": {"Prefix": ""},
            "Transitions": [{"Days": 90, "StorageClass": "GLACIER"}],
            "Expiration": {"Days": 2555},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]}
        self.call("s3", "put_bucket_lifecycle_configuration", Bucket=b, LifecycleConfiguration=lifecycle)
        self.call("s3", "put_bucket_tagging", Bucket=b, Tagging={"TagSet": self.tag_list(self.tags)})
        # Read everything back.
        v = self.call("s3", "get_bucket_versioning", Bucket=b)
        self.check(v.get("Status") == "Enabled", "S3 GetBucketVersioning Enabled", observed=v.get("Status"))
        enc = self.call("s3", "get_bucket_encryption", Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"][0]
        d = enc["ApplyServerSideEncryptionByDefault"]
        self.check(d["SSEAlgorithm"] == "aws:kms" and d.get("KMSMasterKeyID") == self.state["key_arn"], "S3 GetBucketEncryption aws:kms + key", observed=d)
        self.check(enc.get("BucketKeyEnabled") is True, "S3 BucketKeyEnabled", observed=enc.get("BucketKeyEnabled"))
        got = self.call("s3", "get_public_access_block", Bucket=b)["PublicAccessBlockConfiguration"]
        self.check(got == pab, "S3 GetPublicAccessBlock", observed=got)
        gp = json.loads(self.call("s3", "get_bucket_policy", Bucket=b)["Policy"])
        self.check(gp["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, "S3 GetBucketPolicy round-trips", observed=gp)
        lc = self.call("s3", "get_bucket_lifecycle_configuration", Bucket=b)["Rules"][0]
        self.check(lc.get("Transitions", [{}])[0].get("StorageClass") == "GLACIER" and lc.get("Transitions", [{}])[0].get("Days") == 90
                   and lc.get("Expiration", {}).get("Days") == 2555 and lc.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == 30,
                   "S3 GetBucketLifecycleConfiguration", observed=lc)
        tags = self.call("s3", "get_bucket_tagging", Bucket=b)["TagSet"]
        self.check(self.tags_in(tags), "S3 GetBucketTagging", observed=tags)

    def s3_objects(self):
        b, k = self.state["bucket"], "reports/smoke.json"
        v1 = self.call("s3", "put_object", Bucket=b, Key=k, Body=b'{"v":1}', ContentType="application/json")
        v2 = self.call("s3", "put_object", Bucket=b, Key=k, Body=b'{"v":2}', ContentType="application/json")
        self.check(v1.get("ServerSideEncryption") == "aws:kms" and v1.get("SSEKMSKeyId") == self.state["key_arn"],
                   "S3 PutObject default-encrypted with the bucket key", observed={x: v1.get(x) for x in ("ServerSideEncryption", "SSEKMSKeyId")})
        self.check(v1.get("VersionId") and v2.get("VersionId") and v1["VersionId"] != v2["VersionId"], "S3 PutObject VersionIds differ")
        dm = self.call("s3", "delete_object", Bucket=b, Key=k)
        self.check(dm.get("DeleteMarker") is True and bool(dm.get("VersionId")), "S3 DeleteObject creates a delete marker", observed=dm.get("DeleteMarker"))
        lv = self.call("s3", "list_object_versions", Bucket=b, Prefix="reports/")
        versions, markers = lv.get("Versions", []), lv.get("DeleteMarkers", [])
        self.check(len(versions) == 2 and len(markers) == 1, "S3 ListObjectVersions 2 versions + 1 marker", observed=(len(versions), len(markers)))
        objs = [{"Key": o["Key"], "VersionId": o["VersionId"]} for o in versions + markers]
        res = self.call("s3", "delete_objects", Bucket=b, Delete={"Objects": objs, "Quiet": False})
        self.check(len(res.get("Deleted", [])) == len(objs) and not res.get("Errors"), "S3 DeleteObjects versions + markers",
                   observed={"Deleted": len(res.get("Deleted", [])), "Errors": res.get("Errors")})
        lv = self.call("s3", "list_object_versions", Bucket=b)
        self.check(not lv.get("Versions") and not lv.get("DeleteMarkers"), "S3 bucket empty after DeleteObjects")

    def dynamodb_up(self):
        t = self.state["table"] = f"{self.name}-ledger"
        attrs = [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi2pk")]
        gsis = [{"IndexName": f"gsi{i}", "KeySchema": [{"AttributeName": f"gsi{i}pk", "KeyType": "HASH"},
                                                      {"AttributeName": "sk", "KeyType": "RANGE"}],
                 "Projection": {"ProjectionType": "ALL"}} for i in (1, 2)]
        td = self.call("dynamodb", "create_table", TableName=t, AttributeDefinitions=attrs,
                       KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                       BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=gsis,
                       SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": self.state["key_arn"]},
                       StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
                       Tags=self.tag_list(self.tags))["TableDescription"]
        self.state["table_arn"] = td["TableArn"]
        self.wait("table ACTIVE", lambda: self.call("dynamodb", "describe_table", TableName=t)["Table"]["TableStatus"] == "ACTIVE")
        self.call("dynamodb", "update_continuous_backups", TableName=t,
                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        cb = self.call("dynamodb", "describe_continuous_backups", TableName=t)["ContinuousBackupsDescription"]
        self.check(cb["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED", "DynamoDB PITR ENABLED", observed=cb)
        tbl = self.call("dynamodb", "describe_table", TableName=t)["Table"]
        sse = tbl.get("SSEDescription", {})
        self.check(sse.get("Status") == "ENABLED" and sse.get("SSEType") == "KMS" and sse.get("KMSMasterKeyArn") == self.state["key_arn"],
                   "DynamoDB SSEDescription KMS with the key ARN", observed=sse)
        gs = {g["IndexName"]: g for g in tbl.get("GlobalSecondaryIndexes", [])}
        self.check(sorted(gs) == ["gsi1", "gsi2"] and all(g.get("IndexStatus") == "ACTIVE" for g in gs.values()),
                   "DynamoDB 2 GSIs ACTIVE", observed={k: v.get("IndexStatus") for k, v in gs.items()})
        self.check(tbl.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST", "DynamoDB PAY_PER_REQUEST",
                   observed=tbl.get("BillingModeSummary"))
        self.check(tbl.get("StreamSpecification") == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
                   and bool(tbl.get("LatestStreamArn")), "DynamoDB StreamSpecification + LatestStreamArn", observed=tbl.get("StreamSpecification"))
        self.state["stream_arn"] = tbl.get("LatestStreamArn")
        tags = self.call("dynamodb", "list_tags_of_resource", ResourceArn=td["TableArn"])["Tags"]
        self.check(self.tags_in(tags), "DynamoDB ListTagsOfResource", observed=tags)
        # The stream carries an item write (consumers of NEW_AND_OLD_IMAGES rely on it).
        self.call("dynamodb", "put_item", TableName=t, Item={"pk": {"S": "acct#1"}, "sk": {"S": "tx#1"}, "gsi1pk": {"S": "x"}})
        st = self.call("dynamodbstreams", "describe_stream", StreamArn=tbl["LatestStreamArn"])["StreamDescription"]
        it = self.call("dynamodbstreams", "get_shard_iterator", StreamArn=tbl["LatestStreamArn"],
                       ShardId=st["Shards"][0]["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        recs = self.call("dynamodbstreams", "get_records", ShardIterator=it)["Records"]
        self.check(len(recs) == 1 and recs[0]["eventName"] == "INSERT" and "NewImage" in recs[0]["dynamodb"],
                   "DynamoDB stream has the INSERT record", observed=[r.get("eventName") for r in recs])

    def sns_up(self):
        topic = self.call("sns", "create_topic", Name=f"{self.name}-alerts",
                          Attributes={"KmsMasterKeyId": self.state["key_arn"]}, Tags=self.tag_list(self.tags))["TopicArn"]
        self.state["topic_arn"] = topic
        acct = self.state["account"]
        policy = {"Version": "2012-10-17", "Statement": [{"Sid": "AllowCloudWatchAlarms", "Effect": "Allow",
                  "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish", "Resource": topic,
                  "Condition": {"StringEquals": {"aws:SourceAccount": acct}}}]}
        self.call("sns", "set_topic_attributes", TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(policy))
        attrs = self.call("sns", "get_topic_attributes", TopicArn=topic)["Attributes"]
        self.check(attrs.get("KmsMasterKeyId") == self.state["key_arn"], "SNS KmsMasterKeyId", observed=attrs.get("KmsMasterKeyId"))
        self.check("AllowCloudWatchAlarms" in attrs.get("Policy", ""), "SNS Policy round-trips")
        tags = self.call("sns", "list_tags_for_resource", ResourceArn=topic)["Tags"]
        self.check(self.tags_in(tags), "SNS ListTagsForResource", observed=tags)

    def ssm_up(self):
        base = self.state["ssm_path"] = f"/payops/{self.name}"
        self.call("ssm", "put_parameter", Name=f"{base}/table-name", Value=self.state.get("table", "t"), Type="String")
        secret = "s3cr3t-" + self.run_id
        self.call("ssm", "put_parameter", Name=f"{base}/api-token", Value=secret, Type="SecureString", KeyId=self.state["key_id"])
        for n in ("table-name", "api-token"):
            self.call("ssm", "add_tags_to_resource", ResourceType="Parameter", ResourceId=f"{base}/{n}", Tags=self.tag_list(self.tags))
        params = self.call("ssm", "get_parameters_by_path", Path=base, Recursive=True, WithDecryption=False)["Parameters"]
        by = {p["Name"]: p for p in params}
        self.check(sorted(by) == sorted([f"{base}/table-name", f"{base}/api-token"]), "SSM GetParametersByPath returns both", observed=sorted(by))
        tok = by.get(f"{base}/api-token", {})
        self.check(tok.get("Type") == "SecureString" and tok.get("Value") != secret, "SSM SecureString not decrypted with WithDecryption=false",
                   observed=tok.get("Type"))
        tags = self.call("ssm", "list_tags_for_resource", ResourceType="Parameter", ResourceId=f"{base}/api-token")["TagList"]
        self.check(self.tags_in(tags), "SSM tags", observed=tags)

    def tagging(self):
        res = []
        token = ""
        while True:
            kw = {"TagFilters": [{"Key": "payops:smoke", "Values": [self.run_id]}], "ResourcesPerPage": 100}
            if token:
                kw["PaginationToken"] = token
            page = self.call("resourcegroupstaggingapi", "get_resources", **kw)
            res += page["ResourceTagMappingList"]
            token = page.get("PaginationToken") or ""
            if not token:
                break
        arns = [r["ResourceARN"] for r in res]
        self.state["tagging_arns"] = arns

        def has(fragment: str) -> bool:
            return any(fragment in a for a in arns)

        # Types real AWS returns for these resources (tag-based discovery, cost allocation).
        expected = {
            "ec2-vpc": f":vpc/{self.state.get('vpc_id')}",
            "ec2-subnet": ":subnet/",
            "ec2-security-group": ":security-group/",
            "ec2-natgateway": ":natgateway/",
            "ec2-internet-gateway": ":internet-gateway/",
            "ec2-route-table": ":route-table/",
            "ec2-elastic-ip": ":elastic-ip/",
            "ec2-vpc-endpoint": ":vpc-endpoint/",
            "kms-key": f":key/{self.state.get('key_id')}",
            "logs-log-group": ":log-group:",
            "s3-bucket": f"arn:aws:s3:::{self.state.get('bucket')}",
            "dynamodb-table": f":table/{self.state.get('table')}",
            "sns-topic": f"{self.state.get('topic_arn')}",
            "ssm-parameter": ":parameter/",
        }
        for key, frag in expected.items():
            self.check(has(frag), f"Tagging GetResources returns {key}", f"tagging-{key}")

    # ------------------------------------------------------------ down
    def best_effort(self, what: str, fn: Callable[[], Any]):
        """One teardown step: a failure is recorded, the teardown goes on."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            code = e.response["Error"]["Code"] if isinstance(e, ClientError) else type(e).__name__
            self.check(False, f"teardown {what}", observed=f"{code}: {e}")

    def ec2_down(self):
        ec2, s = "ec2", self.state
        if s.get("flow_logs"):
            self.best_effort("DeleteFlowLogs", lambda: self.check(
                not self.call(ec2, "delete_flow_logs", FlowLogIds=s["flow_logs"]).get("Unsuccessful"), "DeleteFlowLogs no Unsuccessful"))
        if s.get("endpoints"):
            self.best_effort("DeleteVpcEndpoints", lambda: self.check(
                not self.call(ec2, "delete_vpc_endpoints", VpcEndpointIds=s["endpoints"]).get("Unsuccessful"), "DeleteVpcEndpoints no Unsuccessful"))
        for nat in s.get("nat_ids", []):
            self.best_effort(f"DeleteNatGateway {nat}", lambda nat=nat: self.call(ec2, "delete_nat_gateway", NatGatewayId=nat))
        for nat in s.get("nat_ids", []):
            def gone(nat=nat):
                ns = self.call(ec2, "describe_nat_gateways", NatGatewayIds=[nat])["NatGateways"]
                return not ns or ns[0]["State"] == "deleted"
            self.best_effort(f"wait NAT {nat} deleted", lambda gone=gone: self.wait("NAT deleted", gone, timeout=300, interval=1))
        if s.get("eip_alloc"):
            self.best_effort("ReleaseAddress", lambda: self.call(ec2, "release_address", AllocationId=s["eip_alloc"]))
        if s.get("igw_id"):
            self.best_effort("DetachInternetGateway", lambda: self.call(ec2, "detach_internet_gateway", InternetGatewayId=s["igw_id"], VpcId=s["vpc_id"]))
            self.best_effort("DeleteInternetGateway", lambda: self.call(ec2, "delete_internet_gateway", InternetGatewayId=s["igw_id"]))
        if s.get("sg_db"):
            # Security groups referencing each other: revoke the references first.
            if s.get("sg_perm_from_app"):
                self.best_effort("RevokeSecurityGroupIngress (ref)", lambda: self.call(ec2, "revoke_security_group_ingress", GroupId=s["sg_db"], IpPermissions=s["sg_perm_from_app"]))
            if s.get("sg_perm_to_db"):
                self.best_effort("RevokeSecurityGroupEgress (ref)", lambda: self.call(ec2, "revoke_security_group_egress", GroupId=s["sg_app"], IpPermissions=s["sg_perm_to_db"]))
        for g in ("sg_app", "sg_db"):
            if s.get(g):
                self.best_effort(f"DeleteSecurityGroup {g}", lambda g=g: self.call(ec2, "delete_security_group", GroupId=s[g]))
        for a in s.get("rt_assocs", []):
            self.best_effort("DisassociateRouteTable", lambda a=a: self.call(ec2, "disassociate_route_table", AssociationId=a))
        for sn in s.get("subnets", []):
            self.best_effort(f"DeleteSubnet {sn}", lambda sn=sn: self.call(ec2, "delete_subnet", SubnetId=sn))
        for rt in ("rt_public", "rt_private"):
            if s.get(rt):
                self.best_effort(f"DeleteRouteTable {rt}", lambda rt=rt: self.call(ec2, "delete_route_table", RouteTableId=s[rt]))
        if s.get("vpc_id"):
            self.best_effort("DeleteVpc", lambda: self.call(ec2, "delete_vpc", VpcId=s["vpc_id"]))
            self.expect_error("InvalidVpcID.NotFound", "EC2 VPC gone after DeleteVpc", None, ec2, "describe_vpcs", VpcIds=[s["vpc_id"]])

    def s3_down(self):
        if self.state.get("bucket"):
            self.call("s3", "delete_bucket", Bucket=self.state["bucket"])
            # HeadBucket has no body: boto3 reports the bare HTTP status as the code.
            self.expect_error("404", "S3 bucket gone", None, "s3", "head_bucket", Bucket=self.state["bucket"])

    def dynamodb_down(self):
        if self.state.get("table"):
            d = self.call("dynamodb", "delete_table", TableName=self.state["table"])["TableDescription"]
            self.check(d["TableStatus"] in ("DELETING", "ACTIVE"), "DynamoDB DeleteTable status", observed=d["TableStatus"])
            self.c("dynamodb").get_waiter("table_not_exists").wait(TableName=self.state["table"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    def sns_down(self):
        if self.state.get("topic_arn"):
            self.call("sns", "delete_topic", TopicArn=self.state["topic_arn"])
            self.expect_error("NotFound", "SNS topic gone", None, "sns", "get_topic_attributes", TopicArn=self.state["topic_arn"])

    def ssm_down(self):
        base = self.state.get("ssm_path")
        if base:
            r = self.call("ssm", "delete_parameters", Names=[f"{base}/table-name", f"{base}/api-token"])
            self.check(len(r.get("DeletedParameters", [])) == 2 and not r.get("InvalidParameters"), "SSM DeleteParameters", observed=r)

    def logs_down(self):
        if self.state.get("log_group"):
            self.call("logs", "delete_log_group", logGroupName=self.state["log_group"])

    def iam_down(self):
        rn = self.state.get("role_name")
        if rn:
            self.call("iam", "delete_role_policy", RoleName=rn, PolicyName="flowlogs")
            self.call("iam", "delete_role", RoleName=rn)

    def kms_down(self):
        kid = self.state.get("key_id")
        if not kid:
            return
        if self.state.get("alias"):
            self.call("kms", "delete_alias", AliasName=self.state["alias"])
        r = self.call("kms", "schedule_key_deletion", KeyId=kid, PendingWindowInDays=7)
        self.check(r.get("KeyId") in (kid, self.state["key_arn"]) and r.get("DeletionDate") is not None, "KMS ScheduleKeyDeletion answer", observed=r.get("KeyId"))
        self.check(r.get("KeyState") == "PendingDeletion" and r.get("PendingWindowInDays") == 7,
                   "KMS ScheduleKeyDeletion returns KeyState PendingDeletion + PendingWindowInDays", "kms-schedule-deletion-fields",
                   observed={x: r.get(x) for x in ("KeyState", "PendingWindowInDays")})
        md = self.call("kms", "describe_key", KeyId=kid)["KeyMetadata"]
        self.check(md["KeyState"] == "PendingDeletion", "KMS DescribeKey PendingDeletion", observed=md["KeyState"])

    # ------------------------------------------------------------ main
    def run(self) -> int:
        print(f"emulator smoke: {self.emulator} at {self.endpoint} (run {self.run_id})", flush=True)
        up = [
            ("STS GetCallerIdentity", self.sts),
            ("KMS CreateKey/EnableKeyRotation/GetKeyRotationStatus/CreateAlias/ListAliases/TagResource/ListResourceTags", self.kms_up),
            ("IAM CreateRole/PutRolePolicy/GetRole/ListRoleTags", self.iam_up),
            ("Logs CreateLogGroup(kms)/PutRetentionPolicy/TagLogGroup/TagResource/DescribeLogGroups", self.logs_up),
            ("EC2 CreateVpc/ModifyVpcAttribute/DescribeAvailabilityZones/CreateSubnet x3/IGW", self.ec2_vpc_up),
            ("EC2 AllocateAddress/CreateNatGateway(ClientToken)/wait available", self.ec2_nat_up),
            ("EC2 CreateRouteTable/CreateRoute(IGW,NAT)/Associate/DisassociateRouteTable", self.ec2_routes_up),
            ("EC2 CreateVpcEndpoint(Gateway s3,dynamodb)/CreateFlowLogs", self.ec2_endpoints_flowlogs_up),
            ("EC2 CreateSecurityGroup/Authorize*/RevokeSecurityGroupEgress/DescribeSecurityGroupRules", self.ec2_sg_up),
            ("S3 CreateBucket/Put+GetBucket{Versioning,Encryption,PublicAccessBlock,Policy,Lifecycle,Tagging}", self.s3_up),
            ("S3 PutObject x2/DeleteObject/ListObjectVersions/DeleteObjects", self.s3_objects),
            ("DynamoDB CreateTable(GSIs,SSE,Streams)/PITR/DescribeTable/ListTagsOfResource/streams", self.dynamodb_up),
            ("SNS CreateTopic(KMS)/SetTopicAttributes/GetTopicAttributes/ListTagsForResource", self.sns_up),
            ("SSM PutParameter(String,SecureString)/AddTagsToResource/GetParametersByPath", self.ssm_up),
            ("Tagging GetResources(tag filter)", self.tagging),
        ]
        down = [
            ("S3 DeleteBucket", self.s3_down),
            ("DynamoDB DeleteTable", self.dynamodb_down),
            ("SNS DeleteTopic", self.sns_down),
            ("SSM DeleteParameters", self.ssm_down),
            ("EC2 teardown (flow logs, endpoints, NAT->wait->EIP, IGW, SG refs, SGs, RT assocs, subnets, RTs, VPC)", self.ec2_down),
            ("Logs DeleteLogGroup", self.logs_down),
            ("IAM DeleteRolePolicy/DeleteRole", self.iam_down),
            ("KMS DeleteAlias/ScheduleKeyDeletion(7)", self.kms_down),
        ]
        t0 = time.monotonic()
        for title, fn in up + down:
            self.group(title, fn)
        secs = time.monotonic() - t0
        print(f"\nsummary: {self.groups_ok}/{self.groups_total} call groups ok in {secs:.1f} s; "
              f"{len(self.failures)} failure(s), {len(self.gaps)} known gap(s)")
        for g in self.gaps:
            print(f"  KNOWN GAP {g}")
        for g in self.gaps_not_seen:
            print(f"  NOTE {g}")
        for f in self.failures:
            print(f"  FAILED {f}")
        if self.state.get("tagging_arns") is not None and self.verbose:
            print("  tagging ARNs:", *self.state["tagging_arns"], sep="\n    ")
        return 1 if self.failures else 0


def detect_emulator(endpoint: str) -> str:
    import urllib.request

    for path, name in (("/_localstack/health", "localstack"), ("/moto-api/", "moto")):
        try:
            with urllib.request.urlopen(endpoint.rstrip("/") + path, timeout=5) as r:
                if r.status == 200:
                    return name
        except Exception:  # noqa: BLE001
            pass
    return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True, help="emulator URL, e.g. http://127.0.0.1:4566")
    ap.add_argument("--emulator", choices=["moto", "localstack", "unknown"], help="default: detected from the endpoint")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every call to stderr")
    args = ap.parse_args()
    emulator = args.emulator or detect_emulator(args.endpoint)
    return Smoke(args.endpoint.rstrip("/"), emulator, args.verbose).run()


if __name__ == "__main__":
    sys.exit(main())
