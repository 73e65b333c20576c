"""The nightly settlement report, run by the batch tier's instances.

A systemd timer (02:00 UTC, see src/resources/batch/user_data.rs) runs it on
each instance of the env's Auto Scaling group. It reads yesterday's
processed and settled payments from the transactions table (the status
index, never a scan) and writes one JSON summary per day to the audit bucket,
`settlement-reports/<YYYY-MM-DD>.json`: counts and totals per currency and
the transaction ids, never card data. The key is the day, and the document
depends only on the table, so a second run (another instance, a retry) writes
the same object again: idempotent.

Runs on Amazon Linux 2023's python3 (3.9) with its python3-boto3 package, so
no syntax newer than 3.9 (a unit test parses it as 3.9).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from decimal import Decimal

INDEX = "status-timestamp-index"
STATUSES = ("PROCESSED", "SETTLED")
PREFIX = "settlement-reports"


def report_day(now: datetime.datetime) -> datetime.date:
    """The day a run at `now` reports on: the UTC day before."""
    return (now.astimezone(datetime.timezone.utc) - datetime.timedelta(days=1)).date()


def report_key(day: datetime.date) -> str:
    return f"{PREFIX}/{day.isoformat()}.json"


def day_items(dynamodb, table: str, day: datetime.date):
    """Every payment of `day` in a settleable status, through the status
    index (partition `status`, sort `timestamp`, ISO 8601 UTC strings)."""
    start = f"{day.isoformat()}T00:00:00"
    end = f"{(day + datetime.timedelta(days=1)).isoformat()}T00:00:00"
    for status in STATUSES:
        kwargs = {
            "TableName": table,
            "IndexName": INDEX,
            "KeyConditionExpression": "#s = :s AND #t BETWEEN :a AND :b",
            "ExpressionAttributeNames": {"#s": "status", "#t": "timestamp"},
            "ExpressionAttributeValues": {":s": {"S": status}, ":a": {"S": start}, ":b": {"S": end}},
        }
        while True:
            page = dynamodb.query(**kwargs)
            for item in page.get("Items", []):
                # The upper bound is inclusive: midnight belongs to the next day.
                if item.get("timestamp", {}).get("S", "") < end:
                    yield item
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def summarize(items, day: datetime.date) -> dict:
    totals: dict = {}
    ids = []
    for item in items:
        currency = item.get("currency", {}).get("S", "UNKNOWN")
        amount = Decimal(item.get("amount", {}).get("N") or item.get("amount", {}).get("S") or "0")
        entry = totals.setdefault(currency, {"count": 0, "total": Decimal("0")})
        entry["count"] += 1
        entry["total"] += amount
        ids.append(item["transactionId"]["S"])
    return {
        "day": day.isoformat(),
        "transactions": len(ids),
        "byCurrency": {c: {"count": e["count"], "total": str(e["total"])} for c, e in sorted(totals.items())},
        "transactionIds": sorted(set(ids)),
    }


def run(dynamodb, s3, table: str, bucket: str, now: datetime.datetime) -> str:
    day = report_day(now)
    report = summarize(day_items(dynamodb, table, day), day)
    key = report_key(day)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(report, sort_keys=True).encode(),
        # No ServerSideEncryption: "aws:kms" without a key id would mean
        # the AWS managed key; the bucket's default is the env's own key.
        ContentType="application/json",
    )
    return key


def main() -> int:
    import boto3

    table = os.environ["TRANSACTIONS_TABLE"]
    bucket = os.environ["AUDIT_BUCKET"]
    key = run(
        boto3.client("dynamodb"),
        boto3.client("s3"),
        table,
        bucket,
        datetime.datetime.now(datetime.timezone.utc),
    )
    print(json.dumps({"report": f"s3://{bucket}/{key}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
