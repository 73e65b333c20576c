"""POST /payments/validate (API Gateway, Lambda proxy integration).

Checks a payment request against the payment rules (required fields, amount
and currency, card number shape and Luhn checksum, expiry) and answers 200
`{"valid": true}` or 400 `{"valid": false, "reason": ...}`. It stores nothing
and reads only the env's plain configuration (no secrets).
"""

from __future__ import annotations

from typing import Any

import payops_lib as lib


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = getattr(context, "aws_request_id", None)
    try:
        body = lib.request_body(event)
        payment = lib.validate_payment(body, lib.config(*lib.PAYMENT_SETTINGS))
    except lib.PaymentError as e:
        lib.log("payment rejected", requestId=request_id, reason=e.reason)
        return lib.response(400, {"valid": False, "reason": e.reason})
    lib.log(
        "payment valid",
        requestId=request_id,
        transactionId=payment["transactionId"],
        currency=payment["currency"],
    )
    return lib.response(200, {"valid": True, "transactionId": payment["transactionId"]})
