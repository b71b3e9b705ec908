"""A small OpenAI-compatible HTTP server for offline tests (standard library only).

``FakeOpenAIServer`` listens on 127.0.0.1 (a free port) in a daemon thread and answers
``POST /v1/chat/completions``. The behaviour is chosen by the request's model name:

- ``ok``: ``n`` choices, ``"reply <k> seed=<seed>"``, usage 10 prompt + 5 per choice;
- ``single``: always one choice, whatever ``n`` (like servers that ignore ``n``);
- ``flaky-429`` / ``flaky-500`` / ``flaky-drop`` / ``flaky-malformed`` / ``flaky-nochoices``:
  the first request fails (429 with ``Retry-After: 0``, 500, connection closed without a
  reply, a body that is not JSON, JSON without ``choices``), later ones answer like ``ok``;
- ``slow``: sleeps ``slow_s`` seconds before answering like ``ok``;
- ``always-500``: every request fails with 500;
- ``new-tokens``: 400 unless the request uses ``max_completion_tokens``;
- any other model: 404 ``model_not_found``.

A bearer key other than ``good-key`` gets 401. Every parsed request body is kept in
``requests`` so tests can check what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["GOOD_KEY", "FakeOpenAIServer"]

GOOD_KEY = "good-key"


class FakeOpenAIServer:
    def __init__(self, slow_s: float = 1.5) -> None:
        self.slow_s = slow_s
        self.requests: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                h.send_header(key.replace("_", "-"), value)
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length", "0"))
        body = json.loads(h.rfile.read(length) or b"{}")
        model = body.get("model", "")
        with self._lock:
            self.requests.append(body)
            count = self.counts.get(model, 0)
            self.counts[model] = count + 1
        if h.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
            err = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            return self._send(h, 401, {"error": err})
        first = count == 0
        if model == "flaky-429" and first:
            err = {"message": "Rate limit reached", "type": "rate_limit"}
            return self._send(h, 429, {"error": err}, Retry_After="0")
        if (model == "flaky-500" and first) or model == "always-500":
            return self._send(h, 500, {"error": {"message": "internal error", "type": "server"}})
        if model == "flaky-drop" and first:
            h.close_connection = True
            h.connection.shutdown(2)
            return None
        if model == "flaky-malformed" and first:
            return self._send(h, 200, b'{"id": "x", "choices": [ {"trunc')
        if model == "flaky-nochoices" and first:
            return self._send(h, 200, {"id": "x", "object": "chat.completion"})
        if model == "slow":
            if self._stop.wait(self.slow_s):
                return None
        if model == "new-tokens" and "max_completion_tokens" not in body:
            err = {"message": "Unsupported parameter: 'max_tokens'; use 'max_completion_tokens'"}
            return self._send(h, 400, {"error": err})
        known = {"ok", "single", "slow", "new-tokens"} | {
            f"flaky-{k}" for k in ("429", "500", "drop", "malformed", "nochoices")
        }
        if model not in known:
            err = {
                "message": f"The model `{model}` does not exist",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
            return self._send(h, 404, {"error": err})
        n = 1 if model == "single" else int(body.get("n", 1))
        seed = body.get("seed")
        choices = [
            {
                "index": k,
                "message": {"role": "assistant", "content": f"reply {k} seed={seed}"},
                "finish_reason": "stop",
            }
            for k in range(n)
        ]
        usage = {"prompt_tokens": 10, "completion_tokens": 5 * n, "total_tokens": 10 + 5 * n}
        response = {
            "id": f"chatcmpl-{count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": usage,
        }
        return self._send(h, 200, response)
