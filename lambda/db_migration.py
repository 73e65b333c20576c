"""The customer database's schema migration: applies the numbered migrations
below that the database has not recorded in `schema_version`, each in its own
transaction, and answers `{"schemaVersion": N, "applied": [...], "notes": [...]}`.

Run as the master user. A second run applies nothing; a database at an older
version gets only what it lacks. Concurrent runs are serialised by an
advisory lock, so two invocations cannot apply one migration twice.

How it connects (production): through the env's RDS Proxy (the event says
which, see `handler`) as the master user (default `payops_admin`) with an IAM token and verified
TLS, like payment validation. The proxy holds the master secret and requires
IAM auth from every client, so a password sent to it is refused; the
cluster's own endpoint would need the RDS CA bundle (the proxy's certificate
chains to Amazon's public roots) and a network path the functions' security
group does not have. The function therefore never reads the password.
"""

from __future__ import annotations

import os
from typing import Any

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
    one method per user): right for a proxy with end-to-end IAM auth, wrong
    for one that logs in with a payops_app secret (docs/architecture.md)."""
    if conn.run("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'"):
        conn.run(f"GRANT rds_iam TO {db.APP_USER}")
        return []
    return [f"rds_iam does not exist (not RDS): {db.APP_USER} was not granted IAM login"]


# ----------------------------------------------------------------- the function

# What production connects with; the tests replace these two.
def password_provider(target: db.Target):
    return db.iam_token_provider(target, region=os.environ.get("AWS_REGION"))


def tls_context():
    return db.tls_context()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Invoked by `payops up` (step `db-schema`) with where to connect:
    `{"targetVersion", "host", "port", "database", "user"}`. The target comes
    with the event, not from SSM: the parameters `up` publishes for the
    database include the version this answers, so they come after it.
    The answer carries `"migration": "payops"`, by which `up` tells it from
    an emulator's canned answer."""
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
    # DDL may wait on locks longer than a lookup: a longer read timeout.
    conn = db.connect(target, password_provider(target), tls_context(), timeout=30.0)
    try:
        result = migrate(conn)
    finally:
        conn.close()
    result["appLogin"] = check_app_login(target)
    lib.log("schema migrated", **result)
    return {"migration": "payops", **result}


def check_app_login(admin: db.Target) -> dict[str, Any]:
    """Whether payment validation's login works: `payops_app` through the
    same proxy with its own IAM token, reading `customers`. `up` publishes
    the schema version (which turns validation's lookup on) only when it
    does: a proxy that holds no credentials for payops_app (its auth list
    names only the master secret) would otherwise make every payment a 503.
    The answer names only the error class or SQLSTATE."""
    app = db.Target(host=admin.host, port=admin.port, database=admin.database, user=db.APP_USER)
    try:
        conn = db.connect(app, password_provider(app), tls_context())
    except db.DatabaseUnavailable as e:
        return {"ok": False, "reason": e.reason}
    try:
        conn.run("SELECT 1 FROM customers LIMIT 0")
        return {"ok": True}
    except Exception as e:  # noqa: BLE001 - reported, not raised: the schema itself is done
        state = db.sqlstate(e) if isinstance(e, db.DatabaseError) else type(e).__name__
        return {"ok": False, "reason": f"payops_app cannot read customers ({state})"}
    finally:
        conn.close()
