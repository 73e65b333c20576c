"""Handler tests: pure rules directly, AWS calls against moto in-process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

LAMBDA_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(LAMBDA_DIR))
# The PostgreSQL driver the zips ship, the same files (scripts/vendor-db-driver).
sys.path.insert(1, str(LAMBDA_DIR / "vendor"))

ENV_PATH = "/payops/t1/"
REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch):
    """No real credentials or endpoints can leak in; every test starts cold."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("PAYOPS_CONFIG_PATH", ENV_PATH)
    import fraud_detection
    import payment_validation
    import payops_lib

    payops_lib.reset_config()
    fraud_detection.reset_cache()
    payment_validation.reset_connection()
    yield
    payops_lib.reset_config()
    fraud_detection.reset_cache()
    payment_validation.reset_connection()


class Context:
    aws_request_id = "req-1"


@pytest.fixture
def context():
    return Context()


# Valid test card numbers (they pass Luhn; issued to nobody).
VISA = "4111111111111111"
MASTERCARD = "5555 5555 5555 4444"


def payment(**overrides):
    body = {
        "transactionId": "tx-1",
        "customerId": "cust-1",
        "merchantId": "m-1",
        "amount": 25.5,
        "currency": "USD",
        "cardNumber": VISA,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}
