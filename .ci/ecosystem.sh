#!/usr/bin/env bash
# The CI stages that need virtualenvs of their own (.ci/run runs them after the main suite):
#
#   coexistence  the plugin tests again, with pytest-recording and syrupy installed
#   floors       network, cassette and plugin tests with every core dependency at its floor
#                (.ci/floors.py reads the floors from pyproject.toml)
#   wheel        build the wheel and check its contents (.ci/check_wheel.py); install it
#                without extras (count the distributions: at most 40; the notebook command
#                must say which extra it needs; `record` writes where it is told) and with
#                the notebooks extra, and run the notebooks from an unrelated directory
#
# Usage: .ci/ecosystem.sh [stage...]   (default: all three; PYTHON picks the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PLUGIN_TESTS=(tests/test_pytest_plugin.py tests/test_plugin_snapshots.py
    tests/test_plugin_coexistence.py)
FLOOR_TESTS=(tests/test_client.py tests/test_emulator.py tests/test_behaviours.py tests/test_reads.py
    tests/test_serve.py tests/test_churn.py tests/test_phases.py
    tests/test_cassettes.py tests/test_cache_cli.py tests/test_cli_manners.py "${PLUGIN_TESTS[@]}")
MAX_CORE_DISTRIBUTIONS=40

say() { printf 'ecosystem: %s\n' "$*" >&2; }

footprint() {  # "N distributions, M MB" of a venv: pip list (pip itself included), its lib/
    local venv=$1
    printf '%s distributions, %s MB' "$("$venv/bin/python" -m pip list --format=freeze | wc -l)" \
        "$(du -sm "$venv/lib" | cut -f1)"
}

coexistence() {
    # registry-tools (core), pytest and the two neighbour plugins, nothing else.
    "$PYTHON" -m venv "$WORK/coexist"
    "$WORK/coexist/bin/python" -m pip install --quiet --upgrade pip
    "$WORK/coexist/bin/python" -m pip install --quiet -e "$ROOT" pytest pytest-timeout \
        pytest-recording syrupy
    "$WORK/coexist/bin/python" -m pip show pytest-recording syrupy | grep -E '^(Name|Version)'
    REGISTRY_TOOLS_COEXISTENCE=1 "$WORK/coexist/bin/python" -m pytest -q -p no:cacheprovider \
        "${PLUGIN_TESTS[@]}"
}

floors() {
    "$PYTHON" .ci/floors.py >"$WORK/floors.txt"
    "$PYTHON" -m venv "$WORK/floors"
    "$WORK/floors/bin/python" -m pip install --quiet --upgrade pip
    "$WORK/floors/bin/python" -m pip install --quiet -c "$WORK/floors.txt" -e "$ROOT" \
        pytest pytest-timeout
    "$WORK/floors/bin/python" -m pip list --format=freeze | grep -iE "^($(
        cut -d= -f1 "$WORK/floors.txt" | paste -sd'|'
    ))==" >&2
    "$WORK/floors/bin/python" -m pytest -q -p no:cacheprovider "${FLOOR_TESTS[@]}"
}

wheel() {
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$ROOT"
    local built
    built=$(ls "$WORK"/dist/registry_tools-*.whl)
    "$PYTHON" .ci/check_wheel.py "$built"
    mkdir "$WORK/elsewhere"

    # The core install: small, and the notebooks say which extra they need.
    "$PYTHON" -m venv "$WORK/core"
    "$WORK/core/bin/python" -m pip install --quiet "$built"
    local count
    count=$("$WORK/core/bin/python" -m pip list --format=freeze | wc -l)
    say "core install (pip install registry-tools): $(footprint "$WORK/core")"
    [ "$count" -le "$MAX_CORE_DISTRIBUTIONS" ] || { say "more than $MAX_CORE_DISTRIBUTIONS"; return 1; }
    (
        cd "$WORK/elsewhere"
        "$WORK/core/bin/registry-tools" --version
        status=0
        "$WORK/core/bin/registry-tools" notebook run-all --output-dir out 2>err.txt || status=$?
        [ "$status" -eq 2 ] && grep -q "pip install 'registry-tools\[notebooks\]'" err.txt
        [ ! -e out ]
        # record writes where it is told (here: ./cassettes/sample), never into the install
        site=$("$WORK/core/bin/python" -c 'import registry_tools, os; print(os.path.dirname(registry_tools.__file__))')
        before=$(cd "$site" && find . -type f -name '*.json' -exec sha256sum {} + | sort)
        "$WORK/core/bin/registry-tools" record --dataset sample | grep -q "^recorded cassettes/sample "
        [ -f cassettes/sample/manifest.json ]
        [ "$before" = "$(cd "$site" && find . -type f -name '*.json' -exec sha256sum {} + | sort)" ]
        cmp cassettes/sample/phase2-versions.json "$site/replay/bundled/sample/phase2-versions.json"
    )

    # With the notebooks extra, from a directory that has nothing of the checkout.
    "$PYTHON" -m venv "$WORK/notebooks"
    "$WORK/notebooks/bin/python" -m pip install --quiet "${built}[notebooks]"
    say "with the notebooks extra: $(footprint "$WORK/notebooks")"
    (
        cd "$WORK/elsewhere"
        "$WORK/notebooks/bin/python" -c 'import registry_tools; assert "site-packages" in registry_tools.__file__'
        "$WORK/notebooks/bin/registry-tools" notebook run-all --output-dir out
        for made in cache.json node_mappings.json resolution.json; do
            [ -s "out/$made" ] || { say "notebook run-all left no out/$made"; exit 1; }
        done
    )
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(coexistence floors wheel)
for stage in "${stages[@]}"; do
    case "$stage" in
        coexistence | floors | wheel) ;;
        *) say "unknown stage $stage (coexistence, floors, wheel)"; exit 2 ;;
    esac
    started=$SECONDS
    say "$stage: start"
    "$stage"
    say "$stage: passed in $((SECONDS - started)) s"
done
