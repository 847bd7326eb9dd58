#!/usr/bin/env bash
# Dependency advisories: runs cargo-audit (RustSec database) over Cargo.lock.
#
# Installs cargo-audit 0.22.0 when it is missing. The database is
# ${ADVISORY_DB:-$HOME/.cargo/advisory-db}: used as it is (--no-fetch) when that directory
# exists, else cloned there. Exits non-zero on any advisory that .cargo/audit.toml does not
# ignore: vulnerabilities, and (its `deny = ["warnings"]`) unmaintained, unsound or yanked
# crates. Each ignored advisory has its reason in docs/decisions/0002-advisories.md.
# Not part of scripts/test.sh: it needs the advisory database, which a test run may not have.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.22.0
if ! cargo audit --version 2>/dev/null | grep -qx "cargo-audit-audit $version"; then
  echo "==> installing cargo-audit $version"
  cargo install cargo-audit --version "$version" --locked
fi

db="${ADVISORY_DB:-$HOME/.cargo/advisory-db}"
args=(--db "$db")
if [ -d "$db" ]; then
  args+=(--no-fetch)
else
  echo "==> no advisory database at $db: fetching it"
fi
exec cargo audit "${args[@]}" "$@"
