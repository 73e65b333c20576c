"""Secrets Manager rotation of the Aurora PostgreSQL master password (the
env's master secret: JSON with username, password, engine, host, port,
dbname and dbClusterIdentifier, AWS's RDS credentials convention).

Shaped like AWS's single-user rotation templates, but with no database
driver (the zips ship none): the new password is set through the RDS API
(`ModifyDBCluster`, which RDS allows for the master user), and "testing" it
means waiting until the cluster reports the change applied. Secrets Manager
calls the four steps in order, retrying any that fails, so each step is
idempotent:

- createSecret: an AWSPENDING version (the request token) holding the current
  value with a new password, unless that version already exists.
- setSecret: the pending password becomes the cluster's master password.
- testSecret: waits until the cluster is `available` with no master password
  change pending; a timeout fails the step so Secrets Manager tries again.
- finishSecret: AWSCURRENT moves to the pending version (Secrets Manager
  moves AWSPREVIOUS to the old one).

Passwords and secret values are never logged, nor put in an exception
message: only step names, the secret's ARN, the token and the cluster id.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import boto3
from botocore.exceptions import ClientError

import payops_lib as lib

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"

# Characters a generated password never contains: RDS refuses `/`, `"`, `@`
# and space in a master password, and the rest break a
# `postgresql://user:password@host/db` URL or a shell. payops generates the
# first password with the same set (src/resources/db_secret.rs).
EXCLUDED_CHARACTERS = "\"'/@\\:?#[]%&+;=` "
PASSWORD_LENGTH = 32

# testSecret's wait: RDS applies a master password change within seconds to
# a couple of minutes. It stops this long before Lambda's timeout so the
# failure is ours (a clear message), not a killed invocation.
POLL_INTERVAL_SECONDS = 5
SAFETY_MARGIN_SECONDS = 15
# The wait when the context cannot tell the time left (not under Lambda).
DEFAULT_MAX_WAIT_SECONDS = 240

# Replaced in tests so that waiting takes no time.
_sleep: Callable[[float], None] = time.sleep
_monotonic: Callable[[], float] = time.monotonic

# One client per service per container, created on first use (region and
# endpoint from the environment, as boto3 reads them).
_clients: dict[str, Any] = {}


class RotationError(Exception):
    """A step that could not complete; Secrets Manager retries the rotation.
    The message names the secret or the cluster, never a value."""


def client(service: str) -> Any:
    if service not in _clients:
        _clients[service] = boto3.client(service)
    return _clients[service]


def reset_clients() -> None:
    """Forget the cached clients (tests)."""
    _clients.clear()


def _log(message: str, **fields: Any) -> None:
    # Not lib.log: its redaction drops fields named like "secret" or "token"
    # and masks the account id in an ARN as a card number. Only identifiers
    # are ever passed here.
    lib.LOG.info(json.dumps({"message": message, **fields}, default=str))


def _error_text(e: ClientError, password: str | None = None) -> str:
    """An AWS error's code and message, with the password scrubbed should a
    service ever echo it."""
    error = e.response.get("Error", {})
    text = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    if password:
        text = text.replace(password, "[redacted]")
    return text


# ----------------------------------------------------------------- entry


def handler(event: dict[str, Any], context: Any) -> None:
    try:
        arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    except (KeyError, TypeError):
        raise ValueError("the event must hold SecretId, ClientRequestToken and Step") from None
    _log("rotation step", step=step, arn=arn, version=token)
    if step not in STEPS:
        raise ValueError(f"unknown rotation step {step!r} for secret {arn}")

    secrets = client("secretsmanager")
    metadata = secrets.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        raise ValueError(f"secret {arn} does not have rotation enabled")
    versions = metadata.get("VersionIdsToStages", {})
    if token not in versions:
        raise ValueError(f"token {token} is not a version of secret {arn}")
    if CURRENT in versions[token]:
        # A retry after finishSecret succeeded: the rotation is done.
        _log("version already AWSCURRENT: nothing to do", step=step, arn=arn, version=token)
        return
    if PENDING not in versions[token]:
        raise ValueError(f"version {token} of secret {arn} is not AWSPENDING: not a rotation in progress")

    STEPS[step](secrets, arn, token, context)


# ----------------------------------------------------------------- secret values


def secret_dict(secrets: Any, arn: str, stage: str, token: str | None = None) -> dict[str, Any]:
    """A version's value, checked to be master credentials of a PostgreSQL
    cluster. Errors say what is wrong, never what the value holds."""
    kwargs = {"SecretId": arn, "VersionStage": stage}
    if token:
        kwargs["VersionId"] = token
    text = secrets.get_secret_value(**kwargs).get("SecretString")
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise ValueError(f"the {stage} version of secret {arn} does not hold JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"the {stage} version of secret {arn} does not hold a JSON object")
    for key in ("username", "password", "dbClusterIdentifier"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise ValueError(f"the {stage} version of secret {arn} lacks a string {key!r}")
    if value.get("engine", "postgres") != "postgres":
        raise ValueError(f"the {stage} version of secret {arn} is not for engine postgres")
    return value


def _pending_exists(secrets: Any, arn: str, token: str) -> bool:
    try:
        secrets.get_secret_value(SecretId=arn, VersionId=token, VersionStage=PENDING)
        return True
    except ClientError as e:
        # Secrets Manager created the version without a value when the
        # rotation started: that is "not yet".
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise


def new_password(secrets: Any) -> str:
    password = secrets.get_random_password(
        PasswordLength=PASSWORD_LENGTH, ExcludeCharacters=EXCLUDED_CHARACTERS
    )["RandomPassword"]
    # RDS would refuse some of them, and a URL would break on the others.
    if any(c in EXCLUDED_CHARACTERS for c in password):
        raise RotationError("GetRandomPassword returned an excluded character")
    return password


# ----------------------------------------------------------------- steps


def create_secret(secrets: Any, arn: str, token: str, context: Any) -> None:
    # The current value must exist and be usable before anything is made from it.
    current = secret_dict(secrets, arn, CURRENT)
    if _pending_exists(secrets, arn, token):
        _log("createSecret: pending version already exists", arn=arn, version=token)
        return
    pending = {**current, "password": new_password(secrets)}
    try:
        secrets.put_secret_value(
            SecretId=arn,
            ClientRequestToken=token,
            SecretString=json.dumps(pending),
            VersionStages=[PENDING],
        )
    except ClientError as e:
        raise RotationError(
            f"could not store the pending version {token} of secret {arn}: {_error_text(e, pending['password'])}"
        ) from None
    _log("createSecret: pending version stored", arn=arn, version=token, cluster=current["dbClusterIdentifier"])


def set_secret(secrets: Any, arn: str, token: str, context: Any) -> None:
    current = secret_dict(secrets, arn, CURRENT)
    pending = secret_dict(secrets, arn, PENDING, token)
    cluster = current["dbClusterIdentifier"]
    # Never set a password on another cluster, or for another user, than the
    # one the current credentials are for.
    if pending["dbClusterIdentifier"] != cluster:
        raise ValueError(
            f"the pending version {token} of secret {arn} names cluster "
            f"{pending['dbClusterIdentifier']!r}, the current one {cluster!r}: refusing to rotate"
        )
    if pending["username"] != current["username"]:
        raise ValueError(
            f"the pending version {token} of secret {arn} names another user than the current one: refusing to rotate"
        )
    password = pending["password"]
    # Setting the same password again (a retried rotation) is harmless.
    try:
        client("rds").modify_db_cluster(
            DBClusterIdentifier=cluster, MasterUserPassword=password, ApplyImmediately=True
        )
    except ClientError as e:
        raise RotationError(
            f"could not set the master password of cluster {cluster}: {_error_text(e, password)}"
        ) from None
    _log("setSecret: master password change requested", arn=arn, version=token, cluster=cluster)


def max_wait_seconds(context: Any) -> float:
    """How long testSecret may wait: the invocation's time left less a
    margin, else DEFAULT_MAX_WAIT_SECONDS."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        return max(0.0, remaining() / 1000 - SAFETY_MARGIN_SECONDS)
    return DEFAULT_MAX_WAIT_SECONDS


def _cluster_state(rds: Any, cluster: str) -> tuple[str, bool]:
    """(status, whether a master password change is still pending)."""
    found = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]
    pending = found.get("PendingModifiedValues") or {}
    return found.get("Status", "unknown"), "MasterUserPassword" in pending


def test_secret(secrets: Any, arn: str, token: str, context: Any) -> None:
    # No driver to log in with: the cluster reporting the change applied is
    # the test. The pending version names the cluster (it also exists, with
    # the current value, when Secrets Manager only tests the configuration).
    cluster = secret_dict(secrets, arn, PENDING, token)["dbClusterIdentifier"]
    rds = client("rds")
    started = _monotonic()
    deadline = started + max_wait_seconds(context)
    while True:
        status, password_pending = _cluster_state(rds, cluster)
        if status == "available" and not password_pending:
            _log("testSecret: cluster has applied the master password", arn=arn, version=token, cluster=cluster)
            return
        if _monotonic() + POLL_INTERVAL_SECONDS > deadline:
            raise RotationError(
                f"cluster {cluster} has not applied the new master password after "
                f"{_monotonic() - started:.0f} s (status {status}, password change "
                f"{'pending' if password_pending else 'not pending'}): the rotation of secret {arn} will be retried"
            )
        _log("testSecret: waiting for the cluster", arn=arn, cluster=cluster, status=status, passwordPending=password_pending)
        _sleep(POLL_INTERVAL_SECONDS)


def finish_secret(secrets: Any, arn: str, token: str, context: Any) -> None:
    versions = secrets.describe_secret(SecretId=arn).get("VersionIdsToStages", {})
    current = next((v for v, stages in versions.items() if CURRENT in stages), None)
    if current == token:
        _log("finishSecret: version already AWSCURRENT", arn=arn, version=token)
        return
    kwargs = {"SecretId": arn, "VersionStage": CURRENT, "MoveToVersionId": token}
    if current is not None:
        kwargs["RemoveFromVersionId"] = current
    secrets.update_secret_version_stage(**kwargs)
    _log("finishSecret: version is now AWSCURRENT", arn=arn, version=token, previous=current)


STEPS: dict[str, Callable[[Any, str, str, Any], None]] = {
    "createSecret": create_secret,
    "setSecret": set_secret,
    "testSecret": test_secret,
    "finishSecret": finish_secret,
}
