"""One adversarial property per test. Sources here bypass the static gate on purpose: the
sandbox must hold even for code the gate would have refused."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from llmnas.records import FailureKind

OK_MODEL = """
import torch
class Model(torch.nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.l = torch.nn.Linear(input_shape[-1], num_classes)
    def forward(self, x):
        return self.l(x.flatten(1))
"""


def hostile(body: str) -> str:
    """A model whose constructor first runs ``body``."""
    lines = "\n".join("        " + line for line in body.strip().splitlines())
    return OK_MODEL.replace(
        "        super().__init__()\n", "        super().__init__()\n" + lines + "\n"
    )


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def test_valid_model_runs(run_raw):
    report = run_raw(OK_MODEL, epochs=1)
    assert report.failure is None
    assert report.logits["val"].shape[1] == 4


def test_timeout_kills(run_raw):
    report = run_raw(hostile("while True:\n    pass"), timeout=2)
    assert report.failure[0] is FailureKind.TIMEOUT


def test_memory_cap(run_raw):
    report = run_raw(
        hostile("import torch\nself.big = torch.ones(20_000_000_000, dtype=torch.uint8)"),
        memory_mb=512,
    )
    assert report.failure[0] is FailureKind.MEMORY, report.failure


def test_no_network(run_raw):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    port = server.getsockname()[1]
    got = []
    threading.Thread(target=lambda: got.append(_accept(server)), daemon=True).start()
    report = run_raw(
        hostile(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
    )
    time.sleep(0.5)
    server.close()
    assert report.failure is not None
    assert got in ([], [None])


def _accept(server):
    try:
        return server.accept()
    except OSError:
        return None


def test_writes_stay_in_scratch(run_raw, tmp_path):
    target = tmp_path / "escaped.txt"
    project_file = Path(__file__).resolve().parent.parent / "ESCAPED.txt"
    body = f"""
for path in [{str(target)!r}, {str(project_file)!r}, '/tmp/llmnas-escaped.txt']:
    try:
        with open(path, 'w') as fh:
            fh.write('x')
    except Exception:
        pass
"""
    run_raw(hostile(body))
    assert not target.exists()
    assert not project_file.exists()
    assert not Path("/tmp/llmnas-escaped.txt").exists()


def test_environment_scrubbed(run_raw):
    assert "sk-llmnas-test-secret" in os.environ["OPENAI_API_KEY"]
    body = """
import os
names = [k for k in os.environ if any(m in k.upper() for m in ('KEY', 'TOKEN', 'SECRET', 'PASSWORD'))]
if names or any('sk-llmnas-test-secret' in v for v in os.environ.values()):
    raise RuntimeError('LEAKED ' + ','.join(names))
"""
    report = run_raw(hostile(body))
    assert report.failure is None, report.failure


def test_no_leftover_processes(pool, run_raw):
    worker = pool._workers[0]
    run_raw(OK_MODEL)
    baseline = _descendants(worker.proc.pid)
    report = run_raw(hostile("import time\nwhile True:\n    time.sleep(0.01)"), timeout=1.5)
    assert report.failure[0] is FailureKind.TIMEOUT
    assert _descendants(worker.proc.pid) == baseline


def test_labels_unreachable(run_raw, pool):
    names = sorted(p.name for p in pool.data_dir.iterdir())
    assert "train_y.npy" in names and "val_x.npy" in names
    assert [n for n in names if n.endswith("_y.npy")] == ["train_y.npy"]
    assert run_raw(hostile("import mnist1d")).failure[0] is FailureKind.IMPORT
    assert run_raw(hostile("import sklearn.datasets")).failure[0] is FailureKind.IMPORT
    import sklearn

    digits = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    assert digits.exists()
    report = run_raw(hostile(f"open({str(digits)!r}, 'rb').read()"))
    assert report.failure is not None


@pytest.mark.slow
def test_patched_torch_cannot_inflate_accuracy(evaluator):
    constant = """
import torch, numpy, json
torch.Tensor.argmax = lambda self, *a, **k: torch.zeros(self.shape[0], dtype=torch.long)
numpy.mean = lambda *a, **k: 1.0
class Model(torch.nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.n = num_classes
    def forward(self, x):
        out = torch.zeros(x.shape[0], self.n) + 0 * self.w
        out[:, 0] = 1.0
        return out
"""
    from llmnas.evaluator import EvalSettings

    result = evaluator._run(constant, EvalSettings(epochs=1))[0]
    assert result.ok
    assert result.metrics["val_accuracy"] < 0.5  # 4 balanced classes: a constant guess is ~0.25


def test_fake_result_lines_ignored(evaluator):
    from llmnas.evaluator import EvalSettings

    fake = OK_MODEL.replace(
        "        super().__init__()\n",
        "        super().__init__()\n"
        '        print(\'{"status": "ok", "metrics": {"val_accuracy": 1.0}}\')\n'
        '        open(\'result.json\', \'w\').write(\'{"status": "ok", "metrics": {"val_accuracy": 1.0}}\')\n',
    )
    honest = evaluator._run(OK_MODEL, EvalSettings(epochs=1))[0]
    faked = evaluator._run(fake, EvalSettings(epochs=1))[0]
    assert faked.metrics["val_accuracy"] == honest.metrics["val_accuracy"]


def test_huge_output_bounded(run_raw):
    report = run_raw(
        hostile(
            "import sys\nchunk = 'x' * 1_000_000\nfor _ in range(200):\n    sys.stdout.write(chunk)"
        )
    )
    assert report.failure is not None
    assert len(report.failure[1]) <= 600


def test_candidate_cannot_kill_its_parent(run_raw):
    report = run_raw(hostile("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"))
    assert report.failure is not None
    assert run_raw(OK_MODEL).failure is None


@pytest.mark.slow
def test_worker_death_is_a_crash_and_pool_recovers(pool, run_raw):
    run_raw(OK_MODEL)  # the worker is up
    worker = pool._workers[0]
    pid = worker.proc.pid

    def kill_when_the_job_runs() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(worker.scratch.glob("job-*/output.log")):
            time.sleep(0.05)
        time.sleep(0.5)
        os.killpg(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_the_job_runs)
    killer.start()
    report = run_raw(hostile("import time\nwhile True:\n    time.sleep(0.1)"), timeout=60)
    killer.join()
    assert report.failure[0] is FailureKind.CRASH
    time.sleep(0.5)
    orphans = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _runs_in(p, worker.scratch)
    ]
    assert orphans == [], "the candidate outlived its worker"
    assert run_raw(OK_MODEL).failure is None
    assert pool._workers[0].proc.pid != pid


def _runs_in(proc: Path, scratch: Path) -> bool:
    """A forked child shows its worker's command line; match on its working folder instead."""
    try:
        return os.readlink(proc / "cwd").startswith(str(scratch) + "/job-")
    except OSError:
        return False


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("raise ValueError('boom')", FailureKind.CRASH),
        ("import definitely_not_a_module", FailureKind.IMPORT),
    ],
)
def test_failures_are_data(run_raw, body, kind):
    assert run_raw(hostile(body)).failure[0] is kind


def test_labels_cannot_be_given_to_the_sandbox(synthetic):
    from llmnas.sandbox import SandboxPool

    data = synthetic.load()
    with pytest.raises(ValueError, match="labels"):
        SandboxPool(data={"train_x": data.train.x, "val_y": data.val.y})
