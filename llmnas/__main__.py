"""``python -m llmnas`` is the ``llmnas`` command."""

from llmnas.cli import app

app(prog_name="llmnas")
