"""The web explorer: ``llmnas ui [FOLDER]`` serves every run under FOLDER, read-only."""

from __future__ import annotations

from llmnas.ui.app import create_app
from llmnas.ui.runs import RunIndex

__all__ = ["RunIndex", "create_app"]
