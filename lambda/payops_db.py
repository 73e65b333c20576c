"""Database access for payops' functions: connections to the env's Aurora
PostgreSQL through its RDS Proxy, and the customer lookup payment validation
needs.

Production connects as `payops_app` with an IAM authentication token (the
proxy requires IAM auth and TLS), verifying the proxy's certificate. RDS Proxy
serves an ACM certificate chained to Amazon's public roots, which the Lambda
runtime's trust store already holds, so no RDS CA bundle is shipped. The
password comes from a provider, a function called once per connection: the
token generator in production, a fixed password in the handler tests (IAM
tokens cannot be checked by a plain PostgreSQL).

The driver is pg8000 (pure Python), vendored from lambda/requirements-db.lock
into the zips of the functions that import this module.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

#: The database user the payment functions connect as (model.rs DB_APP_USER).
APP_USER = "payops_app"
#: The database the cluster creates (model.rs DB_NAME).
DEFAULT_DATABASE = "payments"
DEFAULT_PORT = 5432
#: Seconds for the TCP/TLS connect and for every read: a payment request
#: (API Gateway gives up after 29 s) must fail fast when the database is away,
#: not hang until the function's own timeout.
CONNECT_TIMEOUT = 3.0
#: The schema version this code reads (db_migration.MIGRATIONS' last).
REQUIRED_SCHEMA_VERSION = 3

PasswordProvider = Callable[[], str]


class DatabaseUnavailable(Exception):
    """The database could not answer (unreachable, refused the login, timed
    out). `reason` is safe to log and return: no host, user or token."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    host: str
    port: int = DEFAULT_PORT
    database: str = DEFAULT_DATABASE
    user: str = APP_USER


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """Certificate and host name verified, TLS 1.2 or newer (what RDS Proxy
    speaks). `cafile` replaces the system trust store (the tests' own CA)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def iam_token_provider(target: Target, region: str | None = None, client: Any = None) -> PasswordProvider:
    """A provider of RDS IAM authentication tokens for `target`: a SigV4
    presigned `connect` for host, port and user, signed locally with the
    function's role (no API call) and valid 15 minutes, so a fresh one per
    connection."""

    def token() -> str:
        rds = client
        if rds is None:
            import boto3

            rds = boto3.client("rds", region_name=region)
        return rds.generate_db_auth_token(
            DBHostname=target.host, Port=target.port, DBUsername=target.user, Region=region
        )

    return token


def connect(
    target: Target,
    password: PasswordProvider,
    ssl_context: ssl.SSLContext,
    timeout: float = CONNECT_TIMEOUT,
) -> pg8000.native.Connection:
    """A connection over verified TLS, or DatabaseUnavailable. A context is
    required: given None, pg8000 would try TLS without verifying anything and
    fall back to plaintext when the server declines."""
    if not isinstance(ssl_context, ssl.SSLContext) or ssl_context.verify_mode != ssl.CERT_REQUIRED:
        raise ValueError("a verifying ssl.SSLContext is required")
    try:
        return pg8000.native.Connection(
            target.user,
            host=target.host,
            port=target.port,
            database=target.database,
            password=password(),
            ssl_context=ssl_context,
            timeout=timeout,
            application_name="payops",
        )
    except DatabaseError as e:
        # The server answered but refused: bad credentials, no such database,
        # too many connections. SQLSTATE only: the message may name the user.
        raise DatabaseUnavailable(f"database refused the connection ({sqlstate(e)})") from None
    except (InterfaceError, OSError, ssl.SSLError) as e:
        raise DatabaseUnavailable(f"database unreachable ({type(e).__name__})") from None


def sqlstate(error: DatabaseError) -> str:
    detail = error.args[0] if error.args else None
    return detail.get("C", "unknown") if isinstance(detail, dict) else "unknown"


# ----------------------------------------------------------------- customers


@dataclass(frozen=True)
class Customer:
    id: str
    status: str
    daily_limit: Decimal
    limit_currency: str


def find_customer(conn: pg8000.native.Connection, customer_id: str) -> Customer | None:
    """The customer `customer_id`, or None. Errors on the way (connection
    lost, statement timeout) are DatabaseUnavailable."""
    try:
        rows = conn.run(
            "SELECT id, status, daily_limit, limit_currency FROM customers WHERE id = :id",
            id=customer_id,
        )
    except DatabaseError as e:
        raise DatabaseUnavailable(f"customer lookup failed ({sqlstate(e)})") from None
    except (InterfaceError, OSError) as e:
        raise DatabaseUnavailable(f"database connection lost ({type(e).__name__})") from None
    if not rows:
        return None
    id_, status, limit, currency = rows[0]
    return Customer(id=id_, status=status, daily_limit=Decimal(limit), limit_currency=currency.strip())


class CustomerRejected(Exception):
    """The customer may not make this payment; `reason` is a stable code."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_customer(customer: Customer | None, amount: Decimal, currency: str) -> Customer:
    """The customer rules of a payment, in order:
    unknown -> UNKNOWN_CUSTOMER; SUSPENDED or CLOSED -> CUSTOMER_SUSPENDED;
    a currency other than the limit's -> LIMIT_CURRENCY_MISMATCH (no exchange
    rates here, so the limit cannot be compared); an amount above the daily
    limit -> DAILY_LIMIT_EXCEEDED. Validation stores nothing, so the limit
    bounds a single payment; the day's running total is the ledger's
    (transaction processing's) concern."""
    if customer is None:
        raise CustomerRejected("UNKNOWN_CUSTOMER")
    if customer.status != "ACTIVE":
        raise CustomerRejected("CUSTOMER_SUSPENDED")
    if currency != customer.limit_currency:
        raise CustomerRejected("LIMIT_CURRENCY_MISMATCH")
    if amount > customer.daily_limit:
        raise CustomerRejected("DAILY_LIMIT_EXCEEDED")
    return customer
