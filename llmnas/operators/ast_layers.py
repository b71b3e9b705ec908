"""The ``torch.nn`` layer calls the AST operators understand, and how to read and edit them.

A *layer call* is an ``ast.Call`` such as ``nn.Conv1d(25, 25, kernel_size=3, padding=1)``,
``torch.nn.Linear(a, b)`` or a bare ``GRU(...)`` imported from ``torch.nn``. Each known layer
has a role (``conv``, ``linear``, ``rnn``, ``norm``, ``act``, ``pool``, ``apool``, ``flatten``,
``pass``, ``seq``, ``skip``) and a positional signature, so arguments are read and written the
same way whether they were given by position or by keyword.

Handled: Conv1d/2d, Linear, GRU/LSTM/RNN, BatchNorm1d/2d, InstanceNorm1d/2d, GroupNorm,
LayerNorm, their ``Lazy*`` variants, Max/AvgPool1d/2d, adaptive pools, Flatten, Dropout,
Identity, common activations, ``nn.Sequential`` and the operators' own ``SkipAdd`` residual.
Not handled: Conv3d, transposed convolutions, attention and transformer layers, ``ModuleList``
and ``ModuleDict`` (they stay opaque: never edited, and edits needing to see through them are
refused).
"""

from __future__ import annotations

import ast
import copy
import math
from dataclasses import dataclass

__all__ = [
    "ACTIVATIONS",
    "SKIP_CLASS",
    "SKIP_SOURCE",
    "Edit",
    "NotApplicable",
    "call",
    "clone",
    "conv_geometry",
    "fix_groups",
    "get_arg",
    "groups_for",
    "in_param",
    "int_value",
    "layer_name",
    "lazify",
    "mentions",
    "norm_for",
    "out_param",
    "out_size",
    "preserves_length",
    "retarget",
    "role",
    "set_arg",
    "spatial_dim",
]


class NotApplicable(Exception):
    """An operator cannot apply to a program (nothing to edit, or the edit would not build).

    Callers catch it and try another operator; it is never a bug in the candidate.
    """


@dataclass(frozen=True)
class Edit:
    """An operator's result: the new program, a short description and the operator kind."""

    source: str
    description: str
    kind: str


ACTIVATIONS = ("ReLU", "GELU", "SiLU", "Tanh", "LeakyReLU", "ELU")
"""Activations a swap chooses from."""

_OTHER_ACTS = ("Sigmoid", "Mish", "Hardswish", "ReLU6", "SELU", "CELU", "Softplus", "PReLU")
SKIP_CLASS = "SkipAdd"
SKIP_SOURCE = '''
class SkipAdd(nn.Module):
    """Residual connection added by the AST operator: x + body(x)."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
'''

_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups")
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "Conv1d": _CONV,
    "Conv2d": _CONV,
    "LazyConv1d": _CONV[1:],
    "LazyConv2d": _CONV[1:],
    "Linear": ("in_features", "out_features", "bias"),
    "LazyLinear": ("out_features", "bias"),
    "GRU": ("input_size", "hidden_size", "num_layers"),
    "LSTM": ("input_size", "hidden_size", "num_layers"),
    "RNN": ("input_size", "hidden_size", "num_layers"),
    "BatchNorm1d": ("num_features", "eps", "momentum"),
    "BatchNorm2d": ("num_features", "eps", "momentum"),
    "InstanceNorm1d": ("num_features", "eps", "momentum"),
    "InstanceNorm2d": ("num_features", "eps", "momentum"),
    "LazyBatchNorm1d": ("eps", "momentum"),
    "LazyBatchNorm2d": ("eps", "momentum"),
    "GroupNorm": ("num_groups", "num_channels", "eps"),
    "LayerNorm": ("normalized_shape", "eps"),
    "MaxPool1d": ("kernel_size", "stride", "padding"),
    "MaxPool2d": ("kernel_size", "stride", "padding"),
    "AvgPool1d": ("kernel_size", "stride", "padding"),
    "AvgPool2d": ("kernel_size", "stride", "padding"),
    "AdaptiveAvgPool1d": ("output_size",),
    "AdaptiveAvgPool2d": ("output_size",),
    "AdaptiveMaxPool1d": ("output_size",),
    "AdaptiveMaxPool2d": ("output_size",),
    "Flatten": ("start_dim", "end_dim"),
    "Dropout": ("p",),
    "Dropout1d": ("p",),
    "Dropout2d": ("p",),
    "Identity": (),
    "Sequential": (),
    SKIP_CLASS: (),
}
_SIGNATURES.update({name: () for name in ACTIVATIONS + _OTHER_ACTS})

_IN = {"conv": "in_channels", "linear": "in_features", "rnn": "input_size"}
_OUT = {"conv": "out_channels", "linear": "out_features", "rnn": "hidden_size"}
_NORM_WIDTH = {"GroupNorm": "num_channels", "LayerNorm": "normalized_shape"}


def layer_name(node: ast.AST) -> str | None:
    """The catalogue name of a layer call (``nn.X``, ``torch.nn.X`` or bare ``X``), else None."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Attribute) and ast.unparse(func.value) in ("nn", "torch.nn"):
        name = func.attr
    elif isinstance(func, ast.Name):
        name = func.id
    else:
        return None
    return name if name in _SIGNATURES else None


def role(name: str | None) -> str:
    """The role of a catalogue name; ``opaque`` for anything unknown."""
    if name is None:
        return "opaque"
    base = name.removeprefix("Lazy")
    if base.startswith("Conv"):
        return "conv"
    if base == "Linear":
        return "linear"
    if base in ("GRU", "LSTM", "RNN"):
        return "rnn"
    if "Norm" in base:
        return "norm"
    if base.startswith("Adaptive"):
        return "apool"
    if base.startswith(("MaxPool", "AvgPool")):
        return "pool"
    if name == "Sequential":
        return "seq"
    if name == SKIP_CLASS:
        return "skip"
    if name == "Flatten":
        return "flatten"
    if name in ACTIVATIONS or name in _OTHER_ACTS:
        return "act"
    return "pass"


def spatial_dim(name: str | None) -> int:
    """Spatial dimensionality of a conv/pool/batch-norm (1 or 2); 0 when it has none."""
    if name and name[-2:] in ("1d", "2d"):
        return int(name[-2])
    return 0


def in_param(name: str) -> str | None:
    """The parameter holding the input width (channels/features), or None (lazy, no width)."""
    r = role(name)
    if name.startswith("Lazy"):
        return None
    if r == "norm":
        return _NORM_WIDTH.get(name, "num_features")
    return _IN.get(r)


def out_param(name: str) -> str | None:
    """The parameter holding the output width of a conv/linear/rnn layer."""
    return _OUT.get(role(name))


def _index(node: ast.Call, param: str) -> int:
    sig = _SIGNATURES[layer_name(node) or ""]
    return sig.index(param) if param in sig else -1


def get_arg(node: ast.Call, param: str) -> ast.expr | None:
    """The argument bound to ``param`` (keyword or positional), or None when defaulted."""
    for kw in node.keywords:
        if kw.arg == param:
            return kw.value
    i = _index(node, param)
    if 0 <= i < len(node.args) and not any(isinstance(a, ast.Starred) for a in node.args[: i + 1]):
        return node.args[i]
    return None


def set_arg(node: ast.Call, param: str, value: ast.expr | int | str | None) -> None:
    """Bind ``param`` to ``value`` (an expression or a constant); None removes a keyword."""
    if not param.isidentifier():
        raise ValueError(f"not a parameter name: {param!r}")
    expr = _expr(value) if value is not None else None
    for kw in node.keywords:
        if kw.arg == param:
            if expr is None:
                node.keywords.remove(kw)
            else:
                kw.value = expr
            return
    i = _index(node, param)
    if 0 <= i < len(node.args):
        if expr is None:
            raise NotApplicable(f"cannot remove positional {param}")
        node.args[i] = expr
    elif expr is not None:
        node.keywords.append(ast.keyword(arg=param, value=expr))


def _drop_first(node: ast.Call, param: str) -> None:
    if any(kw.arg == param for kw in node.keywords):
        node.keywords = [kw for kw in node.keywords if kw.arg != param]
    elif node.args:
        del node.args[0]


def _expr(value: ast.expr | int | str | float) -> ast.expr:
    return copy.deepcopy(value) if isinstance(value, ast.AST) else ast.Constant(value)


def call(
    name: str, *args: ast.expr | int | str | float, **kwargs: ast.expr | int | str
) -> ast.Call:
    """Build ``nn.<name>(*args, **kwargs)``."""
    func = ast.Attribute(value=ast.Name(id="nn", ctx=ast.Load()), attr=name, ctx=ast.Load())
    keywords = [ast.keyword(arg=k, value=_expr(v)) for k, v in kwargs.items()]
    return ast.Call(func=func, args=[_expr(a) for a in args], keywords=keywords)


def _rename(node: ast.Call, name: str) -> None:
    node.func = ast.Attribute(value=ast.Name(id="nn", ctx=ast.Load()), attr=name, ctx=ast.Load())


def lazify(node: ast.Call) -> bool:
    """Turn a Linear/ConvNd/BatchNormNd call into its ``Lazy*`` twin (input width inferred).

    Returns False for layers without a lazy variant (GroupNorm, LayerNorm, RNNs).
    """
    name = layer_name(node)
    if name is None or name.startswith("Lazy"):
        return name is not None
    if name in ("Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d"):
        param = in_param(name)
        assert param is not None
        _drop_first(node, param)
        _rename(node, "Lazy" + name)
        return True
    return False


def int_value(expr: ast.AST | None) -> int | None:
    """The value of an integer constant expression (``25``, ``2 * 6``), else None."""
    if isinstance(expr, ast.Constant) and type(expr.value) is int:
        return expr.value
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
        v = int_value(expr.operand)
        return None if v is None else -v
    if isinstance(expr, ast.BinOp):
        a, b = int_value(expr.left), int_value(expr.right)
        if a is None or b is None:
            return None
        ops = {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}
        if isinstance(expr.op, ast.FloorDiv):
            return a // b if b else None
        return ops.get(type(expr.op))
    return None


def mentions(expr: ast.AST | None, name: str) -> bool:
    """Whether ``expr`` refers to the variable ``name``."""
    return expr is not None and any(
        isinstance(n, ast.Name) and n.id == name for n in ast.walk(expr)
    )


def conv_geometry(node: ast.Call) -> tuple[int, int, int | str, int] | None:
    """(kernel, stride, padding, dilation) of a conv/pool with integer literals, else None."""
    name = layer_name(node) or ""
    k = int_value(get_arg(node, "kernel_size"))
    s_expr = get_arg(node, "stride")
    if s_expr is None or (isinstance(s_expr, ast.Constant) and s_expr.value is None):
        s = k if role(name) == "pool" else 1
    else:
        s = int_value(s_expr)
    p_expr = get_arg(node, "padding")
    p = 0 if p_expr is None else p_expr.value if _is_str(p_expr) else int_value(p_expr)
    d_expr = get_arg(node, "dilation")
    d = 1 if d_expr is None else int_value(d_expr)
    if k is None or s is None or p is None or d is None:
        return None
    return k, s, p, d


def _is_str(expr: ast.AST) -> bool:
    return isinstance(expr, ast.Constant) and isinstance(expr.value, str)


def preserves_length(node: ast.Call) -> bool:
    """Whether a conv keeps the spatial size (stride 1 and 'same' padding for an odd kernel)."""
    geo = conv_geometry(node)
    if geo is None:
        return False
    k, s, p, d = geo
    if s != 1:
        return False
    return p == "same" or (k % 2 == 1 and p == d * (k - 1) // 2)


def out_size(node: ast.Call, size: int) -> int | None:
    """Spatial output size of a conv/pool along one axis, None when it cannot be computed."""
    geo = conv_geometry(node)
    if geo is None:
        return None
    k, s, p, d = geo
    if p == "same":
        return size
    if not isinstance(p, int):
        return None
    if role(layer_name(node)) == "pool" and p > k // 2:
        return -1
    return (size + 2 * p - d * (k - 1) - 1) // max(s, 1) + 1


def norm_for(producer: str, width: ast.expr, choice: int) -> ast.Call:
    """A normalisation layer that fits after ``producer`` with ``width`` channels/features.

    Convolutions get BatchNormNd (choice even) or GroupNorm (odd); linear layers get LayerNorm,
    which normalises the last axis whatever the tensor's rank.
    """
    if role(producer) != "conv":
        return call("LayerNorm", width)
    if choice % 2 == 0:
        return call(f"BatchNorm{spatial_dim(producer)}d", width)
    return call("GroupNorm", groups_for(int_value(width)), width)


def groups_for(width: int | None, prefer: int = 8) -> int:
    """The largest group count <= ``prefer`` dividing ``width`` (1 when unknown)."""
    if not width:
        return 1
    return max(g for g in range(1, prefer + 1) if width % g == 0)


def fix_groups(node: ast.Call, width: int | None) -> None:
    """After a GroupNorm's channel count changed, keep its group count a divisor of it."""
    if layer_name(node) != "GroupNorm":
        return
    g = int_value(get_arg(node, "num_groups"))
    set_arg(node, "num_groups", math.gcd(g, width) if g and width else 1)


def retarget(node: ast.AST, old: int, new: int) -> None:
    """Inside a residual body, change every width equal to ``old`` into ``new``."""
    for sub in ast.walk(node):
        name = layer_name(sub)
        if name is None or not isinstance(sub, ast.Call):
            continue
        for param in (in_param(name), out_param(name)):
            if param and int_value(get_arg(sub, param)) == old:
                set_arg(sub, param, new)
                fix_groups(sub, new)


def clone(node: ast.expr) -> ast.expr:
    """A deep copy of an expression (edits to the copy leave the original alone)."""
    return copy.deepcopy(node)
