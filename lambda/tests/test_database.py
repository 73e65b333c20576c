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
    assert result["schemaVersion"] == 2
    assert result["applied"] == [1, 2]
    # Plain PostgreSQL has no rds_iam: skipped, and said.
    assert result["notes"] == ["rds_iam does not exist (not RDS): payops_app was not granted IAM login"]
    versions = master.run("SELECT version, description FROM schema_version ORDER BY version")
    assert [v for v, _ in versions] == [1, 2]
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
    assert again == {"schemaVersion": 2, "applied": [], "notes": []}
    assert master.run("SELECT version, applied_at FROM schema_version ORDER BY version") == stamps


def test_a_database_at_v1_is_upgraded_to_v2_keeping_its_data(master, monkeypatch):
    monkeypatch.setattr(db_migration, "MIGRATIONS", db_migration.MIGRATIONS[:1])
    assert db_migration.migrate(master)["schemaVersion"] == 1
    master.run("INSERT INTO customers (id, status, daily_limit) VALUES ('old', 'ACTIVE', 250)")
    monkeypatch.undo()

    result = db_migration.migrate(master)
    assert result["applied"] == [2] and result["schemaVersion"] == 2
    # Limits set before v2 were in USD.
    assert master.run("SELECT limit_currency, daily_limit FROM customers WHERE id = 'old'") == [
        ["USD", Decimal("250.00")]
    ]


def test_a_failed_migration_leaves_the_version_it_had(master, monkeypatch):
    broken = (3, "broken", ["ALTER TABLE customers ADD COLUMN x int", "SELECT no_such_function()"])
    monkeypatch.setattr(db_migration, "MIGRATIONS", [*db_migration.MIGRATIONS, broken])
    with pytest.raises(Exception, match="42883"):  # undefined_function
        db_migration.migrate(master)
    assert master.run("SELECT max(version) FROM schema_version") == [[2]]
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
        ssm.put_parameter(Name=f"{ENV_PATH}DbSchemaVersion", Value="2", Type="String")
        yield ssm


def test_the_migration_function_connects_as_the_master_user_and_reports(pg, database, monkeypatch, context):
    used = []
    monkeypatch.setattr(db_migration, "tls_context", lambda: tls(pg))
    monkeypatch.setattr(
        db_migration, "password_provider", lambda target: used.append(target) or (lambda: pg_server.ADMIN_PASSWORD)
    )
    # What the db-schema step of `payops up` sends.
    event = {"targetVersion": 2, "host": "127.0.0.1", "port": pg.port, "database": database, "user": "payops_admin"}
    result = db_migration.handler(event, context)
    assert result["migration"] == "payops"
    assert result["schemaVersion"] == 2 and result["applied"] == [1, 2]
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
    event = {"targetVersion": 2, "host": "127.0.0.1", "port": pg.port, "database": database, "user": "payops_admin"}
    assert db_migration.handler(event, context)["appLogin"] == {"ok": True}


def test_the_migration_function_refuses_a_target_it_does_not_migrate_to(context):
    with pytest.raises(ValueError, match="asked for schema version 3"):
        db_migration.handler({"targetVersion": 3, "host": "h"}, context)
    with pytest.raises(ValueError, match="no database host"):
        db_migration.handler({"targetVersion": 2}, context)


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
