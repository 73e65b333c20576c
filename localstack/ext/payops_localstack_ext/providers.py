"""Moto-backed LocalStack service providers.

Each provider here serves EVERY operation of a service's botocore model by
handing the request to LocalStack's in-process moto (``moto-ext``) through
``localstack.services.moto`` -- the same mechanism LocalStack itself uses for
the operations its native providers do not implement
(``MotoFallbackDispatcher``).  Because it is the same moto instance, state is
shared with LocalStack's other moto-backed services (EC2 subnets / security
groups, IAM roles, ...), so ids resolve across services.

They are registered as plugins under the entry-point group
``localstack.aws.provider`` with the name ``<api>:moto`` (see pyproject.toml)
and are selected with ``PROVIDER_OVERRIDE_<API>=moto``.

Why: the community edition either lacks these services ("not included in your
current license plan": rds, elbv2, wafv2, guardduty, autoscaling,
apigatewayv2, xray) or its implementation needs downloads that are impossible
offline (dynamodb -> Java + DynamoDB Local; lambda -> runtime binaries and a
Docker engine, functions end up State=Failed).
"""

from __future__ import annotations

import logging

from localstack.services.plugins import Service, ServiceLifecycleHook, aws_provider

LOG = logging.getLogger(__name__)

PROVIDER_NAME = "moto"


class MotoPassthroughProvider(ServiceLifecycleHook):
    """A provider with no logic of its own: every operation goes to moto.

    ``Service.for_provider`` only needs ``provider.service`` (the botocore
    service name) plus a dispatch table, which we build from the service
    model so that no operation is missing (a provider class generated from
    ``localstack.aws.api.<service>`` would only cover the operations present
    in LocalStack's generated stubs, and rds/elbv2/... have none in the
    community package).
    """

    def __init__(self, service: str):
        self.service = service

    def __repr__(self) -> str:  # shows up in LocalStack's debug logs
        return f"<payops MotoPassthroughProvider {self.service}>"


def _dispatch_table(service: str) -> dict:
    from localstack.aws.spec import load_service
    from localstack.services.moto import call_moto

    def _handler(context, _request):
        # call_moto parses moto's HTTP answer back into a ServiceResponse and
        # raises the matching ServiceException for error answers, so
        # LocalStack re-serializes it exactly like a native provider would.
        return call_moto(context)

    model = load_service(service)
    return {op: _handler for op in model.operation_names}


def moto_service(service: str) -> Service:
    provider = MotoPassthroughProvider(service)
    table = _dispatch_table(service)
    LOG.info("payops ext: serving %s (%d operations) from moto", service, len(table))
    return Service.for_provider(provider, dispatch_table_factory=lambda _p: table)


@aws_provider(api="dynamodb", name=PROVIDER_NAME)
def dynamodb():
    return moto_service("dynamodb")


@aws_provider(api="dynamodbstreams", name=PROVIDER_NAME)
def dynamodbstreams():
    # Must go together with dynamodb:moto: the native dynamodbstreams provider
    # reads the stream records of the native (DynamoDB Local) backend.
    return moto_service("dynamodbstreams")


@aws_provider(api="lambda", name=PROVIDER_NAME)
def lambda_():
    # moto's docker-less Lambda ("awslambda_simple"): functions are Active at
    # once and Invoke returns a canned payload instead of running the code.
    from moto.core.config import default_user_config

    from .moto_patches import patch_lambda_logging_and_tracing, patch_lambda_one_mapping_per_source

    default_user_config.setdefault("lambda", {})["use_docker"] = False
    patch_lambda_logging_and_tracing()
    _patch_moto_lambda_native_sqs_sources()
    # After the line above, so the one-per-source check runs first.
    patch_lambda_one_mapping_per_source()
    return moto_service("lambda")


def _patch_moto_lambda_native_sqs_sources() -> None:
    """moto's CreateEventSourceMapping looks the queue up in moto's own SQS,
    but here SQS is LocalStack's native provider: every queue of the env is
    "Invalid EventSourceArn". Accept an SQS ARN that LocalStack's store
    knows. The mapping is then recorded like any other (List/Get/Update/
    DeleteEventSourceMapping serve it) but never polls: LocalStack runs no
    function code offline anyway, and the handler's batch reporting is
    tested in lambda/tests."""
    from moto.awslambda.models import EventSourceMapping, LambdaBackend
    from moto.core.exceptions import RESTError

    original = LambdaBackend.create_event_source_mapping
    if getattr(original, "_payops_native_sqs", False):
        return

    def create_event_source_mapping(self, spec):
        try:
            return original(self, spec)
        except RESTError as e:
            arn = spec.get("EventSourceArn") or ""
            if "Invalid EventSourceArn" not in str(getattr(e, "message", e)) or not arn.startswith("arn:aws:sqs:"):
                raise
            from localstack.services.sqs.models import sqs_stores

            _, _, _, region, account, name = arn.split(":", 5)
            if name not in sqs_stores[account][region].queues:
                raise
            func = self._lambdas.get_function_by_name_or_arn_with_qualifier(spec["FunctionName"])
            spec.update({"FunctionArn": func.function_arn, "RegionName": self.region_name, "AccountId": self.account_id})
            esm = EventSourceMapping(spec)
            self._event_source_mappings[esm.uuid] = esm
            return esm

    create_event_source_mapping._payops_native_sqs = True
    LambdaBackend.create_event_source_mapping = create_event_source_mapping


@aws_provider(api="rds", name=PROVIDER_NAME)
def rds():
    _patch_moto_rds_master_secret_kms()
    _patch_moto_rds_cluster_parameter_group_tags()
    from .moto_patches import (
        patch_rds_automated_snapshots,
        patch_rds_cluster_already_exists,
        patch_rds_engine_versions,
        patch_rds_orderable_zones,
        patch_rds_proxy,
    )

    patch_rds_automated_snapshots()
    patch_rds_cluster_already_exists()
    patch_rds_engine_versions()
    patch_rds_orderable_zones()
    patch_rds_proxy()
    # ManageMasterUserPassword makes moto create the secret in moto's
    # secretsmanager backend. LocalStack's secretsmanager provider patches
    # moto's FakeSecret when its module is imported; a secret created before
    # that (first RDS call before any secretsmanager call) lacks
    # `last_accessed_date` and DescribeSecret on it fails with HTTP 500.
    import localstack.services.secretsmanager.provider  # noqa: F401
    return moto_service("rds")


def _patch_moto_rds_cluster_parameter_group_tags() -> None:
    """Tags of DB cluster parameter groups (``...:cluster-pg:<name>``).

    The moto inside LocalStack 4.14 (moto-ext 5.1.54) drops the ``Tags`` of
    CreateDBClusterParameterGroup and leaves ``cluster-pg`` out of the ARN
    pattern its tagging calls accept, so ListTagsForResource on the group
    fails with InvalidParameterValue (real AWS and newer moto keep and answer
    the tags). payops checks those tags before adopting the group.
    """
    from moto.rds.models import RDSBackend
    from moto.rds.responses import RDSResponse

    if getattr(RDSBackend, "_payops_cluster_pg_patched", False):
        return
    original = RDSBackend._get_resource_for_tagging

    def _get_resource_for_tagging(self, arn):
        parts = arn.split(":")
        if len(parts) == 7 and parts[2] == "rds" and parts[5] == "cluster-pg":
            return self._find_resource("cluster-pg", parts[6])
        return original(self, arn)

    RDSBackend._get_resource_for_tagging = _get_resource_for_tagging

    original_create = RDSResponse.create_db_cluster_parameter_group

    def create_db_cluster_parameter_group(self):
        result = original_create(self)
        tags = self.params.get("Tags") or []
        name = (self.params.get("DBClusterParameterGroupName") or "").lower()
        group = self.backend.db_cluster_parameter_groups.get(name)
        if tags and group is not None:
            group.add_tags(tags)
        return result

    RDSResponse.create_db_cluster_parameter_group = create_db_cluster_parameter_group
    RDSBackend._payops_cluster_pg_patched = True


def _native_kms_key_arn(key_ref: str, account_id: str, region: str) -> str | None:
    """Resolves a key id / key ARN / alias (name or ARN) in LocalStack's native KMS store."""
    from localstack.services.kms.models import kms_stores

    store = kms_stores[account_id][region]
    ref = key_ref
    if ":alias/" in ref:
        ref = "alias/" + ref.split(":alias/", 1)[1]
    if ref.startswith("alias/"):
        alias = store.aliases.get(ref)
        if alias is None:
            return None
        ref = alias.metadata.get("TargetKeyId") or ""
    if ":key/" in ref:
        ref = ref.split(":key/", 1)[1]
    key = store.keys.get(ref)
    return key.metadata["Arn"] if key is not None else None


def _patch_moto_rds_master_secret_kms() -> None:
    """RDS ManageMasterUserPassword + MasterUserSecretKmsKeyId with a customer key.

    moto resolves that key in *moto's* KMS backend, but in LocalStack KMS is a
    native provider with its own store, so moto raises NotFound -> HTTP 500
    (and a boto3 retry then fails with DBClusterSnapshotAlreadyExistsFault).
    Fall back to LocalStack's KMS store for the lookup.
    """
    from moto.rds import models as rds_models

    cls = rds_models.MasterUserSecret
    if getattr(cls, "_payops_patched", False):
        return
    original = cls.kms_key_id

    def kms_key_id(self):
        try:
            return original.fget(self)
        except Exception:
            backend = self.resource.backend
            arn = _native_kms_key_arn(str(self.secret.kms_key_id), backend.account_id, backend.region_name)
            if arn is None:
                raise
            return arn

    cls.kms_key_id = property(kms_key_id)
    cls._payops_patched = True


@aws_provider(api="elbv2", name=PROVIDER_NAME)
def elbv2():
    from .moto_patches import (
        patch_elbv2_listener_idempotency,
        patch_elbv2_load_balancer_idempotency,
        patch_elbv2_private_link_enforcement,
    )

    patch_elbv2_private_link_enforcement()
    patch_elbv2_listener_idempotency()
    patch_elbv2_load_balancer_idempotency()
    return moto_service("elbv2")


@aws_provider(api="wafv2", name=PROVIDER_NAME)
def wafv2():
    from .moto_patches import patch_wafv2_associations

    patch_wafv2_associations()
    return moto_service("wafv2")


@aws_provider(api="guardduty", name=PROVIDER_NAME)
def guardduty():
    from .moto_patches import patch_guardduty_one_detector, patch_guardduty_publishing_destinations

    patch_guardduty_one_detector()
    patch_guardduty_publishing_destinations()
    return moto_service("guardduty")


@aws_provider(api="autoscaling", name=PROVIDER_NAME)
def autoscaling():
    from .moto_patches import patch_autoscaling_instance_refresh

    patch_autoscaling_instance_refresh()
    return moto_service("autoscaling")


@aws_provider(api="apigatewayv2", name=PROVIDER_NAME)
def apigatewayv2():
    return moto_service("apigatewayv2")


@aws_provider(api="xray", name=PROVIDER_NAME)
def xray():
    from .moto_patches import patch_xray_config

    patch_xray_config()
    return moto_service("xray")


# ---------------------------------------------------------------------------
# Patched native providers (selected with PROVIDER_OVERRIDE_<API>=payops)


@aws_provider(api="logs", name="payops")
def logs():
    """LocalStack's own CloudWatch Logs provider with its tagging bugs fixed.

    In 4.14.0 ``TagResource``/``TagLogGroup`` do ``TAGS.get(arn, {}).update()``,
    so tags added to a log group that was created *without* tags are silently
    dropped (ListTagsForResource returns {}), and tags of a deleted group come
    back when a group of the same name is created again. The tags are also
    mirrored into moto's logs backend, which is what the (moto-backed)
    Resource Groups Tagging API reads, so GetResources finds tagged log groups.
    Saved queries (query definitions) fall through to moto, which serves
    them with ``moto_patches.patch_logs_query_definitions``.
    """
    from localstack.services.logs.models import get_moto_logs_backend, logs_stores
    from localstack.services.logs.provider import LogsProvider
    from localstack.services.moto import MotoFallbackDispatcher, call_moto
    from localstack.utils.aws import arns

    class PayopsLogsProvider(LogsProvider):
        def _group_arn(self, context, name):
            return arns.log_group_arn(group_name=name, account_id=context.account_id, region_name=context.region)

        def _tag(self, context, arn, tags):
            logs_stores[context.account_id][context.region].TAGS.setdefault(arn, {}).update(tags or {})
            if tags and ":log-group:" in arn:
                get_moto_logs_backend(context.account_id, context.region).tag_resource(arn, tags)

        def _untag(self, context, arn, keys):
            stored = logs_stores[context.account_id][context.region].TAGS.get(arn, {})
            for k in keys or []:
                stored.pop(k, None)
            if keys and ":log-group:" in arn:
                get_moto_logs_backend(context.account_id, context.region).untag_resource(arn, list(keys))

        def tag_resource(self, context, resource_arn, tags, **kwargs):
            self._check_resource_arn_tagging(resource_arn)
            self._tag(context, resource_arn, tags)

        def untag_resource(self, context, resource_arn, tag_keys, **kwargs):
            self._check_resource_arn_tagging(resource_arn)
            self._untag(context, resource_arn, tag_keys)

        def tag_log_group(self, context, log_group_name, tags, **kwargs):
            self._verify_log_group_exists(
                group_name=log_group_name, account_id=context.account_id, region_name=context.region
            )
            self._tag(context, self._group_arn(context, log_group_name), tags)

        def untag_log_group(self, context, log_group_name, tags, **kwargs):
            self._verify_log_group_exists(
                group_name=log_group_name, account_id=context.account_id, region_name=context.region
            )
            self._untag(context, self._group_arn(context, log_group_name), tags)

        def delete_log_group(self, context, log_group_name, **kwargs):
            call_moto(context)
            logs_stores[context.account_id][context.region].TAGS.pop(self._group_arn(context, log_group_name), None)

    from .moto_patches import patch_logs_query_definitions

    patch_logs_query_definitions()
    LOG.info("payops ext: serving logs from LocalStack's provider with the tagging fixes")
    return Service.for_provider(PayopsLogsProvider(), dispatch_table_factory=MotoFallbackDispatcher)


@aws_provider(api="route53", name="payops")
def route53():
    """LocalStack's own Route 53 provider with health checks and caller
    references fixed (``moto_patches.patch_route53_health_checks_and_references``).

    In 4.14.0 ``GetHealthCheck`` is LocalStack's own and rebuilds the config
    from a fixed list of fields, dropping ``AlarmIdentifier`` and
    ``InsufficientDataHealthStatus``: served by (patched) moto instead.
    """
    from localstack.services.moto import MotoFallbackDispatcher, call_moto
    from localstack.services.route53.provider import Route53Provider

    class PayopsRoute53Provider(Route53Provider):
        def get_health_check(self, context, health_check_id, **kwargs):
            return call_moto(context)

    from .moto_patches import patch_route53_health_checks_and_references

    patch_route53_health_checks_and_references()
    LOG.info("payops ext: serving route53 from LocalStack's provider with the health-check fixes")
    return Service.for_provider(PayopsRoute53Provider(), dispatch_table_factory=MotoFallbackDispatcher)


@aws_provider(api="apigateway", name="payops")
def apigateway():
    """LocalStack's own API Gateway provider with VPC link tags kept.

    In 4.14.0 CreateVpcLink drops its ``tags`` ("TODO add tag support"), so
    GetVpcLink(s) answer without them and a tagged link cannot be told apart
    from anyone else's. Ours stores them on the link (answered inline, as AWS
    does) and in the provider's tag store (GetTags/TagResource).
    """
    from localstack.services.apigateway.helpers import get_apigateway_store
    from localstack.services.apigateway.legacy.provider import to_vpc_link_response_json
    from localstack.services.apigateway.next_gen.provider import ApigatewayNextGenProvider
    from localstack.services.moto import MotoFallbackDispatcher
    from localstack.utils.aws import arns

    class PayopsApigatewayProvider(ApigatewayNextGenProvider):
        def _link_arn(self, context, link_id):
            return f"arn:{arns.get_partition(context.region)}:apigateway:{context.region}::/vpclinks/{link_id}"

        def _with_tags(self, context, result):
            store = get_apigateway_store(context=context)
            tags = store.TAGS.get(self._link_arn(context, result["id"]))
            if tags:
                result["tags"] = dict(tags)
            return result

        def create_vpc_link(self, context, name, target_arns, description=None, tags=None, **kwargs):
            result = super().create_vpc_link(context, name, target_arns, description=description, **kwargs)
            if tags:
                store = get_apigateway_store(context=context)
                store.TAGS.setdefault(self._link_arn(context, result["id"]), {}).update(tags)
                result["tags"] = dict(tags)
            return result

        def get_vpc_link(self, context, vpc_link_id, **kwargs):
            return self._with_tags(context, super().get_vpc_link(context, vpc_link_id, **kwargs))

        def get_vpc_links(self, context, position=None, limit=None, **kwargs):
            store = get_apigateway_store(context=context)
            items = [self._with_tags(context, to_vpc_link_response_json(v)) for v in store.vpc_links.values()]
            return {"items": items}

        def delete_vpc_link(self, context, vpc_link_id, **kwargs):
            super().delete_vpc_link(context, vpc_link_id, **kwargs)
            get_apigateway_store(context=context).TAGS.pop(self._link_arn(context, vpc_link_id), None)

    LOG.info("payops ext: serving apigateway from LocalStack's provider with VPC link tags")
    return Service.for_provider(PayopsApigatewayProvider(), dispatch_table_factory=MotoFallbackDispatcher)


@aws_provider(api="cloudwatch", name="payops")
def cloudwatch():
    """LocalStack's own CloudWatch provider with alarm tags kept and AWS's
    answer for a missing dashboard.

    In 4.14.0 PutMetricAlarm and PutCompositeAlarm drop their ``Tags``
    (ListTagsForResource answers []; TagResource afterwards works), and the
    tags of a deleted alarm stay for the next alarm of that name. payops tells
    an env's alarms from another env's by their tags (``payops shift`` stops on
    the env's shift-gate alarms only), so both matter. As on AWS, the tags of a
    Put are applied only when it creates the alarm ("any tags you specify in
    this parameter are ignored" when updating).

    GetDashboard of a dashboard that does not exist answers
    InvalidParameterValue; AWS answers ResourceNotFound
    (DashboardNotFoundError), which is what tells payops "not there yet" from
    a real error.
    """
    from localstack.aws.api import RequestContext, handler
    from localstack.aws.api.cloudwatch import DashboardNotFoundError
    from localstack.services.cloudwatch.provider_v2 import CloudwatchProvider
    from localstack.utils.aws import arns

    class PayopsCloudwatchProvider(CloudwatchProvider):
        def _alarm_arn(self, context: RequestContext, request) -> str:
            return arns.cloudwatch_alarm_arn(
                request["AlarmName"], account_id=context.account_id, region_name=context.region
            )

        def _is_new_alarm(self, context: RequestContext, request) -> bool:
            store = self.get_store(context.account_id, context.region)
            return self._alarm_arn(context, request) not in store.alarms

        def _tag_new_alarm(self, context: RequestContext, request, is_new: bool) -> None:
            tags = request.get("Tags") or []
            if tags and is_new:
                arn = self._alarm_arn(context, request)
                self.get_store(context.account_id, context.region).TAGS.tag_resource(arn, tags)

        @handler("PutMetricAlarm", expand=False)
        def put_metric_alarm(self, context: RequestContext, request) -> None:
            is_new = self._is_new_alarm(context, request)
            super().put_metric_alarm(context, request)
            self._tag_new_alarm(context, request, is_new)

        @handler("PutCompositeAlarm", expand=False)
        def put_composite_alarm(self, context: RequestContext, request) -> None:
            is_new = self._is_new_alarm(context, request)
            super().put_composite_alarm(context, request)
            self._tag_new_alarm(context, request, is_new)

        def get_dashboard(self, context: RequestContext, dashboard_name, **kwargs):
            store = self.get_store(context.account_id, context.region)
            if dashboard_name not in store.dashboards:
                raise DashboardNotFoundError(f"Dashboard {dashboard_name} does not exist.")
            return super().get_dashboard(context, dashboard_name, **kwargs)

        def delete_alarms(self, context: RequestContext, alarm_names, **kwargs) -> None:
            super().delete_alarms(context, alarm_names, **kwargs)
            store = self.get_store(context.account_id, context.region)
            for name in alarm_names:
                store.TAGS.del_resource(
                    arns.cloudwatch_alarm_arn(name, account_id=context.account_id, region_name=context.region)
                )

    LOG.info(
        "payops ext: serving cloudwatch from LocalStack's provider with alarm tags kept and "
        "ResourceNotFound for missing dashboards"
    )
    return Service.for_provider(PayopsCloudwatchProvider())


@aws_provider(api="resourcegroupstaggingapi", name="payops")
def resourcegroupstaggingapi():
    """LocalStack's own tagging API (moto's) with KMS keys in its answers.

    The tagging API is moto's, and moto looks for KMS keys in *moto's* KMS
    backend, but LocalStack serves KMS natively from its own store, so
    GetResources never lists a key. On AWS it does, and payops relies on it:
    CreateKey takes no client token, so a key whose creation was cut off
    before its id reached the state file is found again by its tags (and
    adopted instead of left behind as an orphan). Ours answers moto's KMS
    questions from LocalStack's KMS store.
    """
    from types import SimpleNamespace

    from localstack.services.kms.models import kms_stores
    from localstack.services.moto import MotoFallbackDispatcher
    from localstack.services.resourcegroupstaggingapi.provider import ResourcegroupstaggingapiProvider
    from moto.resourcegroupstaggingapi.models import ResourceGroupsTaggingAPIBackend

    class NativeKmsView:
        """The two calls moto's tagging backend makes on a KMS backend."""

        def __init__(self, account_id: str, region: str):
            self._store = kms_stores[account_id][region]

        def list_keys(self):
            return [
                SimpleNamespace(id=key.metadata["KeyId"], arn=key.metadata["Arn"])
                for key in list(self._store.keys.values())
            ]

        def list_resource_tags(self, key_id: str) -> dict:
            key = self._store.keys.get(key_id)
            tags = self._store.tags.get_tags(key.metadata["Arn"]) if key is not None else {}
            return {"Tags": [{"TagKey": k, "TagValue": v} for k, v in tags.items()]}

    if not getattr(ResourceGroupsTaggingAPIBackend, "_payops_kms_patched", False):
        ResourceGroupsTaggingAPIBackend.kms_backend = property(
            lambda self: NativeKmsView(self.account_id, self.region_name)
        )
        ResourceGroupsTaggingAPIBackend._payops_kms_patched = True

    LOG.info("payops ext: serving resourcegroupstaggingapi from moto with LocalStack's KMS keys")
    return Service.for_provider(ResourcegroupstaggingapiProvider(), dispatch_table_factory=MotoFallbackDispatcher)


# Every API this package serves as moto passthrough; scripts/emulator and
# docker-compose.yml set PROVIDER_OVERRIDE_<API>=moto for each (and
# PROVIDER_OVERRIDE_<API>=payops for the patched native providers).
SERVICES = [
    "dynamodb",
    "dynamodbstreams",
    "lambda",
    "rds",
    "elbv2",
    "wafv2",
    "guardduty",
    "autoscaling",
    "apigatewayv2",
    "xray",
]


@aws_provider(api="ec2", name="payops")
def ec2():
    """LocalStack's own EC2 provider, with moto's EC2 (which serves most of
    it) honouring ``ClientToken`` as AWS does: a retried CreateNatGateway,
    CreateVpcEndpoint, CreateFlowLogs or CreateRouteTable whose first answer
    was lost returns what the first call made (see
    ``moto_patches.patch_ec2_client_tokens``)."""
    from localstack.services.ec2.provider import Ec2Provider
    from localstack.services.moto import MotoFallbackDispatcher

    from .moto_patches import patch_ec2_client_tokens

    patch_ec2_client_tokens()
    LOG.info("payops ext: serving ec2 from LocalStack's provider with client tokens honoured")
    return Service.for_provider(Ec2Provider(), dispatch_table_factory=MotoFallbackDispatcher)


@aws_provider(api="secretsmanager", name="payops")
def secretsmanager():
    """LocalStack's own Secrets Manager provider with RotateSecret fixed.

    In 4.14.0 RotateSecret with ``RotateImmediately=false`` (configure the
    schedule, rotate later: what payops does for a password it just
    generated) stores the rotation settings and then fails on an unbound
    ``new_version_id`` while building its answer. Ours answers with the
    secret's current version instead.
    """
    from localstack.services.moto import MotoFallbackDispatcher
    from localstack.services.secretsmanager.provider import SecretsmanagerProvider
    from localstack.utils.patch import patch
    from moto.secretsmanager.models import SecretsManagerBackend

    if not getattr(SecretsManagerBackend, "_payops_rotate_patched", False):

        @patch(SecretsManagerBackend.rotate_secret)
        def rotate_secret(fn, self, secret_id, *args, **kwargs):
            try:
                return fn(self, secret_id, *args, **kwargs)
            except UnboundLocalError:
                # Only reachable without an immediate rotation, after the
                # settings were stored.
                return self.secrets[secret_id].to_short_dict()

        SecretsManagerBackend._payops_rotate_patched = True

    LOG.info("payops ext: serving secretsmanager from LocalStack's provider with RotateSecret fixed")
    return Service.for_provider(SecretsmanagerProvider(), dispatch_table_factory=MotoFallbackDispatcher)


@aws_provider(api="events", name="payops")
def events():
    """LocalStack's own EventBridge provider with a bus's key and dead-letter
    queue kept, and UpdateEventBus.

    In 4.14.0 CreateEventBus drops ``KmsKeyIdentifier`` and
    ``DeadLetterConfig`` (DescribeEventBus answers neither) and UpdateEventBus
    is not implemented. payops encrypts the env's bus with the env's events
    key and gives it a dead-letter queue: it would see drift on every ``up``
    and fail repairing it. Ours records both settings per bus, answers them
    as AWS does, and lets UpdateEventBus set them (and the description), each
    call setting all of them as on AWS (one left out is reset). Nothing is
    encrypted: the settings are only remembered.
    """
    from localstack.aws.api import RequestContext, handler
    from localstack.services.events.provider import EventsProvider
    from localstack.services.events.utils import extract_event_bus_name

    class PayopsEventsProvider(EventsProvider):
        def __init__(self):
            super().__init__()
            # (account, region, bus name) -> the settings AWS would answer.
            self._payops_bus_settings: dict[tuple[str, str, str], dict] = {}

        def _payops_key(self, context: RequestContext, name) -> tuple[str, str, str]:
            return (context.account_id, context.region, extract_event_bus_name(name))

        def _payops_remember(self, context, name, kms_key_identifier, dead_letter_config):
            settings = {}
            if kms_key_identifier:
                settings["KmsKeyIdentifier"] = kms_key_identifier
            if dead_letter_config:
                settings["DeadLetterConfig"] = dead_letter_config
            self._payops_bus_settings[self._payops_key(context, name)] = settings

        @handler("CreateEventBus")
        def create_event_bus(
            self,
            context: RequestContext,
            name,
            event_source_name=None,
            description=None,
            kms_key_identifier=None,
            dead_letter_config=None,
            log_config=None,
            tags=None,
            **kwargs,
        ):
            response = super().create_event_bus(
                context,
                name,
                event_source_name=event_source_name,
                description=description,
                kms_key_identifier=kms_key_identifier,
                dead_letter_config=dead_letter_config,
                log_config=log_config,
                tags=tags,
                **kwargs,
            )
            self._payops_remember(context, name, kms_key_identifier, dead_letter_config)
            return response

        @handler("DescribeEventBus")
        def describe_event_bus(self, context: RequestContext, name=None, **kwargs):
            response = super().describe_event_bus(context, name, **kwargs)
            response.update(self._payops_bus_settings.get(self._payops_key(context, name or "default"), {}))
            return response

        @handler("UpdateEventBus")
        def update_event_bus(
            self,
            context: RequestContext,
            name=None,
            kms_key_identifier=None,
            description=None,
            dead_letter_config=None,
            log_config=None,
            **kwargs,
        ):
            name = name or "default"
            store = self.get_store(context.region, context.account_id)
            event_bus = self.get_event_bus(extract_event_bus_name(name), store)
            event_bus.description = description
            self._payops_remember(context, name, kms_key_identifier, dead_letter_config)
            response = {"Arn": event_bus.arn, "Name": event_bus.name}
            if description:
                response["Description"] = description
            response.update(self._payops_bus_settings[self._payops_key(context, name)])
            return response

        @handler("DeleteEventBus")
        def delete_event_bus(self, context: RequestContext, name, **kwargs):
            result = super().delete_event_bus(context, name, **kwargs)
            self._payops_bus_settings.pop(self._payops_key(context, name), None)
            return result

    LOG.info(
        "payops ext: serving events from LocalStack's provider with bus keys and dead-letter "
        "queues kept and UpdateEventBus"
    )
    return Service.for_provider(PayopsEventsProvider())
