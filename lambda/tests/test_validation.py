import json
import logging
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from moto import mock_aws

import boto3
import payment_validation
import payops_lib as lib
from conftest import ENV_PATH, MASTERCARD, VISA, payment


def event(body):
    return {"body": json.dumps(body), "isBase64Encoded": False}


@pytest.fixture
def ssm():
    with mock_aws():
        client = boto3.client("ssm")
        client.put_parameter(Name=f"{ENV_PATH}AllowedCurrencies", Value="USD,EUR,JPY", Type="String")
        client.put_parameter(Name=f"{ENV_PATH}secure/PanHashKey", Value="00" * 32, Type="SecureString")
        yield client


def test_luhn():
    assert lib.luhn_valid("4111111111111111")
    assert lib.luhn_valid("79927398713")
    assert not lib.luhn_valid("4111111111111112")
    assert not lib.luhn_valid("41111111x1111111")


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"cardNumber": None}, "missing required fields: cardNumber"),
        ({"amount": None, "currency": None}, "missing required fields: amount, currency"),
        ({"amount": -5}, "greater than zero"),
        ({"amount": 0}, "greater than zero"),
        ({"amount": "12"}, "amount must be a number"),
        ({"amount": True}, "amount must be a number"),
        ({"amount": 10.123}, "at most 2 decimal places"),
        ({"amount": 100, "currency": "JPY"}, None),
        ({"amount": 100.5, "currency": "JPY"}, "JPY amounts have at most 0 decimal places"),
        ({"amount": 1_000_000}, "exceeds the maximum"),
        ({"currency": "usd"}, "currency is not supported"),
        ({"currency": "XXX"}, "currency is not supported"),
        ({"cardNumber": "4111111111111112"}, "Luhn"),
        ({"cardNumber": "41111"}, "12 to 19 digits"),
        ({"cardNumber": 4111111111111111}, "must be a string"),
        ({"transactionId": "has space"}, "transactionId"),
        ({"expiryMonth": 13, "expiryYear": 2030}, "expiryMonth must be 1-12"),
        ({"expiryMonth": 1, "expiryYear": 2020}, "expired"),
    ],
)
def test_payment_rules(overrides, reason):
    cfg = {"AllowedCurrencies": "USD,EUR,JPY"}
    body = json.loads(json.dumps(payment(**overrides)), parse_float=Decimal)
    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    if reason is None:
        assert lib.validate_payment(body, cfg, now)["currency"] == body["currency"]
        return
    with pytest.raises(lib.PaymentError) as e:
        lib.validate_payment(body, cfg, now)
    assert reason in e.value.reason
    # A reason never repeats the card number.
    assert "4111111111111" not in e.value.reason


def test_card_numbers_with_spaces_are_normalized():
    cfg = {}
    body = json.loads(json.dumps(payment(cardNumber=MASTERCARD)), parse_float=Decimal)
    assert lib.validate_payment(body, cfg)["cardNumber"] == "5555555555554444"


def test_handler_answers_200_for_a_valid_payment(ssm, context):
    answer = payment_validation.handler(event(payment()), context)
    assert answer["statusCode"] == 200
    # No DbProxyEndpoint in this configuration: no customer check, and it says so.
    assert json.loads(answer["body"]) == {"valid": True, "transactionId": "tx-1", "customerChecked": False}


def test_handler_answers_400_with_a_reason(ssm, context):
    answer = payment_validation.handler(event(payment(currency="GBP")), context)
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"]) == {"valid": False, "reason": "currency is not supported"}
    answer = payment_validation.handler({"body": "{not json"}, context)
    assert answer["statusCode"] == 400


def test_validation_never_reads_secrets(ssm, context):
    payment_validation.handler(event(payment()), context)
    assert lib.names_read() == {*lib.PAYMENT_SETTINGS, "DbProxyEndpoint", "AuroraDatabaseName", "DbSchemaVersion"}


def test_the_card_number_is_never_logged(ssm, context, caplog):
    caplog.set_level(logging.INFO, logger="payops")
    payment_validation.handler(event(payment()), context)
    payment_validation.handler(event(payment(amount=-1)), context)
    payment_validation.handler(event(payment(cardNumber="4111111111111112")), context)
    assert caplog.records, "the handler logs what it decided"
    for record in caplog.records:
        text = record.getMessage()
        assert "411111111111" not in text, text


def test_redact_masks_card_numbers_anywhere():
    logged = lib.redact({"note": f"card {VISA} used", "cardNumber": VISA, "nested": [{"pan": "x"}], "amount": Decimal("1.5")})
    assert logged == {"note": "card [redacted] used", "cardNumber": "[redacted]", "nested": [{"pan": "[redacted]"}], "amount": "1.5"}
    assert lib.redact("spaced 5555 5555 5555 4444 end") == "spaced [redacted] end"
    # Short numbers (amounts, ids) stay readable.
    assert lib.redact("order 12345 for 99.90") == "order 12345 for 99.90"


def test_configuration_is_read_by_name_in_batches_once_per_container(ssm, monkeypatch):
    for i in range(12):
        ssm.put_parameter(Name=f"{ENV_PATH}Setting{i}", Value=str(i), Type="String")
    calls = []
    real_client = boto3.client

    def counting_client(service, **kwargs):
        client = real_client(service, **kwargs)
        client.meta.events.register(
            "before-parameter-build.ssm.*",
            lambda model, params, **_: calls.append((model.name, params.get("WithDecryption"))),
        )
        return client

    monkeypatch.setattr(lib.boto3, "client", counting_client)
    names = [f"Setting{i}" for i in range(12)] + ["NotThere", "secure/PanHashKey"]
    got = lib.config(*names)
    assert got["Setting11"] == "11" and got["secure/PanHashKey"] == "00" * 32
    assert "NotThere" not in got
    # 14 names: two GetParameters (at most 10 each), never the whole path;
    # only the batch holding the secret is decrypted.
    assert calls == [("GetParameters", False), ("GetParameters", True)]
    # Cached for the container's life: asking again reads nothing.
    assert lib.config("Setting3", "NotThere") == {"Setting3": "3"}
    assert len(calls) == 2
