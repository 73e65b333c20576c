#!/usr/bin/env python3
"""A fault-injecting proxy in front of an AWS emulator (stdlib only).

For a seeded share of *mutating* calls it either
  - throttles: answers the service's own throttling error without forwarding
    (the SDK backs off and retries), or
  - loses the answer: forwards the call, lets the emulator apply it, then
    answers 503 (the SDK retries a call that already happened: what AWS does
    on a bad day, and what makes non-idempotent creates meet themselves).
Reads are always forwarded untouched, so payops' finds see the truth.

    scripts/fault-proxy.py --upstream http://127.0.0.1:5155 --port 0 \
        --seed 7 --throttle 0.05 --lost 0.05 [--log FILE]

With --lambda-concurrency N it also answers Lambda's GetAccountSettings as
a new account does (limit N, all of it unreserved), and with --log it logs
every mutating call it forwards (`mutating ...`), so a test can show that a
run changed nothing.

A stricter account, for the quota and zone rules (tests turn these on; the
demo never runs through the proxy):
  --account-id ID           every call goes to this account of the emulator
                            (moto's `x-moto-account-id`), so quotas count only
                            what the test made, not the parallel tests' envs
  --elastic-ip-quota N      EC2's vpc-max-elastic-ips is N, and AllocateAddress
                            beyond N addresses answers AddressLimitExceeded
  --lambda-unsupported-zone ZONE_ID
                            Lambda refuses a VPC config with a subnet in that
                            zone (AWS: use1-az3), as AWS answers it

AWS's pace, for the realistic-timing benchmark (scripts/bench-timing):
  --durations FILE --scale S
                            a mutating call that matches a row of FILE
                            (src/resources/aws-durations.json: CreateDBInstance,
                            CreateNatGateway, ...) is applied at once but
                            answered only after the row's real seconds times
                            S (0.05: a minute of AWS is 3 s here), so each
                            step takes as long, relative to the others, as it
                            does on AWS

Prints `http://127.0.0.1:PORT` on stdout once listening. A retry of a call
that was just faulted is always forwarded cleanly, so every call succeeds
within the SDK's attempts and only the "applied twice" effect remains.
"""

import argparse
import hashlib
import http.client
import json
import random
import re
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MUTATING = re.compile(
    r"^(Create|Delete|Put|Update|Modify|Attach|Detach|Associate|Disassociate|Authorize|"
    r"Revoke|Allocate|Release|Tag|Untag|Add|Remove|Set|Enable|Disable|Schedule|Import|"
    r"Register|Deregister|Replace|Run|Start|Stop|Restore|Publish|Subscribe|Unsubscribe|"
    r"Rotate|Cancel|Apply|Change|Reboot|Terminate|Accept|Reject)"
)

# The code each protocol's SDK error parser reads, and the one the SDK's
# retry classifier knows as throttling.
THROTTLE_CODE = {"ec2": "RequestLimitExceeded", "s3": "SlowDown"}


def service_of(headers):
    """The SigV4 credential scope names the service: .../us-east-1/ec2/aws4_request."""
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request", headers.get("authorization", ""))
    return m.group(1) if m else "unknown"


def operation_of(method, path, headers, body):
    target = headers.get("x-amz-target")
    if target:
        operation = target.rsplit(".", 1)[-1]
        return operation, bool(MUTATING.match(operation))
    ctype = headers.get("content-type", "")
    if "x-www-form-urlencoded" in ctype and body:
        action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        return action, bool(MUTATING.match(action))
    # REST protocols: the verb says it.
    return f"{method} {path.split('?')[0]}", method in ("POST", "PUT", "DELETE", "PATCH")


def throttle_response(service, headers):
    """(status, headers, body) of the service's throttling error."""
    code = THROTTLE_CODE.get(service, "ThrottlingException")
    message = "Rate exceeded (payops fault proxy)"
    if service == "s3":
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        return 503, {"Content-Type": "application/xml"}, body
    if service == "ec2":
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
                "</Error></Errors><RequestID>fault-proxy</RequestID></Response>")
        return 503, {"Content-Type": "text/xml"}, body
    if headers.get("x-amz-target"):
        body = json.dumps({"__type": code, "message": message})
        return 400, {"Content-Type": "application/x-amz-json-1.1"}, body
    if "x-www-form-urlencoded" in headers.get("content-type", ""):
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                f"<Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>")
        return 400, {"Content-Type": "text/xml"}, body
    body = json.dumps({"message": message})
    return 429, {"Content-Type": "application/json", "x-amzn-ErrorType": "TooManyRequestsException"}, body


class State:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.faulted = set()  # fingerprints of calls just faulted: their retry goes through
        self.counts = {"throttled": 0, "lost": 0, "mutating": 0, "forwarded": 0}
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.slow = load_durations(args.durations, args.scale) if args.durations else []

    def delay(self, call):
        """Seconds to hold the answer to `call` ("service Operation")."""
        for pattern, seconds in self.slow:
            if pattern.fullmatch(call):
                return seconds
        return 0.0

    def decide(self, fingerprint):
        with self.lock:
            self.counts["mutating"] += 1
            if fingerprint in self.faulted:
                self.faulted.discard(fingerprint)
                return None
            roll = self.rng.random()
            if roll < self.args.throttle:
                fault = "throttle"
            elif roll < self.args.throttle + self.args.lost:
                fault = "lost"
            else:
                return None
            self.faulted.add(fingerprint)
            self.counts["throttled" if fault == "throttle" else "lost"] += 1
            return fault

    def record(self, line):
        if self.log:
            with self.lock:
                self.log.write(line + "\n")


def load_durations(path, scale):
    """[(pattern of "service Operation", scaled seconds per call)] of a table."""
    with open(path) as f:
        table = json.load(f)
    rows = []
    for row in table["steps"]:
        calls = row.get("calls", 1)
        for way in ("up", "down"):
            if row.get(f"{way}_call"):
                rows.append((re.compile(row[f"{way}_call"]), row[way] * scale / calls))
    return rows


def ec2_error(code, message):
    body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
            "</Error></Errors><RequestID>fault-proxy</RequestID></Response>")
    return 400, {"Content-Type": "text/xml"}, body


def account_attributes(quota):
    """EC2's answer to DescribeAccountAttributes, with the quota set."""
    body = ('<DescribeAccountAttributesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            "<requestId>fault-proxy</requestId><accountAttributeSet><item>"
            "<attributeName>vpc-max-elastic-ips</attributeName><attributeValueSet><item>"
            f"<attributeValue>{quota}</attributeValue></item></attributeValueSet></item>"
            "</accountAttributeSet></DescribeAccountAttributesResponse>")
    return 200, {"Content-Type": "text/xml"}, body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None

    def log_message(self, *args):
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        # The SDK sends lower-case names; compare them so.
        headers = {k.lower(): v for k, v in self.headers.items()}
        service = service_of(headers)
        operation, mutating = operation_of(self.command, self.path, headers, body)
        if self.command == "GET" and self.path.rstrip("/").endswith("/2016-08-19/account-settings") \
                and self.state.args.lambda_concurrency is not None:
            n = self.state.args.lambda_concurrency
            body = json.dumps({
                "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                                 "CodeSizeZipped": 52428800, "ConcurrentExecutions": n,
                                 "UnreservedConcurrentExecutions": n},
                "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0},
            })
            self._send(200, {"Content-Type": "application/json"}, body)
            return
        if self.state.args.account_id:
            headers["x-moto-account-id"] = self.state.args.account_id
        strict = self._strict(service, operation, body, headers)
        if strict is not None:
            self.state.record(f"refused {service} {operation} ({strict[0]})")
            self._send(*strict)
            return
        fault = None
        if mutating:
            # The SDK's retry of a call sends the same body to the same path.
            fingerprint = hashlib.sha256(
                f"{service} {self.command} {self.path}".encode() + body
            ).hexdigest()
            fault = self.state.decide(fingerprint)
        if fault == "throttle":
            self.state.record(f"throttle {service} {operation}")
            self._send(*throttle_response(service, headers))
            return
        status, out_headers, out_body = self._forward(body, headers)
        if mutating:
            self.state.record(f"mutating {service} {operation} ({status})")
            held = self.state.delay(f"{service} {operation}") if status < 300 else 0.0
            if held:
                time.sleep(held)
        if fault == "lost":
            self.state.record(f"lost {service} {operation} (applied: {status})")
            self._send(503, {"Content-Type": "text/plain"}, "Service Unavailable (payops fault proxy)")
            return
        self._send(status, out_headers, out_body)

    def _ec2(self, headers, params):
        """An EC2 query call to the emulator, as the caller (same account)."""
        h = dict(headers)
        h["authorization"] = re.sub(r"/[^/]+/aws4_request", "/ec2/aws4_request", h.get("authorization", ""))
        h["content-type"] = "application/x-www-form-urlencoded; charset=utf-8"
        h.pop("x-amz-target", None)
        body = urllib.parse.urlencode({**params, "Version": "2016-11-15"}).encode()
        h["content-length"] = str(len(body))
        up = urllib.parse.urlsplit(self.state.args.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        try:
            conn.request("POST", "/", body=body, headers=h)
            return conn.getresponse().read().decode("utf-8", "replace")
        finally:
            conn.close()

    def _strict(self, service, operation, body, headers):
        """The stricter account's answer, or None to go on."""
        args = self.state.args
        if args.elastic_ip_quota is not None and service == "ec2":
            if operation == "DescribeAccountAttributes":
                return account_attributes(args.elastic_ip_quota)
            if operation == "AllocateAddress":
                held = self._ec2(headers, {"Action": "DescribeAddresses"}).count("<allocationId>")
                if held >= args.elastic_ip_quota:
                    # AWS's code and message for a region's address quota.
                    return ec2_error("AddressLimitExceeded", "The maximum number of addresses has been reached.")
        if args.lambda_unsupported_zone and service == "lambda" and self.command in ("POST", "PUT") \
                and re.search(r"/functions(/[^/]+/configuration)?/?$", self.path.split("?")[0]):
            try:
                subnets = (json.loads(body or b"{}").get("VpcConfig") or {}).get("SubnetIds") or []
            except ValueError:
                subnets = []
            if subnets:
                params = {"Action": "DescribeSubnets"}
                for i, s in enumerate(subnets, 1):
                    params[f"SubnetId.{i}"] = s
                answer = self._ec2(headers, params)
                if f"<availabilityZoneId>{args.lambda_unsupported_zone}</availabilityZoneId>" in answer:
                    # Lambda's answer to a subnet in a zone it does not run in.
                    message = ("The provided subnets contain availability zone Lambda doesn't support. "
                               "Please use a different set of subnets.")
                    return 400, {"Content-Type": "application/json",
                                 "x-amzn-ErrorType": "InvalidParameterValueException"}, \
                        json.dumps({"Type": "User", "message": message})
        return None

    def _forward(self, body, headers):
        up = urllib.parse.urlsplit(self.state.args.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=300)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            skip = {"transfer-encoding", "connection", "content-length"}
            out = {k: v for k, v in resp.getheaders() if k.lower() not in skip}
            return resp.status, out, data
        finally:
            conn.close()

    def _send(self, status, headers, body):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--throttle", type=float, default=0.05, help="share of mutating calls throttled")
    p.add_argument("--lost", type=float, default=0.05, help="share applied, then answered 503")
    p.add_argument("--log", help="append one line per fault and per mutating call to FILE")
    p.add_argument("--lambda-concurrency", type=int,
                   help="answer GetAccountSettings as a new account with this limit")
    p.add_argument("--account-id", help="send every call to this emulator account (moto)")
    p.add_argument("--elastic-ip-quota", type=int,
                   help="an Elastic IP quota of N, enforced on AllocateAddress")
    p.add_argument("--lambda-unsupported-zone",
                   help="a zone ID where Lambda refuses VPC subnets (AWS: use1-az3)")
    p.add_argument("--durations", help="hold answers to AWS's pace: a table like src/resources/aws-durations.json")
    p.add_argument("--scale", type=float, default=0.05,
                   help="seconds here per second on AWS (with --durations)")
    args = p.parse_args()
    Handler.state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        Handler.state.record(json.dumps(Handler.state.counts))


if __name__ == "__main__":
    sys.exit(main())
