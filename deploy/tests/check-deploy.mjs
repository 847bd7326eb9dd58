// Static checks of the deploy files (run by scripts/test-clients.sh; Node >= 20, no packages):
//
// - every metric the alert rules, their unit tests and the Grafana dashboard name is documented
//   in docs/metrics.md (or docs/registry.md for herald_registry_*) AND appears as a string in
//   the Rust code that exports it (edge/src, processor/src, registry/src); `_bucket`/`_sum`/
//   `_count` only on documented histograms; `up` is Prometheus's own;
// - every alert and every dashboard query names at least one metric;
// - the dashboard is valid JSON with unique panel ids, a data source and non-overlapping
//   positions on every panel;
// - the env files set only documented settings (docs/configuration.md, HERALD_<KEY>;
//   docs/processor-configuration.md, HERALD_PROCESSOR_<KEY>).
//
// With `--emit-rules FILE` it also writes every dashboard query as a recording rule, so that
// `promtool check rules FILE` checks the PromQL syntax ($__rate_interval -> 5m, $node -> .*).
//
// Usage: node deploy/tests/check-deploy.mjs [--emit-rules FILE]   (from the repository root)

import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const read = (p) => readFileSync(join(root, p), 'utf8');
const problems = [];
const problem = (msg) => problems.push(msg);

// ---- documented metrics ----------------------------------------------------------------------

/** name -> type, from the tables of a metrics doc (first cell: `name`[, `name`...]; second: type). */
function documentedMetrics(doc) {
  const out = new Map();
  for (const line of read(doc).split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || !cells[1].includes('`herald_')) continue;
    const type = cells[2];
    for (const m of cells[1].matchAll(/`(herald_[a-z0-9_]+)`/g)) out.set(m[1], type);
  }
  return out;
}
const documented = new Map([...documentedMetrics('docs/metrics.md'), ...documentedMetrics('docs/registry.md')]);
if (documented.size < 40) problem(`only ${documented.size} metrics found in docs/metrics.md and docs/registry.md: table format changed?`);

// ---- metric names in the Rust sources ----------------------------------------------------------

function rustFiles(dir) {
  const out = [];
  for (const name of readdirSync(join(root, dir))) {
    const p = join(dir, name);
    if (statSync(join(root, p)).isDirectory()) out.push(...rustFiles(p));
    else if (name.endsWith('.rs')) out.push(p);
  }
  return out;
}
const inCode = new Set();
for (const dir of ['edge/src', 'processor/src', 'registry/src']) {
  for (const f of rustFiles(dir)) for (const m of read(f).matchAll(/"(herald_[a-z0-9_]+)"/g)) inCode.add(m[1]);
}

const PROMETHEUS_OWN = new Set(['up']);
const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];

/** Checks one metric name as used in `where`; returns true when it is a known metric. */
function checkName(name, where) {
  if (PROMETHEUS_OWN.has(name)) return true;
  let base = name;
  if (!documented.has(name)) {
    const suffix = HISTOGRAM_SUFFIXES.find((s) => name.endsWith(s));
    if (suffix) base = name.slice(0, -suffix.length);
    if (!documented.has(base)) {
      problem(`${where}: metric ${name} is not in docs/metrics.md or docs/registry.md`);
      return false;
    }
    if (documented.get(base) !== 'histogram') {
      problem(`${where}: ${name}: ${base} is a ${documented.get(base)}, not a histogram`);
      return false;
    }
  }
  if (!inCode.has(base)) {
    problem(`${where}: metric ${base} is documented but no exporter in edge/, processor/ or registry/ names it`);
    return false;
  }
  return true;
}

/** Metric names in a PromQL expression: herald_* identifiers, and `up` used as a selector. */
function metricsIn(expr) {
  const names = [...expr.matchAll(/\b(herald_[a-z0-9_]+)\b/g)].map((m) => m[1]);
  if (/(^|[^a-z_])up\s*[{=<>!]/.test(expr)) names.push('up');
  return names;
}

const used = new Set();

// ---- alert rules (a small reader for this file's layout: `- alert:` then `expr:` inline or |) --

function alertExprs(text) {
  const lines = text.split('\n');
  const out = [];
  let alert = null;
  for (let i = 0; i < lines.length; i++) {
    const a = lines[i].match(/^\s*- alert:\s*(\S+)/);
    if (a) alert = a[1];
    const e = lines[i].match(/^(\s*)expr:\s*(.*)$/);
    if (!e) continue;
    let expr = e[2];
    if (expr === '|' || expr === '>') {
      const indent = e[1].length;
      const body = [];
      while (i + 1 < lines.length && (lines[i + 1].trim() === '' || lines[i + 1].search(/\S/) > indent)) body.push(lines[++i]);
      expr = body.join('\n');
    }
    out.push({ alert, expr });
  }
  return out;
}

const rulesFile = 'deploy/prometheus/herald-alerts.yml';
const rulesText = read(rulesFile);
const alerts = alertExprs(rulesText);
if (alerts.length === 0) problem(`${rulesFile}: no alerts found`);
for (const { alert, expr } of alerts) {
  const names = metricsIn(expr);
  if (names.length === 0) problem(`${rulesFile}: alert ${alert}: its expression names no metric`);
  for (const n of names) if (checkName(n, `${rulesFile}: alert ${alert}`)) used.add(n);
}
// Metrics named in annotations (runbook hints) must exist too.
for (const m of rulesText.matchAll(/\b(herald_[a-z0-9_]+)\b/g)) checkName(m[1], `${rulesFile} (text)`);

// Every alert has a unit test that expects it to fire, and the test series are real metrics.
const testsFile = 'deploy/tests/herald-alerts.test.yml';
const testsText = read(testsFile);
for (const { alert } of alerts) {
  const firing = new RegExp(`alertname: ${alert}\\s*\\n\\s*exp_alerts:\\s*\\n\\s*- exp_labels`);
  const quiet = new RegExp(`alertname: ${alert}\\s*\\n\\s*exp_alerts: \\[\\]`);
  if (!firing.test(testsText)) problem(`${testsFile}: no case where ${alert} fires`);
  if (!quiet.test(testsText)) problem(`${testsFile}: no case where ${alert} must not fire`);
}
for (const m of testsText.matchAll(/series: '([a-z_0-9]+)\{/g)) checkName(m[1], `${testsFile}: series`);

// ---- Grafana dashboard -------------------------------------------------------------------------

const dashFile = 'deploy/grafana/herald-dashboard.json';
let dashboard;
try {
  dashboard = JSON.parse(read(dashFile));
} catch (err) {
  problem(`${dashFile}: not valid JSON: ${err.message}`);
}
const queries = [];
if (dashboard) {
  if (typeof dashboard.title !== 'string' || !dashboard.uid) problem(`${dashFile}: needs a title and a uid`);
  const ids = new Set();
  const cells = new Map();
  for (const p of dashboard.panels ?? []) {
    const where = `${dashFile}: panel ${p.id} "${p.title}"`;
    if (ids.has(p.id)) problem(`${where}: duplicate id`);
    ids.add(p.id);
    const g = p.gridPos;
    if (!g || ![g.x, g.y, g.w, g.h].every(Number.isInteger) || g.x + g.w > 24) {
      problem(`${where}: bad gridPos`);
      continue;
    }
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        const key = `${x},${y}`;
        if (cells.has(key)) problem(`${where}: overlaps panel ${cells.get(key)}`);
        cells.set(key, p.id);
      }
    }
    if (p.type === 'row') continue;
    for (const m of (p.description ?? '').matchAll(/\b(herald_[a-z0-9_]+)\b/g)) checkName(m[1], `${where} (description)`);
    if (p.datasource?.uid !== '${datasource}') problem(`${where}: data source must be the $datasource variable`);
    if (!Array.isArray(p.targets) || p.targets.length === 0) problem(`${where}: no queries`);
    for (const t of p.targets ?? []) {
      const names = metricsIn(t.expr ?? '');
      if (names.length === 0) problem(`${where}: query ${t.refId} names no metric`);
      for (const n of names) if (checkName(n, where)) used.add(n);
      queries.push({ panel: p.id, refId: t.refId, expr: t.expr });
    }
  }
  for (const v of dashboard.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query ?? '';
    for (const n of metricsIn(q)) if (checkName(n, `${dashFile}: variable ${v.name}`)) used.add(n);
  }
  // The areas the dashboard must cover.
  for (const m of [
    'herald_edge_connections',
    'herald_edge_handshakes_total',
    'herald_edge_handshake_rejects_total',
    'herald_edge_admission_rejects_total',
    'herald_edge_deliveries_total',
    'herald_processor_outcomes_total',
    'herald_processor_e2e_latency_seconds_bucket',
    'herald_processor_lag',
    'herald_processor_recommended_replicas',
    'herald_edge_registry_queue_depth',
  ]) {
    if (!queries.some((q) => metricsIn(q.expr).includes(m))) problem(`${dashFile}: no panel shows ${m}`);
  }
}

// ---- env files ---------------------------------------------------------------------------------

function documentedKeys(doc) {
  const keys = new Set();
  for (const line of read(doc).split('\n')) {
    const m = line.match(/^\| `([a-z0-9_]+)` \|/);
    if (m) keys.add(m[1]);
  }
  return keys;
}
for (const [file, doc, prefix] of [
  ['deploy/systemd/edge.env', 'docs/configuration.md', 'HERALD_'],
  ['deploy/systemd/processor.env', 'docs/processor-configuration.md', 'HERALD_PROCESSOR_'],
]) {
  const keys = documentedKeys(doc);
  let n = 0;
  for (const [i, line] of read(file).split('\n').entries()) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const m = t.match(/^([A-Z0-9_]+)=/);
    if (!m) {
      problem(`${file}:${i + 1}: not NAME=value`);
      continue;
    }
    n += 1;
    if (m[1] === 'RUST_LOG') continue;
    if (!m[1].startsWith(prefix)) problem(`${file}:${i + 1}: ${m[1]} lacks the prefix ${prefix}`);
    else if (!keys.has(m[1].slice(prefix.length).toLowerCase())) problem(`${file}:${i + 1}: ${m[1]} is not a setting in ${doc}`);
  }
  if (n === 0) problem(`${file}: sets nothing`);
}

// ---- PromQL of the dashboard, for promtool ---------------------------------------------------------

const emit = process.argv.indexOf('--emit-rules');
if (emit !== -1) {
  const file = process.argv[emit + 1];
  const rules = queries.map(
    (q) =>
      `      - record: dashboard_panel_${q.panel}_${q.refId}\n        expr: ${JSON.stringify(
        q.expr.replaceAll('$__rate_interval', '5m').replaceAll('$node', '.*'),
      )}`,
  );
  writeFileSync(file, `groups:\n  - name: herald-dashboard-queries\n    rules:\n${rules.join('\n')}\n`);
}

if (problems.length > 0) {
  for (const p of problems) console.error(`FAIL ${p}`);
  console.error(`check-deploy: ${problems.length} problem(s)`);
  process.exit(1);
}
console.log(
  `check-deploy: ${alerts.length} alerts, ${queries.length} dashboard queries, ${used.size} distinct metrics — all documented and exported (${documented.size} documented); env files use documented settings`,
);
