#!/bin/sh
# Install what tests/test_browser.py needs, idempotently: Debian's chromium (the test drives
# /usr/bin/chromium) and the playwright pip package. Never `playwright install`: the test
# uses the distribution's browser, not a downloaded one.
set -eu

if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends chromium
fi

PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
if ! "$PYTHON" -c "import playwright.sync_api" 2>/dev/null; then
    "$PYTHON" -m pip install "playwright>=1.45"
fi

/usr/bin/chromium --version
"$PYTHON" -m pip show playwright | sed -n 's/^Version: /playwright /p'
