"""The schema migration and payment validation's customer lookup, against a
real PostgreSQL (pg_server.py) through the vendored pg8000, over verified TLS
with SCRAM passwords. IAM tokens cannot be checked by a plain PostgreSQL: the
token path is tested for its parameters with a stubbed RDS client."""

from __future__ import annotations

import itertools
import json
import ssl
from decimal import Decimal

import pytest
from moto import mock_aws

import boto3
import db_migration
import payment_validation
import payops_db as db
import pg_server
from conftest import ENV_PATH, payment


@pytest.fixture(scope="session")
def pg():
    server = pg_server.start_server()
    yield server
    pg_server.remove(server)


def tls(pg):
    return db.tls_context(cafile=str(pg.ca_file))


def connect(pg, database, user=pg_server.ADMIN, password=pg_server.ADMIN_PASSWORD):
    target = db.Target(host=pg.host, port=pg.port, database=database, user=user)
    return db.connect(target, lambda: password, tls(pg))


_names = itertools.count()


@pytest.fixture
def database(pg):
    """A new, empty database for one test."""
    name = f"payments_{next(_names)}"
    admin = connect(pg, "postgres")
    admin.run(f"CREATE DATABASE {name}")
    admin.close()
    yield name
    admin = connect(pg, "postgres")
    admin.run(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def master(pg, database):
    conn = connect(pg, database)
    yield conn
    conn.close()


# ----------------------------------------------------------------- migration


def test_a_migration_from_empty_creates_the_schema_and_a_read_only_role(pg, database, master):
    result = db_migration.migrate(master)
    assert result["schemaVersion"] == 3
    assert result["applied"] == [1, 2, 3]
    # Plain PostgreSQL has no rds_iam: skipped, and said.
    assert result["notes"] == ["rds_iam does not exist (not RDS): payops_app was not granted IAM login"]
    versions = master.run("SELECT version, description FROM schema_version ORDER BY version")
    assert [v for v, _ in versions] == [1, 2, 3]
    columns = master.run(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers' ORDER BY ordinal_position"
    )
    assert [c for (c,) in columns] == ["id", "status", "daily_limit", "updated_at", "limit_currency"]
    assert master.run("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'payops_app'") == [[True]]

    master.run("INSERT INTO customers (id, status, daily_limit) VALUES ('c1', 'ACTIVE', 10)")
    with pytest.raises(Exception, match="23514"):  # check_violation
        master.run("INSERT INTO customers (id, status, daily_limit) VALUES ('c2', 'FROZEN', 10)")

    # The app role reads customers and nothing else, and writes nothing.
    master.run(f"ALTER ROLE payops_app PASSWORD '{pg_server.APP_PASSWORD}'")
    app = connect(pg, database, user="payops_app", password=pg_server.APP_PASSWORD)
    try:
        assert app.run("SELECT id FROM customers") == [["c1"]]
        for sql in (
            "UPDATE customers SET status = 'CLOSED'",
            "INSERT INTO customers (id, status, daily_limit) VALUES ('x', 'ACTIVE', 1)",
            "SELECT * FROM schema_version",
            "SELECT * FROM app_credentials",
            "CREATE TABLE mine (x int)",
        ):
            with pytest.raises(Exception, match="42501"):  # insufficient_privilege
                app.run(sql)
    finally:
        app.close()


def test_a_second_run_is_a_no_op(master):
    db_migration.migrate(master)
    stamps = master.run("SELECT version, applied_at FROM schema_version ORDER BY version")
    again = db_migration.migrate(master)
    assert again == {"schemaVersion": 3, "applied": [], "notes": []}
    assert master.run("SELECT version, applied_at FROM schema_version ORDER BY version") == stamps


def test_a_database_at_v1_is_upgraded_to_the_latest_keeping_its_data(master, monkeypatch):
    monkeypatch.setattr(db_migration, "MIGRATIONS", db_migration.MIGRATIONS[:1])
    assert db_migration.migrate(master)["schemaVersion"] == 1
    master.run("INSERT INTO customers (id, status, daily_limit) VALUES ('old', 'ACTIVE', 250)")
    monkeypatch.undo()

    result = db_migration.migrate(master)
    assert result["applied"] == [2, 3] and result["schemaVersion"] == 3
    # Limits set before v2 were in USD.
    assert master.run("SELECT limit_currency, daily_limit FROM customers WHERE id = 'old'") == [
        ["USD", Decimal("250.00")]
    ]


def test_a_failed_migration_leaves_the_version_it_had(master, monkeypatch):
    broken = (db_migration.LATEST + 1, "broken", ["ALTER TABLE customers ADD COLUMN x int", "SELECT no_such_function()"])
    monkeypatch.setattr(db_migration, "MIGRATIONS", [*db_migration.MIGRATIONS, broken])
    with pytest.raises(Exception, match="42883"):  # undefined_function
        db_migration.migrate(master)
    assert master.run("SELECT max(version) FROM schema_version") == [[db_migration.LATEST]]
    # Its first statement was rolled back with it.
    assert not master.run("SELECT 1 FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'x'")


def test_the_versions_are_numbered_in_order_and_validation_reads_the_latest():
    versions = [v for v, _, _ in db_migration.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert db.REQUIRED_SCHEMA_VERSION == db_migration.LATEST


@pytest.fixture
def config(database):
    """The env's configuration as the functions read it (moto's SSM)."""
    with mock_aws():
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=f"{ENV_PATH}AllowedCurrencies", Value="USD,EUR,JPY", Type="String")
        ssm.put_parameter(Name=f"{ENV_PATH}DbProxyEndpoint", Value="127.0.0.1", Type="String")
        ssm.put_parameter(Name=f"{ENV_PATH}AuroraDatabaseName", Value=database, Type="String")
        ssm.put_parameter(Name=f"{ENV_PATH}DbSchemaVersion", Value=str(db_migration.LATEST), Type="String")
        yield ssm


def test_the_migration_function_connects_as_the_master_user_and_reports(pg, database, monkeypatch, context):
    monkeypatch.setattr(db_migration, "APP_LOGIN_PATIENCE_S", 0)
    used = []
    monkeypatch.setattr(db_migration, "tls_context", lambda: tls(pg))
    monkeypatch.setattr(
        db_migration, "password_provider", lambda target: used.append(target) or (lambda: pg_server.ADMIN_PASSWORD)
    )
    # What the db-schema step of `payops up` sends.
    event = {"targetVersion": db_migration.LATEST, "host": "127.0.0.1", "port": pg.port, "database": database, "user": "payops_admin"}
    result = db_migration.handler(event, context)
    assert result["migration"] == "payops"
    assert result["schemaVersion"] == 3 and result["applied"] == [1, 2, 3]
    assert used[0].user == "payops_admin" and used[0].host == "127.0.0.1" and used[0].database == database
    # payops_app has no login here (as through a proxy without credentials
    # for it): reported, so `up` keeps the lookup off.
    assert result["appLogin"]["ok"] is False
    assert "28P01" in result["appLogin"]["reason"], result["appLogin"]
    assert used[1].user == "payops_app"
    # A second invocation (a second `up` whose tag was lost) is a no-op.
    assert db_migration.handler(event, context)["applied"] == []


def test_the_migration_reports_a_working_app_login(pg, database, monkeypatch, context):
    monkeypatch.setattr(db_migration, "tls_context", lambda: tls(pg))
    passwords = {"payops_admin": pg_server.ADMIN_PASSWORD, "payops_app": pg_server.APP_PASSWORD}
    monkeypatch.setattr(db_migration, "password_provider", lambda target: lambda: passwords[target.user])
    admin = connect(pg, database)
    db_migration.migrate(admin)
    admin.run(f"ALTER ROLE payops_app PASSWORD '{pg_server.APP_PASSWORD}'")
    admin.close()
    event = {"targetVersion": db_migration.LATEST, "host": "127.0.0.1", "port": pg.port, "database": database, "user": "payops_admin"}
    assert db_migration.handler(event, context)["appLogin"] == {"ok": True}


def test_the_app_login_check_waits_a_moment_for_a_proxy_still_on_the_old_password(pg, database, monkeypatch):
    # The proxy may log in with what it read before the password was set:
    # refused at first, then accepted.
    admin = connect(pg, database)
    db_migration.migrate(admin)
    admin.run(f"ALTER ROLE payops_app PASSWORD '{pg_server.APP_PASSWORD}'")
    admin.close()
    tries = iter(["the-old-password", pg_server.APP_PASSWORD])
    monkeypatch.setattr(db_migration, "tls_context", lambda: tls(pg))
    monkeypatch.setattr(db_migration, "password_provider", lambda target: lambda: next(tries))
    slept = []
    monkeypatch.setattr(db_migration.time, "sleep", slept.append)
    target = db.Target(host="127.0.0.1", port=pg.port, database=database, user="payops_admin")
    assert db_migration.check_app_login(target) == {"ok": True}
    assert slept == [db_migration.APP_LOGIN_RETRY_S]
    # An unreachable database is not waited for.
    monkeypatch.setattr(db_migration, "password_provider", lambda target: lambda: "x")
    closed = db.Target(host="127.0.0.1", port=pg_server.free_port(), database=database, user="payops_admin")
    assert db_migration.check_app_login(closed)["reason"].startswith("database unreachable")
    assert slept == [db_migration.APP_LOGIN_RETRY_S]


def test_the_migration_function_refuses_a_target_it_does_not_migrate_to(context):
    with pytest.raises(ValueError, match=f"asked for schema version {db_migration.LATEST + 1}"):
        db_migration.handler({"targetVersion": db_migration.LATEST + 1, "host": "h"}, context)
    with pytest.raises(ValueError, match="no database host"):
        db_migration.handler({"targetVersion": db_migration.LATEST}, context)


# ----------------------------------------------------------------- payops_app's password
#
# The proxy logs in as payops_app with the password of payops/<env>/db-app
# (one secret per database user); the migration gives the database that
# password. Here the test plays the proxy: payops_app's login uses the
# secret's password.

SECRET_NAME = "payops/t1/db-app"


def app_secret(secretsmanager, password="Fr0m-The-Secret-1"):
    out = secretsmanager.create_secret(
        Name=SECRET_NAME,
        SecretString=json.dumps({"engine": "postgres", "username": "payops_app", "password": password}),
    )
    return out["ARN"], out["VersionId"]


def stored_password(master):
    return master.run("SELECT rolpassword FROM pg_authid WHERE rolname = 'payops_app'")[0][0]


@pytest.fixture
def as_the_proxy(pg, monkeypatch):
    """The migration's logins: the master with its password, payops_app with
    whatever the secret holds now (as the proxy, which reads AWSCURRENT)."""
    monkeypatch.setattr(db_migration, "tls_context", lambda: tls(pg))
    current = {}

    def provider(target):
        if target.user == "payops_app":
            return lambda: current["app"]
        return lambda: pg_server.ADMIN_PASSWORD

    monkeypatch.setattr(db_migration, "password_provider", provider)
    return current


def test_the_migration_sets_payops_apps_password_from_its_secret_and_a_second_run_sets_nothing(
    pg, database, master, as_the_proxy, context, capsys
):
    # Every statement of the migration's sessions is logged: the password
    # must not be among them (it goes as a SCRAM verifier).
    master.run(f"ALTER DATABASE {database} SET log_statement = 'all'")
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        arn, version = app_secret(secrets)
        as_the_proxy["app"] = "Fr0m-The-Secret-1"
        event = {
            "targetVersion": db_migration.LATEST,
            "host": "127.0.0.1",
            "port": pg.port,
            "database": database,
            "user": "payops_admin",
            "appSecretArn": arn,
        }
        result = db_migration.handler(event, context)
        assert result["appPassword"] == {"set": True, "secretVersion": version}
        assert result["appLogin"] == {"ok": True}
        # The password itself works, over TLS with SCRAM, as the proxy uses it.
        app = connect(pg, database, user="payops_app", password="Fr0m-The-Secret-1")
        assert app.run("SELECT count(*) FROM customers") == [[0]]
        app.close()
        verifier = stored_password(master)
        assert verifier.startswith("SCRAM-SHA-256$4096:")
        assert master.run("SELECT secret_version FROM app_credentials") == [[version]]

        # A second run: nothing applied, no password set (the verifier, with
        # its random salt, is the same one).
        again = db_migration.handler(event, context)
        assert again["applied"] == [] and again["appPassword"] == {"set": False, "secretVersion": version}
        assert again["appLogin"] == {"ok": True}
        assert stored_password(master) == verifier
    captured = capsys.readouterr()
    shown = json.dumps([result, again]) + captured.out + captured.err
    assert "Fr0m-The-Secret-1" not in shown
    log = pg.log()
    assert "ALTER ROLE payops_app WITH LOGIN PASSWORD 'SCRAM-SHA-256$" in log
    assert "Fr0m-The-Secret-1" not in log


def test_a_new_version_of_the_secret_replaces_the_password(pg, database, master, as_the_proxy, context):
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        arn, first = app_secret(secrets, password="First-Pa55word")
        as_the_proxy["app"] = "First-Pa55word"
        event = {"targetVersion": db_migration.LATEST, "host": "127.0.0.1", "port": pg.port,
                 "database": database, "user": "payops_admin", "appSecretArn": arn}
        assert db_migration.handler(event, context)["appPassword"]["set"] is True
        # An operator re-keys: put-secret-value, then `payops up`.
        second = secrets.put_secret_value(
            SecretId=arn, SecretString=json.dumps({"username": "payops_app", "password": "Second-Pa55word"})
        )["VersionId"]
        as_the_proxy["app"] = "Second-Pa55word"
        result = db_migration.handler(event, context)
        assert result["appPassword"] == {"set": True, "secretVersion": second} and second != first
        assert result["appLogin"] == {"ok": True}
    with pytest.raises(db.DatabaseUnavailable, match="28P01"):
        connect(pg, database, user="payops_app", password="First-Pa55word")


def test_a_secret_the_proxy_could_not_use_fails_the_run_before_any_change_and_never_shows_its_value(
    pg, database, master, as_the_proxy, context
):
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        arn = secrets.create_secret(Name=SECRET_NAME, SecretString='{"user": "x", "pass": "Hidden-Value-1"}')["ARN"]
        event = {"targetVersion": db_migration.LATEST, "host": "127.0.0.1", "port": pg.port,
                 "database": database, "user": "payops_admin", "appSecretArn": arn}
        with pytest.raises(ValueError) as refused:
            db_migration.handler(event, context)
        assert '"username" and "password"' in str(refused.value)
        assert "Hidden-Value-1" not in str(refused.value)
        other = secrets.create_secret(
            Name="payops/t1/other", SecretString=json.dumps({"username": "payops_admin", "password": "Hidden-Value-2"})
        )["ARN"]
        with pytest.raises(ValueError, match="another user") as refused:
            db_migration.handler({**event, "appSecretArn": other}, context)
        assert "Hidden-Value-2" not in str(refused.value)
    # Nothing was migrated.
    assert not master.run("SELECT 1 FROM pg_tables WHERE tablename = 'schema_version'")


@pytest.fixture
def rds_iam(master):
    """Aurora's `rds_iam` role, on the plain PostgreSQL (roles are the
    server's, not one database's: removed again after the test)."""
    master.run("CREATE ROLE rds_iam NOLOGIN")
    yield
    master.run("DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payops_app') THEN REVOKE rds_iam FROM payops_app; END IF; END $$")
    master.run("DROP ROLE rds_iam")


def in_rds_iam(master):
    return master.run(
        """SELECT count(*) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
           JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = 'rds_iam' AND u.rolname = 'payops_app'"""
    ) == [[1]]


def test_a_database_where_payops_app_was_in_rds_iam_is_migrated_out_of_it(master, rds_iam, monkeypatch):
    # As an older payops left an Aurora database: v1 granted rds_iam, with
    # which Aurora refuses payops_app's password (the proxy's login).
    monkeypatch.setattr(db_migration, "MIGRATIONS", db_migration.MIGRATIONS[:2])
    first = db_migration.migrate(master)
    assert first["notes"] == [] and in_rds_iam(master)
    monkeypatch.undo()

    result = db_migration.migrate(master)
    assert result["applied"] == [3]
    assert not in_rds_iam(master)
    # And a second run is a no-op.
    assert db_migration.migrate(master) == {"schemaVersion": 3, "applied": [], "notes": []}
    assert not in_rds_iam(master)


def test_the_verifier_is_postgresqls_scram_format_with_a_fresh_salt():
    one, two = db_migration.scram_verifier("pw"), db_migration.scram_verifier("pw")
    assert db_migration._VERIFIER.fullmatch(one) and one != two


# ----------------------------------------------------------------- customer lookup


@pytest.fixture
def customers(pg, database, master, config, monkeypatch):
    """A migrated database with customers, and validation pointed at it as
    payops_app with a password (the proxy's IAM token in production)."""
    db_migration.migrate(master)
    master.run(f"ALTER ROLE payops_app PASSWORD '{pg_server.APP_PASSWORD}'")
    master.run(
        """INSERT INTO customers (id, status, daily_limit, limit_currency) VALUES
            ('cust-1', 'ACTIVE', 1000, 'USD'),
            ('cust-eur', 'ACTIVE', 1000, 'EUR'),
            ('cust-suspended', 'SUSPENDED', 1000, 'USD'),
            ('cust-closed', 'CLOSED', 1000, 'USD')"""
    )
    monkeypatch.setattr(db, "DEFAULT_PORT", pg.port)
    monkeypatch.setattr(payment_validation, "tls_context", lambda: tls(pg))
    users = []

    def provider(target):
        users.append(target.user)
        return lambda: pg_server.APP_PASSWORD

    monkeypatch.setattr(payment_validation, "password_provider", provider)
    return users


def validate(context, **overrides):
    answer = payment_validation.handler({"body": json.dumps(payment(**overrides))}, context)
    return answer["statusCode"], json.loads(answer["body"])


def test_an_active_customer_within_the_limit_is_valid(customers, context):
    assert validate(context) == (200, {"valid": True, "transactionId": "tx-1", "customerChecked": True})
    assert validate(context, amount=1000) == (200, {"valid": True, "transactionId": "tx-1", "customerChecked": True})
    # As the application user, never the master.
    assert set(customers) == {"payops_app"}


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"customerId": "nobody"}, "UNKNOWN_CUSTOMER"),
        ({"customerId": "cust-suspended"}, "CUSTOMER_SUSPENDED"),
        ({"customerId": "cust-closed"}, "CUSTOMER_SUSPENDED"),
        ({"amount": 1000.01}, "DAILY_LIMIT_EXCEEDED"),
        ({"customerId": "cust-eur", "currency": "USD"}, "LIMIT_CURRENCY_MISMATCH"),
    ],
)
def test_customer_rules_reject_with_a_reason(customers, context, overrides, reason):
    assert validate(context, **overrides) == (400, {"valid": False, "reason": reason})


def test_payment_rules_are_checked_before_the_database_is_asked(customers, context):
    status, body = validate(context, customerId="nobody", cardNumber="4111111111111112")
    assert status == 400 and "Luhn" in body["reason"]
    assert customers == []


def test_one_connection_serves_a_container_and_a_dropped_one_is_replaced(pg, customers, context, master):
    assert validate(context)[0] == 200
    assert validate(context)[0] == 200
    assert customers == ["payops_app"]
    # The proxy or the database closes it (failover, idle timeout).
    master.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'payops_app'")
    assert validate(context)[0] == 200
    assert customers == ["payops_app", "payops_app"]


def test_an_unreachable_database_fails_clearly_and_never_validates(customers, context, monkeypatch):
    monkeypatch.setattr(db, "DEFAULT_PORT", pg_server.free_port())
    status, body = validate(context)
    assert status == 503
    assert body == {"valid": False, "reason": "DATABASE_UNAVAILABLE", "detail": "database unreachable (InterfaceError)"}


def test_a_database_that_goes_away_fails_clearly(pg, customers, context):
    assert validate(context)[0] == 200
    pg.stop()
    try:
        status, body = validate(context)
    finally:
        pg.start()
    assert status == 503 and body["reason"] == "DATABASE_UNAVAILABLE"


def test_a_refused_login_is_unavailable_and_names_only_the_sqlstate(customers, context, monkeypatch):
    monkeypatch.setattr(payment_validation, "password_provider", lambda target: (lambda: "wrong"))
    status, body = validate(context)
    assert status == 503
    assert body["detail"] == "database refused the connection (28P01)"


def test_a_certificate_the_trust_store_does_not_vouch_for_is_refused(customers, context, monkeypatch):
    # The system trust store does not know the test CA: as a stranger's
    # server would, the connection fails rather than going on unverified.
    monkeypatch.setattr(payment_validation, "tls_context", db.tls_context)
    status, body = validate(context)
    assert status == 503 and body["reason"] == "DATABASE_UNAVAILABLE"


def test_connections_demand_a_verifying_tls_context(pg, database):
    target = db.Target(host=pg.host, port=pg.port, database=database, user=pg_server.ADMIN)
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    for ctx in (None, unverified):
        with pytest.raises(ValueError, match="verifying"):
            db.connect(target, lambda: pg_server.ADMIN_PASSWORD, ctx)


def test_the_server_refuses_plaintext_as_the_proxy_does(pg, database):
    import pg8000.native

    with pytest.raises(Exception, match="28000"):  # pg_hba: hostnossl reject
        pg8000.native.Connection(
            pg_server.ADMIN, host=pg.host, port=pg.port, database=database,
            password=pg_server.ADMIN_PASSWORD, ssl_context=False,
        )


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        # The proxy exists but no migration has recorded a schema yet.
        {"DbProxyEndpoint": "proxy.example"},
        {"DbProxyEndpoint": "", "DbSchemaVersion": "2"},
    ],
)
def test_without_a_migrated_database_the_customer_is_not_checked_and_the_answer_says_so(context, parameters):
    with mock_aws():
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=f"{ENV_PATH}AllowedCurrencies", Value="USD", Type="String")
        for name, value in parameters.items():
            if value:
                ssm.put_parameter(Name=f"{ENV_PATH}{name}", Value=value, Type="String")
        assert validate(context, customerId="nobody") == (
            200,
            {"valid": True, "transactionId": "tx-1", "customerChecked": False},
        )


# ----------------------------------------------------------------- IAM tokens


class StubRds:
    def __init__(self):
        self.calls = []

    def generate_db_auth_token(self, **kwargs):
        self.calls.append(kwargs)
        return f"token-{len(self.calls)}"


def test_the_token_names_the_proxy_host_port_user_and_region():
    stub = StubRds()
    target = db.Target(host="payops-pr1-db-proxy.proxy-abc.us-east-1.rds.amazonaws.com")
    provider = db.iam_token_provider(target, region="us-east-1", client=stub)
    # A fresh token per connection: they expire after 15 minutes.
    assert [provider(), provider()] == ["token-1", "token-2"]
    assert stub.calls[0] == {
        "DBHostname": "payops-pr1-db-proxy.proxy-abc.us-east-1.rds.amazonaws.com",
        "Port": 5432,
        "DBUsername": "payops_app",
        "Region": "us-east-1",
    }


def test_validation_signs_tokens_with_the_rds_client_of_its_region(monkeypatch):
    stub = StubRds()
    clients = []
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setattr(boto3, "client", lambda service, **kw: clients.append((service, kw)) or stub)
    target = payment_validation.database_target(
        {"DbProxyEndpoint": "proxy.example", "AuroraDatabaseName": "payments", "DbSchemaVersion": "2"}
    )
    assert payment_validation.password_provider(target)() == "token-1"
    assert clients == [("rds", {"region_name": "eu-west-1"})]
    assert stub.calls[0]["DBUsername"] == "payops_app" and stub.calls[0]["Region"] == "eu-west-1"
    # And production verifies against the system trust store (the proxy's
    # ACM certificate chains to Amazon's public roots).
    ctx = payment_validation.tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
