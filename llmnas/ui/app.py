"""The explorer's ASGI app (Starlette): read-only pages and a JSON API over a folder of runs.

Pages: ``/`` (runs), ``/run/{run}`` (one run), ``/run/{run}/candidate/{id}``, ``/compare``.
API (what the pages fetch; documented in docs/UI.md): ``/api/runs``, ``/api/runs/{run}``,
``/api/runs/{run}/candidates``, ``/api/runs/{run}/candidates/{id}``, ``/api/compare``.

Protects against: candidate code, model replies, prompts and failure messages being taken as
markup or script (templates autoescape; the pages' scripts insert text with ``textContent``;
a Content-Security-Policy allows scripts only from this server, so an injected inline script
would not run even if escaping failed); requests naming files (runs are addressed by ids from
the index; static files come from the package); writes (only GET and HEAD routes exist; the
stores are opened read-only). Does not protect against: anyone who can reach the port reading
every run under the folder (there is no login: it binds to loopback unless told otherwise).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from llmnas.store import StoreError, Summary
from llmnas.ui.candidate import candidate_detail
from llmnas.ui.queries import (
    SORTABLE,
    candidate_rows,
    live_status,
    rebuild,
    run_detail,
    run_summary,
)
from llmnas.ui.render import code_html, diff_html, pygments_css, side_by_side_html, unified_diff
from llmnas.ui.runs import RunIndex, UnknownRun

__all__ = ["create_app"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _num(value: Any) -> str:
    """Numbers for tables: thousands separators for integers, 4 decimals for fractions."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or (value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    return f"{value:.4g}" if abs(value) >= 1000 or abs(value) < 1e-3 else f"{value:.4f}"


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def create_app(folder: str | Path) -> Starlette:
    """The explorer over every run found under ``folder``."""
    index = RunIndex(folder)
    env = Environment(
        loader=PackageLoader("llmnas.ui", "templates"),
        autoescape=select_autoescape(("html", "svg")),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(root=str(index.root), **context)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def data(value: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(value, status_code=status, headers=_HEADERS)

    def base(rid: str) -> tuple[list[Summary], Any, dict[str, Any]]:
        def compute(store: Any) -> tuple[list[Summary], Any, dict[str, Any]]:
            summaries = store.summaries()
            archive = rebuild(summaries, store)
            return summaries, archive, run_summary(store, summaries, archive)

        summaries, archive, summary = index.cached(rid, "base", compute)
        summary = {**summary, "id": rid, "name": index.name(rid)}
        return summaries, archive, {**summary, "status": live_status(summary)}

    def run_id(request: Request) -> str:
        rid = request.path_params["run"]
        try:
            index.path(rid)
        except UnknownRun:
            raise HTTPException(404, f"no run with id {rid!r} under {index.root}") from None
        return rid

    # ------------------------------------------------------------------ API

    def api_runs(request: Request) -> Response:
        runs = []
        for rid in index.runs():
            try:
                runs.append(base(rid)[2])
            except StoreError as exc:  # a store being created, or not an llmnas store
                runs.append({"id": rid, "name": index.name(rid), "error": str(exc)})
        return data({"root": str(index.root), "runs": runs})

    def api_run(request: Request) -> Response:
        rid = run_id(request)
        summaries, archive, summary = base(rid)
        detail = index.cached(rid, "detail", lambda store: run_detail(store, summaries, archive))
        return data({**summary, **detail})

    def api_candidates(request: Request) -> Response:
        rid = run_id(request)
        q = request.query_params
        try:
            offset, limit = int(q.get("offset", 0)), int(q.get("limit", 100))
            if offset < 0 or not 1 <= limit <= 1000:
                raise ValueError("offset must be >= 0 and limit in 1..1000")
            page_ = candidate_rows(
                base(rid)[0],
                status=q.get("status") or None,
                operator=q.get("operator") or None,
                failure_kind=q.get("failure_kind") or None,
                sort=q.get("sort", "id"),
                order=q.get("order", "asc"),
                offset=offset,
                limit=limit,
            )
        except ValueError as exc:
            return data({"error": str(exc)}, 400)
        return data(page_)

    def detail_of(rid: str, cid: int) -> dict[str, Any]:
        try:
            return index.cached(rid, f"candidate-{cid}", lambda s: candidate_detail(s, cid))
        except StoreError:
            raise HTTPException(404, f"no candidate {cid} in run {rid!r}") from None

    def api_candidate(request: Request) -> Response:
        rid = run_id(request)
        return data(detail_of(rid, request.path_params["cid"]))

    def pair(request: Request) -> tuple[dict[str, Any], dict[str, Any]] | None:
        found = []
        for key in ("a", "b"):
            ref = request.query_params.get(key, "")
            rid, _, cid = ref.rpartition(":")
            if not rid or not cid.isdigit():
                if not ref:
                    return None
                raise HTTPException(400, f"{key} must be RUN:ID (a run id and a candidate id)")
            try:
                index.path(rid)
            except UnknownRun:
                raise HTTPException(404, f"no run with id {rid!r}") from None
            found.append({"run": rid, "ref": ref, **detail_of(rid, int(cid))})
        return found[0], found[1]

    def api_compare(request: Request) -> Response:
        both = pair(request)
        if both is None:
            raise HTTPException(400, "give a=RUN:ID and b=RUN:ID")
        a, b = both
        diff = unified_diff(a["source"], b["source"], a_name=a["ref"], b_name=b["ref"])
        return data({"a": a, "b": b, "diff": diff})

    # ------------------------------------------------------------------ pages

    def runs_page(request: Request) -> Response:
        return page("runs.html")

    def run_page(request: Request) -> Response:
        rid = run_id(request)
        return page("run.html", run=base(rid)[2], sortable=SORTABLE)

    def candidate_page(request: Request) -> Response:
        rid = run_id(request)
        c = detail_of(rid, request.path_params["cid"])
        label = f"{rid} #{c['id']}"
        diffs = [
            {"parent": p, "html": diff_html(p["source"], c["source"],
                                            a_name=f"#{p['id']}", b_name=f"#{c['id']}")}
            for p in c["parents"]
        ]  # fmt: skip
        return page("candidate.html", run=base(rid)[2], c=c, label=label,
                    code=code_html(c["source"]), diffs=diffs)  # fmt: skip

    def compare_page(request: Request) -> Response:
        both = pair(request)
        context: dict[str, Any] = {"a": None, "b": None, "runs": list(index.runs())}
        if both is not None:
            a, b = both
            context.update(a=a, b=b, table=side_by_side_html(
                a["source"], b["source"], a_name=a["ref"], b_name=b["ref"]))  # fmt: skip
        return page("compare.html", **context)

    def css(request: Request) -> Response:
        return Response(pygments_css(), media_type="text/css", headers=_HEADERS)

    def plotly_js(request: Request) -> Response:
        return FileResponse(_plotly_js(), media_type="text/javascript", headers=_HEADERS)

    async def error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "internal error")
        if request.url.path.startswith("/api/"):
            return data({"error": detail}, status)
        return page("error.html", status=status, status_code=status, detail=detail)

    static = importlib.resources.files("llmnas.ui") / "static"
    routes = [
        Route("/", runs_page),
        Route("/run/{run}", run_page),
        Route("/run/{run}/candidate/{cid:int}", candidate_page),
        Route("/compare", compare_page),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run}", api_run),
        Route("/api/runs/{run}/candidates", api_candidates),
        Route("/api/runs/{run}/candidates/{cid:int}", api_candidate),
        Route("/api/compare", api_compare),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/static/pygments.css", css),
        Route("/static/plotly.min.js", plotly_js),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: error})
