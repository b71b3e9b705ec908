"""A PNG heatmap of a two-descriptor grid archive (matplotlib's Agg canvas, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmnas.archive import ArchiveError, QDArchive

__all__ = ["save_heatmap"]


def save_heatmap(archive: QDArchive, path: str | Path, *, title: str | None = None) -> Path:
    """Write a PNG heatmap of a 2-descriptor archive's objectives (Agg, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(archive, QDArchive):
        raise ArchiveError("a heatmap is drawn for a single grid archive, not for islands")
    names = archive.config.descriptors
    if archive.config.kind != "grid":
        raise ArchiveError("a heatmap is drawn for grid archives only (this one is CVT)")
    if len(names) != 2:
        raise ArchiveError(f"a heatmap needs exactly 2 descriptors, this archive has {len(names)}")
    dims = archive.config.dims()
    grid = np.full((dims[1], dims[0]), np.nan)
    elites = archive.elites()
    if elites:
        index = archive.ribs.int_to_grid_index(np.array([e.cell for e in elites]))
        for elite, (gx, gy) in zip(elites, index, strict=True):
            grid[gy, gx] = elite.objective
    (x0, x1), (y0, y1) = archive.config.bounds()
    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(grid, origin="lower", extent=(x0, x1, y0, y1), aspect="auto", cmap="viridis")
    label = {"params_x_error": "-log10(params x error)"}.get(archive.config.objective)
    fig.colorbar(image, ax=ax, label=label or archive.config.objective)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(title or f"{len(archive)} elites, coverage {archive.coverage:.1%}")
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
