"""The batch tier's nightly settlement report against moto's DynamoDB and S3."""

from __future__ import annotations

import ast
import datetime
import json
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

BATCH_DIR = Path(__file__).resolve().parents[2] / "batch"
sys.path.insert(0, str(BATCH_DIR))

import settlement_report as report  # noqa: E402

TABLE = "payops-t1-transactions"
BUCKET = "payops-t1-audit"
NOW = datetime.datetime(2026, 12, 7, 2, 0, tzinfo=datetime.timezone.utc)


@pytest.fixture
def aws():
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "transactionId", "KeyType": "HASH"}, {"AttributeName": "timestamp", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "transactionId", "AttributeType": "S"},
                {"AttributeName": "timestamp", "AttributeType": "S"},
                {"AttributeName": "status", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[{
                "IndexName": report.INDEX,
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}, {"AttributeName": "timestamp", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield ddb, s3


def put(ddb, tid, ts, status="PROCESSED", amount="10.50", currency="USD"):
    ddb.put_item(TableName=TABLE, Item={
        "transactionId": {"S": tid}, "timestamp": {"S": ts}, "status": {"S": status},
        "amount": {"N": amount}, "currency": {"S": currency},
        "cardHash": {"S": "h-" + tid}, "cardLast4": {"S": "4242"},
    })


def test_yesterdays_processed_and_settled_payments_are_summed_per_currency(aws):
    ddb, s3 = aws
    put(ddb, "t1", "2026-12-06T00:00:00.000Z")
    put(ddb, "t2", "2026-12-06T23:59:59.999Z", status="SETTLED", amount="4.50")
    put(ddb, "t3", "2026-12-06T12:00:00.000Z", currency="EUR", amount="7")
    put(ddb, "failed", "2026-12-06T12:00:00.000Z", status="FAILED")
    put(ddb, "today", "2026-12-07T00:00:00.000Z")
    put(ddb, "before", "2026-12-05T23:59:59.999Z")
    key = report.run(ddb, s3, TABLE, BUCKET, NOW)
    assert key == "settlement-reports/2026-12-06.json"
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert body["day"] == "2026-12-06"
    assert body["transactions"] == 3
    assert body["byCurrency"] == {"EUR": {"count": 1, "total": "7"}, "USD": {"count": 2, "total": "15.00"}}
    assert body["transactionIds"] == ["t1", "t2", "t3"]
    # No card data in the report.
    assert "4242" not in json.dumps(body) and "h-t1" not in json.dumps(body)


def test_a_second_run_writes_the_same_report_under_the_same_key(aws):
    ddb, s3 = aws
    put(ddb, "t1", "2026-12-06T10:00:00.000Z")
    first = report.run(ddb, s3, TABLE, BUCKET, NOW)
    one = s3.get_object(Bucket=BUCKET, Key=first)["Body"].read()
    second = report.run(ddb, s3, TABLE, BUCKET, NOW + datetime.timedelta(hours=3))
    assert first == second
    assert s3.get_object(Bucket=BUCKET, Key=second)["Body"].read() == one
    assert len(s3.list_objects_v2(Bucket=BUCKET)["Contents"]) == 1


def test_an_empty_day_still_reports(aws):
    ddb, s3 = aws
    key = report.run(ddb, s3, TABLE, BUCKET, NOW)
    body = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert body["transactions"] == 0 and body["byCurrency"] == {}


def test_the_script_is_python_3_9_as_amazon_linux_2023_runs_it():
    source = (BATCH_DIR / "settlement_report.py").read_text()
    ast.parse(source, feature_version=(3, 9))
