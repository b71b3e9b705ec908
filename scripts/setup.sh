#!/usr/bin/env bash
# Idempotent set-up: bubblewrap (Debian, as root), a virtualenv in .venv, llmnas installed
# editable. `--dev` adds the test tools, Ray (the ray executor's tests run in CI) and Debian's
# Chromium (the explorer's browser tests). Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev,ray]"

# debian_package COMMAND PACKAGE WHY IF_MISSING: install PACKAGE (as root, with apt) when
# COMMAND is not found; otherwise, or when that fails, say IF_MISSING.
debian_package() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing $2 ($3)" >&2
    apt-get install -y -q "$2" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null 2>&1; } \
      || echo "setup: could not install $2; $4" >&2
  else
    echo "setup: $1 not found; $4 (install the Debian package $2)" >&2
  fi
}

debian_package bwrap bubblewrap "sandbox namespaces" "the sandbox will use its degraded mode"
if [ -n "$extras" ]; then  # the explorer's browser tests drive Debian's Chromium (Playwright)
  debian_package chromium chromium "browser tests" "the browser tests will fail"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # A CPU build when one is available locally; set LLMNAS_TORCH to choose another spec.
  echo "setup: installing torch" >&2
  .venv/bin/pip install -q "${LLMNAS_TORCH:-torch==2.13.0}" 2>&1 | grep -v '^WARNING' >&2 || true
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "torch>=2.3"
fi
stamp=".venv/.llmnas-installed$extras"
want="$(sha256sum pyproject.toml | cut -c1-64)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing llmnas$extras" >&2
  .venv/bin/pip install -q -e ".$extras" 2>&1 | grep -v '^WARNING' >&2 || true
  .venv/bin/python -c "import llmnas.cli" && echo "$want" > "$stamp"
fi
