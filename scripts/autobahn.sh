#!/usr/bin/env bash
# Autobahn|Testsuite against the edge's WebSocket path (edge/examples/echo.rs): builds the echo
# example, sets up a Python 2 virtualenv with autobahntestsuite (pinned), runs the
# fuzzingclient on cases 1-7, 9 and 10, and prints a per-section summary. Exits non-zero if a
# case failed. Not part of the default test command (it takes several minutes); see
# docs/conformance.md for the last recorded result.
#
# Environment:
#   PYTHON2        Python 2.7 interpreter (default: pyenv's 2.7.18, else `python2`)
#   AUTOBAHN_DIR   work directory: virtualenv, spec, reports (default: <target dir>/autobahn)
#   AUTOBAHN_CASES JSON list of case patterns (default: ["1.*",…,"7.*","9.*","10.*"])
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
work=${AUTOBAHN_DIR:-$target/autobahn}
cases=${AUTOBAHN_CASES:-'["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]'}
py2=${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}
if [[ ! -x $py2 ]]; then
    py2=$(command -v python2 || true)
fi
if [[ -z $py2 ]]; then
    echo "autobahn: no Python 2.7 interpreter (set PYTHON2)" >&2
    exit 1
fi
mkdir -p "$work"
venv=$work/venv

# 1. The virtualenv. autobahntestsuite runs on Python 2 only; virtualenv 20.22 dropped
#    Python 2, and PyHamcrest 2 needs Python 3. The rest are the versions pip resolves for
#    Python 2.7, pinned so that a later release cannot break the set.
if [[ ! -x $venv/bin/wstest ]]; then
    echo "autobahn: setting up $venv"
    "$py2" -m pip install --quiet --disable-pip-version-check --target "$work/bootstrap" 'virtualenv<20.22'
    PYTHONPATH=$work/bootstrap "$py2" -m virtualenv --quiet "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'autobahntestsuite==25.10.1' 'PyHamcrest<2' \
        'autobahn==0.10.9' 'Twisted==19.10.0' 'txaio==2.1.0' 'zope.interface==4.6.0' \
        'Automat==22.10.0' 'attrs==21.4.0' 'constantly==15.1.0' 'hyperlink==21.0.0' \
        'idna==2.10' 'incremental==16.10.1' 'six==1.16.0' 'typing==3.10.0.0' \
        'wsaccel==0.6.6' 'ujson==2.0.3' 'klein==17.10.0' 'Werkzeug==1.0.1' \
        'Jinja2==2.11.3' 'MarkupSafe==1.1.1' 'pyOpenSSL==19.1.0' 'cryptography==3.3.2' \
        'cffi==1.15.1' 'pycparser==2.21' 'enum34==1.1.10' 'ipaddress==1.0.23' \
        'service-identity==18.1.0' 'pyasn1==0.5.1' 'pyasn1-modules==0.3.0' \
        'unittest2==1.1.0' 'traceback2==1.4.0' 'linecache2==1.0.0' 2>&1 |
        grep -v -e DEPRECATION -e 'pip 21.0 will' || true
fi
"$venv/bin/wstest" --autobahnversion 2>/dev/null | grep -i autobahn || true

# 2. The echo server, on a free port, stopped when this script ends.
echo "autobahn: building the echo example"
(cd "$root" && cargo build --quiet -p herald-edge --example echo)
log=$work/echo.log
"$target/debug/examples/echo" 127.0.0.1:0 >"$log" 2>&1 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
url=""
for _ in $(seq 1 100); do
    url=$(grep -o 'ws://[^ ]*' "$log" || true)
    [[ -n $url ]] && break
    kill -0 "$echo_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $url ]] || { echo "autobahn: echo server did not start" >&2; exit 1; }
echo "autobahn: echo server at $url"

# 3. The run.
rm -rf "$work/reports"
cat >"$work/fuzzingclient.json" <<EOF
{
  "outdir": "$work/reports",
  "servers": [{"agent": "herald-edge-echo", "url": "$url"}],
  "cases": $cases,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF
start=$(date +%s)
(cd "$work" && "$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json >"$work/wstest.log" 2>&1)
elapsed=$(($(date +%s) - start))

# 4. The summary: one line per section, counted by the case's behaviour.
python3 - "$work/reports/index.json" "$elapsed" <<'EOF'
import collections, json, sys

index = json.load(open(sys.argv[1]))
results = next(iter(index.values()))
kinds = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
sections = collections.OrderedDict()
for case in sorted(results, key=lambda c: [int(x) for x in c.split(".")]):
    r = results[case]
    counts = sections.setdefault(case.split(".")[0], collections.Counter())
    counts[r["behavior"]] += 1
    if r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
        counts["close " + r["behaviorClose"]] += 1
print("| section | cases | " + " | ".join(k.lower() for k in kinds) + " |")
print("|---|---:|" + "---:|" * len(kinds))
total = collections.Counter()
for sec, counts in sections.items():
    n = sum(counts[k] for k in kinds)
    total.update(counts)
    print("| %s | %d | %s |" % (sec, n, " | ".join(str(counts[k]) for k in kinds)))
n = sum(total[k] for k in kinds)
print("| all | %d | %s |" % (n, " | ".join(str(total[k]) for k in kinds)))
closes = {k: v for k, v in total.items() if k.startswith("close ")}
if closes:
    print("closing-handshake findings: %s" % dict(closes))
failed = [c for c, r in results.items() if r["behavior"] == "FAILED" or r["behaviorClose"] == "FAILED"]
if failed:
    print("failed cases: %s" % ", ".join(sorted(failed, key=lambda c: [int(x) for x in c.split(".")])))
print("wstest ran %s s" % sys.argv[2])
sys.exit(1 if failed else 0)
EOF
