"""Worker utilisation of the evolution loop when the LLM is slow.

A local OpenAI-compatible server on 127.0.0.1 answers every chat completion after a fixed
latency with a program: the first parent program found in the prompt, edited by the AST
operator (seeded), in a fenced block. The real loop (``llmnas run --strategy llm`` with the
``openai:`` backend and the official client) then evolves MNIST-1D with 2 sandbox workers.

Utilisation = (sum of evaluation seconds) / (workers x span), where the span runs from the
start of the first evaluation to the last commit. Two runs side by side: an instant LLM and a
2-second LLM.

    python benchmarks/loop_utilisation.py [--budget 24] [--latency 2.0]

Target (issue 5): with a 2 s LLM and 2 workers, workers busy >= 90 % of the time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from llmnas.config import RunConfig
from llmnas.operators import ast_ops
from llmnas.runner import start_run
from llmnas.store import RunStore

FENCE = re.compile(r"```(?:python)?\n(.*?)```", re.S)


def serve(latency: float) -> tuple[ThreadingHTTPServer, str]:
    counter = {"n": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                counter["n"] += 1
                k = counter["n"]
            time.sleep(latency)
            prompt = body["messages"][-1]["content"]
            blocks = FENCE.findall(prompt)
            parent = blocks[-1] if blocks else ""
            edit = ast_ops.mutate(parent, random.Random(k), input_shape=(1, 40)) if parent else None
            code = edit.source if edit else parent
            reply = {
                "id": f"c{k}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"```python\n{code}```"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt) // 4,
                    "completion_tokens": len(code) // 4,
                    "total_tokens": 0,
                },
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def measure(latency: float, budget: int, workers: int, root: Path) -> dict:
    httpd, url = serve(latency)
    os.environ.setdefault("OPENAI_API_KEY", "not-needed")
    out = root / f"latency-{latency:g}"
    config = RunConfig(
        task="mnist1d",
        strategy="llm",
        budget=budget,
        seed=0,
        out=str(out),
        workers=workers,
        llm={"spec": "openai:bench", "url": url, "max_concurrency": 4},
        evolution={"fix_rate": 0.0},
    )
    try:
        stats = start_run(config)
    finally:
        httpd.shutdown()
    with RunStore.open(out, read_only=True) as store:
        cands = [c for c in store.candidates() if "eval_seconds" in c.result.timings]
    busy = sum(c.result.timings["eval_seconds"] for c in cands)
    first = min(c.created_at - c.result.timings["eval_seconds"] for c in cands)
    span = max(c.created_at for c in cands) - first
    return {
        "latency": latency,
        "evaluated": len(cands),
        "committed": stats.committed,
        "busy": busy,
        "span": span,
        "util": busy / (workers * span),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=24)
    ap.add_argument("--latency", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(lat, args.budget, args.workers, Path(tmp)) for lat in (0.0, args.latency)]
    print(
        f"worker utilisation, MNIST-1D, llm strategy over a local OpenAI-compatible server, {args.workers} workers\n"
    )
    print(
        f"{'LLM latency s':>14}{'candidates':>12}{'evaluated':>11}{'busy s':>9}{'span s':>9}{'utilisation':>13}"
    )
    for r in rows:
        print(
            f"{r['latency']:>14.1f}{r['committed']:>12}{r['evaluated']:>11}{r['busy']:>9.1f}{r['span']:>9.1f}{r['util']:>12.1%}"
        )
    slow = rows[-1]["util"]
    print(
        f"\ntarget with a {args.latency:g} s LLM: >= 90 % busy: {'met' if slow >= 0.9 else 'MISSED'} ({slow:.1%})"
    )


if __name__ == "__main__":
    main()
