"""Start moto's server (``moto.server.main``) with payops' harness fixes.

Used by scripts/emulator instead of ``moto_server``; arguments are passed
through unchanged (``-H 127.0.0.1 -p 5055``). Set PAYOPS_MOTO_PATCHES=0 to run
plain moto.

Fix 1 -- S3 bucket-policy conditions (moto 5.2.5 bug).
    moto evaluates a bucket policy on object calls (Put/Get/Delete/DeleteObjects)
    but ignores the ``Condition`` block of its statements, so the standard
    ``Deny s3:* if aws:SecureTransport = false`` statement denies *every*
    object call with 403, over HTTP and HTTPS alike. Real AWS applies that
    statement only to plain-HTTP requests, and a deployment only ever talks
    HTTPS. The replacement below evaluates conditions against the request
    context a real deployment has (aws:SecureTransport = true); a statement
    whose condition uses any other key or operator is treated as not
    applicable (moto cannot evaluate it), so such a Deny does not apply here.

Fix 3 -- Lambda LoggingConfig/TracingConfig and API Gateway connectionId.
    Shared with the LocalStack extension (its Lambda is moto too): see
    localstack/ext/payops_localstack_ext/moto_patches.py, loaded by path.

Fix 2 -- S3 XML response roots (moto 5.2.5 bug).
    Responses moto builds with its generic serializer are wrapped in
    ``<OperationNameResponse>``; S3 names the root after the output shape
    (``<VersioningConfiguration>`` for GetBucketVersioning). boto3 does not
    look at the root element, the AWS SDK for Rust does and cannot parse the
    answer.
"""

from __future__ import annotations

import json
import os
import sys

# Request context a real (TLS) client presents; lower-cased keys.
ASSUMED_CONTEXT = {"aws:securetransport": "true"}


def _condition_holds(condition: dict) -> bool | None:
    """True/False when every condition can be evaluated, None otherwise."""
    for operator, pairs in condition.items():
        op = operator.split(":")[-1]  # drop ForAnyValue:/ForAllValues:
        op = op.removesuffix("IfExists")
        for key, expected in pairs.items():
            actual = ASSUMED_CONTEXT.get(key.lower())
            if actual is None:
                return None
            values = [str(v).lower() for v in (expected if isinstance(expected, list) else [expected])]
            if op in ("Bool", "StringEquals", "StringEqualsIgnoreCase"):
                ok = actual in values
            elif op in ("StringNotEquals", "StringNotEqualsIgnoreCase"):
                ok = actual not in values
            else:
                return None
            if not ok:
                return False
    return True


def _patch_s3_bucket_policy_conditions() -> None:
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self, action: str, resource: str):
        if self.policy is None:
            return PermissionResult.NEUTRAL
        doc = json.loads(self.policy.decode() if isinstance(self.policy, bytes) else self.policy)
        statements = doc.get("Statement", [])
        if isinstance(statements, dict):
            statements = [statements]
        result = PermissionResult.NEUTRAL
        for st in statements:
            if st.get("Condition"):
                if _condition_holds(st["Condition"]) is not True:
                    continue  # condition false, or not evaluable: statement does not apply
                st = {k: v for k, v in st.items() if k != "Condition"}
            r = IAMPolicyStatement(st).is_action_permitted(action, resource)
            if r == PermissionResult.DENIED:
                return PermissionResult.DENIED
            if r == PermissionResult.PERMITTED:
                result = PermissionResult.PERMITTED
        return result

    FakeBucket.get_permission = get_permission


# Root element S3 really uses, for the operations moto gets wrong.
S3_XML_ROOTS = {"GetBucketVersioning": "VersioningConfiguration"}


def _patch_s3_xml_roots() -> None:
    from moto.core.serialize import S3Serializer

    original = S3Serializer._serialized_result_to_response

    def serialized_result_to_response(self, resp, result, shape, serialized_result):
        resp = original(self, resp, result, shape, serialized_result)
        root = S3_XML_ROOTS.get(self.operation_model.name)
        body = resp.get("body")
        if root and isinstance(body, str):
            wrong = f"{self.operation_model.name}Response"
            resp["body"] = body.replace(f"<{wrong}", f"<{root}").replace(f"</{wrong}>", f"</{root}>")
        return resp

    S3Serializer._serialized_result_to_response = serialized_result_to_response


def _patch_ssm_describe_parameters_page_size() -> None:
    """SSM (moto 5.2): DescribeParameters answers 10 parameters a page
    whatever ``MaxResults`` says, where AWS takes 1-50 (payops asks for 50).
    An env's ~150 parameters then cost 15 pages instead of 3, which is not
    what a converged ``up`` costs on AWS (the read budget test counts it)."""
    from moto.core.responses import ActionResult
    from moto.ssm.exceptions import ValidationException
    from moto.ssm.responses import SimpleSystemManagerResponse

    def describe_parameters(self):
        page_size = self._get_param("MaxResults") or 10
        if not 1 <= int(page_size) <= 50:
            raise ValidationException(
                f"1 validation error detected: Value '{page_size}' at 'maxResults' failed to "
                "satisfy constraint: Member must have value less than or equal to 50"
            )
        page_size = int(page_size)
        token = self._get_param("NextToken")
        if hasattr(token, "strip"):
            token = token.strip()
        start = int(token or "0")
        result = self.ssm_backend.describe_parameters(
            self._get_param("Filters"), self._get_param("ParameterFilters")
        )
        page = result[start : start + page_size]
        response = {"Parameters": [p.describe_response_object(False) for p in page]}
        if start + page_size < len(result):
            response["NextToken"] = str(start + page_size)
        return ActionResult(response)

    SimpleSystemManagerResponse.describe_parameters = describe_parameters


def _patch_ssm_concurrent_deletes() -> None:
    """SSM (moto 5.2): a parameter deleted while another request reads it.

    moto's server answers requests on threads. DescribeParameters iterates
    the live parameter dict and looks each one up again by name (for its
    tags too); a DeleteParameters on another thread in between makes it fail
    with "dictionary changed size during iteration" (500), an IndexError
    (500), or InvalidResourceId (400, not retried): one env's ``down`` then
    fails because another env is being deleted. Worse, the failed lookup goes
    through a defaultdict and leaves an empty entry behind, on which every
    later lookup of that name fails. AWS lists what exists when it answers.
    The fix: iterate a snapshot, skip what went away meanwhile, and never
    leave an empty entry behind."""
    from moto.ssm.exceptions import InvalidResourceId
    from moto.ssm.models import SimpleSystemManagerBackend

    original_get = SimpleSystemManagerBackend.get_parameter
    original_match = SimpleSystemManagerBackend._match_filters
    original_describe = SimpleSystemManagerBackend.describe_parameters

    def get_parameter(self, name):
        try:
            return original_get(self, name)
        except IndexError:
            # Deleted between moto's membership test and its lookup, which
            # re-created the key with no versions: take that entry away.
            key = self._strip_parameter_arn(name).split(":")[0]
            if not dict.get(self._parameters, key, [None]):
                dict.pop(self._parameters, key, None)
            return None

    def match_filters(self, parameter, filters=None):
        if parameter is None:
            return False
        try:
            return original_match(self, parameter, filters)
        except InvalidResourceId:
            return False  # deleted while the filters were being applied

    def describe_parameters(self, filters, parameter_filters):
        if filters and parameter_filters:
            return original_describe(self, filters, parameter_filters)  # its ValidationException
        self._validate_parameter_filters(parameter_filters, by_path=False)
        result = []
        for name in list(dict.keys(self._parameters)):  # a snapshot of the names
            parameter = self.get_parameter(name)
            if parameter is None or not self._match_filters(parameter, parameter_filters):
                continue
            if filters and not any(_legacy_filter_matches(parameter, f) for f in filters):
                continue
            result.append(parameter)
        return result

    SimpleSystemManagerBackend.get_parameter = get_parameter
    SimpleSystemManagerBackend._match_filters = match_filters
    SimpleSystemManagerBackend.describe_parameters = describe_parameters


def _legacy_filter_matches(parameter, legacy_filter) -> bool:
    """DescribeParameters' old ``Filters`` (Name prefix, Type, KeyId), as moto matches them."""
    values = legacy_filter["Values"]
    key = legacy_filter["Key"]
    if key == "Name":
        return any(parameter.name.startswith(v) for v in values)
    if key == "Type":
        return parameter.parameter_type in values
    if key == "KeyId":
        return bool(parameter.keyid) and parameter.keyid in values
    return False


def _patch_tagging_concurrent_changes() -> None:
    """Resource Groups Tagging API (moto 5.2): GetResources while other
    requests create or delete resources.

    moto walks every service's live resource dicts lazily, and keeps the
    half-walked generator between pages (requests): a resource created or
    deleted meanwhile on another thread fails the call with "dictionary
    changed size during iteration" (500). payops' final sweep and `status`
    page through it while other envs converge. AWS answers from an index.
    The fix: walk everything at the first page into a list, again if a
    change interrupted the walk, and page through that list."""
    from moto.resourcegroupstaggingapi.models import ResourceGroupsTaggingAPIBackend

    original = ResourceGroupsTaggingAPIBackend._get_resources_generator

    def get_resources_generator(self, *args, **kwargs):
        for _ in range(50):
            try:
                return iter(list(original(self, *args, **kwargs)))
            except RuntimeError:
                continue  # a dict changed under the walk: walk again
        return iter(list(original(self, *args, **kwargs)))

    ResourceGroupsTaggingAPIBackend._get_resources_generator = get_resources_generator


def _patch_server_overheads() -> None:
    """Per-request costs of moto's server that are no part of emulating AWS.

    A profile of moto under the integration suite (py-spy, three tests)
    spent 14% of its CPU writing werkzeug's access-log line for every
    request, 9% generating an RSA-2048 private key for every KMS key created
    (moto makes one for symmetric keys too, used only by Sign/Verify/
    GetPublicKey), and 4% matching the request's host against every
    service's URL patterns. The suite is CPU-bound on 2 cores, so that is
    time every test waits. Access lines are kept for server errors (5xx);
    a key's RSA pair is made when first used; a host's backend is looked up
    once."""
    from moto.kms import models as kms_models
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from werkzeug.serving import WSGIRequestHandler

    original_log_request = WSGIRequestHandler.log_request

    def log_request(self, code="-", size="-"):
        if str(getattr(code, "value", code)).startswith("5"):
            original_log_request(self, code, size)

    WSGIRequestHandler.log_request = log_request

    generate = kms_models.generate_private_key

    class LazyPrivateKey:
        """The key pair moto would have generated, made on first use."""

        def __init__(self, key_spec):
            self._key_spec = key_spec
            self._key = None

        def __getattr__(self, attr):
            if self._key is None:
                self._key = generate(self._key_spec)
            return getattr(self._key, attr)

    kms_models.generate_private_key = LazyPrivateKey

    original_backend_for_host = DomainDispatcherApplication.get_backend_for_host
    backends_by_host = {}

    def get_backend_for_host(self, host):
        # Called under the dispatcher's lock; the patterns never change.
        if host not in backends_by_host:
            backends_by_host[host] = original_backend_for_host(self, host)
        return backends_by_host[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host


def _shared_moto_patches():
    """The fixes both emulators need, from the LocalStack extension's module
    (one copy; it imports only moto)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "localstack/ext/payops_localstack_ext/moto_patches.py"
    spec = importlib.util.spec_from_file_location("payops_moto_patches", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    if os.environ.get("PAYOPS_MOTO_PATCHES", "1") != "0":
        _patch_s3_bucket_policy_conditions()
        _patch_s3_xml_roots()
        _patch_ssm_describe_parameters_page_size()
        _patch_ssm_concurrent_deletes()
        _patch_server_overheads()
        _patch_tagging_concurrent_changes()
        shared = _shared_moto_patches()
        shared.patch_lambda_logging_and_tracing()
        shared.patch_lambda_one_mapping_per_source()
        shared.patch_apigateway_connection_id()
        shared.patch_rds_automated_snapshots()
        shared.patch_rds_cluster_already_exists()
        shared.patch_rds_engine_versions()
        shared.patch_logs_query_definitions()
        shared.patch_apigateway_tags()
        shared.patch_elbv2_private_link_enforcement()
        shared.patch_wafv2_associations()
        shared.patch_ec2_client_tokens()
        shared.patch_elbv2_listener_idempotency()
        shared.patch_elbv2_load_balancer_idempotency()
        shared.patch_rds_orderable_zones()
        shared.patch_rds_proxy()
        shared.patch_guardduty_one_detector()
        shared.patch_guardduty_publishing_destinations()
        shared.patch_events_test_event_pattern()
        shared.patch_xray_config()
        shared.patch_autoscaling_instance_refresh()
        shared.patch_route53_health_checks_and_references()
        shared.patch_config_rule_scope()
        print("payops: moto patches applied (PAYOPS_MOTO_PATCHES=0 to disable)", file=sys.stderr, flush=True)
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
