#!/usr/bin/env python3
"""A producer and a worker for taskwald, in Python's standard library only.

Submits --tasks tasks of type "greet" in one batch, then works them: claims
with a long poll, fails the first attempt of every fifth task (it comes back
at once with retry_after_micros 0), completes the rest with a result, and
stops when nothing is pending. Prints one line per task and a summary:

  python3 examples/http_client.py --server=http://127.0.0.1:7070 \
      --token_file=/etc/taskwald/admin.token --tasks=20

The API is in daemon/http_api.h: bodies are protobuf's JSON mapping, so
64-bit integers (ids, tokens) are strings and payloads are base64.
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request


class Taskwald:
    def __init__(self, server, token):
        self.server = server.rstrip("/")
        self.token = token

    def call(self, method, path, body=None):
        """Returns (HTTP status, parsed JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data,
                                         method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            # Every error body is {"code": "...", "message": "..."}.
            return error.code, json.load(error)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:7070")
    parser.add_argument("--token_file", help="file holding the admin token")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--run", default="demo", help="prefix of the keys")
    args = parser.parse_args()
    token = ""
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    api = Taskwald(args.server, token)

    specs = [{
        "idempotency_key": "%s-%d" % (args.run, i),
        "type": "greet",
        "payload": base64.b64encode(
            json.dumps({"name": "user %d" % i}).encode()).decode(),
        "max_attempts": 3,
    } for i in range(args.tasks)]
    status, body = api.call("POST", "/v1/tasks/batch", {"tasks": specs})
    if status != 200:
        print("submit failed: %s %s" % (body["code"], body["message"]))
        return 1
    fresh = sum(1 for r in body["results"] if not r["deduplicated"])
    print("submitted %d tasks (%d new)" % (len(specs), fresh))

    completed = failed_attempts = 0
    while True:
        status, body = api.call("POST", "/v1/claims", {
            "worker_id": "python-worker", "type": "greet",
            "wait_micros": "500000"})
        if status == 404:  # Nothing ready: is anything still pending?
            _, due = api.call("GET", "/v1/next-due?type=greet")
            if not due["due"]:
                break
            continue
        if status != 200:
            print("claim failed: %s %s" % (body["code"], body["message"]))
            return 1
        task, claim = body["task"], body["claim"]
        payload = json.loads(base64.b64decode(task["payload"]))
        number = int(task["idempotency_key"].rsplit("-", 1)[1])
        if number % 5 == 0 and body["attempt"] == 1:
            status, reply = api.call("POST", "/v1/claims/fail", {
                "claim": claim, "error": "simulated failure",
                "retry_after_micros": "0"})
            failed_attempts += 1
            what = "attempt 1 failed"
        else:
            result = "hello, %s" % payload["name"]
            status, reply = api.call("POST", "/v1/claims/complete", {
                "claim": claim,
                "result": base64.b64encode(result.encode()).decode()})
            completed += 1
            what = "completed"
        if status != 200:
            # ABORTED: the claim was lost (lease expired); drop the task.
            print("task %s: %s" % (task["id"], reply["code"]))
            continue
        print("task %s (%s): %s" % (task["id"], task["idempotency_key"], what))

    _, stats = api.call("GET", "/v1/stats")
    print("done: %d completed, %d failed attempts; engine: %s completed, "
          "%s pending" % (completed, failed_attempts, stats["completed"],
                          stats["pending"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
