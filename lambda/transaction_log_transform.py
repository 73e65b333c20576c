"""The transaction-log delivery stream's transformation function, invoked by
Firehose (synchronously, with a buffer of records) before it writes to S3.

Each record is one JSON object that transaction processing put on the
stream. What lands in the bucket is a normalised line of an allow-list of
fields only: ids, amount, currency, status, reason and timestamps. Anything
else, card data above all (cardNumber, cardHash, cardLast4, whatever a later
producer might add), is dropped before it is stored, and a string that still
looks like a card number is masked. Each output record ends in a newline so
that the GZIP'd objects are JSON Lines.

Per record (Firehose's transformation contract: every recordId of the input
comes back once, with `result` and base64 `data`):
- `Ok`: the normalised line;
- `Dropped`: a record that should not be in the log at all (a duplicate
  answer of a payment already logged);
- `ProcessingFailed`: not JSON, not an object, or without a valid
  transactionId or status. Firehose writes these, unchanged, under the
  stream's error prefix (`errors/.../processing-failed/`).

The function makes no AWS call and reads no configuration: it needs no VPC
and no permission beyond its logs and X-Ray.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal, InvalidOperation
from typing import Any

import payops_lib as lib

OK = "Ok"
DROPPED = "Dropped"
FAILED = "ProcessingFailed"

#: What the log keeps; everything else is dropped.
KEPT = ("transactionId", "timestamp", "status", "amount", "currency", "merchantId", "customerId", "reason", "settledAt")
STATUSES = ("PROCESSED", "FAILED", "SETTLED")


class Unusable(Exception):
    """A record that cannot be logged; `reason` is safe to log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def normalise(entry: Any) -> dict[str, Any] | None:
    """The logged form of one producer record, or None when it is dropped."""
    if not isinstance(entry, dict):
        raise Unusable("the record is not a JSON object")
    transaction_id = entry.get("transactionId")
    if not isinstance(transaction_id, str) or not lib.TRANSACTION_ID.match(transaction_id):
        raise Unusable("the record has no valid transactionId")
    status = str(entry.get("status", "")).upper()
    if status not in STATUSES:
        raise Unusable("the record has no known status")
    if entry.get("duplicate") is True:
        return None
    out: dict[str, Any] = {}
    for field in KEPT:
        value = entry.get(field)
        if value is None or isinstance(value, (dict, list)):
            continue
        out[field] = value
    out["status"] = status
    if "currency" in out:
        out["currency"] = str(out["currency"]).upper()
    if "amount" in out:
        try:
            amount = Decimal(str(out["amount"]))
        except InvalidOperation:
            raise Unusable("the record's amount is not a number") from None
        if not amount.is_finite():
            raise Unusable("the record's amount is not a number")
        # A string: JSON numbers would lose the decimal places of money.
        out["amount"] = str(amount)
    # Ids and reasons are free text from the request: mask anything that
    # looks like a card number that slipped into them.
    return lib.redact(out)


def transform(record: dict[str, Any]) -> dict[str, Any]:
    record_id = record["recordId"]
    try:
        entry = json.loads(base64.b64decode(record["data"]))
        logged = normalise(entry)
    except (ValueError, TypeError, Unusable) as e:
        reason = e.reason if isinstance(e, Unusable) else "the record is not JSON"
        lib.log("transaction log record not usable", recordId=record_id, reason=reason)
        # Firehose keeps the original data of a failed record (under the
        # error prefix); what is answered here is ignored for it.
        return {"recordId": record_id, "result": FAILED, "data": record.get("data", "")}
    if logged is None:
        return {"recordId": record_id, "result": DROPPED, "data": ""}
    line = json.dumps(logged, sort_keys=True, separators=(",", ":")) + "\n"
    return {"recordId": record_id, "result": OK, "data": base64.b64encode(line.encode()).decode()}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = [transform(r) for r in event.get("records", [])]
    counts = {result: sum(1 for r in records if r["result"] == result) for result in (OK, DROPPED, FAILED)}
    lib.log("transaction log batch", invocationId=event.get("invocationId"), **counts)
    return {"records": records}
