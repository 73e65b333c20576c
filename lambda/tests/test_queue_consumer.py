"""The processing queue's consumer, with real-shaped SQS events (as Lambda's
event source mapping sends them) against moto's DynamoDB."""

import json

import boto3
import pytest
from moto import mock_aws

import payment_queue_consumer as consumer
import transaction_processing as tp
from conftest import ENV_PATH

TABLE = "payops-t1-transactions"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:payops-t1-payments-processing"


@pytest.fixture
def ddb():
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "transactionId", "KeyType": "HASH"}, {"AttributeName": "timestamp", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "transactionId", "AttributeType": "S"}, {"AttributeName": "timestamp", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("ssm").put_parameter(Name=f"{ENV_PATH}TransactionsTableName", Value=TABLE, Type="String")
        yield client


def stored(ddb, transaction_id, status="PROCESSED"):
    """A transaction as transaction processing stores it (claim + item)."""
    record = {"transactionId": transaction_id, "timestamp": "2026-12-06T10:00:00.000Z", "status": status, "amount": "10", "currency": "USD"}
    tp.store(ddb, TABLE, record)


def item(ddb, transaction_id):
    return ddb.get_item(TableName=TABLE, Key={"transactionId": {"S": transaction_id}, "timestamp": {"S": "2026-12-06T10:00:00.000Z"}})["Item"]


def sqs_record(message_id, body):
    """One record as Lambda's SQS poller delivers it."""
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id}==",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1765015200000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1765015200010",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def event(*records):
    return {"Records": list(records)}


def test_a_good_batch_settles_every_payment_and_reports_no_failure(ddb, context):
    stored(ddb, "tx-1")
    stored(ddb, "tx-2")
    out = consumer.handler(
        event(sqs_record("m-1", json.dumps({"transactionId": "tx-1"})), sqs_record("m-2", json.dumps({"transactionId": "tx-2"}))),
        context,
    )
    assert out == {"batchItemFailures": []}
    for tx in ("tx-1", "tx-2"):
        got = item(ddb, tx)
        assert got["status"]["S"] == "SETTLED"
        assert got["settledAt"]["S"]


def test_a_poison_record_is_reported_alone_and_the_good_ones_are_settled(ddb, context):
    stored(ddb, "tx-1")
    out = consumer.handler(
        event(
            sqs_record("m-1", json.dumps({"transactionId": "tx-1"})),
            sqs_record("m-poison", "not json {"),
            sqs_record("m-unknown", json.dumps({"transactionId": "tx-nobody"})),
            sqs_record("m-bad-id", json.dumps({"transactionId": "../../etc"})),
        ),
        context,
    )
    assert out == {"batchItemFailures": [{"itemIdentifier": "m-poison"}, {"itemIdentifier": "m-unknown"}, {"itemIdentifier": "m-bad-id"}]}
    assert item(ddb, "tx-1")["status"]["S"] == "SETTLED"


def test_a_redelivered_message_settles_once_and_is_not_a_failure(ddb, context):
    stored(ddb, "tx-1")
    first = consumer.process(event(sqs_record("m-1", json.dumps({"transactionId": "tx-1"}))), TABLE, ddb, "r-1")
    settled_at = item(ddb, "tx-1")["settledAt"]["S"]
    again = consumer.process(event(sqs_record("m-1", json.dumps({"transactionId": "tx-1"}))), TABLE, ddb, "r-2")
    assert first == again == {"batchItemFailures": []}
    assert item(ddb, "tx-1")["settledAt"]["S"] == settled_at


def test_a_transaction_that_is_not_processed_is_refused(ddb, context):
    stored(ddb, "tx-1", status="FAILED")
    out = consumer.process(event(sqs_record("m-1", json.dumps({"transactionId": "tx-1"}))), TABLE, ddb, "r-1")
    assert out == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert item(ddb, "tx-1")["status"]["S"] == "FAILED"


def test_a_storage_error_fails_only_its_message(ddb, context):
    class Flaky:
        def __init__(self):
            self.calls = 0

        def get_item(self, **kw):
            return ddb.get_item(**kw)

        def update_item(self, **kw):
            self.calls += 1
            if self.calls == 1:
                from botocore.exceptions import ClientError

                raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem")
            return ddb.update_item(**kw)

    stored(ddb, "tx-1")
    stored(ddb, "tx-2")
    out = consumer.process(
        event(sqs_record("m-1", json.dumps({"transactionId": "tx-1"})), sqs_record("m-2", json.dumps({"transactionId": "tx-2"}))),
        TABLE,
        Flaky(),
        "r-1",
    )
    assert out == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert item(ddb, "tx-2")["status"]["S"] == "SETTLED"


def test_the_consumer_reads_only_the_table_name(ddb, context):
    import payops_lib as lib

    consumer.handler(event(), context)
    assert lib.names_read() == {"TransactionsTableName"}
