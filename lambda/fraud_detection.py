"""POST /payments/fraud-check (API Gateway, Lambda proxy integration).

Scores a payment from 0 to 100 with the rules in the env's fraud-rules table
and the customer's recent transactions (the transactions table's
customerId-timestamp-index), and decides APPROVE, REVIEW or DECLINE.

Rule items (table `payops-<env>-fraud-rules`, key `ruleId`), each with a
`score` (points added when it matches) and `enabled` (default true):

| type                 | parameters                          | matches when |
| -------------------- | ----------------------------------- | ------------ |
| `amount_above`       | `threshold`                         | amount > threshold |
| `velocity`           | `maxTransactions`, `windowMinutes`  | the customer already made maxTransactions or more in the window |
| `daily_amount_above` | `threshold`                         | the customer's last 24 h plus this payment exceed threshold |
| `currency_in`        | `currencies` (list)                 | the payment's currency is listed |
| `country_in`         | `countries` (list)                  | the payment's `country` is listed |
| `new_customer`       |                                     | the customer has no earlier transaction |
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.conditions import Key

import payops_lib as lib

CUSTOMER_INDEX = "customerId-timestamp-index"
DECLINE_AT = Decimal(80)
REVIEW_AT = Decimal(50)
# Rules change rarely; a warm container re-reads them after this long.
RULES_TTL_SECONDS = 60

_rules_cache: tuple[float, list[dict[str, Any]]] | None = None


def load_rules(table: Any) -> list[dict[str, Any]]:
    global _rules_cache
    now = time.monotonic()
    if _rules_cache is not None and now - _rules_cache[0] < RULES_TTL_SECONDS:
        return _rules_cache[1]
    rules: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        rules.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    rules = [r for r in rules if r.get("enabled", True) not in (False, "false")]
    rules.sort(key=lambda r: str(r.get("ruleId", "")))
    _rules_cache = (now, rules)
    return rules


def reset_cache() -> None:
    global _rules_cache
    _rules_cache = None


def recent_transactions(table: Any, customer_id: str, since: str) -> list[dict[str, Any]]:
    """The customer's transactions at or after `since` (ISO 8601), newest first."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "IndexName": CUSTOMER_INDEX,
        "KeyConditionExpression": Key("customerId").eq(customer_id) & Key("timestamp").gte(since),
        "ProjectionExpression": "transactionId, amount, #ts",
        "ExpressionAttributeNames": {"#ts": "timestamp"},
        "ScanIndexForward": False,
    }
    while True:
        page = table.query(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def score_payment(
    payment: dict[str, Any], rules: list[dict[str, Any]], history: Any, now: Any
) -> dict[str, Any]:
    """Pure scoring: `history(since_iso)` returns the customer's transactions
    since then (so the table is read only for rules that need it)."""
    amount = Decimal(str(payment["amount"]))
    matched: list[str] = []
    score = Decimal(0)
    cache: dict[str, list[dict[str, Any]]] = {}

    def since(delta: timedelta) -> list[dict[str, Any]]:
        key = lib.iso(now - delta)
        if key not in cache:
            cache[key] = [t for t in history(key) if t.get("transactionId") != payment["transactionId"]]
        return cache[key]

    for rule in rules:
        kind = rule.get("type")
        hit = False
        if kind == "amount_above":
            hit = amount > Decimal(str(rule["threshold"]))
        elif kind == "velocity":
            window = timedelta(minutes=int(rule.get("windowMinutes", 60)))
            hit = len(since(window)) >= int(rule["maxTransactions"])
        elif kind == "daily_amount_above":
            spent = sum((Decimal(str(t.get("amount", 0))) for t in since(timedelta(days=1))), Decimal(0))
            hit = spent + amount > Decimal(str(rule["threshold"]))
        elif kind == "currency_in":
            hit = payment.get("currency") in set(rule.get("currencies", []))
        elif kind == "country_in":
            hit = payment.get("country") in set(rule.get("countries", []))
        elif kind == "new_customer":
            hit = not since(timedelta(days=3650))
        if hit:
            matched.append(str(rule.get("ruleId")))
            score += Decimal(str(rule.get("score", 0)))
    score = min(max(score, Decimal(0)), Decimal(100))
    if score >= DECLINE_AT:
        decision = "DECLINE"
    elif score >= REVIEW_AT:
        decision = "REVIEW"
    else:
        decision = "APPROVE"
    return {"score": int(score), "decision": decision, "matchedRules": matched}


def parse_request(body: dict[str, Any], cfg: dict[str, str]) -> dict[str, Any]:
    for field in ("transactionId", "customerId", "amount", "currency"):
        if body.get(field) in (None, ""):
            raise lib.PaymentError(f"missing required field: {field}")
    if not isinstance(body["transactionId"], str) or not lib.TRANSACTION_ID.match(body["transactionId"]):
        raise lib.PaymentError("transactionId must be 1-64 letters, digits, '-' or '_'")
    if not isinstance(body["customerId"], str) or not lib.ID_FIELD.match(body["customerId"]):
        raise lib.PaymentError("customerId must be 1-128 letters, digits or . _ : -")
    currency = body["currency"]
    if not isinstance(currency, str) or currency not in lib.allowed_currencies(cfg):
        raise lib.PaymentError("currency is not supported")
    max_amount = Decimal(lib.setting(cfg, "MaxPaymentAmount", str(lib.DEFAULT_MAX_AMOUNT)))
    return {
        "transactionId": body["transactionId"],
        "customerId": body["customerId"],
        "amount": lib.parse_amount(body["amount"], currency, max_amount),
        "currency": currency,
        "country": body.get("country"),
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    cfg = lib.config("FraudRulesTableName", "TransactionsTableName", *lib.PAYMENT_SETTINGS)
    try:
        payment = parse_request(lib.request_body(event), cfg)
    except lib.PaymentError as e:
        lib.log("fraud check rejected", requestId=request_id, reason=e.reason)
        return lib.response(400, {"reason": e.reason})
    dynamodb = boto3.resource("dynamodb")
    rules = load_rules(dynamodb.Table(cfg["FraudRulesTableName"]))
    transactions = dynamodb.Table(cfg["TransactionsTableName"])
    result = score_payment(
        payment,
        rules,
        lambda since: recent_transactions(transactions, payment["customerId"], since),
        lib.utc_now(),
    )
    lib.log(
        "fraud check",
        requestId=request_id,
        transactionId=payment["transactionId"],
        score=result["score"],
        decision=result["decision"],
        matchedRules=result["matchedRules"],
    )
    return lib.response(200, {"transactionId": payment["transactionId"], **result})
