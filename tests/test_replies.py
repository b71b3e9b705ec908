"""Reply parsing: fences, several blocks, reasoning blocks, raw code, CRLF/tabs, SEARCH/REPLACE,
truncation and refusals; hypothesis round-trip properties for the extractor."""

from __future__ import annotations

import ast
import string
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmnas import gate
from llmnas.records import FailureKind
from llmnas.replies import apply_search_replace, extract_program, strip_thinking

PROGRAM = """import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))
"""
CLASS_ONLY = PROGRAM.split("\n\n\n")[1]


def same_program(a: str, b: str) -> bool:
    return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))


def assert_syntax_failure(result, *words: str) -> None:
    assert not result.ok and result.source is None
    assert result.failure.kind is FailureKind.SYNTAX
    assert result.failure.stage == "extract"
    for word in words:
        assert word in result.failure.message, result.failure.message


@pytest.mark.parametrize(
    "reply",
    [
        f"Here is the model:\n```python\n{PROGRAM}```\nIt should train fast.",
        f"```\n{PROGRAM}```",
        f"```py\n{PROGRAM}```",
        f"~~~python\n{PROGRAM}~~~",
        f"````Python\n{PROGRAM}````",
        f"```python\n{PROGRAM.rstrip()}```",  # closing fence glued to the last line
        f"1. The model:\n   ```python\n{textwrap.indent(PROGRAM, '   ')}   ```",
    ],
)
def test_fence_styles(reply):
    result = extract_program(reply)
    assert result.ok and result.method == "fenced"
    assert same_program(result.source, PROGRAM)
    assert gate.check(result.source).ok


def test_several_blocks_picks_the_complete_program():
    reply = (
        "Install first:\n```bash\npip install torch\n```\n"
        f"```python\n{PROGRAM}```\nUsage:\n```python\nmodel = Model((1, 8), 4)\nprint(model)\n```"
    )
    result = extract_program(reply)
    assert result.ok and same_program(result.source, PROGRAM)


def test_last_complete_program_wins():
    second = PROGRAM.replace("nn.Linear(8,", "nn.Linear(16,")
    result = extract_program(f"```python\n{PROGRAM}```\nBetter:\n```python\n{second}```")
    assert same_program(result.source, second)


def test_imports_in_their_own_block_are_joined():
    reply = f"```python\nimport torch\nfrom torch import nn\n```\nThen:\n```python\n{CLASS_ONLY}```"
    result = extract_program(reply)
    assert result.ok and result.method == "fenced-joined"
    assert same_program(result.source, PROGRAM)
    assert gate.check(result.source).ok


def test_self_contained_program_preferred_over_a_later_fragment():
    result = extract_program(f"```python\n{PROGRAM}```\nKey part:\n```python\n{CLASS_ONLY}```")
    assert same_program(result.source, PROGRAM)


def test_think_blocks_are_removed():
    fake = "```python\nclass Model:\n    pass\n```"
    reply = f"<think>Let me try\n{fake}\nno, better:</think>\n```python\n{PROGRAM}```"
    assert same_program(extract_program(reply).source, PROGRAM)
    # template put <think> into the prompt: only the closing tag is in the reply
    assert same_program(extract_program(f"reasoning {fake}</think>\n{PROGRAM}").source, PROGRAM)
    assert strip_thinking("a<THINK>b</THINK>c") == "ac"


def test_unclosed_think_block_has_no_code():
    result = extract_program(f"<think>I will write\n```python\n{PROGRAM}```\nhmm")
    assert_syntax_failure(result, "no code found")


def test_raw_code_with_prose_around():
    reply = f"Sure, here is a model for the task.\n\n{PROGRAM}\nThis model is small and fast.\n"
    result = extract_program(reply)
    assert result.ok and result.method == "raw"
    assert same_program(result.source, PROGRAM)


def test_crlf_and_tabs():
    crlf = f"```python\n{PROGRAM}```".replace("\n", "\r\n")
    assert same_program(extract_program(crlf).source, PROGRAM)
    tabbed = PROGRAM.replace("        ", "\t\t").replace("    ", "\t")
    assert same_program(extract_program(f"```python\n{tabbed}```").source, PROGRAM)
    # inconsistent tabs and spaces: only parses with tabs expanded to 4 columns
    mixed = PROGRAM.replace("        self.fc =", "\t    self.fc =")
    result = extract_program(f"```python\n{mixed}```")
    assert result.ok and "\t" not in result.source
    assert same_program(result.source, PROGRAM)


def test_truncated_code_is_a_syntax_failure_never_patched():
    cut = PROGRAM[: PROGRAM.index("num_classes)\n\n    def") + 5]
    assert_syntax_failure(extract_program(f"```python\n{cut}"), "truncated", "does not parse")
    assert_syntax_failure(extract_program(cut), "does not parse")


def test_finish_reason_length_rejects_an_unclosed_block_even_if_it_parses():
    cut = PROGRAM[: PROGRAM.index("    def forward")]
    reply = f"```python\n{cut}"
    assert extract_program(reply).ok  # parses, so without the hint it is taken
    assert_syntax_failure(extract_program(reply, finish_reason="length"), "truncated")
    # a closed block is complete whatever the finish reason
    assert extract_program(f"```python\n{PROGRAM}```", finish_reason="length").ok
    assert_syntax_failure(extract_program(cut, finish_reason="length"), "truncated")


@pytest.mark.parametrize(
    "reply",
    [
        "I'm sorry, but I can't help with that.",
        "The best architecture would be a deeper CNN with residual connections.",
        "```text\nConv -> ReLU -> Linear\n```\nThat is my design.",
        "",
    ],
)
def test_refusals_and_prose_are_failures(reply):
    assert_syntax_failure(extract_program(reply), "no code found")


def test_broken_python_block_is_reported():
    result = extract_program("```python\nclass Model(nn.Module:\n    pass\n```")
    assert_syntax_failure(result, "does not parse", "line 1")


def test_code_without_model_is_returned_for_the_gate():
    result = extract_program("```python\nimport torch\n\ndef build():\n    return 1\n```")
    assert result.ok
    assert gate.check(result.source).failure.kind is FailureKind.CONTRACT


SR = "<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE"


def test_search_replace_applied_to_parent():
    edit = SR.format(
        search="        self.fc = nn.Linear(8, num_classes)",
        replace="        self.fc = nn.Linear(8, num_classes, bias=False)",
    )
    result = extract_program(f"Fix:\n```python\n{edit}\n```", parent_source=PROGRAM)
    assert result.ok and result.method == "search-replace"
    assert result.source == PROGRAM.replace("num_classes)\n\n", "num_classes, bias=False)\n\n")


def test_search_replace_whitespace_tolerance_and_reindent():
    edit = SR.format(
        search="self.fc = nn.Linear(8, num_classes)   ",
        replace="self.drop = nn.Dropout(0.1)\nself.fc = nn.Linear(8, num_classes)",
    )
    result = apply_search_replace(PROGRAM, edit)
    assert result.ok
    assert "        self.drop = nn.Dropout(0.1)\n        self.fc = nn.Linear" in result.source
    appended = apply_search_replace(PROGRAM, SR.format(search="", replace="EXTRA = 1"))
    assert appended.source.rstrip().endswith("EXTRA = 1")


def test_search_replace_failures_are_loud():
    missing = SR.format(search="        self.fc = nn.Conv1d(1, 4, 3)", replace="x = 1")
    assert_syntax_failure(extract_program(missing, PROGRAM), "block 1 does not match", "Conv1d")
    twice = PROGRAM + "\n\ndef f():\n    super().__init__()\n"
    ambiguous = SR.format(search="super().__init__()", replace="pass")
    assert_syntax_failure(extract_program(ambiguous, twice), "matches 2 places")
    cut = "<<<<<<< SEARCH\n        self.fc = nn.Linear(8, num_classes)\n======="
    assert_syntax_failure(extract_program(cut, PROGRAM), "incomplete")
    assert_syntax_failure(extract_program(missing), "no parent program")
    breaking = SR.format(search="    def forward(self, x):", replace="    def forward(self, x)")
    assert_syntax_failure(extract_program(breaking, PROGRAM), "edited program does not parse")


# ---------------------------------------------------------------- properties (hypothesis)

WORDS = ["The", "model", "uses", "a", "small", "network", "here", "is", "this", "should"]
WORDS += ["work", "well", "Note", "that", "layers", "(3x3)", "accuracy", "fast", "it", "I"]


@st.composite
def programs(draw) -> str:
    """Small valid candidate programs with varied layout."""
    unit = draw(st.sampled_from(["    ", "  ", "\t"]))
    widths = draw(st.lists(st.integers(1, 512), min_size=0, max_size=3))
    act = draw(st.sampled_from(["ReLU", "GELU", "Tanh", "SiLU"]))
    comment = draw(st.text(alphabet=string.ascii_letters + " ", max_size=30))
    lines = []
    if draw(st.booleans()):
        lines += ['"""' + draw(st.sampled_from(WORDS)) + ' docstring."""', ""]
    lines += ["import torch", "from torch import nn", ""]
    if draw(st.booleans()):
        lines += ["", "def act():", f"{unit}return nn.{act}()", ""]
        act_expr = "act()"
    else:
        act_expr = f"nn.{act}()"
    layers, prev = [], "8"
    for width in widths:
        layers += [f"nn.Linear({prev}, {width})", act_expr]
        prev = str(width)
    layers.append(f"nn.Linear({prev}, num_classes)")
    body = ", ".join(layers)
    lines += [
        "",
        "class Model(nn.Module):",
        f"{unit}def __init__(self, input_shape, num_classes):",
        f"{unit * 2}super().__init__()  # {comment}",
        f"{unit * 2}self.net = nn.Sequential({body})",
        "",
        f"{unit}def forward(self, x):",
        f"{unit * 2}return self.net(x.flatten(1))",
    ]
    if draw(st.booleans()):
        lines += ["", "", 'if __name__ == "__main__":', f"{unit}print(Model((1, 8), 4))"]
    return "\n".join(lines) + "\n"


prose = st.lists(st.sampled_from(WORDS), min_size=3, max_size=10).map(
    lambda words: " ".join([words[0].capitalize(), *words[1:]]) + "."
)
thinking = st.text(alphabet=string.printable.replace("<", "").replace(">", ""), max_size=80).map(
    lambda text: f"<think>{text}\n```python\nclass Model:\n    pass\n```\n</think>\n"
)
fences = st.sampled_from(
    [
        ("```python", "```"),
        ("```py", "```"),
        ("```", "```"),
        ("~~~python", "~~~"),
        ("```Python", "```"),
        ("````python3", "````"),
    ]
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(programs(), fences, prose, prose, st.one_of(st.just(""), thinking), st.booleans())
def test_property_fenced_round_trip(program, fence, before, after, think, crlf):
    reply = f"{think}{before}\n\n{fence[0]}\n{program}{fence[1]}\n\n{after}"
    if crlf:
        reply = reply.replace("\n", "\r\n")
    result = extract_program(reply)
    assert result.ok, result.failure
    assert same_program(result.source, program)


@FAST
@given(programs(), prose, prose, st.one_of(st.just(""), thinking))
def test_property_raw_round_trip(program, before, after, think):
    result = extract_program(f"{think}{before}\n\n{program}\n{after}\n")
    assert result.ok, result.failure
    assert gate.normalised_hash(result.source) == gate.normalised_hash(program)


@FAST
@given(programs(), st.data())
def test_property_truncation_is_never_patched(program, data):
    cut = program[: data.draw(st.integers(1, len(program.rstrip()) - 1))]
    assert_syntax_failure(extract_program(f"```python\n{cut}", finish_reason="length"))
    result = extract_program(f"Here:\n```python\n{cut}")
    if result.ok:  # only when the cut text is itself a program; then it is returned as is
        variants = {cut.strip(), cut.expandtabs(4).strip(), cut.expandtabs(8).strip()}
        assert result.source.strip() in variants


@FAST
@given(programs(), st.data())
def test_property_search_replace_edits_exactly_one_line(program, data):
    lines = program.split("\n")
    unique = [i for i, line in enumerate(lines) if line.strip() and lines.count(line) == 1]
    index = data.draw(st.sampled_from(unique))
    edited = lines[index] + "  # edited"
    reply = SR.format(search=lines[index], replace=edited)
    result = extract_program(f"```\n{reply}\n```", parent_source=program)
    assert result.ok, result.failure
    expected = "\n".join(lines[:index] + [edited] + lines[index + 1 :])
    assert result.source == expected.strip("\n") + "\n"
