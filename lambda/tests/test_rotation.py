"""The master secret's rotation function, step by step and end to end, with
Secrets Manager in moto. RDS is moto's too, behind a spy recording what was
asked of it; a scripted fake plays a cluster that is still applying the
password (moto applies every change at once).

A rotation is started the way Secrets Manager starts one: `rotate_secret`
(with a rotation function and a schedule) enables rotation and creates the
token's version, labelled AWSPENDING and without a value. The function is a
moto Lambda without docker, whose invocations do nothing, so each test calls
the steps itself. (Without a RotationLambdaARN moto would instead label the
empty version AWSCURRENT at once.)
"""

import io
import json
import logging
import re
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

import secret_rotation as rotation

CLUSTER = "payops-t1-db"
USERNAME = "payops_admin"
OLD_PASSWORD = "Old-password-0123456789-abcdefgh"


def credentials(**overrides):
    value = {
        "engine": "postgres",
        "username": USERNAME,
        "password": OLD_PASSWORD,
        "host": f"{CLUSTER}.cluster-abc.us-east-1.rds.amazonaws.com",
        "port": 5432,
        "dbname": "payops",
        "dbClusterIdentifier": CLUSTER,
    }
    value.update(overrides)
    return value


class RdsSpy:
    """moto's RDS client, recording every modify_db_cluster."""

    def __init__(self, real):
        self.real = real
        self.modified = []

    def modify_db_cluster(self, **kwargs):
        self.modified.append(kwargs)
        return self.real.modify_db_cluster(**kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


class ScriptedRds:
    """A cluster going through `states`, (status, password pending?), one per
    describe; the last one stays."""

    def __init__(self, states):
        self.states = list(states)
        self.described = 0

    def describe_db_clusters(self, DBClusterIdentifier):
        status, pending = self.states[min(self.described, len(self.states) - 1)]
        self.described += 1
        cluster = {"DBClusterIdentifier": DBClusterIdentifier, "Status": status, "PendingModifiedValues": {}}
        if pending:
            cluster["PendingModifiedValues"]["MasterUserPassword"] = "****"
        return {"DBClusters": [cluster]}


class Clock:
    """Time that passes only when the function sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class LambdaContext:
    aws_request_id = "req-1"

    def __init__(self, remaining_ms):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self):
        return self.remaining_ms


class Env:
    def __init__(self, secrets, rds, arn, first_version, clock, function):
        self.secrets = secrets
        self.function = function
        self.rds = rds
        self.arn = arn
        self.first_version = first_version
        self.clock = clock

    def start_rotation(self, **kwargs):
        """What Secrets Manager does before calling the function: returns the token."""
        token = str(uuid.uuid4())
        self.secrets.rotate_secret(
            SecretId=self.arn,
            ClientRequestToken=token,
            RotationLambdaARN=self.function,
            RotationRules={"AutomaticallyAfterDays": 30},
            **kwargs,
        )
        return token

    def step(self, step, token, context=None):
        return rotation.handler({"SecretId": self.arn, "ClientRequestToken": token, "Step": step}, context)

    def stages(self):
        return self.secrets.describe_secret(SecretId=self.arn)["VersionIdsToStages"]

    def value(self, stage, token=None):
        kwargs = {"SecretId": self.arn, "VersionStage": stage}
        if token:
            kwargs["VersionId"] = token
        return json.loads(self.secrets.get_secret_value(**kwargs)["SecretString"])

    def passwords(self):
        """Every password any version holds."""
        out = set()
        for version in self.secrets.list_secret_version_ids(SecretId=self.arn)["Versions"]:
            try:
                value = self.secrets.get_secret_value(SecretId=self.arn, VersionId=version["VersionId"])
            except self.secrets.exceptions.ResourceNotFoundException:
                continue  # a rotation's version not created yet
            out.add(json.loads(value["SecretString"])["password"])
        return out


def rotation_function():
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    role = boto3.client("iam").create_role(RoleName="rotation", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("secret_rotation.py", Path(rotation.__file__).read_text())
    return boto3.client("lambda").create_function(
        FunctionName="payops-t1-secret-rotation",
        Runtime="python3.12",
        Role=role,
        Handler="secret_rotation.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]


@pytest.fixture
def env(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="payops")
    rotation.reset_clients()
    clock = Clock()
    monkeypatch.setattr(rotation, "_sleep", clock.sleep)
    monkeypatch.setattr(rotation, "_monotonic", clock.monotonic)
    # Lambda without docker: an invocation returns at once and runs nothing.
    with mock_aws(config={"lambda": {"use_docker": False}}):
        function = rotation_function()
        rds = boto3.client("rds")
        rds.create_db_cluster(
            DBClusterIdentifier=CLUSTER,
            Engine="aurora-postgresql",
            MasterUsername=USERNAME,
            MasterUserPassword=OLD_PASSWORD,
        )
        secrets = boto3.client("secretsmanager")
        created = secrets.create_secret(Name="payops-t1-db-master", SecretString=json.dumps(credentials()))
        spy = RdsSpy(rds)
        monkeypatch.setitem(rotation._clients, "rds", spy)
        e = Env(secrets, spy, created["ARN"], created["VersionId"], clock, function)
        yield e
        # Whatever the test did, no log line holds a password.
        passwords = e.passwords() | {OLD_PASSWORD} | {m["MasterUserPassword"] for m in spy.modified}
        # (In teardown caplog.records holds only teardown's records.)
        records = caplog.get_records("setup") + caplog.get_records("call")
        for record in records:
            text = record.getMessage()
            assert not any(p in text for p in passwords), text
    rotation.reset_clients()


def rotate(env, token, context=None):
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        env.step(step, token, context)


# ----------------------------------------------------------------- createSecret


def test_create_stores_a_pending_version_with_a_new_password(env, context):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    pending = env.value("AWSPENDING", token)
    assert pending["password"] != OLD_PASSWORD
    assert len(pending["password"]) == rotation.PASSWORD_LENGTH
    assert pending == credentials(password=pending["password"])
    # Nothing else changes: the current version is untouched, RDS is not called.
    assert env.value("AWSCURRENT") == credentials()
    assert env.stages()[env.first_version] == ["AWSCURRENT"]
    assert env.stages()[token] == ["AWSPENDING"]
    assert env.rds.modified == []


def test_create_twice_with_the_same_token_makes_one_version(env, context):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    first = env.value("AWSPENDING", token)["password"]
    env.step("createSecret", token, context)
    assert env.value("AWSPENDING", token)["password"] == first
    versions = env.secrets.list_secret_version_ids(SecretId=env.arn)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted([env.first_version, token])


def test_generated_passwords_exclude_every_excluded_character(env):
    secrets = rotation.client("secretsmanager")
    passwords = [rotation.new_password(secrets) for _ in range(50)]
    for password in passwords:
        assert len(password) == rotation.PASSWORD_LENGTH
        assert not set(password) & set(rotation.EXCLUDED_CHARACTERS), password
    # Punctuation that is allowed still occurs: the exclusion is not "no punctuation".
    assert any(not c.isalnum() for p in passwords for c in p)


def test_excluded_characters_are_the_agreed_set():
    assert set(rotation.EXCLUDED_CHARACTERS) == set("\"'/@\\:?#[]%&+;=` ")
    assert len(rotation.EXCLUDED_CHARACTERS) == 17


def test_excluded_characters_match_the_first_password_payops_generates():
    # src/resources/db_secret.rs generates the first password with its own copy.
    source = Path(__file__).resolve().parents[2] / "src" / "resources" / "db_secret.rs"
    if not source.exists():
        pytest.skip("no Rust source next to the handlers")
    found = re.search(r'pub const EXCLUDED_CHARACTERS: &str = "((?:[^"\\]|\\.)*)";', source.read_text())
    assert found, "EXCLUDED_CHARACTERS not found in db_secret.rs"
    rust = re.sub(r"\\(.)", r"\1", found.group(1))
    assert rust == rotation.EXCLUDED_CHARACTERS


# ----------------------------------------------------------------- setSecret


def test_set_changes_the_clusters_master_password(env, context):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    env.step("setSecret", token, context)
    new = env.value("AWSPENDING", token)["password"]
    assert env.rds.modified == [{"DBClusterIdentifier": CLUSTER, "MasterUserPassword": new, "ApplyImmediately": True}]
    # The secret's labels do not move before finishSecret.
    assert env.value("AWSCURRENT")["password"] == OLD_PASSWORD


@pytest.mark.parametrize("field,other", [("dbClusterIdentifier", "someone-elses-db"), ("username", "intruder")])
def test_set_refuses_a_pending_version_for_another_cluster_or_user(env, context, field, other):
    token = env.start_rotation()
    env.secrets.put_secret_value(
        SecretId=env.arn,
        ClientRequestToken=token,
        SecretString=json.dumps(credentials(password="Pending-password-0123456789abcd", **{field: other})),
        VersionStages=["AWSPENDING"],
    )
    with pytest.raises(ValueError, match="refusing to rotate") as error:
        env.step("setSecret", token, context)
    assert "Pending-password" not in str(error.value)
    assert env.rds.modified == []


# ----------------------------------------------------------------- testSecret


def test_test_passes_when_the_cluster_has_applied_the_password(env, context):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    env.step("setSecret", token, context)
    env.step("testSecret", token, context)
    assert env.clock.sleeps == []


def test_test_waits_while_the_password_change_is_pending(env, context, monkeypatch):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    fake = ScriptedRds([("resetting-master-credentials", True), ("available", True), ("available", False)])
    monkeypatch.setitem(rotation._clients, "rds", fake)
    env.step("testSecret", token, LambdaContext(remaining_ms=300_000))
    assert fake.described == 3
    assert env.clock.sleeps == [rotation.POLL_INTERVAL_SECONDS] * 2


def test_test_waits_while_the_cluster_is_not_available(env, context, monkeypatch):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    fake = ScriptedRds([("modifying", False), ("available", False)])
    monkeypatch.setitem(rotation._clients, "rds", fake)
    env.step("testSecret", token, context)
    assert fake.described == 2


def test_test_times_out_before_lambda_does_without_naming_the_password(env, monkeypatch):
    token = env.start_rotation()
    env.step("createSecret", token, None)
    new = env.value("AWSPENDING", token)["password"]
    fake = ScriptedRds([("resetting-master-credentials", True)])
    monkeypatch.setitem(rotation._clients, "rds", fake)
    context = LambdaContext(remaining_ms=60_000)
    with pytest.raises(rotation.RotationError, match=f"cluster {CLUSTER} has not applied") as error:
        env.step("testSecret", token, context)
    message = str(error.value)
    assert new not in message and OLD_PASSWORD not in message
    waited = sum(env.clock.sleeps)
    assert 0 < waited <= 60 - rotation.SAFETY_MARGIN_SECONDS
    assert waited > 60 - rotation.SAFETY_MARGIN_SECONDS - 2 * rotation.POLL_INTERVAL_SECONDS
    # The secret is left for Secrets Manager to retry: nothing moved.
    assert env.stages()[token] == ["AWSPENDING"]


def test_test_without_a_lambda_context_waits_the_default_time(env, context, monkeypatch):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    monkeypatch.setitem(rotation._clients, "rds", ScriptedRds([("available", True)]))
    with pytest.raises(rotation.RotationError):
        env.step("testSecret", token, context)
    assert rotation.DEFAULT_MAX_WAIT_SECONDS - rotation.POLL_INTERVAL_SECONDS <= sum(env.clock.sleeps)
    assert sum(env.clock.sleeps) <= rotation.DEFAULT_MAX_WAIT_SECONDS


def test_test_when_secrets_manager_only_tests_the_configuration(env, context):
    # RotateImmediately=false: Secrets Manager makes an AWSPENDING copy of the
    # current value and calls testSecret alone.
    token = env.start_rotation(RotateImmediately=False)
    env.step("testSecret", token, context)
    assert env.rds.modified == []


# ----------------------------------------------------------------- finishSecret


def test_finish_makes_the_pending_version_current(env, context):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    env.step("finishSecret", token, context)
    stages = env.stages()
    assert "AWSCURRENT" in stages[token]
    assert stages[env.first_version] == ["AWSPREVIOUS"]


# ----------------------------------------------------------------- whole rotations


def test_a_full_rotation_sets_and_publishes_the_new_password(env, context):
    token = env.start_rotation()
    rotate(env, token, context)
    new = env.value("AWSCURRENT")["password"]
    assert new != OLD_PASSWORD
    assert env.value("AWSCURRENT") == credentials(password=new)
    assert env.value("AWSPREVIOUS")["password"] == OLD_PASSWORD
    assert "AWSCURRENT" in env.stages()[token]
    assert env.rds.modified == [{"DBClusterIdentifier": CLUSTER, "MasterUserPassword": new, "ApplyImmediately": True}]


def test_a_second_rotation_moves_previous_along(env, context):
    first = env.start_rotation()
    rotate(env, first, context)
    # What Secrets Manager does once finishSecret succeeded (moto does not).
    env.secrets.update_secret_version_stage(SecretId=env.arn, VersionStage="AWSPENDING", RemoveFromVersionId=first)
    second = env.start_rotation()
    rotate(env, second, context)
    stages = env.stages()
    assert "AWSCURRENT" in stages[second]
    assert stages[first] == ["AWSPREVIOUS"]
    assert stages[env.first_version] == []
    passwords = [m["MasterUserPassword"] for m in env.rds.modified]
    assert len(set(passwords + [OLD_PASSWORD])) == 3
    assert passwords[-1] == env.value("AWSCURRENT")["password"]
    assert env.value("AWSPREVIOUS")["password"] == passwords[0]


def test_a_half_finished_rotation_completes_when_retried_from_the_start(env, context):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    env.step("setSecret", token, context)
    # The function died here; Secrets Manager retries the whole rotation.
    rotate(env, token, context)
    new = env.value("AWSPENDING", token)["password"]
    assert env.value("AWSCURRENT")["password"] == new
    assert env.value("AWSPREVIOUS")["password"] == OLD_PASSWORD
    # The same password, set twice: harmless.
    assert [m["MasterUserPassword"] for m in env.rds.modified] == [new, new]


def test_a_half_finished_rotation_completes_from_test_and_finish(env, context):
    token = env.start_rotation()
    env.step("createSecret", token, context)
    env.step("setSecret", token, context)
    env.step("testSecret", token, context)
    env.step("finishSecret", token, context)
    assert env.value("AWSCURRENT")["password"] == env.rds.modified[0]["MasterUserPassword"]
    assert env.value("AWSPREVIOUS")["password"] == OLD_PASSWORD


# ----------------------------------------------------------------- the entry checks


def test_a_token_already_current_changes_nothing(env, context):
    env.start_rotation()
    before = env.stages()
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        assert env.step(step, env.first_version, context) is None
    assert env.stages() == before
    assert env.value("AWSCURRENT") == credentials()
    assert env.rds.modified == []


def test_finish_retried_after_success_changes_nothing(env, context):
    token = env.start_rotation()
    rotate(env, token, context)
    before = env.stages()
    env.step("finishSecret", token, context)
    assert env.stages() == before


def test_a_token_that_is_not_a_version_is_refused(env, context):
    env.start_rotation()
    stranger = str(uuid.uuid4())
    with pytest.raises(ValueError, match="is not a version"):
        env.step("createSecret", stranger, context)
    assert stranger not in env.stages()


def test_a_token_not_pending_is_refused(env, context):
    token = env.start_rotation()
    other = str(uuid.uuid4())
    env.secrets.put_secret_value(
        SecretId=env.arn, ClientRequestToken=other, SecretString=json.dumps(credentials()), VersionStages=["MANUAL"]
    )
    with pytest.raises(ValueError, match="is not AWSPENDING"):
        env.step("setSecret", other, context)
    assert env.stages()[token] == ["AWSPENDING"]
    assert env.rds.modified == []


def test_rotation_disabled_is_refused(env, context):
    token = str(uuid.uuid4())
    env.secrets.put_secret_value(
        SecretId=env.arn,
        ClientRequestToken=token,
        SecretString=json.dumps(credentials(password="Pending-password-0123456789abcd")),
        VersionStages=["AWSPENDING"],
    )
    assert not env.secrets.describe_secret(SecretId=env.arn).get("RotationEnabled")
    for step in ("createSecret", "setSecret", "finishSecret"):
        with pytest.raises(ValueError, match="does not have rotation enabled"):
            env.step(step, token, context)
    assert env.rds.modified == []
    assert env.value("AWSCURRENT") == credentials()


def test_an_unknown_step_is_refused(env, context):
    token = env.start_rotation()
    with pytest.raises(ValueError, match="unknown rotation step"):
        env.step("deleteSecret", token, context)


def test_an_event_without_the_fields_is_refused(env, context):
    with pytest.raises(ValueError, match="SecretId, ClientRequestToken and Step"):
        rotation.handler({"Step": "createSecret"}, context)


# ----------------------------------------------------------------- logging


def test_logs_name_the_step_secret_token_and_cluster_never_a_password(env, context, caplog):
    token = env.start_rotation()
    rotate(env, token, context)
    new = env.value("AWSCURRENT")["password"]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for expected in ("createSecret", "setSecret", "testSecret", "finishSecret", env.arn, token, CLUSTER):
        assert expected in text
    assert new not in text and OLD_PASSWORD not in text
