"""The payments-processing queue's consumer, invoked by Lambda's SQS event
source mapping with batches of up to 10 messages.

A message asks for one processed payment to be settled:
`{"transactionId": "<id>"}` (other fields are ignored). Settling marks the
stored transaction `SETTLED` with the time (`settledAt`), once: the claim
item `(transactionId, "#claim")` that transaction processing wrote says which
item holds the transaction, and the update is conditional on that item
existing with status `PROCESSED` or already `SETTLED`. SQS delivers at least
once, so a message for a transaction already settled is done, not an error,
and nothing is written twice.

Failures are reported per message (`batchItemFailures`, with the mapping's
`ReportBatchItemFailures`): the messages settled are deleted from the queue,
only the failed ones come back after the visibility timeout, and after the
queue's maxReceiveCount receives SQS moves them to the dead-letter queue. A
poison message (not JSON, no valid transactionId, a transaction that does not
exist or cannot be settled) thus ends in the DLQ without holding back the
good ones. Only an error that concerns the whole batch (the configuration
cannot be read) is raised, which returns every message.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

import payops_lib as lib

CLAIM = "#claim"
SETTLED = "SETTLED"
SETTLEABLE = ("PROCESSED", SETTLED)


class NotSettled(Exception):
    """A message that cannot be settled; `reason` is safe to log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def settlement_request(body: str) -> str:
    """The transactionId a message's body asks to settle."""
    try:
        request = json.loads(body)
    except (TypeError, ValueError):
        raise NotSettled("the message is not JSON") from None
    transaction_id = request.get("transactionId") if isinstance(request, dict) else None
    if not isinstance(transaction_id, str) or not lib.TRANSACTION_ID.match(transaction_id):
        raise NotSettled("the message has no valid transactionId")
    return transaction_id


def settle(dynamodb: Any, table: str, transaction_id: str) -> bool:
    """Settles the transaction; True when this call settled it, False when it
    already was."""
    claim = dynamodb.get_item(
        TableName=table,
        Key={"transactionId": {"S": transaction_id}, "timestamp": {"S": CLAIM}},
        ConsistentRead=True,
    ).get("Item")
    if not claim or "recordTimestamp" not in claim:
        raise NotSettled("no such transaction")
    try:
        out = dynamodb.update_item(
            TableName=table,
            Key={"transactionId": {"S": transaction_id}, "timestamp": claim["recordTimestamp"]},
            UpdateExpression="SET #status = :settled, settledAt = if_not_exists(settledAt, :now)",
            ConditionExpression="attribute_exists(transactionId) AND #status IN (:processed, :settled)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":settled": {"S": SETTLED},
                ":processed": {"S": "PROCESSED"},
                ":now": {"S": lib.iso(lib.utc_now())},
            },
            ReturnValues="UPDATED_OLD",
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            raise NotSettled("the transaction is not in a state that can be settled") from None
        raise
    return out.get("Attributes", {}).get("status", {}).get("S") != SETTLED


def process(event: dict[str, Any], table: str, dynamodb: Any, request_id: Any) -> dict[str, Any]:
    failures = []
    settled = 0
    for record in event.get("Records") or []:
        message_id = record.get("messageId")
        try:
            transaction_id = settlement_request(record.get("body"))
            if settle(dynamodb, table, transaction_id):
                settled += 1
            lib.log("payment settled", requestId=request_id, messageId=message_id, transactionId=transaction_id)
        except NotSettled as e:
            lib.log("settlement refused", requestId=request_id, messageId=message_id, reason=e.reason)
            failures.append({"itemIdentifier": message_id})
        except (ClientError, BotoCoreError) as e:
            code = e.response.get("Error", {}).get("Code", "error") if isinstance(e, ClientError) else type(e).__name__
            lib.log("settlement failed", requestId=request_id, messageId=message_id, error=code)
            failures.append({"itemIdentifier": message_id})
    lib.log("batch done", requestId=request_id, settled=settled, failed=len(failures))
    return {"batchItemFailures": failures}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    cfg = lib.config("TransactionsTableName")
    return process(event, cfg["TransactionsTableName"], boto3.client("dynamodb"), request_id)
