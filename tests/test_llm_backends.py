"""LLM backends against real components: the openai client talking to a local HTTP server, a tiny
randomly initialised transformers model built offline, replay cassettes and manual files."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from pathlib import Path

import pytest

from llmnas.llm import (
    Backend,
    Budget,
    BudgetExceeded,
    CassetteExhausted,
    Completion,
    JsonlRecorder,
    LLMConfigError,
    LLMError,
    LLMUnavailable,
    MemoryRecorder,
    TeeRecorder,
    export_cassette,
    load_records,
    make_llm,
    prompt_sha256,
)
from llmnas.strategies.base import Exhausted

try:
    from tests.llm_server import GOOD_KEY, FakeOpenAIServer
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from llm_server import GOOD_KEY, FakeOpenAIServer

P1 = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "prompt one"}]
P2 = [{"role": "user", "content": "prompt two"}]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", GOOD_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeOpenAIServer(slow_s=1.0) as srv:
        yield srv


def openai_llm(server, model, recorder=None, **options):
    options = {"backoff_s": 0.01, "timeout_s": 5.0, **options}
    return make_llm(f"openai:{model}", url=server.url, recorder=recorder, **options)


# ---------------------------------------------------------------- openai


def test_openai_sends_parameters_and_records_usage(server):
    rec = MemoryRecorder()
    out = openai_llm(server, "ok", rec).sample_sync(
        P1, n=3, temperature=0.7, max_tokens=64, seed=11
    )
    assert [c.text for c in out] == [f"reply {k} seed=11" for k in range(3)]
    assert all(c.model == "ok" and c.finish_reason == "stop" for c in out)
    assert sum(c.prompt_tokens for c in out) == 10 and sum(c.completion_tokens for c in out) == 15
    (sent,) = server.requests
    assert sent["messages"] == P1
    assert (sent["n"], sent["temperature"], sent["max_tokens"], sent["seed"]) == (3, 0.7, 64, 11)
    (record,) = rec.records
    assert record.ok and record.replies == [c.text for c in out]
    assert record.prompt_sha256 == prompt_sha256(P1) and record.backend == "openai"
    assert record.parameters == {"n": 3, "temperature": 0.7, "max_tokens": 64, "seed": 11}
    assert (record.usage.prompt_tokens, record.usage.completion_tokens) == (10, 15)


@pytest.mark.parametrize(
    ("model", "first_error"),
    [
        ("flaky-429", "HTTP 429"),
        ("flaky-500", "HTTP 500"),
        ("flaky-drop", "connection"),
        ("flaky-malformed", "malformed"),
        ("flaky-nochoices", "no choices"),
    ],
)
def test_openai_retries_model_faults(server, model, first_error):
    rec = MemoryRecorder()
    out = openai_llm(server, model, rec).sample_sync(P1, n=2, seed=3)
    assert [c.text for c in out] == ["reply 0 seed=3", "reply 1 seed=3"]
    assert server.counts[model] == 2
    failed, succeeded = rec.records
    assert first_error in failed.error and failed.attempt == 0 and not failed.replies
    assert succeeded.ok and succeeded.attempt == 1


def test_openai_deadline_per_attempt(server):
    rec = MemoryRecorder()
    llm = openai_llm(server, "slow", rec, timeout_s=0.3, max_retries=1)
    with pytest.raises(LLMUnavailable, match="after 2 attempt"):
        llm.sample_sync(P1)  # each attempt gave up at its deadline (the server takes 1.0 s)
    assert [r.error for r in rec.records] == ["TransientError: no reply within 0.3 s"] * 2


def test_openai_gives_up_after_max_retries(server):
    rec = MemoryRecorder()
    with pytest.raises(LLMUnavailable, match="after 3 attempt.*HTTP 500"):
        openai_llm(server, "always-500", rec, max_retries=2).sample_sync(P1)
    assert server.counts["always-500"] == 3 and len(rec.errors) == 3


def test_openai_bad_key_stops_at_once(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    rec = MemoryRecorder()
    with pytest.raises(LLMConfigError, match="refused the API key.*HTTP 401"):
        openai_llm(server, "ok", rec).sample_sync(P1)
    assert server.counts["ok"] == 1 and len(rec.errors) == 1


def test_openai_unknown_model_stops_at_once(server):
    with pytest.raises(LLMConfigError, match="unknown model.*HTTP 404.*does not exist"):
        openai_llm(server, "gpt-nope").sample_sync(P1)
    assert server.counts["gpt-nope"] == 1


def test_openai_tops_up_when_server_ignores_n(server):
    out = openai_llm(server, "single").sample_sync(P1, n=3, seed=20)
    assert [c.text for c in out] == ["reply 0 seed=20", "reply 0 seed=21", "reply 0 seed=22"]
    assert [r["n"] for r in server.requests] == [3, 2, 1]


def test_openai_switches_to_max_completion_tokens(server):
    llm = openai_llm(server, "new-tokens")
    assert len(llm.sample_sync(P1, max_tokens=50)) == 1
    llm.sample_sync(P2, max_tokens=60)
    assert [("max_tokens" in r, r.get("max_completion_tokens")) for r in server.requests] == [
        (True, None),
        (False, 50),
        (False, 60),
    ]


def test_openai_costs_and_cost_budget(server):
    rec = MemoryRecorder()
    budget = Budget(max_cost=5e-5)
    llm = openai_llm(server, "ok", rec, prices={"ok": (1.0, 2.0)}, budget=budget)
    llm.sample_sync(P1, n=3)  # 10 prompt + 15 completion tokens: $0.00004
    assert rec.records[0].usage.cost_usd == pytest.approx(4e-5)
    llm.sample_sync(P1, n=3)  # still under the cap when it starts
    with pytest.raises(BudgetExceeded, match="cost budget spent") as info:
        llm.sample_sync(P1)
    assert isinstance(info.value, Exhausted)
    assert budget.cost_used == pytest.approx(8e-5) and budget.calls == 2
    assert len(server.requests) == 2


def test_token_budget_shared_by_backends(server):
    budget = Budget(max_tokens=20)
    first, second = (openai_llm(server, "ok", budget=budget) for _ in range(2))
    first.sample_sync(P1)  # 15 tokens
    second.sample_sync(P1)  # 30 tokens
    with pytest.raises(BudgetExceeded, match="30 of 20 tokens"):
        first.sample_sync(P1)


def test_unknown_model_price_is_zero_and_said_once(server, caplog):
    llm = openai_llm(server, "ok")
    with caplog.at_level(logging.WARNING, logger="llmnas.llm"):
        llm.sample_sync(P1)
        llm.sample_sync(P2)
    assert [r.getMessage() for r in caplog.records] == [
        "no price known for model 'ok': its calls are counted as $0"
    ]
    assert llm.budget.cost_used == 0.0 and llm.budget.tokens_used == 30
    assert llm.prices.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0) == pytest.approx(0.15)


def test_openai_config_errors(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY is not set"):
        make_llm("openai:gpt-4o-mini")
    assert make_llm("openai:llama3.1:8b", url="http://127.0.0.1:9/v1").model == "llama3.1:8b"
    for spec in ("gpt-4o", "openai:", "bogus:thing", ""):
        with pytest.raises(LLMConfigError, match="expected openai:MODEL"):
            make_llm(spec)


def test_async_use_across_event_loops_and_derived_seeds(server):
    llm = openai_llm(server, "ok", seed=7)

    async def many() -> list[list[Completion]]:
        return await asyncio.gather(*(llm.sample(P1) for _ in range(4)))

    first = asyncio.run(many())
    second = asyncio.run(many())  # a new loop gets its own client and semaphore
    assert len(first) == len(second) == 4 and len(server.requests) == 8

    def texts(seed: int) -> list[str]:
        backend = openai_llm(server, "ok", seed=seed)
        return [backend.sample_sync(P1)[0].text for _ in range(3)]

    assert texts(7) == texts(7) != texts(8)
    assert len(set(texts(7))) == 3  # seed=None draws a fresh seed per call


# ---------------------------------------------------------------- shared machinery


class Sleepy(Backend):
    kind = "sleepy"

    def __init__(self, **options):
        super().__init__("sleepy", **options)
        self.active = self.peak = 0

    async def _attempt(self, messages, *, n, temperature, max_tokens, seed):
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.02)
        self.active -= 1
        return [Completion(text=str(seed)) for _ in range(n)]


def test_concurrency_limit_validation_and_seeded_backoff():
    llm = Sleepy(max_concurrency=2)

    async def burst():
        return await asyncio.gather(*(llm.sample(P1) for _ in range(6)))

    assert len(asyncio.run(burst())) == 6 and llm.peak == 2
    for bad in ({"n": 0}, {"temperature": -1.0}, {"max_tokens": 0}):
        with pytest.raises(ValueError):
            llm.sample_sync(P1, **bad)
    for messages in ([], [{"role": "robot", "content": "x"}], [{"role": "user"}]):
        with pytest.raises(ValueError):
            llm.sample_sync(messages)
    delays = [Sleepy(seed=3).backoff(k) for k in range(6)]
    assert delays == [Sleepy(seed=3).backoff(k) for k in range(6)]
    assert delays != [Sleepy(seed=4).backoff(k) for k in range(6)]
    assert 0.25 <= delays[0] <= 0.5 and 4.0 <= delays[4] <= 8.0 and delays[5] <= 30.0
    assert Sleepy().backoff(0, retry_after=2.0) == 2.0


# ---------------------------------------------------------------- replay


def write_cassette(path: Path, entries: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def test_replay_hash_match_then_file_order_then_exhausted(tmp_path):
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [
            {"response": "for-p2", "prompt_sha256": prompt_sha256(P2)},
            {"response": "generic-1"},
            {"response": "other-prompt", "prompt_sha256": "0" * 64},
            {"response": "generic-2", "prompt_tokens": 7, "completion_tokens": 3},
        ],
    )
    rec = MemoryRecorder()
    llm = make_llm(f"replay:{cassette}", recorder=rec)
    assert llm.sample_sync(P1)[0].text == "generic-1"
    assert llm.sample_sync(P2)[0].text == "for-p2"
    out = llm.sample_sync(P1, n=2)
    assert [c.text for c in out] == ["generic-2", "other-prompt"]  # unhashed lines first
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (7, 3)
    with pytest.raises(CassetteExhausted, match="exhausted: all 4") as info:
        llm.sample_sync(P1)
    assert isinstance(info.value, Exhausted)
    assert [r.ok for r in rec.records] == [True, True, True, False]
    assert "CassetteExhausted" in rec.records[-1].error


def test_replay_partial_call_serves_nothing(tmp_path):
    llm = make_llm(f"replay:{write_cassette(tmp_path / 'c.jsonl', [{'response': 'a'}])}")
    with pytest.raises(CassetteExhausted):
        llm.sample_sync(P1, n=2)
    assert llm.remaining == 1 and llm.sample_sync(P1)[0].text == "a"


def test_record_export_replay_round_trip(server, tmp_path):
    memory = MemoryRecorder()
    jsonl = JsonlRecorder(tmp_path / "calls" / "llm.jsonl")
    live = openai_llm(server, "flaky-500", TeeRecorder(memory, jsonl))
    texts = {"p1": live.sample_sync(P1, n=2, seed=1), "p2": live.sample_sync(P2, seed=2)}
    loaded = load_records(jsonl.path)
    assert loaded == memory.records and len(loaded) == 3 and not loaded[0].ok
    assert export_cassette(loaded, tmp_path / "cassette.jsonl") == 3
    replay = make_llm(f"replay:{tmp_path / 'cassette.jsonl'}")
    assert [c.text for c in replay.sample_sync(P2)] == [c.text for c in texts["p2"]]
    assert [c.text for c in replay.sample_sync(P1, n=2)] == [c.text for c in texts["p1"]]


def test_bad_cassettes(tmp_path):
    with pytest.raises(LLMConfigError, match="not found"):
        make_llm(f"replay:{tmp_path / 'missing.jsonl'}")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "ok"}\n\n{"text": "no response key"}\n')
    with pytest.raises(LLMConfigError, match=r"bad.jsonl:3: expected"):
        make_llm(f"replay:{bad}")
    bad.write_text("not json\n")
    with pytest.raises(LLMConfigError, match=r"bad.jsonl:1: not JSON"):
        make_llm(f"replay:{bad}")


# ---------------------------------------------------------------- manual


def answer_prompts(folder: Path, count: int, replies: dict[str, str]) -> threading.Thread:
    def run() -> None:
        answered: set[str] = set()
        deadline = time.monotonic() + 10
        while len(answered) < count and time.monotonic() < deadline:
            for prompt in sorted(folder.glob("*.prompt.md")):
                stem = prompt.name.removesuffix(".prompt.md")
                if stem in answered:
                    continue
                text = replies.get(stem, f"answer to {stem}\r\n")
                tmp = folder / f"{stem}.partial"
                tmp.write_text(text, newline="")
                tmp.replace(folder / f"{stem}.response.md")
                answered.add(stem)
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_manual_prompt_and_response_files(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "000041-0123456789ab.prompt.md").write_text("an older prompt")
    sha12 = prompt_sha256(P1)[:12]
    rec = MemoryRecorder()
    llm = make_llm(f"manual:{folder}", recorder=rec, timeout_s=5)
    llm.poll_s = 0.01
    thread = answer_prompts(folder, 3, {f"000042-{sha12}": "```python\nx = 1\n```"})
    out = llm.sample_sync(P1, n=2)
    thread.join(5)
    assert [c.text for c in out] == ["```python\nx = 1\n```", f"answer to 000043-{sha12}\n"]
    prompts = sorted(p.name for p in folder.glob("*.prompt.md"))
    assert prompts[1:] == [f"000042-{sha12}.prompt.md", f"000043-{sha12}.prompt.md"]
    assert all(re.fullmatch(r"\d{6}-[0-9a-f]{12}\.prompt\.md", name) for name in prompts)
    text = (folder / prompts[1]).read_text()
    assert text == "## system\n\nbe brief\n\n## user\n\nprompt one\n"
    assert rec.records[0].ok and rec.records[0].replies == [c.text for c in out]


def test_manual_timeout(tmp_path):
    llm = make_llm(f"manual:{tmp_path}", timeout_s=0.2)
    llm.poll_s = 0.02
    with pytest.raises(LLMUnavailable, match=r"no answer within 0.2 s.*000001-"):
        llm.sample_sync(P2)
    assert (tmp_path / f"000001-{prompt_sha256(P2)[:12]}.prompt.md").is_file()


# ---------------------------------------------------------------- hf (tiny local model)

WORDS = "system user assistant you are a helpful model write small network class Model torch nn"


def build_tiny_model(folder: Path, chat_template: str | None) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"])
    tok.train_from_iterator([WORDS, "System: User: Assistant: <user> <assistant>"], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    if chat_template:
        fast.chat_template = chat_template
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=48,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=fast.eos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        GPT2LMHeadModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    template = (
        "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return build_tiny_model(root / "plain", None), build_tiny_model(root / "chat", template)


@pytest.mark.slow
def test_hf_seeded_batched_sampling(tiny_models, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rec = MemoryRecorder()
    llm = make_llm(f"hf:{tiny_models[0]}", recorder=rec)
    out = llm.sample_sync(P1, n=3, max_tokens=6, seed=1)
    assert len(out) == 3 and all(c.completion_tokens <= 6 for c in out)
    assert all(c.finish_reason in {"stop", "length"} for c in out)
    assert [c.text for c in llm.sample_sync(P1, n=3, max_tokens=6, seed=1)] == [c.text for c in out]
    assert [c.text for c in llm.sample_sync(P1, n=3, max_tokens=6, seed=2)] != [c.text for c in out]
    prompt = llm.tokenizer.decode(llm.prompt_ids(P1))
    assert prompt == "System: [UNK] [UNK] User: [UNK] [UNK] Assistant:"
    assert sum(c.prompt_tokens for c in out) == len(llm.prompt_ids(P1))
    assert rec.records[0].usage.completion_tokens == sum(c.completion_tokens for c in out)
    greedy = llm.sample_sync(P2, n=2, max_tokens=4, temperature=0.0)
    assert greedy[0].text == greedy[1].text


def test_hf_chat_template_context_and_missing_model(tiny_models, tmp_path):
    llm = make_llm(f"hf:{tiny_models[1]}")
    assert llm.tokenizer.decode(llm.prompt_ids(P2)) == "<user> [UNK] [UNK] <assistant>"
    long_prompt = [{"role": "user", "content": "model " * 60}]
    with pytest.raises(LLMError, match="fills the model's context of 48"):
        llm.sample_sync(long_prompt, max_tokens=2)
    near = [{"role": "user", "content": "model " * 43}]
    room = 48 - len(llm.prompt_ids(near))
    assert room == 3
    assert all(c.completion_tokens <= room for c in llm.sample_sync(near, n=2, max_tokens=50))
    with pytest.raises(LLMConfigError, match="no local model found"):
        make_llm(f"hf:{tmp_path / 'nothing-here'}")
