"""Fixes to moto's models, shared by both emulators.

LocalStack serves Lambda from its bundled moto (moto-ext, through our
``lambda:moto`` provider) and moto server is moto itself, so the same bugs
show on both. This module imports only moto: ``payops_moto_server.py`` loads
it by path, and the LocalStack extension imports it when its providers load.

Lambda (moto 5.1/5.2):
    ``LoggingConfig`` (log format and a custom log group, GA since 2023) is
    dropped by CreateFunction and UpdateFunctionConfiguration and never
    returned; UpdateFunctionConfiguration also ignores ``TracingConfig``.
    payops creates each function's log group itself and points the function
    at it, so without the fix every ``up`` would see the logging drift.

API Gateway (moto 5.2 server only; LocalStack has its own provider):
    PutIntegration drops ``connectionId``, so a VPC-link integration reads
    back without its link. Get/Tag/UntagResource serve only stage ARNs, so
    retagging a VPC link or REST API (``up --protect=false`` does) fails.

RDS (moto 5.1/5.2):
    DeleteDBCluster keeps the cluster's automated snapshots, named
    ``rds:<cluster>-<YYYY-MM-DD-HH-MM>``, which AWS deletes with it; a
    cluster of the same name created again within that minute (an env's
    ``up`` right after its ``down``) then fails with
    DBClusterSnapshotAlreadyExistsFault.
    CreateDBCluster of an identifier that exists replaces the cluster (or,
    within the minute of its first create, fails on its automated snapshot)
    where AWS answers DBClusterAlreadyExistsFault: a retried create whose
    first answer was lost met the snapshot error, not the conflict payops
    looks again on.
    DescribeDBEngineVersions is missing: moto answers 500, which the SDK
    retries as a transient error for the better part of a minute, so every
    `up` waited ~45 s in preflight. Served for aurora-postgresql with
    ServerlessV2FeaturesSupport as AWS documents it per version (0 ACU from
    13.15, 14.12, 15.7, 16.3; up to 256 from 13.13, 14.10, 15.5, 16.1;
    otherwise 0.5 and 128).
    RDS Proxy: ModifyDBProxy and Create/Describe/DeleteDBProxyEndpoint are
    missing, and DeleteDBProxy / RegisterDBProxyTargets /
    DescribeDBProxyTargets of an unknown proxy answer 500 (KeyError) instead
    of DBProxyNotFoundFault; ListTagsForResource refuses an endpoint's ARN
    (see ``patch_rds_proxy``).

ELBv2 (moto 5.1/5.2):
    ``EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic`` is ignored by
    SetSecurityGroups and never reported, while AWS turns it on for an NLB
    with security groups (and then drops VPC-link traffic).

CloudWatch Logs (moto 5.1/5.2; LocalStack's provider hands them to moto):
    Put/Describe/DeleteQueryDefinition (saved Logs Insights queries) are
    missing. Served here as AWS documents them: Put creates, or with
    ``queryDefinitionId`` replaces name, query and log groups (an unknown id
    is ResourceNotFoundException); a repeated ``clientToken`` returns the
    definition its first call made; Describe filters by name prefix.

WAFv2 (moto 5.1/5.2):
    ListResourcesForWebACL is missing; DeleteWebACL deletes an ACL that still
    protects resources (AWS refuses: WAFAssociatedItemException) and leaves
    its logging configuration behind; AssociateWebACL lets a resource sit
    behind two ACLs at once (AWS keeps one per resource); a duplicate name
    answers ``WafV2DuplicateItem`` instead of AWS's
    ``WAFDuplicateItemException``.

X-Ray (moto 5.1/5.2; LocalStack serves X-Ray from moto through our ext):
    Only the trace APIs exist. Served here as AWS documents them: Get/Put
    EncryptionConfig (one setting per account and region, ``Type: NONE`` at
    first; a Put answers ``UPDATING``, as AWS does for minutes, and the next
    Get still says so before it turns ``ACTIVE``, so the caller's wait is
    exercised; the key is not checked against KMS, which AWS does);
    Create/Get/Update/DeleteSamplingRule with X-Ray's ``Default`` rule always
    present, RuleName 1-32 characters, Priority 1-9999, FixedRate 0-1, a
    taken name (or an unknown or ``Default`` rule to update or delete)
    answering InvalidRequestException; Tag/Untag/ListTagsForResource of the
    rules (ResourceNotFoundException for an unknown ARN).

GuardDuty (moto 5.1/5.2):
    CreateDetector makes a second detector in a region that has one, where
    AWS (one per account and region) answers BadRequestException "The
    request is rejected because a detector already exists for the current
    account.". payops adopts an existing detector on that answer; without
    the fix an emulator would let a baseline create a duplicate.

Auto Scaling (moto 5.1/5.2; LocalStack serves it from moto through our ext):
    Start/Describe/CancelInstanceRefresh are missing (500), so a launch
    template change could never roll the group's instances. Served here as
    AWS documents them: one active refresh per group (another Start answers
    InstanceRefreshInProgress, Cancel of none ActiveInstanceRefreshNotFound),
    the group's instances replaced with its current template version at the
    start; the refresh reads InProgress once, then Successful.

AWS Config (moto 5.2):
    A rule's Scope with a tag reads back as ``{"Tags": {key: value}}``
    instead of the API's ``TagKey`` / ``TagValue``, so an env's rules,
    scoped to ``payops:env``, would look unscoped (drift) on every ``up``.
"""

from __future__ import annotations

import json


def patch_lambda_logging_and_tracing() -> None:
    from moto.awslambda.models import LambdaFunction

    if getattr(LambdaFunction, "_payops_logging", False):
        return
    original_init = LambdaFunction.__init__
    original_configuration = LambdaFunction.get_configuration
    original_update = LambdaFunction.update_configuration

    def logging_config(requested: dict | None, function_name: str) -> dict:
        # What AWS answers: Text logs to /aws/lambda/<name> unless told otherwise;
        # JSON logs carry the application and system log levels.
        config = {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{function_name}"}
        config.update(requested or {})
        if config["LogFormat"] == "JSON":
            config.setdefault("ApplicationLogLevel", "INFO")
            config.setdefault("SystemLogLevel", "INFO")
        return config

    def __init__(self, account_id, spec, region, version=1):
        original_init(self, account_id, spec, region, version)
        self.payops_logging_config = logging_config(spec.get("LoggingConfig"), self.function_name)

    def get_configuration(self, on_create: bool = False):
        config = original_configuration(self, on_create)
        logging = getattr(self, "payops_logging_config", None)
        if logging is not None:
            config["LoggingConfig"] = logging
        return config

    def update_configuration(self, config_updates):
        if "TracingConfig" in config_updates:
            self.tracing_config = config_updates["TracingConfig"]
        if "LoggingConfig" in config_updates:
            self.payops_logging_config = logging_config(
                config_updates["LoggingConfig"], self.function_name
            )
        return original_update(self, config_updates)

    LambdaFunction.__init__ = __init__
    LambdaFunction.get_configuration = get_configuration
    LambdaFunction.update_configuration = update_configuration
    LambdaFunction._payops_logging = True


def patch_apigateway_connection_id() -> None:
    from moto.apigateway.models import Integration
    from moto.apigateway.responses import APIGatewayResponse

    if getattr(Integration, "_payops_connection_id", False):
        return
    original_to_json = Integration.to_json
    original_put = APIGatewayResponse.put_integration

    def to_json(self):
        out = original_to_json(self)
        connection_id = getattr(self, "payops_connection_id", None)
        if connection_id:
            out["connectionId"] = connection_id
        return out

    def put_integration(self):
        status, headers, body = original_put(self)
        connection_id = self._get_param("connectionId")
        if connection_id and status < 300:
            parts = self.path.split("/")
            integration = self.backend.get_integration(parts[2], parts[4], parts[6])
            integration.payops_connection_id = connection_id
            body = json.dumps(integration.to_json())
        return status, headers, body

    Integration.to_json = to_json
    APIGatewayResponse.put_integration = put_integration
    Integration._payops_connection_id = True


def patch_rds_automated_snapshots() -> None:
    from moto.rds.models import RDSBackend

    if getattr(RDSBackend, "_payops_automated_snapshots_patched", False):
        return
    original = RDSBackend.delete_db_cluster

    def delete_db_cluster(self, cluster_identifier, *args, **kwargs):
        cluster = original(self, cluster_identifier, *args, **kwargs)
        for snapshot_id, snapshot in list(self.cluster_snapshots.items()):
            owner = getattr(getattr(snapshot, "cluster", None), "db_cluster_identifier", None)
            if snapshot.snapshot_type == "automated" and owner == cluster_identifier:
                del self.cluster_snapshots[snapshot_id]
        return cluster

    RDSBackend.delete_db_cluster = delete_db_cluster
    RDSBackend._payops_automated_snapshots_patched = True


def patch_rds_cluster_already_exists() -> None:
    """CreateDBCluster of an existing identifier: DBClusterAlreadyExistsFault, as on AWS."""
    from moto.rds.exceptions import RDSClientError
    from moto.rds.models import RDSBackend

    if getattr(RDSBackend, "_payops_cluster_exists_patched", False):
        return
    original = RDSBackend.create_db_cluster

    def create_db_cluster(self, kwargs):
        cluster_id = kwargs["db_cluster_identifier"]
        if cluster_id in self.clusters:
            raise RDSClientError(
                "DBClusterAlreadyExistsFault", f"DB Cluster already exists: {cluster_id}"
            )
        return original(self, kwargs)

    RDSBackend.create_db_cluster = create_db_cluster
    RDSBackend._payops_cluster_exists_patched = True


def patch_apigateway_tags() -> None:
    """Tags of VPC links and REST APIs (``...::/vpclinks/<id>``, ``::/restapis/<id>``)."""
    import json
    from urllib.parse import unquote

    from moto.apigateway import urls
    from moto.apigateway.responses import APIGatewayResponse

    if getattr(APIGatewayResponse, "_payops_tags_patched", False):
        return
    # The ARN's slashes arrive unencoded: without this route the request 404s.
    urls.url_paths[
        "{0}/tags/arn:(?P<partition>[^/]+):apigateway:(?P<region_name>[^/]+)::/(?P<kind>vpclinks|restapis)/(?P<ident>[^/]+)$"
    ] = APIGatewayResponse.dispatch

    def owner(self):
        parts = unquote(self.path.split("/tags/")[1]).split("/")
        if len(parts) != 3:
            return None  # a stage: moto's own code handles it
        kind, ident = parts[1], parts[2]
        if kind == "vpclinks":
            return self.backend.vpc_links.get(ident)
        if kind == "restapis":
            return self.backend.apis.get(ident)
        return None

    original = {
        name: getattr(APIGatewayResponse, name)
        for name in ("get_tags", "tag_resource", "untag_resource")
    }

    def get_tags(self):
        target = owner(self)
        if target is None:
            return original["get_tags"](self)
        return json.dumps({"tags": dict(target.tags or {})})

    def tag_resource(self):
        target = owner(self)
        if target is None:
            return original["tag_resource"](self)
        target.tags = {**dict(target.tags or {}), **(self._get_param("tags") or {})}
        return json.dumps({})

    def untag_resource(self):
        target = owner(self)
        if target is None:
            return original["untag_resource"](self)
        keys = self.querystring.get("tagKeys") or []
        target.tags = {k: v for k, v in dict(target.tags or {}).items() if k not in keys}
        return json.dumps({})

    APIGatewayResponse.get_tags = get_tags
    APIGatewayResponse.tag_resource = tag_resource
    APIGatewayResponse.untag_resource = untag_resource
    APIGatewayResponse._payops_tags_patched = True


def patch_elbv2_private_link_enforcement() -> None:
    """ELBv2 (moto 5.1/5.2): ``EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic``.

    On AWS a Network Load Balancer created with security groups filters
    PrivateLink traffic (an API Gateway VPC link's) by its inbound rules: the
    attribute is ``on`` until SetSecurityGroups turns it ``off``, and
    DescribeLoadBalancers reports it. moto ignores the parameter and never
    reports the attribute, so payops could neither be tested turning it off
    nor see it drift back on.
    """
    from moto.elbv2.models import FakeLoadBalancer
    from moto.elbv2.responses import ELBV2Response

    if getattr(FakeLoadBalancer, "_payops_private_link", False):
        return
    attr = "enforce_security_group_inbound_rules_on_private_link_traffic"
    original_init = FakeLoadBalancer.__init__
    original_set = ELBV2Response.set_security_groups

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self.type == "network" and self.security_groups:
            setattr(self, attr, "on")

    def set_security_groups(self):
        result = original_set(self)
        value = self._get_param("EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic")
        balancer = self.elbv2_backend.load_balancers.get(self._get_param("LoadBalancerArn"))
        if balancer is not None and balancer.type == "network":
            if value in ("on", "off"):
                setattr(balancer, attr, value)
            if getattr(balancer, attr, None):
                result.result["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] = getattr(
                    balancer, attr
                )
        return result

    FakeLoadBalancer.__init__ = __init__
    ELBV2Response.set_security_groups = set_security_groups
    FakeLoadBalancer._payops_private_link = True


def patch_wafv2_associations() -> None:
    """WAFv2 (moto 5.1/5.2): associations and deletion as AWS does them.

    payops finds what an ACL protects with ListResourcesForWebACL and must
    let go of it before DeleteWebACL; without these fixes an emulator would
    accept a teardown in the wrong order that AWS refuses.
    """
    from moto.wafv2 import exceptions
    from moto.wafv2.models import WAFV2Backend
    from moto.wafv2.responses import WAFV2Response

    if getattr(WAFV2Backend, "_payops_associations", False):
        return

    class WAFAssociatedItemException(exceptions.WAFv2ClientError):
        def __init__(self) -> None:
            super().__init__(
                "WAFAssociatedItemException",
                "AWS WAF couldn\u2019t perform the operation because your resource is being "
                "used by another resource or it\u2019s associated with another resource.",
            )

    def duplicate_init(self) -> None:
        exceptions.WAFv2ClientError.__init__(
            self,
            "WAFDuplicateItemException",
            "AWS WAF couldn\u2019t perform the operation because some resource in your request "
            "is a duplicate of an existing one.",
        )

    original_associate = WAFV2Backend.associate_web_acl
    original_delete = WAFV2Backend.delete_web_acl

    def associate_web_acl(self, web_acl_arn, resource_arn):
        if web_acl_arn in self.wacls:
            for wacl in self.wacls.values():
                if resource_arn in wacl.associated_resources:
                    wacl.associated_resources.remove(resource_arn)
        return original_associate(self, web_acl_arn, resource_arn)

    def delete_web_acl(self, name, scope, _id, lock_token):
        for arn, wacl in self.wacls.items():
            if wacl.name == name and wacl.id == _id and wacl.associated_resources:
                raise WAFAssociatedItemException()
        original_delete(self, name, scope, _id, lock_token)
        for arn in [a for a in self.logging_configurations if a not in self.wacls]:
            self.logging_configurations.pop(arn)

    def list_resources_for_web_acl(self):
        body = json.loads(self.body)
        arn = body["WebACLArn"]
        kind = body.get("ResourceType", "APPLICATION_LOAD_BALANCER")
        wacl = self.wafv2_backend.wacls.get(arn)
        if wacl is None:
            raise exceptions.WAFNonexistentItemException()
        marker = {
            "APPLICATION_LOAD_BALANCER": ":elasticloadbalancing:",
            "API_GATEWAY": ":apigateway:",
        }.get(kind, f":{kind.lower()}:")
        arns = [r for r in wacl.associated_resources if marker in r]
        return 200, {"Content-Type": "application/json"}, json.dumps({"ResourceArns": arns})

    exceptions.WAFV2DuplicateItemException.__init__ = duplicate_init
    WAFV2Backend.associate_web_acl = associate_web_acl
    WAFV2Backend.delete_web_acl = delete_web_acl
    WAFV2Response.list_resources_for_web_acl = list_resources_for_web_acl
    WAFV2Backend._payops_associations = True


def patch_ec2_client_tokens() -> None:
    """EC2 (moto 5.x): idempotency by ``ClientToken``.

    On AWS a retried CreateNatGateway, CreateVpcEndpoint or CreateFlowLogs
    with the same client token returns what the first call made instead of
    making another (the point of the token: the SDK retries a call whose
    answer was lost). moto ignores the token, so under the project's fault
    proxy such a retry made a second NAT gateway or endpoint, which AWS never
    would. The first successful answer per (account, region, action, token)
    is kept and replayed.
    """
    import threading

    from moto.ec2.responses import EC2Response

    if getattr(EC2Response, "_payops_client_tokens", False):
        return
    original = EC2Response.call_action
    answered: dict = {}
    lock = threading.Lock()

    def call_action(self):
        token = self._get_param("ClientToken")
        if not token:
            return original(self)
        key = (self.current_account, self.region, self._get_action(), token)
        with lock:
            if key in answered:
                return answered[key]
        result = original(self)
        if 200 <= int(result[0]) < 300:
            with lock:
                answered.setdefault(key, result)
        return result

    EC2Response.call_action = call_action
    EC2Response._payops_client_tokens = True


def patch_elbv2_listener_idempotency() -> None:
    """ELBv2 (moto 5.x): one listener per port, and CreateListener idempotent.

    AWS: "This operation is idempotent, which means that it completes at most
    one time. If you attempt to create multiple listeners with the same
    settings, each call succeeds" (the existing listener is returned), and a
    listener on a port already taken with other settings is
    ``DuplicateListener``. moto keys a balancer's listeners by ARN but checks
    the port against those keys, so every CreateListener makes a new
    listener: a retried call whose answer was lost left two listeners on one
    port, which AWS never does.
    """
    from moto.elbv2.exceptions import DuplicateListenerError
    from moto.elbv2.models import ELBv2Backend

    if getattr(ELBv2Backend, "_payops_listener_idempotency", False):
        return
    original = ELBv2Backend.create_listener

    def create_listener(self, load_balancer_arn, protocol, port, *args, **kwargs):
        balancer = self.load_balancers.get(load_balancer_arn)
        if balancer is not None:
            for listener in balancer.listeners.values():
                if str(listener.port) == str(port):
                    if str(listener.protocol).upper() != str(protocol).upper():
                        raise DuplicateListenerError()
                    return listener
        return original(self, load_balancer_arn, protocol, port, *args, **kwargs)

    ELBv2Backend.create_listener = create_listener
    ELBv2Backend._payops_listener_idempotency = True


def patch_elbv2_load_balancer_idempotency() -> None:
    """ELBv2 (moto 5.x): CreateLoadBalancer is idempotent by name.

    AWS: "This operation is idempotent, which means that it completes at most
    one time. If you attempt to create multiple load balancers with the same
    settings, each call succeeds" (the existing balancer is returned), and a
    name already taken with other settings is ``DuplicateLoadBalancerName``.
    moto checks for a duplicate by ARN, whose id part is random, so a retried
    CreateLoadBalancer whose first answer was lost made a second balancer of
    the same name, which AWS never does (seen as an NLB left behind by
    ``down`` in the fault suite).
    """
    from moto.elbv2.exceptions import DuplicateLoadBalancerName
    from moto.elbv2.models import ELBv2Backend

    if getattr(ELBv2Backend, "_payops_load_balancer_idempotency", False):
        return
    original = ELBv2Backend.create_load_balancer

    def create_load_balancer(self, name, *args, **kwargs):
        for balancer in self.load_balancers.values():
            if balancer.name != name:
                continue
            scheme = kwargs.get("scheme") or "internet-facing"
            kind = kwargs.get("loadbalancer_type") or "application"
            same = balancer.type == kind and (balancer.scheme or "internet-facing") == scheme
            if not same:
                raise DuplicateLoadBalancerName()
            return balancer
        return original(self, name, *args, **kwargs)

    ELBv2Backend.create_load_balancer = create_load_balancer
    ELBv2Backend._payops_load_balancer_idempotency = True


def patch_lambda_one_mapping_per_source() -> None:
    """Lambda (moto 5.x): one event source mapping per queue and function.

    AWS refuses a second CreateEventSourceMapping of the same SQS queue and
    function with ``ResourceConflictException`` (HTTP 409, "An event source
    mapping with SQS arn ... already exists"). moto meant to (it looks the
    function up under the literal key "func.function_arn", so never finds
    it) and would have answered in XML, which a REST-JSON client cannot read:
    a create retried after a lost answer made a second mapping instead.
    """
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.models import LambdaBackend

    if getattr(LambdaBackend, "_payops_one_mapping", False):
        return

    class MappingExists(LambdaClientError):
        code = 409

        def __init__(self, message):
            super().__init__("ResourceConflictException", message)

    original = LambdaBackend.create_event_source_mapping

    def create_event_source_mapping(self, spec):
        source = spec.get("EventSourceArn") or ""
        if source.startswith("arn:aws:sqs:") and spec.get("FunctionName"):
            func = self._lambdas.get_function_by_name_or_arn_with_qualifier(spec["FunctionName"])
            for esm in self._event_source_mappings.values():
                if esm.event_source_arn == source and esm.function_arn == func.function_arn:
                    raise MappingExists(
                        f'An event source mapping with SQS arn (" {source} ") and function '
                        f'(" {func.function_name} ") already exists. Please update or delete '
                        f"the existing mapping with UUID {esm.uuid}"
                    )
        return original(self, spec)

    LambdaBackend.create_event_source_mapping = create_event_source_mapping
    LambdaBackend._payops_one_mapping = True


def patch_rds_orderable_zones() -> None:
    """RDS (moto 5.x): orderable instance options name the region's zones.

    moto's DescribeOrderableDBInstanceOptions data lists us-east-1's zones
    (us-east-1a, ...) in every region, so in us-west-2 no Aurora class looked
    orderable in any of the region's zones, which AWS never answers for a
    class the region offers. Each option now lists the zones EC2 has in the
    request's region.
    """
    from moto.ec2.models import ec2_backends
    from moto.rds.models import RDSBackend

    if getattr(RDSBackend, "_payops_orderable_zones", False):
        return
    original = RDSBackend.db_cluster_options

    def db_cluster_options(self, engine):
        options = original(self, engine)
        ec2 = ec2_backends[self.account_id][self.region_name]
        zones = [{"Name": z.name} for z in ec2.describe_availability_zones()]
        for option in options:
            option["AvailabilityZones"] = zones
        return options

    RDSBackend.db_cluster_options = db_cluster_options
    RDSBackend._payops_orderable_zones = True


def patch_logs_query_definitions() -> None:
    """Saved Logs Insights queries (see the module docstring)."""
    import time
    import uuid

    from moto.logs.exceptions import ResourceNotFoundException
    from moto.logs.models import LogsBackend
    from moto.logs.responses import LogsResponse

    if getattr(LogsBackend, "_payops_query_definitions", False):
        return

    def _store(backend):
        # Per account and region, like the backend itself.
        if "_payops_definitions" not in backend.__dict__:
            backend.__dict__["_payops_definitions"] = {}
            backend.__dict__["_payops_definition_tokens"] = {}
        return backend._payops_definitions, backend._payops_definition_tokens

    def put_query_definition(self):
        definitions, tokens = _store(self.logs_backend)
        definition_id = self._get_param("queryDefinitionId")
        token = self._get_param("clientToken")
        if definition_id:
            if definition_id not in definitions:
                raise ResourceNotFoundException("The query definition does not exist.")
        elif token and token in tokens:
            return json.dumps({"queryDefinitionId": tokens[token]})
        else:
            definition_id = str(uuid.uuid4())
        definitions[definition_id] = {
            "queryDefinitionId": definition_id,
            "name": self._get_param("name"),
            "queryString": self._get_param("queryString"),
            "logGroupNames": self._get_param("logGroupNames") or [],
            "lastModified": int(time.time() * 1000),
        }
        if token:
            tokens[token] = definition_id
        return json.dumps({"queryDefinitionId": definition_id})

    def describe_query_definitions(self):
        definitions, _ = _store(self.logs_backend)
        prefix = self._get_param("queryDefinitionNamePrefix") or ""
        found = [d for d in definitions.values() if d["name"].startswith(prefix)]
        found.sort(key=lambda d: d["name"])
        return json.dumps({"queryDefinitions": found})

    def delete_query_definition(self):
        definitions, _ = _store(self.logs_backend)
        definition_id = self._get_param("queryDefinitionId")
        if definitions.pop(definition_id, None) is None:
            raise ResourceNotFoundException("The query definition does not exist.")
        return json.dumps({"success": True})

    LogsResponse.put_query_definition = put_query_definition
    LogsResponse.describe_query_definitions = describe_query_definitions
    LogsResponse.delete_query_definition = delete_query_definition
    LogsBackend._payops_query_definitions = True


# aurora-postgresql versions the emulators answer DescribeDBEngineVersions for.
AURORA_POSTGRESQL_VERSIONS = [
    "13.12", "13.15", "13.18", "14.9", "14.12", "14.15", "15.4", "15.7", "15.10",
    "16.1", "16.3", "16.6", "17.4",
]


def _version_at_least(version, floors):
    major, _, minor = version.partition(".")
    for floor in floors:
        f_major, _, f_minor = floor.partition(".")
        if major == f_major:
            return int(minor or 0) >= int(f_minor)
    return int(major) > max(int(f.split(".")[0]) for f in floors)


def patch_rds_engine_versions() -> None:
    """DescribeDBEngineVersions for aurora-postgresql (see the module docstring)."""
    from moto.core.responses import ActionResult
    from moto.rds.responses import RDSResponse

    if getattr(RDSResponse, "_payops_engine_versions", False):
        return

    def describe_db_engine_versions(self):
        engine = self.params.get("Engine")
        wanted = self.params.get("EngineVersion")
        versions = []
        if engine in (None, "aurora-postgresql"):
            for version in AURORA_POSTGRESQL_VERSIONS:
                if wanted and version != wanted:
                    continue
                pauses = _version_at_least(version, ["13.15", "14.12", "15.7", "16.3"])
                wide = _version_at_least(version, ["13.13", "14.10", "15.5", "16.1"])
                versions.append({
                    "Engine": "aurora-postgresql",
                    "EngineVersion": version,
                    "DBParameterGroupFamily": f"aurora-postgresql{version.split('.')[0]}",
                    "DBEngineDescription": "Aurora (PostgreSQL)",
                    "Status": "available",
                    "SupportsReadReplica": True,
                    "ServerlessV2FeaturesSupport": {
                        "MinCapacity": 0.0 if pauses else 0.5,
                        "MaxCapacity": 256.0 if wide else 128.0,
                    },
                })
        return ActionResult({"DBEngineVersions": versions})

    RDSResponse.describe_db_engine_versions = describe_db_engine_versions
    RDSResponse._payops_engine_versions = True


def patch_rds_proxy() -> None:
    """RDS Proxy (moto 5.1/5.2): what payops' proxy steps call and moto lacks.

    moto serves Create/DescribeDBProxies, Register/Deregister/DescribeDBProxyTargets
    and the target groups, but not ModifyDBProxy (drift of TLS, auth, idle
    timeout, security groups) nor the extra endpoints
    (Create/Describe/DeleteDBProxyEndpoint, the read-only endpoint); and
    DeleteDBProxy, RegisterDBProxyTargets and DescribeDBProxyTargets of an
    unknown proxy answer 500 (a KeyError), which the SDK retries as transient
    instead of AWS's DBProxyNotFoundFault. Served here as the RDS API
    reference documents them; DeleteDBProxy also deletes the proxy's
    endpoints, as AWS does.
    """
    import datetime

    from moto.core.responses import ActionResult
    from moto.moto_api._internal import mock_random as random
    from moto.rds.exceptions import DBProxyNotFoundFault, RDSClientError
    from moto.rds.models import RDSBackend
    from moto.rds.responses import RDSResponse

    if getattr(RDSResponse, "_payops_proxy", False):
        return

    def proxy(backend, name):
        if name not in backend.db_proxies:
            raise DBProxyNotFoundFault(name)
        return backend.db_proxies[name]

    def endpoints(backend):
        if not hasattr(backend, "_payops_proxy_endpoints"):
            backend._payops_proxy_endpoints = {}
        return backend._payops_proxy_endpoints

    original_delete = RDSBackend.delete_db_proxy
    original_register = RDSBackend.register_db_proxy_targets
    original_targets = RDSBackend.describe_db_proxy_targets

    def delete_db_proxy(self, proxy_name):
        proxy(self, proxy_name)
        store = endpoints(self)
        for name in [n for n, e in store.items() if e["DBProxyName"] == proxy_name]:
            del store[name]
        return original_delete(self, proxy_name)

    def register_db_proxy_targets(self, db_proxy_name, *args, **kwargs):
        proxy(self, db_proxy_name)
        return original_register(self, db_proxy_name, *args, **kwargs)

    def describe_db_proxy_targets(self, proxy_name):
        proxy(self, proxy_name)
        return original_targets(self, proxy_name)

    def modify_db_proxy(self):
        p = proxy(self.backend, self.params.get("DBProxyName"))
        if self.params.get("NewDBProxyName"):
            raise RDSClientError("InvalidParameterValue", "renaming a proxy is not served")
        if "RequireTLS" in self.params:
            p.require_tls = self.params["RequireTLS"]
        if "IdleClientTimeout" in self.params:
            p.idle_client_timeout = int(self.params["IdleClientTimeout"])
        if "DebugLogging" in self.params:
            p.debug_logging = self.params["DebugLogging"]
        if self.params.get("Auth"):
            p.auth = self.params["Auth"]
        if self.params.get("SecurityGroups"):
            p.vpc_security_group_ids = list(self.params["SecurityGroups"])
        if self.params.get("RoleArn"):
            p.role_arn = self.params["RoleArn"]
        return ActionResult({"DBProxy": p})

    def create_db_proxy_endpoint(self):
        backend = self.backend
        p = proxy(backend, self.params.get("DBProxyName"))
        name = self.params["DBProxyEndpointName"]
        store = endpoints(backend)
        if name in store:
            raise RDSClientError(
                "DBProxyEndpointAlreadyExistsFault",
                f"The endpoint {name} already exists.",
            )
        suffix = random.get_random_string(length=17, lower_case=True)
        endpoint = {
            "DBProxyEndpointName": name,
            "DBProxyEndpointArn": f"arn:aws:rds:{backend.region_name}:{backend.account_id}:db-proxy-endpoint:prx-endpoint-{suffix}",
            "DBProxyName": p.db_proxy_name,
            "Status": "available",
            "VpcId": p.vpc_id,
            "VpcSecurityGroupIds": list(self.params.get("VpcSecurityGroupIds") or p.vpc_security_group_ids),
            "VpcSubnetIds": list(self.params.get("VpcSubnetIds") or []),
            "Endpoint": f"{name}.endpoint.proxy-{p.url_identifier}.{backend.region_name}.rds.amazonaws.com",
            "CreatedDate": datetime.datetime.now(datetime.timezone.utc),
            "TargetRole": self.params.get("TargetRole", "READ_WRITE"),
            "IsDefault": False,
            "_tags": list(self.params.get("Tags") or []),
        }
        store[name] = endpoint
        return ActionResult({"DBProxyEndpoint": _public(endpoint)})

    def describe_db_proxy_endpoints(self):
        backend = self.backend
        proxy_name = self.params.get("DBProxyName")
        name = self.params.get("DBProxyEndpointName")
        if proxy_name:
            proxy(backend, proxy_name)
        store = endpoints(backend)
        if name and name not in store:
            raise RDSClientError(
                "DBProxyEndpointNotFoundFault",
                f"The endpoint {name} does not exist.",
            )
        found = [
            _public(e)
            for n, e in store.items()
            if (not name or n == name) and (not proxy_name or e["DBProxyName"] == proxy_name)
        ]
        return ActionResult({"DBProxyEndpoints": found})

    def delete_db_proxy_endpoint(self):
        name = self.params.get("DBProxyEndpointName")
        store = endpoints(self.backend)
        if name not in store:
            raise RDSClientError(
                "DBProxyEndpointNotFoundFault",
                f"The endpoint {name} does not exist.",
            )
        endpoint = store.pop(name)
        endpoint["Status"] = "deleting"
        return ActionResult({"DBProxyEndpoint": _public(endpoint)})

    # Endpoints carry tags on AWS (ListTagsForResource by their ARN);
    # moto's ARN pattern does not know `db-proxy-endpoint` and refuses it.
    original_list_tags = RDSBackend.list_tags_for_resource
    original_add_tags = RDSBackend.add_tags_to_resource

    def endpoint_by_arn(backend, arn):
        for e in endpoints(backend).values():
            if e["DBProxyEndpointArn"] == arn:
                return e
        return None

    def list_tags_for_resource(self, arn):
        if ":db-proxy-endpoint:" in arn:
            e = endpoint_by_arn(self, arn)
            return list(e["_tags"]) if e else []
        return original_list_tags(self, arn)

    def add_tags_to_resource(self, arn, tags):
        if ":db-proxy-endpoint:" in arn:
            e = endpoint_by_arn(self, arn)
            if e is None:
                return []
            merged = {t["Key"]: t["Value"] for t in e["_tags"]}
            merged.update({t["Key"]: t["Value"] for t in tags})
            e["_tags"] = [{"Key": k, "Value": v} for k, v in merged.items()]
            return e["_tags"]
        return original_add_tags(self, arn, tags)

    # The Resource Groups Tagging API lists tagged proxy endpoints on AWS
    # (resource type rds:db-proxy-endpoint); moto's listing leaves them out.
    original_iter = getattr(RDSBackend, "iter_tagged_resources", None)

    def iter_tagged_resources(self):
        from moto.core.resource_tagging import TaggedResource

        if original_iter is not None:
            yield from original_iter(self)
        for e in endpoints(self).values():
            yield TaggedResource(
                arn=e["DBProxyEndpointArn"],
                tags={t["Key"]: t["Value"] for t in e["_tags"]},
                resource_type="rds:db-proxy-endpoint",
            )

    if original_iter is not None:
        RDSBackend.iter_tagged_resources = iter_tagged_resources
    RDSBackend.list_tags_for_resource = list_tags_for_resource
    RDSBackend.add_tags_to_resource = add_tags_to_resource
    RDSBackend.delete_db_proxy = delete_db_proxy
    RDSBackend.register_db_proxy_targets = register_db_proxy_targets
    RDSBackend.describe_db_proxy_targets = describe_db_proxy_targets
    RDSResponse.modify_db_proxy = modify_db_proxy
    RDSResponse.create_db_proxy_endpoint = create_db_proxy_endpoint
    RDSResponse.describe_db_proxy_endpoints = describe_db_proxy_endpoints
    RDSResponse.delete_db_proxy_endpoint = delete_db_proxy_endpoint
    RDSResponse._payops_proxy = True


def _public(endpoint):
    return {k: v for k, v in endpoint.items() if not k.startswith("_")}


def patch_config_rule_scope() -> None:
    """AWS Config: a rule's tag scope reads back as TagKey / TagValue, as the
    API's Scope shape has it (API_Scope)."""
    from moto.config.models import Scope

    if getattr(Scope, "_payops_tag_scope", False):
        return
    original_to_dict = Scope.to_dict

    def to_dict(self):
        data = original_to_dict(self)
        tags = data.pop("Tags", None)
        if tags:
            ((key, value),) = tags.items()
            data["TagKey"] = key
            if value is not None:
                data["TagValue"] = value
        return data

    Scope.to_dict = to_dict
    Scope._payops_tag_scope = True


def patch_guardduty_one_detector() -> None:
    """GuardDuty: one detector per account and region, as on AWS."""
    from moto.guardduty.exceptions import GuardDutyException
    from moto.guardduty.models import GuardDutyBackend

    if getattr(GuardDutyBackend, "_payops_one_detector", False):
        return

    class DetectorAlreadyExists(GuardDutyException):
        code = 400

        def __init__(self) -> None:
            super().__init__(
                "BadRequestException",
                "The request is rejected because a detector already exists for the current account.",
            )

        def get_headers(self, *args, **kwargs):
            return [("X-Amzn-ErrorType", "BadRequestException")]

    original_create = GuardDutyBackend.create_detector

    def create_detector(self, *args, **kwargs):
        if self.detectors:
            raise DetectorAlreadyExists()
        return original_create(self, *args, **kwargs)

    GuardDutyBackend.create_detector = create_detector
    GuardDutyBackend._payops_one_detector = True


def patch_guardduty_publishing_destinations() -> None:
    """GuardDuty's findings export (moto 5.2 has none of it): Create, List,
    Describe, Update and DeletePublishingDestination, as the GuardDuty API
    reference documents them. A destination belongs to its detector (a
    detector that is not the account's answers BadRequestException, as
    moto's own detector calls do) and goes with it. GuardDuty's check that it
    may write to the bucket and use the key is not emulated (docs/runbook.md).
    """
    import json

    from moto.guardduty import urls
    from moto.guardduty.exceptions import GuardDutyException
    from moto.guardduty.responses import GuardDutyResponse
    from moto.moto_api._internal import mock_random as random

    if getattr(GuardDutyResponse, "_payops_destinations", False):
        return

    class DestinationNotFound(GuardDutyException):
        code = 400

        def __init__(self) -> None:
            super().__init__(
                "BadRequestException",
                "The request is rejected because the input destinationId is not owned by the current account.",
            )

        def get_headers(self, *args, **kwargs):
            return [("X-Amzn-ErrorType", "BadRequestException")]

    urls.url_paths["{0}/detector/(?P<detector_id>[^/]+)/publishingDestination$"] = GuardDutyResponse.dispatch
    urls.url_paths[
        "{0}/detector/(?P<detector_id>[^/]+)/publishingDestination/(?P<destination_id>[^/]+)$"
    ] = GuardDutyResponse.dispatch

    def destinations(backend, detector_id):
        detector = backend.get_detector(detector_id)  # BadRequestException when not ours
        if not hasattr(detector, "_payops_destinations"):
            detector._payops_destinations = {}
        return detector._payops_destinations

    def destination(backend, detector_id, destination_id):
        store = destinations(backend, detector_id)
        if destination_id not in store:
            raise DestinationNotFound()
        return store[destination_id]

    def ids(self):
        parts = self.path.split("/")
        i = parts.index("detector")
        detector_id = parts[i + 1]
        destination_id = parts[i + 3] if len(parts) > i + 3 else None
        return detector_id, destination_id

    def create_publishing_destination(self):
        detector_id, _ = ids(self)
        store = destinations(self.guardduty_backend, detector_id)
        token = self._get_param("clientToken")
        for dest_id, d in store.items():
            if token and d.get("_token") == token:
                return json.dumps({"destinationId": dest_id})
        dest_id = random.get_random_hex(length=32)
        store[dest_id] = {
            "destinationId": dest_id,
            "destinationType": self._get_param("destinationType") or "S3",
            "status": "PUBLISHING",
            "publishingFailureStartTimestamp": 0,
            "destinationProperties": self._get_param("destinationProperties") or {},
            "tags": self._get_param("tags") or {},
            "_token": token,
        }
        return json.dumps({"destinationId": dest_id})

    def list_publishing_destinations(self):
        detector_id, _ = ids(self)
        store = destinations(self.guardduty_backend, detector_id)
        return json.dumps(
            {
                "destinations": [
                    {k: d[k] for k in ("destinationId", "destinationType", "status")}
                    for d in store.values()
                ]
            }
        )

    def describe_publishing_destination(self):
        detector_id, destination_id = ids(self)
        d = destination(self.guardduty_backend, detector_id, destination_id)
        return json.dumps({k: v for k, v in d.items() if not k.startswith("_")})

    def update_publishing_destination(self):
        detector_id, destination_id = ids(self)
        d = destination(self.guardduty_backend, detector_id, destination_id)
        props = self._get_param("destinationProperties")
        if props:
            d["destinationProperties"] = props
        return json.dumps({})

    def delete_publishing_destination(self):
        detector_id, destination_id = ids(self)
        destination(self.guardduty_backend, detector_id, destination_id)
        del destinations(self.guardduty_backend, detector_id)[destination_id]
        return json.dumps({})

    GuardDutyResponse.create_publishing_destination = create_publishing_destination
    GuardDutyResponse.list_publishing_destinations = list_publishing_destinations
    GuardDutyResponse.describe_publishing_destination = describe_publishing_destination
    GuardDutyResponse.update_publishing_destination = update_publishing_destination
    GuardDutyResponse.delete_publishing_destination = delete_publishing_destination
    # Destinations live on their detector: DeleteDetector takes them along,
    # as on AWS.
    GuardDutyResponse._payops_destinations = True


def patch_events_test_event_pattern() -> None:
    """EventBridge TestEventPattern (moto 5.2 answers nothing): with moto's
    own matcher, the one its rules deliver with, so a pattern tested here
    behaves as the emulator's rules do. (LocalStack serves it natively.)"""
    import json

    from moto.events.models import EventPattern
    from moto.events.responses import EventsHandler

    if getattr(EventsHandler, "_payops_test_event_pattern", False):
        return

    def test_event_pattern(self):
        pattern = EventPattern.load(self._get_param("EventPattern"))
        event = json.loads(self._get_param("Event"))
        return json.dumps({"Result": bool(pattern.matches_event(event))}), self.response_headers

    EventsHandler.test_event_pattern = test_event_pattern
    EventsHandler._payops_test_event_pattern = True


def patch_xray_config() -> None:
    """X-Ray's encryption setting, sampling rules and their tags (see the
    module docstring)."""
    import time

    from moto.xray import urls
    from moto.xray.responses import XRayResponse

    if getattr(XRayResponse, "_payops_config", False):
        return

    for action in (
        "EncryptionConfig",
        "PutEncryptionConfig",
        "CreateSamplingRule",
        "GetSamplingRules",
        "UpdateSamplingRule",
        "DeleteSamplingRule",
        "TagResource",
        "UntagResource",
        "ListTagsForResource",
    ):
        urls.url_paths["{0}/" + action + "$"] = XRayResponse.dispatch

    def error(code, message, status=400):
        return json.dumps({"__type": code, "message": message}), {"status": status}

    def store(self):
        backend = self.xray_backend
        if "_payops" not in backend.__dict__:
            default = {
                "RuleName": "Default",
                "RuleARN": f"arn:aws:xray:{self.region}:{self.current_account}:sampling-rule/Default",
                "ResourceARN": "*",
                "Priority": 10000,
                "FixedRate": 0.05,
                "ReservoirSize": 1,
                "ServiceName": "*",
                "ServiceType": "*",
                "Host": "*",
                "HTTPMethod": "*",
                "URLPath": "*",
                "Version": 1,
                "Attributes": {},
            }
            backend.__dict__["_payops"] = {
                "encryption": {"Type": "NONE", "Status": "ACTIVE"},
                "rules": {"Default": {"SamplingRule": default, "CreatedAt": 0.0, "ModifiedAt": 0.0}},
                "tags": {},
            }
        return backend._payops

    # GetEncryptionConfig (POST /EncryptionConfig)
    def encryption_config(self):
        config = store(self)["encryption"]
        answer = dict(config)
        if config["Status"] == "UPDATING":
            config["Status"] = "ACTIVE"
        return json.dumps({"EncryptionConfig": answer})

    def put_encryption_config(self):
        kind = self._get_param("Type")
        key = self._get_param("KeyId")
        if kind not in ("NONE", "KMS"):
            return error("InvalidRequestException", "Type must be NONE or KMS")
        if kind == "KMS" and not key:
            return error("InvalidRequestException", "KeyId is required with Type KMS")
        config = {"Type": kind, "Status": "UPDATING"}
        if kind == "KMS":
            config["KeyId"] = key
        store(self)["encryption"] = config
        return json.dumps({"EncryptionConfig": dict(config)})

    def find_rule(self, params):
        rules = store(self)["rules"]
        name = params.get("RuleName")
        if not name and params.get("RuleARN"):
            name = params["RuleARN"].rsplit("/", 1)[-1]
        return name, rules.get(name)

    def create_sampling_rule(self):
        rule = dict(self._get_param("SamplingRule") or {})
        name = rule.get("RuleName") or ""
        required = ("ResourceARN", "Priority", "FixedRate", "ReservoirSize", "ServiceName",
                    "ServiceType", "Host", "HTTPMethod", "URLPath", "Version")
        missing = [f for f in required if rule.get(f) is None]
        if missing:
            return error("InvalidRequestException", f"missing {', '.join(missing)}")
        if not 1 <= len(name) <= 32:
            return error("InvalidRequestException", "RuleName must be 1-32 characters")
        if not 1 <= rule["Priority"] <= 9999:
            return error("InvalidRequestException", "Priority must be 1-9999")
        if not 0 <= rule["FixedRate"] <= 1:
            return error("InvalidRequestException", "FixedRate must be 0-1")
        rules = store(self)["rules"]
        if name in rules:
            return error("InvalidRequestException", f"A rule named {name} already exists")
        rule["RuleARN"] = f"arn:aws:xray:{self.region}:{self.current_account}:sampling-rule/{name}"
        rule.setdefault("Attributes", {})
        now = time.time()
        record = {"SamplingRule": rule, "CreatedAt": now, "ModifiedAt": now}
        rules[name] = record
        tags = self._get_param("Tags") or []
        store(self)["tags"][rule["RuleARN"]] = {t["Key"]: t["Value"] for t in tags}
        return json.dumps({"SamplingRuleRecord": record})

    def get_sampling_rules(self):
        records = sorted(
            store(self)["rules"].values(),
            key=lambda r: (r["SamplingRule"]["Priority"], r["SamplingRule"]["RuleName"]),
        )
        return json.dumps({"SamplingRuleRecords": records})

    def update_sampling_rule(self):
        update = self._get_param("SamplingRuleUpdate") or {}
        name, record = find_rule(self, update)
        if record is None:
            return error("InvalidRequestException", f"Sampling rule {name} does not exist")
        if name == "Default" and set(update) - {"RuleName", "RuleARN", "FixedRate", "ReservoirSize"}:
            return error("InvalidRequestException", "Invalid update request for default sampling rule")
        for field, value in update.items():
            if field not in ("RuleName", "RuleARN") and value is not None:
                record["SamplingRule"][field] = value
        record["ModifiedAt"] = time.time()
        return json.dumps({"SamplingRuleRecord": record})

    def delete_sampling_rule(self):
        params = {"RuleName": self._get_param("RuleName"), "RuleARN": self._get_param("RuleARN")}
        name, record = find_rule(self, params)
        if record is None or name == "Default":
            return error("InvalidRequestException", f"Sampling rule {name} cannot be deleted")
        del store(self)["rules"][name]
        store(self)["tags"].pop(record["SamplingRule"]["RuleARN"], None)
        return json.dumps({"SamplingRuleRecord": record})

    def tags_of(self):
        arn = self._get_param("ResourceARN")
        tags = store(self)["tags"]
        if arn not in tags:
            return arn, None
        return arn, tags[arn]

    def tag_resource(self):
        arn, tags = tags_of(self)
        if tags is None:
            return error("ResourceNotFoundException", f"{arn} not found", 404)
        for t in self._get_param("Tags") or []:
            tags[t["Key"]] = t["Value"]
        return json.dumps({})

    def untag_resource(self):
        arn, tags = tags_of(self)
        if tags is None:
            return error("ResourceNotFoundException", f"{arn} not found", 404)
        for k in self._get_param("TagKeys") or []:
            tags.pop(k, None)
        return json.dumps({})

    def list_tags_for_resource(self):
        arn, tags = tags_of(self)
        if tags is None:
            return error("ResourceNotFoundException", f"{arn} not found", 404)
        return json.dumps({"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]})

    XRayResponse.encryption_config = encryption_config
    XRayResponse.put_encryption_config = put_encryption_config
    XRayResponse.create_sampling_rule = create_sampling_rule
    XRayResponse.get_sampling_rules = get_sampling_rules
    XRayResponse.update_sampling_rule = update_sampling_rule
    XRayResponse.delete_sampling_rule = delete_sampling_rule
    XRayResponse.tag_resource = tag_resource
    XRayResponse.untag_resource = untag_resource
    XRayResponse.list_tags_for_resource = list_tags_for_resource
    XRayResponse._payops_config = True


def patch_autoscaling_instance_refresh() -> None:
    """Start/Describe/CancelInstanceRefresh (see the module docstring)."""
    import time
    import uuid

    from moto.autoscaling.exceptions import AutoscalingClientError
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    if getattr(AutoScalingResponse, "_payops_instance_refresh", False):
        return

    def group_of(self, name):
        group = self.autoscaling_backend.autoscaling_groups.get(name)
        if group is None:
            raise AutoscalingClientError("ValidationError", f"AutoScalingGroup name not found - {name}")
        return group

    def refreshes(group):
        return group.__dict__.setdefault("_payops_refreshes", [])

    def active(group):
        return [r for r in refreshes(group) if r["Status"] in ("Pending", "InProgress", "Cancelling")]

    def start_instance_refresh(self):
        params = self._get_params()
        group = group_of(self, params.get("AutoScalingGroupName"))
        if active(group):
            raise AutoscalingClientError(
                "InstanceRefreshInProgress",
                "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.",
            )
        count = len(group.instance_states)
        if count:
            # Every instance is replaced with one of the group's current
            # template version (the caller starts a refresh only after it
            # changed the version; SkipMatching then skips nothing).
            old = [s.instance.id for s in group.instance_states]
            group.instance_states = []
            group.autoscaling_backend.ec2_backend.terminate_instances(old)
            group.replace_autoscaling_group_instances(count, group.get_propagated_tags())
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        refresh = {
            "InstanceRefreshId": str(uuid.uuid4()),
            "AutoScalingGroupName": group.name,
            # InProgress for the first Describe, as on AWS for minutes, so
            # the caller's wait is exercised; Successful from the next.
            "Status": "InProgress",
            "StartTime": now,
            "PercentageComplete": 0,
            "InstancesToUpdate": count,
            "Preferences": params.get("Preferences") or {},
            "Strategy": params.get("Strategy") or "Rolling",
        }
        refreshes(group).insert(0, refresh)
        return ActionResult({"InstanceRefreshId": refresh["InstanceRefreshId"]})

    def describe_instance_refreshes(self):
        params = self._get_params()
        group = group_of(self, params.get("AutoScalingGroupName"))
        wanted = params.get("InstanceRefreshIds") or []
        answer = []
        for r in refreshes(group):
            if wanted and r["InstanceRefreshId"] not in wanted:
                continue
            answer.append(dict(r))
            if r["Status"] == "InProgress":
                r.update(Status="Successful", PercentageComplete=100, InstancesToUpdate=0,
                         EndTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            elif r["Status"] == "Cancelling":
                r["Status"] = "Cancelled"
        return ActionResult({"InstanceRefreshes": answer})

    def cancel_instance_refresh(self):
        group = group_of(self, self._get_param("AutoScalingGroupName"))
        running = active(group)
        if not running:
            raise AutoscalingClientError(
                "ActiveInstanceRefreshNotFound",
                "No in progress or pending Instance Refresh found for Auto Scaling group " + group.name,
            )
        running[0]["Status"] = "Cancelling"
        return ActionResult({"InstanceRefreshId": running[0]["InstanceRefreshId"]})

    AutoScalingResponse.start_instance_refresh = start_instance_refresh
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes
    AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh
    AutoScalingResponse._payops_instance_refresh = True
def _route53_error(code: str, message: str, status: int):
    """A Route 53 error of moto 5.1 (RESTError: ``code`` is the HTTP status)
    or 5.2 (ServiceException: the status comes from the service model)."""
    from moto.route53 import exceptions as ex

    err = ex.Route53ClientError(code, message)
    try:
        from moto.core.exceptions import RESTError

        if isinstance(err, RESTError):
            err.code = status
    except ImportError:
        pass
    return err


def patch_route53_health_checks_and_references() -> None:
    """Route 53 (moto 5.1/5.2; LocalStack's route53 provider hands these to
    moto): health checks keep ``AlarmIdentifier`` and
    ``InsufficientDataHealthStatus`` (moto drops both, so a CLOUDWATCH_METRIC
    check would read back unwired and every ``up`` would repair it), on
    Create and Update; and ``CallerReference`` is idempotent as AWS documents
    it: a zone's repeat answers HostedZoneAlreadyExists, a health check's
    repeat with the same configuration returns the check the first call
    made, with another configuration HealthCheckAlreadyExists. Without it a
    retried create whose answer was lost makes a second zone or check."""
    import threading

    import xmltodict
    from moto.route53 import models
    from moto.route53.responses import Route53

    if getattr(Route53, "_payops_route53", False):
        return
    pending = threading.local()

    def alarm_fields(config: dict) -> dict:
        alarm = config.get("AlarmIdentifier") or None
        if alarm:
            alarm = {"Region": alarm.get("Region"), "Name": alarm.get("Name")}
        return {
            "alarm_identifier": alarm,
            "insufficient_data_health_status": config.get("InsufficientDataHealthStatus"),
        }

    def request_body(self, root: str) -> dict:
        body = self.body
        if isinstance(body, bytes):
            body = body.decode()
        return (xmltodict.parse(body) or {}).get(root) or {}

    original_create_response = Route53.create_health_check

    def create_health_check_response(self, *args, **kwargs):
        config = request_body(self, "CreateHealthCheckRequest").get("HealthCheckConfig") or {}
        pending.fields = alarm_fields(config)
        pending.type_ = config.get("Type")
        try:
            return original_create_response(self, *args, **kwargs)
        finally:
            pending.fields = None

    original_create = models.Route53Backend.create_health_check

    def create_health_check(self, caller_reference, health_check_args):
        fields = getattr(pending, "fields", None) or {}
        for check in list(self.health_checks.values()):
            if check.caller_reference != caller_reference:
                continue
            same = check.type_ == health_check_args.get("type") and all(
                getattr(check, k, None) == v for k, v in fields.items()
            )
            if same:
                return check
            raise _route53_error(
                "HealthCheckAlreadyExists",
                f"A health check with caller reference {caller_reference} already exists "
                "with another configuration",
                409,
            )
        check = original_create(self, caller_reference, health_check_args)
        for k, v in fields.items():
            setattr(check, k, v)
        return check

    original_update_response = Route53.update_health_check

    def update_health_check_response(self, *args, **kwargs):
        request = request_body(self, "UpdateHealthCheckRequest")
        health_check_id = self._get_param("HealthCheckId") or self.path.rstrip("/").split("/")[-1]
        check = self.backend.health_checks.get(health_check_id)
        if check is not None:
            if request.get("AlarmIdentifier"):
                check.alarm_identifier = alarm_fields(request)["alarm_identifier"]
            if request.get("InsufficientDataHealthStatus"):
                check.insufficient_data_health_status = request["InsufficientDataHealthStatus"]
            check.health_check_version = getattr(check, "health_check_version", 1) + 1
        return original_update_response(self, *args, **kwargs)

    # moto 5.2 serialises the config property; 5.1 renders XML (to_xml).
    config_property = getattr(models.HealthCheck, "health_check_config", None)
    if isinstance(config_property, property):

        def health_check_config(check):
            config = config_property.fget(check)
            if getattr(check, "alarm_identifier", None):
                config["AlarmIdentifier"] = check.alarm_identifier
            if getattr(check, "insufficient_data_health_status", None):
                config["InsufficientDataHealthStatus"] = check.insufficient_data_health_status
            return config

        models.HealthCheck.health_check_config = property(health_check_config)
    original_to_xml = getattr(models.HealthCheck, "to_xml", None)
    if original_to_xml is not None:

        def to_xml(check):
            xml = original_to_xml(check)
            extra = ""
            alarm = getattr(check, "alarm_identifier", None)
            if alarm:
                extra += (
                    f"<AlarmIdentifier><Region>{alarm['Region']}</Region>"
                    f"<Name>{alarm['Name']}</Name></AlarmIdentifier>"
                )
            status = getattr(check, "insufficient_data_health_status", None)
            if status:
                extra += f"<InsufficientDataHealthStatus>{status}</InsufficientDataHealthStatus>"
            return xml.replace("</HealthCheckConfig>", extra + "</HealthCheckConfig>", 1)

        models.HealthCheck.to_xml = to_xml

    original_create_zone = models.Route53Backend.create_hosted_zone

    def create_hosted_zone(self, name, *args, caller_reference=None, **kwargs):
        if caller_reference and any(
            z.caller_reference == caller_reference for z in self.zones.values()
        ):
            raise _route53_error(
                "HostedZoneAlreadyExists",
                f"A hosted zone with caller reference {caller_reference} already exists",
                409,
            )
        return original_create_zone(self, name, *args, caller_reference=caller_reference, **kwargs)

    Route53.create_health_check = create_health_check_response
    Route53.update_health_check = update_health_check_response
    models.Route53Backend.create_health_check = create_health_check
    models.Route53Backend.create_hosted_zone = create_hosted_zone
    Route53._payops_route53 = True
