"""Shared by payops' payment functions: configuration, safe logging, request
parsing, HTTP answers and the payment rules every function applies.

Card data rules (PCI DSS): a full card number (PAN) is never logged, never
returned and never stored. Audit records keep an HMAC of it (keyed with the
env's `secure/PanHashKey`) and its last four digits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import boto3
from botocore.config import Config

# The only setting that comes from the environment: everything else is read
# from SSM Parameter Store under this path, once per container.
CONFIG_PATH_VARIABLE = "PAYOPS_CONFIG_PATH"

LOG = logging.getLogger("payops")
LOG.setLevel(logging.INFO)

# Minor units per currency (ISO 4217): how many decimals an amount may have.
CURRENCY_DECIMALS = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CAD": 2,
    "AUD": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "JPY": 0,
}
DEFAULT_MAX_AMOUNT = Decimal("100000")
TRANSACTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ID_FIELD = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
REQUIRED_FIELDS = ("transactionId", "customerId", "merchantId", "amount", "currency", "cardNumber")

# Keys whose values are never logged, whatever they hold.
_SENSITIVE_KEY = re.compile(r"card|pan|cvv|cvc|secret|password|key|token|track", re.IGNORECASE)
# 12-19 digits, optionally grouped by spaces or hyphens: anything that could be a PAN.
_PAN_LIKE = re.compile(r"(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)")


class PaymentError(Exception):
    """A request that breaks a payment rule; `reason` is safe to return and log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------- logging


def redact(value: Any) -> Any:
    """A copy of `value` safe to log: sensitive keys dropped, PAN-like digit runs masked."""
    if isinstance(value, dict):
        return {
            k: ("[redacted]" if _SENSITIVE_KEY.search(str(k)) else redact(v)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _PAN_LIKE.sub("[redacted]", value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def log(message: str, **fields: Any) -> None:
    """One structured log line (Lambda's JSON log format keeps it as is)."""
    LOG.info(json.dumps({"message": message, **redact(fields)}, default=str))


# ----------------------------------------------------------------- configuration

#: Settings every payment check reads; optional (defaults apply when absent).
PAYMENT_SETTINGS = ("MaxPaymentAmount", "AllowedCurrencies")
#: GetParameters takes at most 10 names per call.
_PARAMETERS_PER_CALL = 10

_config: dict[str, str] = {}
_read: set[str] = set()


def config(*names: str) -> dict[str, str]:
    """The env's parameters `names` (relative to its path, e.g.
    `TransactionsTableName`, `secure/PanHashKey`), read once per container.

    Only what the function asks for, by name: one GetParameters per 10 names,
    where paging the whole path (~80 parameters, 10 a page) took ~8 calls per
    cold start, and a burst of cold starts up to the reserved concurrency
    exceeds Parameter Store's default throughput (it answers
    ThrottlingException). Retries are adaptive for the same reason. A name
    that does not exist is simply absent from the result; only a batch with a
    `secure/` name is decrypted."""
    missing = [n for n in dict.fromkeys(names) if n not in _read]
    if missing:
        path = os.environ[CONFIG_PATH_VARIABLE]
        if not path.endswith("/"):
            path += "/"
        ssm = boto3.client("ssm", config=Config(retries={"mode": "adaptive", "max_attempts": 10}))
        for i in range(0, len(missing), _PARAMETERS_PER_CALL):
            batch = missing[i : i + _PARAMETERS_PER_CALL]
            out = ssm.get_parameters(
                Names=[path + n for n in batch],
                WithDecryption=any(n.startswith("secure/") for n in batch),
            )
            for p in out.get("Parameters", []):
                _config[p["Name"][len(path) :]] = p["Value"]
            _read.update(batch)
    return {n: _config[n] for n in names if n in _config}


def env_name() -> str:
    """The env's name, from its configuration path `/payops/<env>/`."""
    parts = [p for p in os.environ.get(CONFIG_PATH_VARIABLE, "").split("/") if p]
    return parts[-1] if parts else "unknown"


def names_read() -> set[str]:
    """Every parameter name this container has asked Parameter Store for."""
    return set(_read)


def reset_config() -> None:
    """Forget the cached configuration (tests)."""
    _config.clear()
    _read.clear()


def setting(cfg: dict[str, str], name: str, default: str) -> str:
    value = cfg.get(name, "").strip()
    return value or default


# ----------------------------------------------------------------- HTTP


def request_body(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON object in an API Gateway or ALB event's body (numbers as Decimal)."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise PaymentError("the body is not valid base64 UTF-8") from None
    try:
        parsed = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    except (ValueError, TypeError):
        raise PaymentError("the body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise PaymentError("the body must be a JSON object")
    return parsed


def response(status: int, body: dict[str, Any], alb: bool = False) -> dict[str, Any]:
    """An answer API Gateway (proxy) and ALB both accept."""
    answer = {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body, default=str),
        "isBase64Encoded": False,
    }
    if alb:
        answer["statusDescription"] = f"{status} {_REASONS.get(status, '')}".strip()
    return answer


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


# ----------------------------------------------------------------- payment rules


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every card number satisfies."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def normalize_card_number(raw: Any) -> str:
    if not isinstance(raw, str):
        raise PaymentError("cardNumber must be a string")
    digits = re.sub(r"[ -]", "", raw)
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise PaymentError("cardNumber must be 12 to 19 digits")
    if not luhn_valid(digits):
        raise PaymentError("cardNumber fails the Luhn check")
    return digits


def parse_amount(raw: Any, currency: str, max_amount: Decimal) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, (Decimal, int, float)):
        raise PaymentError("amount must be a number")
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        raise PaymentError("amount must be a number") from None
    if not amount.is_finite() or amount <= 0:
        raise PaymentError("amount must be greater than zero")
    if amount > max_amount:
        raise PaymentError(f"amount exceeds the maximum of {max_amount} {currency}")
    decimals = CURRENCY_DECIMALS[currency]
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > decimals:
        raise PaymentError(f"{currency} amounts have at most {decimals} decimal places")
    return amount


def allowed_currencies(cfg: dict[str, str]) -> set[str]:
    listed = setting(cfg, "AllowedCurrencies", ",".join(sorted(CURRENCY_DECIMALS)))
    return {c.strip().upper() for c in listed.split(",") if c.strip().upper() in CURRENCY_DECIMALS}


def validate_payment(body: dict[str, Any], cfg: dict[str, str], now: datetime | None = None) -> dict[str, Any]:
    """Checks a payment request; returns it normalized (card digits only,
    amount as Decimal) or raises PaymentError with a reason safe to return."""
    missing = [f for f in REQUIRED_FIELDS if body.get(f) in (None, "")]
    if missing:
        raise PaymentError(f"missing required fields: {', '.join(missing)}")
    transaction_id = body["transactionId"]
    if not isinstance(transaction_id, str) or not TRANSACTION_ID.match(transaction_id):
        raise PaymentError("transactionId must be 1-64 letters, digits, '-' or '_'")
    for field in ("customerId", "merchantId"):
        if not isinstance(body[field], str) or not ID_FIELD.match(body[field]):
            raise PaymentError(f"{field} must be 1-128 letters, digits or . _ : -")
    currency = body["currency"]
    if not isinstance(currency, str) or currency not in allowed_currencies(cfg):
        raise PaymentError("currency is not supported")
    max_amount = Decimal(setting(cfg, "MaxPaymentAmount", str(DEFAULT_MAX_AMOUNT)))
    amount = parse_amount(body["amount"], currency, max_amount)
    card = normalize_card_number(body["cardNumber"])
    _check_expiry(body, now or datetime.now(timezone.utc))
    return {
        "transactionId": transaction_id,
        "customerId": body["customerId"],
        "merchantId": body["merchantId"],
        "amount": amount,
        "currency": currency,
        "cardNumber": card,
    }


def _check_expiry(body: dict[str, Any], now: datetime) -> None:
    month, year = body.get("expiryMonth"), body.get("expiryYear")
    if month is None and year is None:
        return
    try:
        month, year = int(month), int(year)
    except (TypeError, ValueError):
        raise PaymentError("expiryMonth and expiryYear must both be numbers") from None
    if not 1 <= month <= 12:
        raise PaymentError("expiryMonth must be 1-12")
    if (year, month) < (now.year, now.month):
        raise PaymentError("the card has expired")


def card_hash(card_digits: str, key_hex: str) -> str:
    """HMAC-SHA256 of the card number: joins records of one card without storing it."""
    return hmac.new(bytes.fromhex(key_hex), card_digits.encode(), hashlib.sha256).hexdigest()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds: sorts as text, like the table's sort key."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
