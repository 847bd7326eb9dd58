#!/usr/bin/env bash
# Herald in a real browser and from outside Rust: headless Chromium against `herald dev`
# (cross-origin WebSocket and EventSource, an origin outside the allow-list, the JavaScript
# client with a bad token, the demo page, the client following a drain of edge 1 of
# `herald dev --edges 2` onto edge 2 and reconnect asks without losing a push) and a push
# published with kcat.
#
#   ./scripts/test-browser.sh
#
# Installs what is missing: Debian's chromium and kcat (apt-get), Node.js, and playwright-core
# (npm, into $HERALD_TEST_TOOLS, default ~/.cache/herald-test-tools; it drives the system
# Chromium, no browser is downloaded). Needs a built `herald` ($HERALD_BIN_DIR, else
# $CARGO_TARGET_DIR or target/, release then debug); builds nothing itself. Screenshots go to
# ${OUT_DIR:-target/browser-tests}.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=${HERALD_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-test-tools}
PLAYWRIGHT_VERSION=1.65.1

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v kcat >/dev/null 2>&1 || command -v kafkacat >/dev/null 2>&1 || need_apt+=(kcat)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} (apt-get)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
PW=$TOOLS/node_modules/playwright-core
if [ ! -f "$PW/package.json" ] || [ "$(node -p "require('$PW/package.json').version")" != "$PLAYWRIGHT_VERSION" ]; then
  echo "installing playwright-core@$PLAYWRIGHT_VERSION (npm) into $TOOLS"
  mkdir -p "$TOOLS"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$TOOLS" --no-audit --no-fund --silent \
    "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
fi

BIN_DIR=${HERALD_BIN_DIR:-}
if [ -z "$BIN_DIR" ]; then
  for d in "${CARGO_TARGET_DIR:-$ROOT/target}/release" "${CARGO_TARGET_DIR:-$ROOT/target}/debug"; do
    if [ -x "$d/herald" ]; then BIN_DIR=$d; break; fi
  done
fi
if [ -z "$BIN_DIR" ] || [ ! -x "$BIN_DIR/herald" ]; then
  echo "no built herald found (cargo build -p herald first, or set HERALD_BIN_DIR)" >&2
  exit 1
fi
echo "chromium: $(chromium --version 2>/dev/null | head -1); playwright-core $PLAYWRIGHT_VERSION; herald: $BIN_DIR/herald"

export HERALD_BIN=$BIN_DIR/herald
export PLAYWRIGHT_CORE=$PW
export CHROMIUM=${CHROMIUM:-$(command -v chromium)}
export OUT_DIR=${OUT_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/browser-tests}
node --test --test-reporter=spec --test-concurrency=1 clients/browser-tests/browser.test.mjs
