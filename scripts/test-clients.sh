#!/usr/bin/env bash
# Tests of the JavaScript client (clients/js) and the deploy files (deploy/).
#
#   ./scripts/test-clients.sh
#
# Installs what it needs when missing: Node.js (apt-get), TypeScript 5 for the declaration
# checks (npm, into $HERALD_TEST_TOOLS, default ~/.cache/herald-test-tools), promtool (Debian's
# `prometheus` package) and systemd-analyze (`systemd`). Uses the built herald-edge and
# herald-processor when it finds them ($HERALD_BIN_DIR, else $CARGO_TARGET_DIR or target/,
# release then debug) for the env-file and system-call checks; builds nothing itself.
# No network besides those package registries; nothing listens beyond 127.0.0.1.
#
# Ends with "N passed, M failed" and exits 1 when anything failed.

set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
TOOLS=${HERALD_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-test-tools}
WORK=$(mktemp -d)
EDGE_PID=
cleanup() {
    [[ -n $EDGE_PID ]] && kill "$EDGE_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
failed=0
failures=()
section() { printf '\n== %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); printf 'FAIL %s\n' "$*"; }
# check NAME CMD...: runs CMD, counts it, shows its output.
check() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}

APT_UPDATED=
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "need $*, and there is no apt-get here: install it by hand" >&2
        return 1
    fi
    if [[ -z $APT_UPDATED ]]; then
        apt-get update -qq >/dev/null || return 1
        APT_UPDATED=1
    fi
    echo "installing $* (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---- tools --------------------------------------------------------------------------------------

section tools
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm || exit 1; fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
echo "node $(node --version), npm $(npm --version)"
if ((node_major < 20)); then
    echo "note: the client targets Node >= 20; running its tests on $(node --version) anyway"
fi
TSC=$TOOLS/node_modules/.bin/tsc
if [[ ! -x $TSC ]]; then
    echo "installing typescript@5 (npm) into $TOOLS"
    mkdir -p "$TOOLS"
    npm install --prefix "$TOOLS" --no-audit --no-fund --silent typescript@5 >/dev/null || exit 1
fi
echo "tsc $("$TSC" --version)"
command -v promtool >/dev/null || apt_install prometheus || exit 1
promtool --version 2>&1 | head -1
command -v systemd-analyze >/dev/null || apt_install systemd || exit 1
systemd-analyze --version | head -1

# ---- the JavaScript client ----------------------------------------------------------------------

section "clients/js: unit tests (node --test)"
js_log=$WORK/js-tests.log
(cd clients/js && node --test --test-reporter=spec test/*.test.js) >"$js_log" 2>&1
js_status=$?
grep -E '^(✖|not ok)' "$js_log" || true
js_tests=$(sed -nE 's/^ℹ tests ([0-9]+)$/\1/p' "$js_log")
js_pass=$(sed -nE 's/^ℹ pass ([0-9]+)$/\1/p' "$js_log")
js_fail=$(sed -nE 's/^ℹ fail ([0-9]+)$/\1/p' "$js_log")
echo "node --test: ${js_tests:-?} tests, ${js_pass:-?} passed, ${js_fail:-?} failed"
if [[ $js_status -ne 0 || -z $js_pass ]]; then
    cat "$js_log"
    fail "clients/js unit tests"
    js_fail=${js_fail:-1}
    js_pass=${js_pass:-0}
else
    ok "clients/js unit tests ($js_pass)"
fi

section "clients/js: types"
check "index.d.ts types a program and refuses misuse (tsc, no DOM library)" \
    "$TSC" -p clients/js/test/tsconfig.json
check "a page's WebSocket, EventSource and document fit the options (tsc, DOM library)" \
    "$TSC" -p clients/js/test/tsconfig.dom.json
check "the JSDoc-typed sources type-check against index.d.ts (tsc --checkJs)" \
    "$TSC" -p clients/js/test/tsconfig.src.json

section "clients/js: npm package"
pack_check() {
    local out=$WORK/pack
    mkdir -p "$out"
    (cd clients/js && npm pack --dry-run 2>&1) | sed -nE 's/^npm notice ([0-9.]+k?B) (.*)$/  \2 (\1)/p'
    local tgz
    tgz=$(cd clients/js && npm pack --silent --pack-destination "$out") || return 1
    local listing
    listing=$(tar -tzf "$out/$tgz" | sort | tr '\n' ' ')
    for f in package/package.json package/README.md package/index.d.ts package/src/index.js package/src/client.js; do
        [[ $listing == *"$f "* ]] || { echo "missing from the tarball: $f"; return 1; }
    done
    [[ $listing != *package/test/* ]] || { echo "tests must not be packed"; return 1; }
    # Install the tarball into an empty app (no dependencies: nothing is fetched) and use it.
    mkdir -p "$out/app"
    (cd "$out/app" && npm init -y >/dev/null && npm install --offline --no-audit --no-fund --silent "$out/$tgz") || return 1
    # shellcheck disable=SC2016 # JavaScript, not shell
    (cd "$out/app" && node --input-type=module -e '
        import { HeraldClient, SUBPROTOCOL, parseMessage } from "herald-client";
        class WS { constructor(url, protocols) { WS.made = [url, protocols]; } addEventListener() {} close() {} }
        const c = new HeraldClient({ url: "http://127.0.0.1:8080", getToken: () => "t", WebSocket: WS });
        c.start();
        await new Promise((r) => setImmediate(r));
        if (WS.made[0] !== "ws://127.0.0.1:8080/ws?access_token=t" || WS.made[1][0] !== SUBPROTOCOL) throw new Error(String(WS.made));
        if (parseMessage("{\"type\":\"replaced\"}").type !== "replaced") throw new Error("parse");
        console.log("  installed herald-client from the tarball and connected a fake WebSocket");
    ') || return 1
    echo "  $tgz: $(tar -tzf "$out/$tgz" | wc -l) files"
}
check "npm pack, install the tarball, import it" pack_check

# ---- deploy: systemd ------------------------------------------------------------------------------

section "deploy: systemd units"
BIN_DIR=${HERALD_BIN_DIR:-}
if [[ -z $BIN_DIR ]]; then
    for d in "${CARGO_TARGET_DIR:-$ROOT/target}/release" "${CARGO_TARGET_DIR:-$ROOT/target}/debug"; do
        if [[ -x $d/herald-edge && -x $d/herald-processor ]]; then BIN_DIR=$d; break; fi
    done
fi
[[ -n $BIN_DIR ]] && echo "binaries: $BIN_DIR" || echo "binaries: none built (ExecStart checked against /bin/true; binary checks skipped)"

verify_units() {
    local dir=$WORK/units
    mkdir -p "$dir"
    for unit in herald-edge herald-processor; do
        local exe=/bin/true
        [[ -n $BIN_DIR ]] && exe=$BIN_DIR/$unit
        local env=edge
        [[ $unit == herald-processor ]] && env=processor
        # verify insists that ExecStart exists; point it (and the env file) at real files.
        sed -e "s#^ExecStart=/usr/local/bin/$unit#ExecStart=$exe#" \
            -e "s#^EnvironmentFile=/etc/herald/$env.env#EnvironmentFile=$ROOT/deploy/systemd/$env.env#" \
            "deploy/systemd/$unit.service" >"$dir/$unit.service"
        grep -q "^ExecStart=$exe\$" "$dir/$unit.service" || { echo "$unit: ExecStart not found"; return 1; }
    done
    local out
    out=$(cd "$dir" && systemd-analyze verify ./herald-edge.service ./herald-processor.service 2>&1)
    local status=$?
    # verify exits 0 on unknown keys and unparsable values; any message is a failure here.
    if [[ $status -ne 0 || -n $out ]]; then
        echo "$out"
        return 1
    fi
    echo "  systemd-analyze verify: no messages for herald-edge.service, herald-processor.service"
    for unit in herald-edge herald-processor; do
        echo "  $(cd "$dir" && systemd-analyze security --offline=yes "./$unit.service" 2>/dev/null | tail -1 | sed 's/^→ //')"
    done
}
check "systemd-analyze verify (ExecStart -> ${BIN_DIR:-/bin/true})" verify_units

env_check() {
    local bin=$1 env=$2
    (
        set -a
        # shellcheck disable=SC1090
        . "deploy/systemd/$env"
        set +a
        "$BIN_DIR/$bin" --check-config >"$WORK/$bin-config.txt" 2>&1
    ) || { cat "$WORK/$bin-config.txt"; return 1; }
    echo "  $bin --check-config: $(head -1 "$WORK/$bin-config.txt")"
}

# The edge's system calls (start, handshakes, a drain) against the unit's SystemCallFilter.
expand_filter() {
    systemd-analyze syscall-filter "$1" | sed -nE 's/^ +([@a-z0-9_-]+)$/\1/p' | while read -r x; do
        case $x in @*) expand_filter "$x" ;; *) echo "$x" ;; esac
    done
}
syscall_check() {
    local unit=deploy/systemd/herald-edge.service allowed=$WORK/allowed denied=$WORK/denied
    : >"$allowed"
    : >"$denied"
    local line tok
    while read -r line; do
        local list=${line#SystemCallFilter=} target=$allowed
        if [[ $list == ~* ]]; then list=${list#\~}; target=$denied; fi
        for tok in $list; do
            case $tok in @*) expand_filter "$tok" >>"$target" ;; *) echo "$tok" >>"$target" ;; esac
        done
    done < <(grep '^SystemCallFilter=' "$unit")
    sort -u -o "$allowed" "$allowed"
    sort -u -o "$denied" "$denied"
    local trace=$WORK/edge.strace out=$WORK/edge.out secret=0123456789abcdef0123456789abcdef
    HERALD_LISTEN=127.0.0.1:0 HERALD_ADMIN_LISTEN=127.0.0.1:0 HERALD_DELIVERY_BASE_PORT=0 \
        HERALD_JWT_SECRET=$secret HERALD_DRAIN_WINDOW=1s HERALD_CLOSE_GRACE=200ms \
        HERALD_EXPECTED_CONNECTIONS=1000 RUST_LOG=warn \
        strace -f -qq -o "$trace" "$BIN_DIR/herald-edge" >"$out" 2>&1 &
    EDGE_PID=$!
    local ready='' i
    for ((i = 0; i < 600; i++)); do # up to 60 s for the ready line
        ready=$(grep -m1 '^herald-edge ready:' "$out")
        [[ -n $ready ]] && break
        kill -0 "$EDGE_PID" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $ready ]] || { cat "$out"; return 1; }
    local client admin
    client=$(sed -nE 's#.* ws=ws://([^/ ]+)/ws .*#\1#p' <<<"$ready")
    admin=$(sed -nE 's#.* admin=http://([^ ]+) .*#\1#p' <<<"$ready")
    # A WebSocket handshake offering herald.v1 with a valid token, held briefly; an SSE request
    # without credentials (401); then a drain, after which the edge exits by itself.
    # shellcheck disable=SC2016 # JavaScript, not shell
    node --input-type=module -e '
        import { createHmac, randomBytes } from "node:crypto";
        import { connect } from "node:net";
        const [addr, secret] = process.argv.slice(1);
        const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
        const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "u", did: "d", exp: Math.floor(Date.now() / 1000) + 600 })}`;
        const jwt = `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
        const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
        const s = connect(port, host, () => s.write(`GET /ws?access_token=${jwt} HTTP/1.1\r\nHost: ${addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Protocol: herald.v1\r\n\r\n`));
        let got = "";
        const timer = setTimeout(() => { console.error("no answer to the WebSocket handshake"); process.exit(1); }, 30000);
        s.on("data", (d) => {
            got += d.toString("latin1");
            if (got.includes("\r\n\r\n")) {
                clearTimeout(timer);
                const status = got.split(" ")[1];
                console.log(`  WebSocket handshake: ${status}`);
                s.destroy();
                process.exit(status === "101" ? 0 : 1);
            }
        });
        s.on("error", (e) => { console.error(e.message); process.exit(1); });
    ' "$client" "$secret" || return 1
    echo "  SSE without a token: $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://$client/sse")"
    echo "  POST /admin/drain: $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST "http://$admin/admin/drain")"
    for ((i = 0; i < 600; i++)); do # up to 60 s for the drain to end the process
        kill -0 "$EDGE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$EDGE_PID" 2>/dev/null; then
        echo "  the edge did not exit after its drain"
        return 1
    fi
    wait "$EDGE_PID"
    local status=$?
    EDGE_PID=
    [[ $status -eq 0 ]] || { echo "  strace/edge exit status $status"; cat "$out"; return 1; }
    sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p; s/^[0-9]+ +<\.\.\. ([a-z0-9_]+) resumed>.*/\1/p' "$trace" | sort -u >"$WORK/used"
    local outside forbidden
    outside=$(comm -23 "$WORK/used" "$allowed" | tr '\n' ' ')
    forbidden=$(comm -12 "$WORK/used" "$denied" | tr '\n' ' ')
    echo "  $(wc -l <"$WORK/used") distinct system calls, e.g. $(grep -E '^(io_uring_setup|io_uring_enter|sched_setaffinity|membarrier)$' "$WORK/used" | tr '\n' ' ')"
    if [[ -n $outside || -n $forbidden ]]; then
        echo "  not allowed by SystemCallFilter: ${outside}${forbidden}"
        return 1
    fi
    echo "  all allowed by the unit's SystemCallFilter"
}

if [[ -n $BIN_DIR ]]; then
    check "deploy/systemd/edge.env passes herald-edge --check-config" env_check herald-edge edge.env
    check "deploy/systemd/processor.env passes herald-processor --check-config" env_check herald-processor processor.env
    command -v strace >/dev/null || apt_install strace || true
    if command -v strace >/dev/null && command -v curl >/dev/null; then
        check "herald-edge's system calls (start, handshakes, drain) pass the unit's SystemCallFilter" syscall_check
    else
        echo "skipped: system-call check (needs strace and curl)"
    fi
fi

# ---- deploy: Prometheus and Grafana ------------------------------------------------------------------

section "deploy: Prometheus rules and Grafana dashboard"
check "promtool check rules deploy/prometheus/herald-alerts.yml" promtool check rules deploy/prometheus/herald-alerts.yml
check "promtool check config deploy/prometheus/scrape-config.yml" promtool check config deploy/prometheus/scrape-config.yml
promtool_tests() {
    (cd deploy/tests && promtool test rules herald-alerts.test.yml) || return 1
    echo "  $(grep -c '^  - name:' deploy/tests/herald-alerts.test.yml) test groups," \
        "$(grep -c 'exp_alerts: \[\]' deploy/tests/herald-alerts.test.yml) quiet and" \
        "$(grep -c 'exp_labels:' deploy/tests/herald-alerts.test.yml) firing expectations"
}
check "promtool test rules deploy/tests/herald-alerts.test.yml" promtool_tests
check "metric names, dashboard structure, env keys (deploy/tests/check-deploy.mjs)" \
    node deploy/tests/check-deploy.mjs --emit-rules "$WORK/dashboard-queries.yml"
check "the dashboard's queries are valid PromQL (promtool check rules)" \
    promtool check rules "$WORK/dashboard-queries.yml"

# ---- summary ----------------------------------------------------------------------------------------

section summary
echo "clients/js unit tests: ${js_pass} passed, ${js_fail} failed; other checks: ${passed} ok, ${failed} failed (the unit-test run counts as one)"
for f in "${failures[@]}"; do echo "failed: $f"; done
total_pass=$((js_pass + passed - (js_status == 0 ? 1 : 0)))
total_fail=$((js_fail + failed - (js_status != 0 ? 1 : 0)))
echo "$total_pass passed, $total_fail failed"
[[ $failed -eq 0 ]]
