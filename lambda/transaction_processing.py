"""POST /payments behind the internal ALB (blue/green aliases), reached from
API Gateway through the VPC link and the NLB. GET /health answers the NLB's
health checks without touching any data.

A payment is validated again (never trust the edge alone), then written to
the transactions table exactly once per transactionId: one DynamoDB
transaction puts a claim item `(transactionId, "#claim")` on the condition
that none exists, together with the transaction item itself. A retry with a
known transactionId gets the stored transaction back (200, `duplicate: true`)
and nothing is written twice. The audit record goes to the audit bucket
(`audit/transactions/YYYY/MM/DD/<transactionId>.json`, SSE-KMS), holding an
HMAC of the card number and its last four digits, never the number. A
payment that fails is published to the failed-transactions topic, without
card data.

With the env's event backbone (configuration `EventBusName`), each payment
also leaves an event on the env's bus, `Payment Succeeded` or `Payment
Failed` from source `payops.payments`, for whoever reacts to payments (the
bus's rules route them to the analytics queue and the failed-transactions
topic). The payment's answer never depends on the event: a publish that
fails is logged and counted (metric `PaymentEventsFailed`, namespace
`payops`, dimension `Env`, written as a CloudWatch embedded-metric log line
so that counting it cannot fail too), never raised.

A payment stored as PROCESSED also asks to be settled: one message
`{"transactionId": ...}` on the env's processing queue (configuration
`PaymentsProcessingQueueUrl`), the format the queue consumer
(payment_queue_consumer.py) reads. It is sent for a duplicate too, while the
stored transaction is still PROCESSED: settling is idempotent, so a client's
retry repairs a send that failed the first time. Like the event, the send
never changes the payment's answer: a failure is logged and counted
(`SettlementRequestsFailed`).

Each payment's outcome also goes to the transaction log: one record on the
env's Firehose stream (configuration `TransactionLogStreamName`), which a
transform function redacts and normalises and Firehose lands in S3. Put
directly, not forwarded from the table's stream: this function already holds
the record. A put that fails is logged and counted
(`TransactionLogRecordsFailed`), never the payment's failure.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

import payops_lib as lib

CLAIM = "#claim"
AUDIT_PREFIX = "audit/transactions"
EVENT_SOURCE = "payops.payments"
SUCCEEDED = "Payment Succeeded"
FAILED = "Payment Failed"
METRICS_NAMESPACE = "payops"


def _clients() -> tuple[Any, Any, Any, Any, Any, Any]:
    return (
        boto3.client("dynamodb"),
        boto3.client("s3"),
        boto3.client("sns"),
        boto3.client("events"),
        boto3.client("sqs"),
        boto3.client("firehose"),
    )


def audit_key(record: dict[str, Any]) -> str:
    day = record["timestamp"][:10].replace("-", "/")
    return f"{AUDIT_PREFIX}/{day}/{record['transactionId']}.json"


def audit_document(record: dict[str, Any]) -> bytes:
    """Derived from the stored record only, so writing it again is idempotent."""
    fields = ("transactionId", "timestamp", "customerId", "merchantId", "amount", "currency", "status", "cardHash", "cardLast4")
    return json.dumps({f: record.get(f) for f in fields}, sort_keys=True, default=str).encode()


def _item(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in record.items():
        out[k] = {"N": str(v)} if isinstance(v, Decimal) else {"S": str(v)}
    return out


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: Decimal(v["N"]) if "N" in v else v.get("S") for k, v in item.items()}


def store(dynamodb: Any, table: str, record: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Writes the transaction once; returns (the stored record, duplicate?)."""
    claim = {
        "transactionId": {"S": record["transactionId"]},
        "timestamp": {"S": CLAIM},
        "recordTimestamp": {"S": record["timestamp"]},
    }
    try:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": claim,
                        "ConditionExpression": "attribute_not_exists(transactionId)",
                    }
                },
                {"Put": {"TableName": table, "Item": _item(record)}},
            ]
        )
        return record, False
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            raise
        reasons = e.response.get("CancellationReasons") or []
        if reasons and reasons[0].get("Code") != "ConditionalCheckFailed":
            raise
    existing = dynamodb.get_item(
        TableName=table,
        Key={"transactionId": {"S": record["transactionId"]}, "timestamp": {"S": CLAIM}},
        ConsistentRead=True,
    )["Item"]
    stored = dynamodb.get_item(
        TableName=table,
        Key={"transactionId": {"S": record["transactionId"]}, "timestamp": existing["recordTimestamp"]},
        ConsistentRead=True,
    )["Item"]
    return _from_item(stored), True


def publish_failure(sns: Any, topic: str, transaction_id: Any, reason: str) -> None:
    message = {"transactionId": transaction_id, "reason": reason, "at": lib.iso(lib.utc_now())}
    sns.publish(TopicArn=topic, Subject="payops: payment failed", Message=json.dumps(lib.redact(message)))


def count_failed_event(env: str) -> None:
    count_failure(env, "PaymentEventsFailed")


def count_failure(env: str, metric: str) -> None:
    """One `metric` in an embedded-metric log line: CloudWatch extracts the
    metric from the log, so counting needs no call that could fail in turn."""
    line = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [["Env"]],
                    "Metrics": [{"Name": metric, "Unit": "Count"}],
                }
            ],
        },
        "Env": env,
        metric: 1,
    }
    print(json.dumps(line), flush=True)


def publish_event(events: Any, cfg: dict[str, str], detail_type: str, detail: dict[str, Any], request_id: Any) -> bool:
    """Puts one payment event on the env's bus; whether it was accepted.
    Never raises. Without `EventBusName` (the env leaves the event backbone
    out) there is nothing to publish to."""
    bus = cfg.get("EventBusName")
    if not bus:
        return False
    entry = {
        "EventBusName": bus,
        "Source": EVENT_SOURCE,
        "DetailType": detail_type,
        "Detail": json.dumps(lib.redact(detail), default=str),
    }
    try:
        out = events.put_events(Entries=[entry])
        # PutEvents answers 200 with per-entry failures (throttling, an
        # internal error): FailedEntryCount, not an exception.
        entries = out.get("Entries") or [{}]
        error = (entries[0].get("ErrorCode") or "FailedEntry") if out.get("FailedEntryCount") else None
    except (BotoCoreError, ClientError) as e:
        error = e.response.get("Error", {}).get("Code", "error") if isinstance(e, ClientError) else type(e).__name__
    if error is None:
        return True
    lib.log("payment event not published", requestId=request_id, detailType=detail_type, transactionId=detail.get("transactionId"), error=error)
    count_failed_event(lib.env_name())
    return False


def request_settlement(sqs: Any, cfg: dict[str, str], transaction_id: str, request_id: Any) -> bool:
    """Asks the queue consumer to settle the payment; whether SQS took the
    message. Never raises. Without `PaymentsProcessingQueueUrl` (the env
    leaves the event backbone out) nobody settles payments."""
    queue = cfg.get("PaymentsProcessingQueueUrl")
    if not queue:
        return False
    try:
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"transactionId": transaction_id}))
        return True
    except (BotoCoreError, ClientError) as e:
        error = e.response.get("Error", {}).get("Code", "error") if isinstance(e, ClientError) else type(e).__name__
    lib.log("settlement request not queued", requestId=request_id, transactionId=transaction_id, error=error)
    count_failure(lib.env_name(), "SettlementRequestsFailed")
    return False


def log_transaction(firehose: Any, cfg: dict[str, str], entry: dict[str, Any], request_id: Any) -> bool:
    """Puts the payment's outcome on the transaction log; whether Firehose
    took it. Never raises. Without `TransactionLogStreamName` (no event
    backbone) there is no log. No card data goes in (the transform drops it
    again, should a field slip through)."""
    stream = cfg.get("TransactionLogStreamName")
    if not stream:
        return False
    line = json.dumps(lib.redact(entry), default=str, sort_keys=True) + "\n"
    try:
        firehose.put_record(DeliveryStreamName=stream, Record={"Data": line.encode()})
        return True
    except (BotoCoreError, ClientError) as e:
        error = e.response.get("Error", {}).get("Code", "error") if isinstance(e, ClientError) else type(e).__name__
    lib.log("transaction log record not put", requestId=request_id, transactionId=entry.get("transactionId"), error=error)
    count_failure(lib.env_name(), "TransactionLogRecordsFailed")
    return False


def _public(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("transactionId", "timestamp", "status", "amount", "currency", "cardLast4")
    return {k: record[k] for k in keep if k in record}


def failed_event(transaction_id: Any, reason: str) -> dict[str, Any]:
    return {"transactionId": transaction_id, "status": "FAILED", "reason": reason, "at": lib.iso(lib.utc_now())}


def succeeded_event(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("transactionId", "timestamp", "merchantId", "customerId", "amount", "currency", "status")
    return {k: record[k] for k in keep if k in record}


def process(body: dict[str, Any], cfg: dict[str, str], clients: tuple[Any, Any, Any, Any, Any, Any], request_id: Any) -> dict[str, Any]:
    dynamodb, s3, sns, events, sqs, firehose = clients
    topic = cfg["FailedTransactionsTopicArn"]
    transaction_id = body.get("transactionId") if isinstance(body.get("transactionId"), str) else None
    try:
        payment = lib.validate_payment(body, cfg)
    except lib.PaymentError as e:
        lib.log("payment failed validation", requestId=request_id, transactionId=transaction_id, reason=e.reason)
        publish_failure(sns, topic, transaction_id, e.reason)
        publish_event(events, cfg, FAILED, failed_event(transaction_id, e.reason), request_id)
        if transaction_id is not None:
            log_transaction(firehose, cfg, failed_event(transaction_id, e.reason), request_id)
        return lib.response(400, {"status": "FAILED", "reason": e.reason}, alb=True)
    card = payment.pop("cardNumber")
    record = {
        **payment,
        "timestamp": lib.iso(lib.utc_now()),
        "status": "PROCESSED",
        "cardHash": lib.card_hash(card, cfg["secure/PanHashKey"]),
        "cardLast4": card[-4:],
    }
    del card
    try:
        stored, duplicate = store(dynamodb, cfg["TransactionsTableName"], record)
        s3.put_object(
            Bucket=cfg["AuditBucketName"],
            Key=audit_key(stored),
            Body=audit_document(stored),
            ContentType="application/json",
            # The env's own key: "aws:kms" without a key id means the
            # AWS-managed aws/s3 key (request headers override the bucket's
            # default encryption), which the env's key policy does not govern.
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=cfg["S3KmsKeyArn"],
        )
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "error")
        lib.log("payment failed", requestId=request_id, transactionId=payment["transactionId"], error=code)
        publish_failure(sns, topic, payment["transactionId"], f"storage failed: {code}")
        failed = failed_event(payment["transactionId"], f"storage failed: {code}")
        publish_event(events, cfg, FAILED, failed, request_id)
        log_transaction(firehose, cfg, failed, request_id)
        return lib.response(500, {"status": "FAILED", "reason": "the payment could not be stored"}, alb=True)
    lib.log(
        "payment processed",
        requestId=request_id,
        transactionId=stored["transactionId"],
        duplicate=duplicate,
        currency=stored.get("currency"),
    )
    # A duplicate's event left with its first processing.
    if not duplicate:
        publish_event(events, cfg, SUCCEEDED, succeeded_event(stored), request_id)
        log_transaction(firehose, cfg, succeeded_event(stored), request_id)
    if stored.get("status") == "PROCESSED":
        request_settlement(sqs, cfg, stored["transactionId"], request_id)
    status = 200 if duplicate else 201
    return lib.response(status, {**_public(stored), "duplicate": duplicate}, alb=True)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    method = (event.get("httpMethod") or "").upper()
    path = event.get("path") or "/"
    if path.rstrip("/") == "/health":
        return lib.response(200, {"status": "ok"}, alb=True)
    if path.rstrip("/") != "/payments":
        return lib.response(404, {"reason": "not found"}, alb=True)
    if method != "POST":
        return lib.response(405, {"reason": "use POST"}, alb=True)
    cfg = lib.config(
        "TransactionsTableName",
        "AuditBucketName",
        "FailedTransactionsTopicArn",
        "S3KmsKeyArn",
        "EventBusName",
        "PaymentsProcessingQueueUrl",
        "TransactionLogStreamName",
        "secure/PanHashKey",
        *lib.PAYMENT_SETTINGS,
    )
    try:
        body = lib.request_body(event)
    except lib.PaymentError as e:
        return lib.response(400, {"status": "FAILED", "reason": e.reason}, alb=True)
    return process(body, cfg, _clients(), request_id)
