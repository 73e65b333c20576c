import base64
import json
import logging

import boto3
import pytest
from moto import mock_aws

import payops_lib as lib
import transaction_processing as tp
from conftest import ENV_PATH, VISA, payment

TABLE = "payops-t1-transactions"
BUCKET = "payops-t1-audit"
KEY_HEX = "ab" * 32


@pytest.fixture
def env():
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "transactionId", "KeyType": "HASH"}, {"AttributeName": "timestamp", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "transactionId", "AttributeType": "S"}, {"AttributeName": "timestamp", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sns = boto3.client("sns")
        topic = sns.create_topic(Name="payops-t1-failed-transactions")["TopicArn"]
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="failed")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        s3_key = boto3.client("kms").create_key(Description="payops t1 s3")["KeyMetadata"]["Arn"]
        ssm = boto3.client("ssm")
        for name, value in {
            "TransactionsTableName": TABLE,
            "AuditBucketName": BUCKET,
            "FailedTransactionsTopicArn": topic,
            "S3KmsKeyArn": s3_key,
        }.items():
            ssm.put_parameter(Name=f"{ENV_PATH}{name}", Value=value, Type="String")
        ssm.put_parameter(Name=f"{ENV_PATH}secure/PanHashKey", Value=KEY_HEX, Type="SecureString")

        def failures():
            out = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(m["Body"]) for m in out]

        yield {"ddb": ddb, "s3": s3, "failures": failures, "s3_key": s3_key}


def alb_event(body, method="POST", path="/payments", b64=False):
    raw = json.dumps(body)
    return {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/payops-t1-blue/1"}},
        "httpMethod": method,
        "path": path,
        "headers": {"content-type": "application/json"},
        "body": base64.b64encode(raw.encode()).decode() if b64 else raw,
        "isBase64Encoded": b64,
    }


def items(ddb, transaction_id):
    out = ddb.query(TableName=TABLE, KeyConditionExpression="transactionId = :t", ExpressionAttributeValues={":t": {"S": transaction_id}})
    return out["Items"]


def test_a_payment_is_stored_audited_and_answered(env, context):
    answer = tp.handler(alb_event(payment(amount=12.34)), context)
    assert answer["statusCode"] == 201, answer
    assert answer["statusDescription"] == "201 Created"
    body = json.loads(answer["body"])
    assert body["status"] == "PROCESSED" and body["duplicate"] is False and body["cardLast4"] == "1111"
    stored = [i for i in items(env["ddb"], "tx-1") if i["timestamp"]["S"] != tp.CLAIM]
    assert len(stored) == 1
    record = stored[0]
    assert record["amount"] == {"N": "12.34"}
    assert record["cardHash"]["S"] == lib.card_hash(VISA, KEY_HEX)
    assert "cardNumber" not in record
    keys = [o["Key"] for o in env["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [tp.audit_key({"timestamp": record["timestamp"]["S"], "transactionId": "tx-1"})]
    audit = env["s3"].get_object(Bucket=BUCKET, Key=keys[0])
    assert audit["ServerSideEncryption"] == "aws:kms"
    # The env's S3 key, not the AWS-managed aws/s3 key.
    assert audit["SSEKMSKeyId"] == env["s3_key"]
    text = audit["Body"].read().decode()
    assert VISA not in text and json.loads(text)["cardLast4"] == "1111"
    assert env["failures"]() == []


def test_a_retried_payment_is_written_once(env, context):
    first = tp.handler(alb_event(payment()), context)
    again = tp.handler(alb_event(payment(amount=99)), context)
    assert first["statusCode"] == 201
    assert again["statusCode"] == 200
    body = json.loads(again["body"])
    assert body["duplicate"] is True
    # The stored transaction wins: a retry cannot change the amount.
    assert body["amount"] == "25.5"
    assert len(items(env["ddb"], "tx-1")) == 2  # the claim and the transaction, nothing more
    assert len(env["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]) == 1


def test_an_invalid_payment_fails_and_is_published_without_card_data(env, context):
    answer = tp.handler(alb_event(payment(transactionId="tx-bad", cardNumber="4111111111111112")), context)
    assert answer["statusCode"] == 400
    assert items(env["ddb"], "tx-bad") == []
    failures = env["failures"]()
    assert [f["transactionId"] for f in failures] == ["tx-bad"]
    assert "Luhn" in failures[0]["reason"]
    assert "4111111111111112" not in json.dumps(failures)


def test_a_storage_failure_is_published(env, context):
    env["s3"].delete_bucket(Bucket=BUCKET)
    answer = tp.handler(alb_event(payment(transactionId="tx-s3")), context)
    assert answer["statusCode"] == 500
    assert [f["transactionId"] for f in env["failures"]()] == ["tx-s3"]


def test_health_checks_and_routing(env, context):
    assert tp.handler(alb_event(None, method="GET", path="/health"), context)["statusCode"] == 200
    assert tp.handler(alb_event(payment(), method="GET"), context)["statusCode"] == 405
    assert tp.handler(alb_event(payment(), path="/other"), context)["statusCode"] == 404
    assert tp.handler(alb_event(payment(transactionId="tx-b64"), b64=True), context)["statusCode"] == 201


def test_nothing_logged_holds_the_card_number_or_the_key(env, context, caplog):
    caplog.set_level(logging.INFO, logger="payops")
    tp.handler(alb_event(payment()), context)
    tp.handler(alb_event(payment()), context)
    tp.handler(alb_event(payment(transactionId="x", cardNumber="4111111111111112")), context)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "payment processed" in text
    assert "4111111111111" not in text and KEY_HEX not in text


# ----------------------------------------------------------------- payment events

BUS = "payops-t1-payments"


@pytest.fixture
def bus(env):
    """The env's bus with a rule sending every payment event to a queue the test reads."""
    events = boto3.client("events")
    events.create_event_bus(Name=BUS)
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="seen-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-payments", EventBusName=BUS, EventPattern=json.dumps({"source": [tp.EVENT_SOURCE]}))
    events.put_targets(Rule="all-payments", EventBusName=BUS, Targets=[{"Id": "q", "Arn": queue_arn}])
    boto3.client("ssm").put_parameter(Name=f"{ENV_PATH}EventBusName", Value=BUS, Type="String")

    def seen():
        out = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in out]

    return {**env, "seen": seen}


def test_a_processed_payment_leaves_a_succeeded_event_without_card_data(bus, context):
    assert tp.handler(alb_event(payment(amount=12.34)), context)["statusCode"] == 201
    seen = bus["seen"]()
    assert [(e["source"], e["detail-type"]) for e in seen] == [(tp.EVENT_SOURCE, tp.SUCCEEDED)]
    detail = seen[0]["detail"]
    assert detail["transactionId"] == "tx-1" and detail["status"] == "PROCESSED" and detail["amount"] == "12.34"
    assert "1111" not in json.dumps(detail)  # not even the last four digits


def test_a_retried_payment_does_not_publish_again(bus, context):
    tp.handler(alb_event(payment()), context)
    assert tp.handler(alb_event(payment()), context)["statusCode"] == 200
    assert len(bus["seen"]()) == 1


def test_a_failed_payment_leaves_a_failed_event_with_its_reason(bus, context):
    answer = tp.handler(alb_event(payment(transactionId="tx-bad", cardNumber="4111111111111112")), context)
    assert answer["statusCode"] == 400
    seen = bus["seen"]()
    assert [e["detail-type"] for e in seen] == [tp.FAILED]
    assert seen[0]["detail"]["transactionId"] == "tx-bad" and "Luhn" in seen[0]["detail"]["reason"]
    assert "4111111111111112" not in json.dumps(seen)


def test_a_failed_publish_is_logged_and_counted_and_the_payment_still_answered(bus, context, capsys, caplog):
    caplog.set_level(logging.INFO, logger="payops")
    boto3.client("events").delete_event_bus(Name=BUS)
    assert tp.handler(alb_event(payment()), context)["statusCode"] == 201
    assert "payment event not published" in "\n".join(r.getMessage() for r in caplog.records)
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [(m["Env"], m["PaymentEventsFailed"]) for m in metrics] == [("t1", 1)]
    directive = metrics[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == tp.METRICS_NAMESPACE and directive["Dimensions"] == [["Env"]]


def test_entries_aws_refuses_in_a_200_answer_count_as_failed(context, capsys):
    class Events:
        def put_events(self, Entries):
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}]}

    ok = tp.publish_event(Events(), {"EventBusName": BUS}, tp.SUCCEEDED, {"transactionId": "tx-9"}, "req-9")
    assert ok is False
    assert '"PaymentEventsFailed": 1' in capsys.readouterr().out


def test_without_a_bus_nothing_is_published(env, context):
    class Events:
        def put_events(self, Entries):
            raise AssertionError("no bus configured: no PutEvents")

    assert tp.publish_event(Events(), {}, tp.SUCCEEDED, {"transactionId": "tx-1"}, "req-1") is False


# ------------------------------------------------------- settlement requests


@pytest.fixture
def processing(env):
    """The env's processing queue, as the queue consumer reads it."""
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="payops-t1-payments-processing")["QueueUrl"]
    boto3.client("ssm").put_parameter(Name=f"{ENV_PATH}PaymentsProcessingQueueUrl", Value=queue, Type="String")

    def requests():
        out = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [m["Body"] for m in out]

    return {**env, "sqs": sqs, "queue": queue, "requests": requests}


def test_a_processed_payment_asks_the_consumer_to_settle_it(processing, context):
    import payment_queue_consumer as consumer

    assert tp.handler(alb_event(payment()), context)["statusCode"] == 201
    bodies = processing["requests"]()
    assert bodies == [json.dumps({"transactionId": "tx-1"})]
    # The consumer reads exactly what the producer sends.
    assert consumer.settlement_request(bodies[0]) == "tx-1"
    assert VISA[-4:] not in bodies[0]


def test_a_failed_payment_is_not_settled(processing, context):
    answer = tp.handler(alb_event(payment(transactionId="tx-bad", cardNumber="4111111111111112")), context)
    assert answer["statusCode"] == 400
    assert processing["requests"]() == []


def test_a_retry_asks_again_while_unsettled_and_not_once_settled(processing, context):
    import payment_queue_consumer as consumer

    tp.handler(alb_event(payment()), context)
    assert len(processing["requests"]()) == 1
    # A retry while still PROCESSED asks again (the first send may have failed;
    # settling twice is harmless).
    assert tp.handler(alb_event(payment()), context)["statusCode"] == 200
    assert processing["requests"]() == [json.dumps({"transactionId": "tx-1"})]
    assert consumer.settle(processing["ddb"], TABLE, "tx-1") is True
    assert tp.handler(alb_event(payment()), context)["statusCode"] == 200
    assert processing["requests"]() == []


def test_a_failed_send_is_logged_and_counted_and_the_payment_still_answered(processing, context, capsys, caplog):
    caplog.set_level(logging.INFO, logger="payops")
    processing["sqs"].delete_queue(QueueUrl=processing["queue"])
    answer = tp.handler(alb_event(payment()), context)
    assert answer["statusCode"] == 201
    assert json.loads(answer["body"])["status"] == "PROCESSED"
    assert "settlement request not queued" in "\n".join(r.getMessage() for r in caplog.records)
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [(m["Env"], m.get("SettlementRequestsFailed")) for m in metrics] == [("t1", 1)]
    directive = metrics[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive["Metrics"] == [{"Name": "SettlementRequestsFailed", "Unit": "Count"}]


def test_a_send_error_of_any_kind_is_swallowed(context, capsys):
    from botocore.exceptions import EndpointConnectionError

    class Sqs:
        def send_message(self, QueueUrl, MessageBody):
            raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com")

    cfg = {"PaymentsProcessingQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/q"}
    assert tp.request_settlement(Sqs(), cfg, "tx-9", "req-9") is False
    assert '"SettlementRequestsFailed": 1' in capsys.readouterr().out


def test_without_a_processing_queue_nothing_is_sent(env, context):
    class Sqs:
        def send_message(self, QueueUrl, MessageBody):
            raise AssertionError("no queue configured: no SendMessage")

    assert tp.request_settlement(Sqs(), {}, "tx-1", "req-1") is False
    assert tp.handler(alb_event(payment()), context)["statusCode"] == 201


# ------------------------------------------------------------ transaction log

STREAM = "payops-t1-transaction-log"
LOG_BUCKET = "payops-t1-txlog"


@pytest.fixture
def transaction_log(env):
    """The env's stream to its bucket (moto delivers each put straight to S3,
    untransformed)."""
    s3 = env["s3"]
    s3.create_bucket(Bucket=LOG_BUCKET)
    boto3.client("firehose").create_delivery_stream(
        DeliveryStreamName=STREAM,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/payops-t1-us-east-1-transaction-log-delivery",
            "BucketARN": f"arn:aws:s3:::{LOG_BUCKET}",
            "Prefix": "transactions/",
        },
    )
    boto3.client("ssm").put_parameter(Name=f"{ENV_PATH}TransactionLogStreamName", Value=STREAM, Type="String")

    def logged():
        out = []
        for o in s3.list_objects_v2(Bucket=LOG_BUCKET).get("Contents", []):
            body = s3.get_object(Bucket=LOG_BUCKET, Key=o["Key"])["Body"].read().decode()
            out.extend(json.loads(line) for line in body.splitlines() if line)
        return out

    return {**env, "logged": logged}


def test_each_outcome_goes_to_the_transaction_log_once_without_card_data(transaction_log, context):
    assert tp.handler(alb_event(payment()), context)["statusCode"] == 201
    assert tp.handler(alb_event(payment()), context)["statusCode"] == 200  # a retry: not logged again
    assert tp.handler(alb_event(payment(transactionId="tx-bad", cardNumber="4111111111111112")), context)["statusCode"] == 400
    logged = transaction_log["logged"]()
    assert sorted((e["transactionId"], e["status"]) for e in logged) == [("tx-1", "PROCESSED"), ("tx-bad", "FAILED")]
    text = json.dumps(logged)
    assert VISA not in text and "4111111111111112" not in text and "cardHash" not in text


def test_a_failed_put_is_logged_and_counted_and_the_payment_still_answered(transaction_log, context, capsys, caplog):
    caplog.set_level(logging.INFO, logger="payops")
    boto3.client("firehose").delete_delivery_stream(DeliveryStreamName=STREAM)
    assert tp.handler(alb_event(payment()), context)["statusCode"] == 201
    assert "transaction log record not put" in "\n".join(r.getMessage() for r in caplog.records)
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [m.get("TransactionLogRecordsFailed") for m in metrics] == [1]


def test_the_log_line_is_what_the_transform_reads(context):
    import base64

    import transaction_log_transform as transform

    class Firehose:
        def __init__(self):
            self.records = []

        def put_record(self, DeliveryStreamName, Record):
            self.records.append(Record["Data"])

    firehose = Firehose()
    entry = tp.succeeded_event({"transactionId": "tx-7", "timestamp": "2026-12-06T12:00:00Z", "status": "PROCESSED", "amount": "9.99", "currency": "EUR"})
    assert tp.log_transaction(firehose, {"TransactionLogStreamName": STREAM}, entry, "req-7") is True
    event = {"records": [{"recordId": "r1", "data": base64.b64encode(firehose.records[0]).decode()}]}
    out = transform.handler(event, context)["records"]
    assert out[0]["result"] == transform.OK
    assert json.loads(base64.b64decode(out[0]["data"]))["transactionId"] == "tx-7"


def test_without_a_stream_nothing_is_put(context):
    class Firehose:
        def put_record(self, DeliveryStreamName, Record):
            raise AssertionError("no stream configured: no PutRecord")

    assert tp.log_transaction(Firehose(), {}, {"transactionId": "tx-1"}, "req-1") is False
