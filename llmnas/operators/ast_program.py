"""A candidate program seen as layer chains: the analysis every AST operator shares.

:class:`Program` parses a candidate and finds the ``Model`` class, its ``__init__`` and
``forward``. It lists the layer *items* it can edit:

- every element of every ``nn.Sequential(...)`` (nested ones flattened) reachable from a
  ``self.<attr> = ...`` assignment in ``Model.__init__`` or returned by a module-level helper,
  plus standalone ``self.<attr> = nn.Layer(...)`` assignments and ``SkipAdd`` bodies;
- the *forward chain*: the attributes in the order ``forward`` calls them (post-order, so
  ``self.head(self.features(x))`` is features then head), expanded into their items. Between
  two attributes unknown tensor code may run (flatten, transpose), so an item that starts an
  attribute is marked ``boundary``.

Width and length changes are pushed down the forward chain: the next consumer's input width
is set when it is in the same attribute, and otherwise the consumer becomes ``Lazy*`` (its
width inferred) and a dry run at the end of ``__init__`` materialises the lazy parameters, so
the built model has ordinary parameters. Branching forwards (two attributes on the same
input, residuals written by hand) are read as a chain too; such edits may then fail to build.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from llmnas.operators.ast_layers import (
    SKIP_CLASS,
    SKIP_SOURCE,
    NotApplicable,
    call,
    fix_groups,
    get_arg,
    in_param,
    int_value,
    layer_name,
    lazify,
    out_size,
    retarget,
    role,
    set_arg,
    spatial_dim,
)
from llmnas.operators.ast_render import to_source
from llmnas.pyast import parse_source

__all__ = ["Item", "Program"]

_DRY_RUN = """
self.eval()
with torch.no_grad():
    self(torch.zeros(2, *input_shape))
self.train()
"""


@dataclass(eq=False)
class Item:
    """One element of a layer container: ``holder`` is the ``nn.Sequential``/``SkipAdd`` call
    whose ``args`` hold ``node``, or the ``Assign``/``Return`` statement whose value it is."""

    node: ast.expr
    holder: ast.AST
    path: str
    boundary: bool = False
    in_skip: bool = False
    locked: bool = False
    name: str | None = field(init=False)
    role: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = layer_name(self.node)
        self.role = role(self.name)

    @property
    def lazy(self) -> bool:
        return bool(self.name and self.name.startswith("Lazy"))

    @property
    def call(self) -> ast.Call:
        assert isinstance(self.node, ast.Call)
        return self.node


class Program:
    """A parsed candidate with the helpers to edit its layers and render it back to source."""

    def __init__(self, source: str):
        try:
            self.tree = parse_source(source)
        except SyntaxError as exc:
            raise NotApplicable(f"does not parse: {exc.msg}") from None
        models = [n for n in self.tree.body if isinstance(n, ast.ClassDef) and n.name == "Model"]
        if not models:
            raise NotApplicable("no class Model")
        self.model = models[-1]
        methods = {n.name: n for n in self.model.body if isinstance(n, ast.FunctionDef)}
        if "__init__" not in methods or "forward" not in methods:
            raise NotApplicable("Model lacks __init__ or forward")
        self.init, self.forward = methods["__init__"], methods["forward"]

    # ----------------------------------------------------------------------------- analysis
    def attrs(self) -> dict[str, ast.Assign]:
        """``self.<name> = value`` statements at the top level of ``__init__`` (last wins)."""
        out: dict[str, ast.Assign] = {}
        for stmt in self.init.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                t = stmt.targets[0]
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                    if t.value.id == "self":
                        out[t.attr] = stmt
        return out

    def forward_order(self) -> list[str]:
        """Attributes in the order ``forward`` calls them (first call of each)."""
        attrs, order = self.attrs(), []

        def visit(node: ast.AST) -> None:
            for child in ast.iter_child_nodes(node):
                visit(child)
            name = _self_call(node)
            if name in attrs and name not in order:
                order.append(name)

        visit(self.forward)
        return order

    def locked_attrs(self) -> set[str]:
        """Attributes whose output must keep its input's shape: operands of ``+``/``*`` in
        ``forward`` (hand-written residuals) and attributes called more than once."""
        calls: dict[str, int] = {}
        locked: set[str] = set()
        for node in ast.walk(self.forward):
            name = _self_call(node)
            if name:
                calls[name] = calls.get(name, 0) + 1
            if isinstance(node, ast.BinOp):
                locked |= {n for n in (_self_call(node.left), _self_call(node.right)) if n}
        return locked | {name for name, n in calls.items() if n > 1}

    def hidden_attrs(self) -> set[str]:
        """Submodule attributes ``forward`` does not call directly (``ModuleList`` loops,
        ``getattr``): layers the chain cannot see, so pushes across attributes are unsafe."""
        called, out = set(self.forward_order()), set()
        for name, stmt in self.attrs().items():
            if name in called or not isinstance(stmt.value, ast.Call):
                continue
            func = ast.unparse(stmt.value.func)
            if func.endswith("Parameter") or (
                func.startswith("torch.") and not func.startswith("torch.nn.")
            ):
                continue
            out.add(name)
        return out

    def _expand(self, expr: ast.expr, holder: ast.AST, path: str, skip: bool) -> list[Item]:
        item = Item(expr, holder, path, in_skip=skip)
        if item.role == "seq" and not item.call.keywords:
            out: list[Item] = []
            for i, arg in enumerate(item.call.args):
                if isinstance(arg, ast.Starred):
                    out.append(Item(arg, item.call, f"{path}[{i}]", in_skip=skip))
                else:
                    out.extend(self._expand(arg, item.call, f"{path}[{i}]", skip))
            return out
        if item.role == "skip":
            body = [
                sub
                for i, arg in enumerate(item.call.args)
                for sub in self._expand(arg, item.call, f"{path}.body[{i}]", True)
            ]
            return [item, *body]
        return [item]

    def chain(self) -> list[Item]:
        """The forward chain (items inside ``SkipAdd`` bodies left out)."""
        attrs, locked, out = self.attrs(), self.locked_attrs(), []
        for name in self.forward_order():
            items = [i for i in self._expand(attrs[name].value, attrs[name], name, False)]
            items = [i for i in items if not i.in_skip]
            if items:
                items[0].boundary = True
            for it in items:
                it.locked = name in locked
            out.extend(items)
        return out

    def items(self) -> list[Item]:
        """Every editable item: Model attributes, helper-function returns, SkipAdd bodies."""
        out: list[Item] = []
        for name, stmt in self.attrs().items():
            out.extend(self._expand(stmt.value, stmt, name, False))
        for fn in self.tree.body:
            if isinstance(fn, ast.FunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Return) and node.value is not None:
                        out.extend(self._expand(node.value, node, f"{fn.name}()", False))
        return out

    @staticmethod
    def group(items: list[Item], start: int) -> list[Item]:
        """``items[start]`` plus the norms, activations and dropouts right after it in its
        container (the "conv + norm + activation" unit)."""
        first = items[start]
        out = [first]
        for it in items[start + 1 :]:
            if it.holder is not first.holder or it.role not in ("norm", "act", "pass"):
                break
            out.append(it)
        return out

    # -------------------------------------------------------------------------- container edits
    @staticmethod
    def _position(holder: ast.Call, node: ast.expr) -> int:
        return next(i for i, a in enumerate(holder.args) if a is node)

    def insert(self, item: Item, nodes: list[ast.expr], after: bool = True) -> None:
        """Put ``nodes`` after (or before) ``item`` in its container, wrapping a standalone
        layer into an ``nn.Sequential`` when needed."""
        holder = item.holder
        if isinstance(holder, ast.Call):
            i = self._position(holder, item.node) + (1 if after else 0)
            holder.args[i:i] = nodes
        else:
            seq = [item.node, *nodes] if after else [*nodes, item.node]
            holder.value = _sequential(seq)  # type: ignore[attr-defined]
            item.holder = holder.value  # type: ignore[attr-defined]

    def replace(self, items: list[Item], new: ast.expr | list[ast.expr] | None) -> None:
        """Replace consecutive ``items`` of one container by ``new`` (None: remove them)."""
        nodes = [] if new is None else new if isinstance(new, list) else [new]
        holder = items[0].holder
        if isinstance(holder, ast.Call):
            i = self._position(holder, items[0].node)
            holder.args[i : i + len(items)] = nodes
        else:
            value = nodes[0] if len(nodes) == 1 else _sequential(nodes)
            holder.value = value if nodes else call("Identity")  # type: ignore[attr-defined]

    # ---------------------------------------------------------------------------- propagation
    def push_width(
        self,
        chain: list[Item],
        start: int,
        width: ast.expr | None,
        old: int | None,
        crossed: bool = False,
    ) -> None:
        """The output width after ``chain[start]`` became ``width`` (None: unknown): update
        norms and the first consumer downstream, lazifying what cannot be set directly."""
        hidden = bool(self.hidden_attrs())
        for it in chain[start + 1 :]:
            crossed = crossed or it.boundary or it.role == "flatten"
            if crossed and hidden:
                raise NotApplicable("forward uses submodules the operator cannot follow")
            if it.locked:
                raise NotApplicable(f"{it.path} must keep its input shape (residual in forward)")
            if it.role in ("act", "pass", "pool", "apool", "flatten") or it.lazy:
                if it.lazy and it.role in ("conv", "linear"):
                    return
                continue
            if it.role == "norm":
                if crossed or width is None:
                    if not lazify(it.call):
                        raise NotApplicable(f"cannot re-size {it.name} at {it.path}")
                else:
                    set_arg(it.call, in_param(it.name or "") or "", width)
                    fix_groups(it.call, int_value(width))
                continue
            if it.role in ("conv", "linear"):
                if crossed or width is None:
                    lazify(it.call)
                else:
                    set_arg(it.call, in_param(it.name or "") or "", width)
                return
            if it.role == "rnn":
                if width is None or (crossed and int_value(width) is None):
                    raise NotApplicable(f"cannot re-size the input of {it.name} at {it.path}")
                set_arg(it.call, "input_size", width)
                return
            if it.role == "skip" and not crossed and old is not None:
                new = int_value(width)
                if new is None:
                    raise NotApplicable("residual block needs a literal width")
                retarget(it.call, old, new)
                continue
            raise NotApplicable(f"cannot see through {ast.unparse(it.node)[:40]} at {it.path}")

    def push_length(self, chain: list[Item], start: int) -> None:
        """The spatial size after ``chain[start]`` changed: the first Linear downstream (unless
        an adaptive pool fixes the size first) infers its input width."""
        if self.hidden_attrs():
            raise NotApplicable("forward uses submodules the operator cannot follow")
        for it in chain[start + 1 :]:
            if it.role == "apool":
                return
            if it.role == "linear":
                lazify(it.call)
                return

    def spatial_ok(self, input_shape: tuple[int, ...] | None) -> bool:
        """Static check that no conv/pool of the forward chain sees an empty input."""
        if not input_shape or len(input_shape) < 2:
            return True
        sizes = list(input_shape[1:])
        for it in self.chain():
            if it.role in ("act", "pass", "norm", "skip"):
                continue
            if it.role == "apool":
                o = int_value(get_arg(it.call, "output_size"))
                sizes = [o] * len(sizes) if o else sizes
                continue
            if it.role not in ("conv", "pool") or spatial_dim(it.name) != len(sizes):
                return True
            new = [out_size(it.call, s) for s in sizes]
            if any(s is not None and s < 1 for s in new):
                return False
            sizes = [s if n is None else n for s, n in zip(sizes, new, strict=True)]
        return True

    # -------------------------------------------------------------------------------- output
    def ensure_skip_class(self) -> None:
        """Define ``SkipAdd`` before ``Model`` unless the program already does."""
        for node in self.tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == SKIP_CLASS:
                if ast.dump(node) != ast.dump(parse_source(SKIP_SOURCE).body[0]):
                    raise NotApplicable(f"the program defines its own {SKIP_CLASS}")
                return
        i = self.tree.body.index(self.model)
        self.tree.body.insert(i, parse_source(SKIP_SOURCE).body[0])

    def add_attribute(self, name: str, value: ast.expr) -> str:
        """Append ``self.<name> = value`` to ``__init__`` (before the dry run) with a free name."""
        taken, base, n = set(self.attrs()), name, 1
        while name in taken:
            n += 1
            name = f"{base}{n}"
        stmt = parse_source(f"self.{name} = None").body[0]
        stmt.value = value  # type: ignore[attr-defined]
        body = self.init.body
        at = len(body) - 3 if self._has_dry_run() else len(body)
        body.insert(at, stmt)
        return name

    def _has_dry_run(self) -> bool:
        tail = self.init.body[-3:]
        return len(tail) == 3 and "torch.zeros(2, *input_shape)" in ast.unparse(tail[1])

    def render(self) -> str:
        """Add what the edits need (dry run for lazy layers, imports) and unparse."""
        lazy = any((layer_name(n) or "").startswith("Lazy") for n in ast.walk(self.tree))
        if lazy and not self._has_dry_run():
            self.init.body.extend(parse_source(_DRY_RUN).body)
        return to_source(self.tree)


def _self_call(node: ast.AST) -> str | None:
    """``X`` when ``node`` is a call ``self.X(...)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if isinstance(node.func.value, ast.Name) and node.func.value.id == "self":
            return node.func.attr
    return None


def _sequential(nodes: list[ast.expr]) -> ast.Call:
    """``nn.Sequential(*nodes)`` holding the very nodes given (not copies)."""
    seq = call("Sequential")
    seq.args = list(nodes)
    return seq
