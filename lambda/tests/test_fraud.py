import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

import fraud_detection as fraud
import payops_lib as lib
from conftest import ENV_PATH

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def p(**overrides):
    base = {"transactionId": "tx-9", "customerId": "c-1", "amount": Decimal("100"), "currency": "USD"}
    base.update(overrides)
    return base


def history_of(items):
    return lambda since: [t for t in items if t["timestamp"] >= since]


def tx(tid, minutes_ago, amount="10"):
    return {"transactionId": tid, "timestamp": lib.iso(NOW - timedelta(minutes=minutes_ago)), "amount": Decimal(amount)}


RULES = [
    {"ruleId": "big", "type": "amount_above", "threshold": Decimal("1000"), "score": Decimal(40)},
    {"ruleId": "fast", "type": "velocity", "maxTransactions": Decimal(3), "windowMinutes": Decimal(10), "score": Decimal(50)},
    {"ruleId": "daily", "type": "daily_amount_above", "threshold": Decimal("5000"), "score": Decimal(30)},
    {"ruleId": "risky-ccy", "type": "currency_in", "currencies": ["EUR"], "score": Decimal(10)},
    {"ruleId": "new", "type": "new_customer", "score": Decimal(20)},
]


def test_a_known_customer_with_a_small_payment_is_approved():
    r = fraud.score_payment(p(), RULES, history_of([tx("a", 600)]), NOW)
    assert r == {"score": 0, "decision": "APPROVE", "matchedRules": []}


def test_rules_add_up_and_decide():
    r = fraud.score_payment(p(amount=Decimal("2000")), RULES, history_of([tx("a", 600)]), NOW)
    assert r == {"score": 40, "decision": "APPROVE", "matchedRules": ["big"]}
    history = [tx("a", 1), tx("b", 2), tx("c", 3)]
    r = fraud.score_payment(p(amount=Decimal("2000")), RULES, history_of(history), NOW)
    assert r["matchedRules"] == ["big", "fast"]
    assert (r["score"], r["decision"]) == (90, "DECLINE")
    r = fraud.score_payment(p(), RULES, history_of(history), NOW)
    assert (r["score"], r["decision"]) == (50, "REVIEW")


def test_the_payment_itself_does_not_count_in_its_history():
    history = [tx("tx-9", 1), tx("b", 2), tx("c", 3)]
    r = fraud.score_payment(p(), RULES, history_of(history), NOW)
    assert "fast" not in r["matchedRules"]


def test_new_customers_daily_totals_and_currencies():
    r = fraud.score_payment(p(currency="EUR"), RULES, history_of([]), NOW)
    assert r["matchedRules"] == ["risky-ccy", "new"]
    history = [tx("a", 60 * 5, "4950")]
    r = fraud.score_payment(p(), RULES, history_of(history), NOW)
    assert r["matchedRules"] == ["daily"]


def test_the_score_is_capped_at_100():
    rules = [{"ruleId": str(i), "type": "amount_above", "threshold": 0, "score": 60} for i in range(3)]
    assert fraud.score_payment(p(), rules, history_of([]), NOW)["score"] == 100


@pytest.fixture
def tables():
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(
            TableName="payops-t1-fraud-rules",
            KeySchema=[{"AttributeName": "ruleId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "ruleId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.create_table(
            TableName="payops-t1-transactions",
            KeySchema=[{"AttributeName": "transactionId", "KeyType": "HASH"}, {"AttributeName": "timestamp", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "transactionId", "AttributeType": "S"},
                {"AttributeName": "timestamp", "AttributeType": "S"},
                {"AttributeName": "customerId", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "customerId-timestamp-index",
                    "KeySchema": [{"AttributeName": "customerId", "KeyType": "HASH"}, {"AttributeName": "timestamp", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=f"{ENV_PATH}FraudRulesTableName", Value="payops-t1-fraud-rules", Type="String")
        ssm.put_parameter(Name=f"{ENV_PATH}TransactionsTableName", Value="payops-t1-transactions", Type="String")
        yield boto3.resource("dynamodb")


def test_handler_scores_from_the_tables(tables, context):
    rules = tables.Table("payops-t1-fraud-rules")
    rules.put_item(Item={"ruleId": "fast", "type": "velocity", "maxTransactions": 2, "windowMinutes": 60, "score": 60})
    rules.put_item(Item={"ruleId": "off", "type": "amount_above", "threshold": 0, "score": 100, "enabled": False})
    txs = tables.Table("payops-t1-transactions")
    now = lib.utc_now()
    for i in range(2):
        txs.put_item(Item={"transactionId": f"old-{i}", "timestamp": lib.iso(now - timedelta(minutes=5 + i)), "customerId": "c-1", "amount": 5})
    # Another customer's transactions do not count.
    txs.put_item(Item={"transactionId": "other", "timestamp": lib.iso(now), "customerId": "c-2", "amount": 5})
    event = {"body": json.dumps({"transactionId": "tx-new", "customerId": "c-1", "amount": 12.5, "currency": "USD"})}
    answer = fraud.handler(event, context)
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"]) == {"transactionId": "tx-new", "score": 60, "decision": "REVIEW", "matchedRules": ["fast"]}
    event = {"body": json.dumps({"transactionId": "tx-new", "customerId": "c-3", "amount": 12.5, "currency": "USD"})}
    assert json.loads(fraud.handler(event, context)["body"])["decision"] == "APPROVE"


def test_handler_refuses_a_bad_request(tables, context):
    answer = fraud.handler({"body": json.dumps({"customerId": "c-1"})}, context)
    assert answer["statusCode"] == 400
    assert "transactionId" in json.loads(answer["body"])["reason"]
