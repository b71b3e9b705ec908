#!/usr/bin/env bash
# Idempotent set-up: bubblewrap (Debian, as root), a virtualenv in .venv, llmnas installed
# editable. `--dev` adds the test tools, Ray (the ray executor's tests run in CI) and Debian's
# Chromium (the explorer's browser tests). Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev,ray]"

if ! command -v bwrap >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing bubblewrap (sandbox namespaces)" >&2
    apt-get install -y -q bubblewrap >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
      || echo "setup: could not install bubblewrap; the sandbox will use its degraded mode" >&2
  else
    echo "setup: bubblewrap not found (install it for full sandbox isolation)" >&2
  fi
fi

if [ -n "$extras" ] && ! command -v chromium >/dev/null 2>&1; then
  # the explorer's browser tests drive Debian's Chromium through Playwright
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing chromium (browser tests)" >&2
    apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
      || echo "setup: could not install chromium; the browser tests will fail" >&2
  else
    echo "setup: chromium not found (the browser tests need it: apt-get install chromium)" >&2
  fi
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
