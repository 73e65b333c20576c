"""Firehose's transformation contract, with records shaped as Firehose
delivers them (data-transformation.html: invocationId, deliveryStreamArn,
region, records of recordId, approximateArrivalTimestamp, base64 data)."""

import base64
import json
import logging

import transaction_log_transform as t
from conftest import VISA


def firehose_event(*entries):
    records = []
    for i, entry in enumerate(entries):
        raw = entry if isinstance(entry, bytes) else json.dumps(entry).encode()
        records.append(
            {
                "recordId": f"49546986683135544286507457936321625675700192471156785154{i}",
                "approximateArrivalTimestamp": 1764936000000 + i,
                "data": base64.b64encode(raw).decode(),
            }
        )
    return {
        "invocationId": "invocationIdExample",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/payops-t1-transaction-log",
        "region": "us-east-1",
        "records": records,
    }


def processed(**overrides):
    entry = {
        "transactionId": "tx-1",
        "timestamp": "2026-12-06T12:00:00.000Z",
        "status": "PROCESSED",
        "amount": "12.30",
        "currency": "usd",
        "merchantId": "m-1",
        "customerId": "cust-1",
        "cardHash": "9f" * 32,
        "cardLast4": "1111",
        "cardNumber": VISA,
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not None}


def decoded(record):
    return base64.b64decode(record["data"]).decode()


def test_card_data_is_dropped_and_the_rest_normalised_as_json_lines(context):
    out = t.handler(firehose_event(processed()), context)["records"]
    assert [r["result"] for r in out] == [t.OK]
    line = decoded(out[0])
    assert line.endswith("\n") and line.count("\n") == 1
    logged = json.loads(line)
    assert logged == {
        "transactionId": "tx-1",
        "timestamp": "2026-12-06T12:00:00.000Z",
        "status": "PROCESSED",
        "amount": "12.30",
        "currency": "USD",
        "merchantId": "m-1",
        "customerId": "cust-1",
    }
    assert VISA not in line and "1111" not in line and "cardHash" not in line


def test_every_record_comes_back_once_with_its_id(context):
    event = firehose_event(processed(), processed(transactionId="tx-2", duplicate=True), b"not json", processed(status="FAILED", reason="Luhn check failed", amount=None))
    out = t.handler(event, context)["records"]
    assert [r["recordId"] for r in out] == [r["recordId"] for r in event["records"]]
    assert [r["result"] for r in out] == [t.OK, t.DROPPED, t.FAILED, t.OK]
    assert json.loads(decoded(out[3]))["reason"] == "Luhn check failed"


def test_records_that_cannot_be_logged_fail_and_keep_their_data_for_the_error_prefix(context, caplog):
    caplog.set_level(logging.INFO, logger="payops")
    bad = [b"not json", json.dumps([1, 2]).encode(), processed(transactionId="tx 1"), processed(status="MAYBE"), processed(amount="twelve"), processed(amount="NaN")]
    event = firehose_event(*bad)
    out = t.handler(event, context)["records"]
    assert {r["result"] for r in out} == {t.FAILED}
    assert [r["data"] for r in out] == [r["data"] for r in event["records"]]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "transaction log record not usable" in text and VISA not in text


def test_a_card_number_slipped_into_a_kept_field_is_masked(context):
    out = t.handler(firehose_event(processed(status="FAILED", reason=f"card {VISA} declined")), context)["records"]
    assert out[0]["result"] == t.OK
    assert VISA not in decoded(out[0]) and "[redacted]" in decoded(out[0])


def test_an_empty_batch_answers_an_empty_list(context):
    assert t.handler({"invocationId": "i", "records": []}, context) == {"records": []}
