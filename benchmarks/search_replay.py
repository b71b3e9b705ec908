"""Replay a committed search cassette and check that it reproduces its run (a script, not a test).

Usage::

    .venv/bin/python benchmarks/search_replay.py NAME [--budget N] [--out DIR]

``NAME`` names a pair of files in ``benchmarks/cassettes/``: ``NAME.jsonl`` (the run's LLM
calls, from ``llmnas archive cassette``) and ``NAME.candidates.jsonl`` (the run's
``llmnas archive list --json`` rows), plus the run config ``benchmarks/search/<config>.toml``
recorded in the first line of the candidates file. The script runs ``llmnas run --config ...
--llm replay:NAME.jsonl`` (optionally only the first ``--budget`` candidates) and compares the
candidates' normalised-AST hashes, operators and statuses with the recorded ones, in id order.
It prints every difference and exits 1 if there is one. Validation accuracies are compared
too, but only reported: training is deterministic for one thread count on one machine, not
across machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASSETTES = HERE / "cassettes"


def record(run_dir: Path, name: str, config: str) -> None:
    """Write NAME.jsonl and NAME.candidates.jsonl for a finished run (used once, by hand)."""
    llmnas = [sys.executable, "-m", "llmnas"]
    cassette = CASSETTES / f"{name}.jsonl"
    subprocess.run(
        [*llmnas, "archive", "cassette", str(run_dir), "--to", str(cassette)], check=True
    )
    rows = subprocess.run(
        [*llmnas, "archive", "list", str(run_dir), "--json"], check=True, capture_output=True
    ).stdout.decode()
    header = json.dumps({"config": config})
    (CASSETTES / f"{name}.candidates.jsonl").write_text(header + "\n" + rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="cassette name in benchmarks/cassettes/ (no extension)")
    ap.add_argument("--budget", type=int, help="replay only the first N candidates")
    ap.add_argument("--out", type=Path, help="run folder (default: a temporary one)")
    ap.add_argument("--record", type=Path, metavar="RUN", help="write the pair from RUN instead")
    ap.add_argument("--config", help="with --record: the config's name in benchmarks/search/")
    args = ap.parse_args()
    if args.record:
        record(args.record, args.name, args.config or args.name)
        return 0
    lines = (CASSETTES / f"{args.name}.candidates.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    config = header.get("config")
    if config is None:  # recorded by an older llmnas: its prompts differ from today's
        print(f"{args.name} was recorded by llmnas at commit {header.get('commit')} with "
              f"`{header.get('command')}`; replay it with that commit", file=sys.stderr)  # fmt: skip
        return 2
    expected = [json.loads(line) for line in lines[1:]]
    if args.budget:
        expected = expected[: args.budget]
    out = args.out or Path(tempfile.mkdtemp(prefix="llmnas-replay-")) / "run"
    cmd = [
        sys.executable, "-m", "llmnas", "run",
        "--config", str(HERE / "search" / f"{config}.toml"),
        "--llm", f"replay:{CASSETTES / f'{args.name}.jsonl'}",
        "--budget", str(len(expected)), "--out", str(out),
    ]  # fmt: skip
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    got = subprocess.run(
        [sys.executable, "-m", "llmnas", "archive", "list", str(out), "--json"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    rows = [json.loads(line) for line in got.splitlines()]
    differences, acc_moves = 0, []
    for want, have in zip(expected, rows, strict=False):
        keys = ("hash", "operator", "status")
        if any(want[k] != have[k] for k in keys):
            differences += 1
            print(f"#{want['id']}: recorded {[want[k] for k in keys]}, replayed "
                  f"{[have[k] for k in keys]}")  # fmt: skip
        elif want["val_accuracy"] != have["val_accuracy"]:
            acc_moves.append(abs((want["val_accuracy"] or 0) - (have["val_accuracy"] or 0)))
    if len(rows) != len(expected):
        differences += 1
        print(f"recorded {len(expected)} candidates, replayed {len(rows)}")
    print(
        f"{len(expected) - differences} of {len(expected)} candidates reproduced "
        f"(hash, operator, status); validation accuracy differs for {len(acc_moves)}"
        + (f" (largest move {max(acc_moves):.3f})" if acc_moves else "")
    )
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
