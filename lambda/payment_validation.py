"""POST /payments/validate (API Gateway, Lambda proxy integration).

Checks a payment request against the payment rules (required fields, amount
and currency, card number shape and Luhn checksum, expiry), then against the
customer it names, read from the env's database through its RDS Proxy (as
`payops_app`, IAM token, verified TLS). Answers:

- 200 `{"valid": true, "transactionId": ..., "customerChecked": true}`;
- 400 `{"valid": false, "reason": ...}` for a broken payment rule, or a
  customer rule: `UNKNOWN_CUSTOMER`, `CUSTOMER_SUSPENDED` (SUSPENDED or
  CLOSED), `LIMIT_CURRENCY_MISMATCH`, `DAILY_LIMIT_EXCEEDED`;
- 503 `{"valid": false, "reason": "DATABASE_UNAVAILABLE", "detail": ...}`
  when the database cannot answer: never a 200 without the customer check.

The customer check starts once the env's configuration says where the
database is (`DbProxyEndpoint`) and that its schema exists (`DbSchemaVersion`,
published by the step that runs the migration). Before that, e.g. in an env
whose database tier is not deployed or not migrated yet, a lookup could only
fail: the payment rules alone decide, and the answer says so
(`"customerChecked": false`, and a log line). It stores nothing and reads no
secrets.
"""

from __future__ import annotations

import os
from typing import Any

import payops_db as db
import payops_lib as lib

#: One connection per container, reused across invocations (the proxy pools
#: behind it); reopened once when it turns out broken.
_connection = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    try:
        body = lib.request_body(event)
        cfg = lib.config(*lib.PAYMENT_SETTINGS, "DbProxyEndpoint", "AuroraDatabaseName", "DbSchemaVersion")
        payment = lib.validate_payment(body, cfg)
    except lib.PaymentError as e:
        lib.log("payment rejected", requestId=request_id, reason=e.reason)
        return lib.response(400, {"valid": False, "reason": e.reason})

    target = database_target(cfg)
    if target is None:
        lib.log("customer not checked: no migrated database configured", requestId=request_id)
        checked = False
    else:
        try:
            customer = lookup(target, payment["customerId"])
            db.check_customer(customer, payment["amount"], payment["currency"])
        except db.CustomerRejected as e:
            lib.log("payment rejected", requestId=request_id, reason=e.reason, customerId=payment["customerId"])
            return lib.response(400, {"valid": False, "reason": e.reason})
        except db.DatabaseUnavailable as e:
            lib.log("customer check failed", requestId=request_id, reason="DATABASE_UNAVAILABLE", detail=e.reason)
            return lib.response(503, {"valid": False, "reason": "DATABASE_UNAVAILABLE", "detail": e.reason})
        checked = True
    lib.log(
        "payment valid",
        requestId=request_id,
        transactionId=payment["transactionId"],
        currency=payment["currency"],
        customerChecked=checked,
    )
    return lib.response(
        200, {"valid": True, "transactionId": payment["transactionId"], "customerChecked": checked}
    )


def database_target(cfg: dict[str, str]) -> db.Target | None:
    host = cfg.get("DbProxyEndpoint", "").strip()
    if not host or not cfg.get("DbSchemaVersion", "").strip():
        return None
    return db.Target(
        host=host,
        port=db.DEFAULT_PORT,
        database=lib.setting(cfg, "AuroraDatabaseName", db.DEFAULT_DATABASE),
    )


# What production connects with; the tests replace these two.
def password_provider(target: db.Target):
    return db.iam_token_provider(target, region=os.environ.get("AWS_REGION"))


def tls_context():
    return db.tls_context()


def lookup(target: db.Target, customer_id: str) -> db.Customer | None:
    """The customer, through the cached connection; a connection that fails
    is dropped and one fresh connection tried before giving up."""
    global _connection
    for attempt in (1, 2):
        if _connection is None:
            _connection = db.connect(target, password_provider(target), tls_context())
        try:
            return db.find_customer(_connection, customer_id)
        except db.DatabaseUnavailable:
            reset_connection()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def reset_connection() -> None:
    global _connection
    if _connection is not None:
        try:
            _connection.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
            pass
    _connection = None
