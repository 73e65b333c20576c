"""The customer database's schema migration: applies the numbered migrations
below that the database has not recorded in `schema_version`, each in its own
transaction, sets payops_app's password from its secret, and answers
`{"schemaVersion": N, "applied": [...], "notes": [...], "appPassword": {...},
"appLogin": {...}}`.

Run as the master user. A second run applies nothing and sets no password;
a database at an older version gets only what it lacks. Concurrent runs are
serialised by an advisory lock, so two invocations cannot apply one
migration twice.

How it connects (production): through the env's RDS Proxy (the event says
which, see `handler`) as the master user (default `payops_admin`) with an IAM token and verified
TLS, like payment validation. The proxy holds the master secret and requires
IAM auth from every client, so a password sent to it is refused; the
cluster's own endpoint would need the RDS CA bundle (the proxy's certificate
chains to Amazon's public roots) and a network path the function's security
group does not have. The function therefore never reads the master password.

payops_app's password: RDS Proxy logs in to the database with one secret per
database user (RDS User Guide, rds-proxy-secrets-arns): a client presents an
IAM token for payops_app and the proxy logs in with the password of
`payops/<env>/db-app`. This function reads that secret (the only one its role
may read) and gives the database the same password, as a SCRAM-SHA-256
verifier computed here: PostgreSQL stores a verifier as it is given
(CREATE ROLE: "If the presented password string is already in MD5-encrypted
or SCRAM-encrypted format, then it is stored as-is"), so the password itself
never reaches the server, its log or pg_stat_statements (psql's password command
does the same). It is set only for a secret version the database has not
recorded (`app_credentials`), so a second run changes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from typing import Any

import scramp

import payops_db as db
import payops_lib as lib

# Serialises concurrent runs (any bigint unique to this purpose).
_LOCK_KEY = 0x7061796F7073  # "payops"

# (version, description, statements). Append only: a released migration is
# never edited, because databases that applied it would not see the change.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "customers, and the application role that reads them",
        [
            """CREATE TABLE customers (
                id          text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
                status      text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')),
                daily_limit numeric(14, 2) NOT NULL CHECK (daily_limit >= 0),
                updated_at  timestamptz NOT NULL DEFAULT now()
            )""",
            # The role may exist already (created by hand, or a database
            # restored without schema_version): create it only when missing.
            f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{db.APP_USER}') THEN
                    CREATE ROLE {db.APP_USER} LOGIN;
                END IF;
            END $$""",
            f"GRANT USAGE ON SCHEMA public TO {db.APP_USER}",
            # Read-only, and on customers only: validation reads, nothing writes.
            f"GRANT SELECT ON customers TO {db.APP_USER}",
        ],
    ),
    (
        2,
        "each customer's daily limit gets its currency; limits set before were in USD",
        [
            """ALTER TABLE customers
                ADD COLUMN limit_currency char(3) NOT NULL DEFAULT 'USD'
                CHECK (limit_currency ~ '^[A-Z]{3}$')""",
        ],
    ),
    (
        3,
        "payops_app logs in with its password (the proxy's secret): out of rds_iam; which secret version it has",
        [
            # v1 granted rds_iam on Aurora. A user logs in by one method
            # only, and "to use password authentication, don't assign ...
            # the rds_iam ... role" (RDS User Guide, database-authentication):
            # the proxy logs in as payops_app with the password from its
            # secret.
            f"""DO $$ BEGIN
                IF EXISTS (
                    SELECT FROM pg_auth_members m
                    JOIN pg_roles g ON g.oid = m.roleid
                    JOIN pg_roles u ON u.oid = m.member
                    WHERE g.rolname = 'rds_iam' AND u.rolname = '{db.APP_USER}'
                ) THEN
                    REVOKE rds_iam FROM {db.APP_USER};
                END IF;
            END $$""",
            # Which version of the role's secret its password is from: a run
            # with the same version sets nothing. Only the master reads it.
            """CREATE TABLE app_credentials (
                role           name PRIMARY KEY,
                secret_version text NOT NULL,
                set_at         timestamptz NOT NULL DEFAULT now()
            )""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


def migrate(conn) -> dict[str, Any]:
    """Brings the database `conn` is connected to up to LATEST."""
    conn.run(
        """CREATE TABLE IF NOT EXISTS schema_version (
            version     integer PRIMARY KEY,
            description text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )"""
    )
    applied: list[int] = []
    notes: list[str] = []
    for version, description, statements in MIGRATIONS:
        conn.run("BEGIN")
        try:
            conn.run("SELECT pg_advisory_xact_lock(:key)", key=_LOCK_KEY)
            if conn.run("SELECT 1 FROM schema_version WHERE version = :v", v=version):
                conn.run("ROLLBACK")
                continue
            for sql in statements:
                conn.run(sql)
            if version == 1:
                notes.extend(_grant_iam_login(conn))
            conn.run(
                "INSERT INTO schema_version (version, description) VALUES (:v, :d)",
                v=version,
                d=description,
            )
            conn.run("COMMIT")
        except BaseException:
            conn.run("ROLLBACK")
            raise
        applied.append(version)
    current = conn.run("SELECT coalesce(max(version), 0) FROM schema_version")[0][0]
    return {"schemaVersion": current, "applied": applied, "notes": notes}


def _grant_iam_login(conn) -> list[str]:
    """`rds_iam` lets the role log in with IAM tokens; it exists only on RDS
    and Aurora, so a plain PostgreSQL (the tests') skips it and says so.
    A member of rds_iam can no longer log in with a password (Aurora allows
    one method per user), and the proxy logs in as payops_app with the
    password of its secret: v3 revokes this grant. Kept as released (a
    migration is never edited), so v1 and v3 together leave payops_app out
    of rds_iam on any database."""
    if conn.run("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'"):
        conn.run(f"GRANT rds_iam TO {db.APP_USER}")
        return []
    return [f"rds_iam does not exist (not RDS): {db.APP_USER} was not granted IAM login"]


# ----------------------------------------------------------------- payops_app's password

# What PostgreSQL accepts as a SCRAM-SHA-256 verifier (and nothing that
# could end the quoted literal it is put in).
_VERIFIER = re.compile(r"SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+")


def scram_verifier(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password`
    (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64),
    with a random salt and PostgreSQL's default 4096 iterations; SASLprep'd
    as the server does (scramp, the driver's own SCRAM library)."""
    salt, stored_key, server_key, iterations = scramp.ScramMechanism("SCRAM-SHA-256").make_auth_info(
        password, iteration_count=4096
    )
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    verifier = f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
    assert _VERIFIER.fullmatch(verifier)
    return verifier


def set_app_password(conn, password: str, secret_version: str) -> bool:
    """Gives payops_app `password` (from version `secret_version` of its
    secret) unless the database has that version already. True if it set it."""
    conn.run("BEGIN")
    try:
        conn.run("SELECT pg_advisory_xact_lock(:key)", key=_LOCK_KEY)
        rows = conn.run("SELECT secret_version FROM app_credentials WHERE role = :r", r=db.APP_USER)
        if rows and rows[0][0] == secret_version:
            conn.run("ROLLBACK")
            return False
        # Utility statements take no bind parameters: the verifier is a
        # literal, checked above to hold no quote.
        conn.run(f"ALTER ROLE {db.APP_USER} WITH LOGIN PASSWORD '{scram_verifier(password)}'")
        conn.run(
            """INSERT INTO app_credentials (role, secret_version) VALUES (:r, :v)
               ON CONFLICT (role) DO UPDATE SET secret_version = EXCLUDED.secret_version, set_at = now()""",
            r=db.APP_USER,
            v=secret_version,
        )
        conn.run("COMMIT")
    except BaseException:
        conn.run("ROLLBACK")
        raise
    return True


def read_app_secret(arn: str, client: Any = None) -> tuple[str, str]:
    """payops_app's password and the secret version it is from (AWSCURRENT,
    what the proxy reads). Errors never include the value."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager", region_name=os.environ.get("AWS_REGION"))
    out = client.get_secret_value(SecretId=arn)
    try:
        value = json.loads(out["SecretString"])
        username, password = value["username"], value["password"]
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            'payops_app\'s secret does not hold JSON with "username" and "password" (what RDS Proxy reads)'
        ) from None
    if username != db.APP_USER or not isinstance(password, str) or not password:
        raise ValueError("payops_app's secret names another user or holds no password")
    return password, out["VersionId"]


# ----------------------------------------------------------------- the function

# What production connects with; the tests replace these two.
def password_provider(target: db.Target):
    return db.iam_token_provider(target, region=os.environ.get("AWS_REGION"))


def tls_context():
    return db.tls_context()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Invoked by `payops up` (step `db-schema`) with where to connect:
    `{"targetVersion", "host", "port", "database", "user", "appSecretArn"}`.
    The target comes with the event, not from SSM: the parameters `up`
    publishes for the database include the version this answers, so they
    come after it. The answer carries `"migration": "payops"`, by which `up`
    tells it from an emulator's canned answer, and `appPassword.secretVersion`,
    which `up` records."""
    target_version = event.get("targetVersion")
    if target_version is not None and target_version != LATEST:
        # The deployed code and the payops that invoked it disagree: never
        # migrate to a version the caller did not ask for.
        raise ValueError(f"asked for schema version {target_version}, this code migrates to {LATEST}")
    host = str(event.get("host") or "").strip()
    if not host:
        # Nothing to migrate against: say so rather than pretend success.
        raise ValueError("no database host in the event: invoke with the proxy's endpoint")
    target = db.Target(
        host=host,
        port=int(event.get("port") or db.DEFAULT_PORT),
        database=str(event.get("database") or db.DEFAULT_DATABASE),
        user=str(event.get("user") or "payops_admin"),
    )
    app_secret = str(event.get("appSecretArn") or "").strip()
    # Read before any change: a secret it cannot use fails the run first.
    password, secret_version = read_app_secret(app_secret) if app_secret else (None, None)
    # DDL may wait on locks longer than a lookup: a longer read timeout.
    conn = db.connect(target, password_provider(target), tls_context(), timeout=30.0)
    try:
        result = migrate(conn)
        if password is None:
            result["appPassword"] = {"set": False, "reason": "no appSecretArn in the event"}
        else:
            changed = set_app_password(conn, password, secret_version)
            result["appPassword"] = {"set": changed, "secretVersion": secret_version}
    finally:
        conn.close()
    del password
    result["appLogin"] = check_app_login(target)
    lib.log("schema migrated", **result)
    return {"migration": "payops", **result}


#: How long the app-login check keeps trying a login the database refused,
#: and how often: right after the password was set (or the proxy's auth list
#: changed) the proxy may still log in with what it read before. Well inside
#: the function's 120 s.
APP_LOGIN_PATIENCE_S = 30.0
APP_LOGIN_RETRY_S = 5.0
#: invalid_password, invalid_authorization_specification
_REFUSED = ("(28P01)", "(28000)")


def check_app_login(admin: db.Target) -> dict[str, Any]:
    """Whether payment validation's login works: `payops_app` through the
    same proxy with its own IAM token (the proxy logs in with payops_app's
    secret), reading `customers`. `up` publishes the schema version (which
    turns validation's lookup on) only when it does: a proxy without
    payops_app's secret, or a password the database does not have, would
    otherwise make every payment a 503. The answer names only the error
    class or SQLSTATE."""
    app = db.Target(host=admin.host, port=admin.port, database=admin.database, user=db.APP_USER)
    deadline = time.monotonic() + APP_LOGIN_PATIENCE_S
    while True:
        try:
            conn = db.connect(app, password_provider(app), tls_context())
            break
        except db.DatabaseUnavailable as e:
            if not e.reason.endswith(_REFUSED) or time.monotonic() + APP_LOGIN_RETRY_S > deadline:
                return {"ok": False, "reason": e.reason}
        time.sleep(APP_LOGIN_RETRY_S)
    try:
        conn.run("SELECT 1 FROM customers LIMIT 0")
        return {"ok": True}
    except Exception as e:  # noqa: BLE001 - reported, not raised: the schema itself is done
        state = db.sqlstate(e) if isinstance(e, db.DatabaseError) else type(e).__name__
        return {"ok": False, "reason": f"payops_app cannot read customers ({state})"}
    finally:
        conn.close()
