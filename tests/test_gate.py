from __future__ import annotations

import pytest

from llmnas.gate import check, normalised_hash
from llmnas.records import FailureKind

GOOD = '''
"""doc"""
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes, width=8):
        super().__init__()
        self.l = nn.Linear(input_shape[-1], num_classes)

    def forward(self, x):
        return self.l(x.flatten(1))
'''


def test_good_program_passes():
    result = check(GOOD)
    assert result.ok and len(result.hash) == 64


def test_syntax_error_is_syntax_failure():
    result = check(GOOD[:-5])  # truncated inside a call
    assert result.failure.kind is FailureKind.SYNTAX
    assert "line" in result.failure.message


@pytest.mark.parametrize(
    "line",
    [
        "import os",
        "import subprocess",
        "from socket import socket",
        "import mnist1d",
        "from . import x",
    ],
)
def test_disallowed_imports(line):
    assert check(line + "\n" + GOOD).failure.kind is FailureKind.IMPORT


@pytest.mark.parametrize(
    "snippet",
    ["eval('1')", "open('x')", "__import__('os')", "().__class__.__bases__", "exec('x=1')"],
)
def test_forbidden_builtins_and_dunders(snippet):
    assert check(GOOD + "\n" + snippet + "\n").failure.kind is FailureKind.IMPORT


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("import torch\nclass Net(torch.nn.Module):\n    pass\n", "no top-level class named Model"),
        ("class Model:\n    def __init__(self, input_shape, num_classes): pass\n", "derive"),
        (
            GOOD.replace("input_shape, num_classes, width=8", "shape, classes"),
            "input_shape, num_classes",
        ),
        (GOOD.replace("width=8", "width"), "default"),
        (GOOD.replace("def forward", "def fwd"), "forward"),
    ],
)
def test_contract(source, needle):
    result = check(source)
    assert result.failure.kind is FailureKind.CONTRACT
    assert needle in result.failure.message


def test_main_guard_dropped_and_hash_ignores_it():
    guarded = GOOD + '\nif __name__ == "__main__":\n    import os\n    os.system("rm -rf /")\n'
    result = check(guarded)
    assert result.ok
    assert "os.system" not in result.source
    assert result.hash == check(GOOD).hash


def test_hash_ignores_docstrings_comments_and_formatting():
    variant = GOOD.replace('"""doc"""', "# a comment").replace(
        "(input_shape[-1], num_classes)", "( input_shape[-1] ,num_classes )"
    )
    assert normalised_hash(variant) == normalised_hash(GOOD)
    assert normalised_hash(GOOD.replace("Linear", "LazyLinear")) != normalised_hash(GOOD)


def test_crlf_and_tabs_accepted():
    assert check(GOOD.replace("\n", "\r\n")).ok
    assert check(GOOD.replace("        ", "\t\t").replace("    ", "\t")).ok


def test_oversized_program_rejected():
    assert check(GOOD + "#" * 200_000).failure.kind is FailureKind.SYNTAX
