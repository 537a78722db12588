// The console's pages: the token prompt, then Graph, Workloads, Filters and Config, each refreshed
// every few seconds while it is shown. Views read the orchestrator's API with the tab's token; the
// buttons that act are disabled for a token that may not (viewer), and the API refuses it anyway.
import { api, token, ApiError } from './api.js';
import { h, clear, pct, ms, rps, short, until } from './dom.js';
import { renderGraph, health } from './graph.js';
import { codeEditor, formatPath } from './editor.js';

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signout = document.getElementById('signout');
const login = document.getElementById('login');

let me; // { role, namespace?, mayAct, kinds }
let stopView = () => {};
const state = { namespace: '', window: 60 };
const WINDOWS = [30, 60, 300, 600, 3600, 21600];

const VIEWS = { graph: graphView, workloads: workloadsView, filters: filtersView, config: configView };

async function start() {
  document.getElementById('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = document.getElementById('token');
    const t = input.value.trim();
    try {
      me = await api('/console/api/whoami', { tokenOverride: t });
      token.set(t);
      input.value = '';
      signedIn();
    } catch (e) {
      document.getElementById('login-error').textContent = e instanceof ApiError && e.status === 401 ? 'That token is not valid here (or was revoked).' : `Cannot sign in: ${e.message}`;
    }
  });
  signout.addEventListener('click', () => {
    token.clear();
    me = undefined;
    signedOut();
  });
  window.addEventListener('hashchange', route);
  if (token.get()) {
    try {
      me = await api('/console/api/whoami');
      return signedIn();
    } catch {
      token.clear();
    }
  }
  signedOut();
}

function signedOut() {
  stopView();
  clear(view);
  nav.hidden = true;
  signout.hidden = true;
  who.textContent = '';
  login.hidden = false;
}

function signedIn() {
  login.hidden = true;
  nav.hidden = false;
  signout.hidden = false;
  who.textContent = `${me.role}${me.namespace ? ` of ${me.namespace}` : ''}${me.mayAct ? '' : ' (read only)'}`;
  who.dataset.role = me.role;
  // An editor reads its own namespace only.
  if (me.namespace) state.namespace = me.namespace;
  route();
}

function route() {
  if (!me) return;
  const name = (location.hash.slice(1) || 'graph').split('?')[0];
  const fn = VIEWS[name] ?? graphView;
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.view === name);
  stopView();
  clear(view);
  stopView = fn(view) ?? (() => {});
}

/** Runs `tick` now and every `ms` until the view is left; errors show in `status`. */
function every(ms, tick, status) {
  let stopped = false;
  let timer;
  const run = async () => {
    try {
      await tick();
      status.textContent = `updated ${new Date().toLocaleTimeString()}`;
      status.classList.remove('error');
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        token.clear();
        me = undefined;
        return signedOut();
      }
      status.textContent = e.message;
      status.classList.add('error');
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function nsQuery(extra = {}) {
  const q = new URLSearchParams();
  if (state.namespace) q.set('namespace', state.namespace);
  for (const [k, v] of Object.entries(extra)) q.set(k, String(v));
  const text = q.toString();
  return text ? `?${text}` : '';
}

function toolbar(onChange, { window: withWindow = true } = {}) {
  const ns = h('input', { id: 'namespace', placeholder: 'all namespaces', value: state.namespace, disabled: me.namespace !== undefined, 'aria-label': 'namespace' });
  ns.addEventListener('change', () => {
    state.namespace = ns.value.trim();
    onChange();
  });
  // Up to 2 min from the reports themselves, up to 10 min from 10 s buckets, up to 6 h from 1 min buckets.
  const win = h('select', { id: 'window', 'aria-label': 'time window' }, ...WINDOWS.map((s) => h('option', { value: s, selected: s === state.window }, s < 120 ? `last ${s} s` : s < 3600 ? `last ${s / 60} min` : `last ${s / 3600} h`)));
  win.addEventListener('change', () => {
    state.window = Number(win.value);
    onChange();
  });
  const status = h('span', { class: 'status', role: 'status' });
  return { bar: h('div', { class: 'toolbar' }, h('label', {}, 'Namespace ', ns), withWindow ? h('label', {}, ' Window ', win) : null, status), status };
}

// ---- Graph -----------------------------------------------------------------------------------

function graphView(root) {
  const area = h('div', { class: 'graph-area' });
  const table = h('div');
  const resolution = h('span', { id: 'resolution', class: 'hint' });
  // The next refresh (at most 3 s away) reads the new namespace and window.
  const { bar, status } = toolbar(() => {});
  bar.append(resolution);
  root.append(h('h1', {}, 'Service graph'), bar, h('p', { class: 'hint' }, 'From the sidecars’ own reports: callers → services (rps, error rate, p99, mTLS) → the versions that answered (their share of the service’s calls). Refreshed every 3 s.'), area, table);
  const stop = every(3000, async () => {
    const g = await api(`/console/api/graph${nsQuery({ window: state.window })}`);
    const r = g.resolutionSeconds;
    resolution.textContent = r === 'report' ? '(from every report)' : typeof r === 'number' ? `(from ${r < 60 ? `${r} s` : `${r / 60} min`} buckets)` : '';
    clear(area);
    if (g.edges.length === 0) {
      area.append(h('p', { class: 'empty' }, g.reporters === 0 ? 'No proxy has reported traffic yet (reports come every 2 s; rates need two).' : 'No calls in this window.'));
    } else {
      area.append(renderGraph(g));
    }
    clear(table);
    table.append(edgeTable(g));
  }, status);
  return stop;
}

const rateClass = (r) => (r > 0.05 ? 'bad' : r > 0 ? 'warn' : undefined);

function edgeTable(g) {
  const name = new Map(g.nodes.map((n) => [n.id, n.kind === 'service' ? n.name : `${n.namespace}/${n.name}${n.version ? ` ${n.version}` : ''}`]));
  return h(
    'table',
    { class: 'edges', id: 'edge-table' },
    h('thead', {}, h('tr', {}, ...['from', 'to', 'rps', '5xx', '4xx', 'p99', 'mTLS', 'split'].map((c) => h('th', {}, c)))),
    h(
      'tbody',
      {},
      ...g.edges.map((e) =>
        h(
          'tr',
          { class: health(e), dataset: { from: e.from, to: e.to, share: e.share ?? '', rps: e.rps, errorRate: e.errorRate, clientErrorRate: e.clientErrorRate, mtls: e.mtls } },
          h('td', {}, name.get(e.from) ?? e.from),
          h('td', {}, name.get(e.to) ?? e.to),
          h('td', {}, rps(e.rps)),
          h('td', { class: rateClass(e.errorRate) }, pct(e.errorRate)),
          h('td', { class: rateClass(e.clientErrorRate) }, pct(e.clientErrorRate)),
          h('td', {}, ms(e.p99Ms)),
          h('td', {}, e.mtls >= 0.999 ? 'yes' : e.mtls > 0 ? pct(e.mtls) : 'no'),
          h('td', {}, e.share === undefined ? '' : pct(e.share)),
        ),
      ),
    ),
  );
}

// ---- Workloads -------------------------------------------------------------------------------

function sparkline(points, key, label) {
  const w = 120;
  const hgt = 24;
  const values = points.map((p) => p[key]).filter((v) => typeof v === 'number');
  if (values.length < 2) return h('span', { class: 'hint' }, '–');
  const max = Math.max(...values, 1e-9);
  const step = w / (values.length - 1);
  const d = values.map((v, i) => `${i === 0 ? 'M' : 'L'} ${(i * step).toFixed(1)} ${(hgt - (v / max) * (hgt - 2) - 1).toFixed(1)}`).join(' ');
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('width', w);
  svg.setAttribute('height', hgt);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('aria-label', label);
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}

function workloadsView(root) {
  const body = h('div');
  const { bar, status } = toolbar(() => {});
  root.append(h('h1', {}, 'Workloads and proxies'), bar, body);
  return every(5000, async () => {
    const res = await api(`/console/api/proxies${nsQuery({ window: state.window })}`);
    clear(body);
    if (!res.discovery) body.append(h('p', { class: 'empty' }, 'This orchestrator runs no discovery service: no proxies.'));
    else if (res.items.length === 0) body.append(h('p', { class: 'empty' }, 'No proxy is connected.'));
    const chain = (entries) =>
      h('ol', { class: 'chain' }, ...(entries ?? []).map((f) => h('li', {}, `${f.plugin} (${f.phase})${f.sha256 ? ` ${short(f.sha256)}` : ''}${f.canary ? `, canary ${short(f.canary.sha256)} at ${f.canary.weight} %` : ''}`)));
    body.append(
      h(
        'table',
        { class: 'proxies', id: 'proxy-table' },
        h('thead', {}, h('tr', {}, ...['workload', 'sync', 'config', 'certificate', 'inbound filters', 'outbound filters', 'outbound calls', 'rps', 'p99'].map((c) => h('th', {}, c)))),
        h(
          'tbody',
          {},
          ...res.items.map((p) => {
            // Between consecutive reports (windows up to 2 min) or per bucket (longer), from the orchestrator.
            const pts = (p.history ?? []).map((x) => ({ rps: x.rps, p99: x.p99Ms }));
            return h(
              'tr',
              { dataset: { node: p.node, status: p.status } },
              h('td', {}, h('b', {}, `${p.namespace}/${p.workload}`), h('div', { class: 'hint' }, p.node)),
              h('td', {}, h('span', { class: `badge ${p.status.toLowerCase()}` }, p.status), p.reason ? h('div', { class: 'reason' }, p.reason) : null, ...(p.problems ?? []).map((x) => h('div', { class: 'reason' }, `${x.resource}${x.path}: ${x.message}`))),
              h('td', {}, h('code', {}, short(p.acked)), p.latest && p.latest !== p.acked ? h('div', { class: 'hint' }, `latest ${short(p.latest)}`) : null),
              h('td', { class: p.certNotAfter && Date.parse(p.certNotAfter) < Date.now() + 3_600_000 ? 'warn' : '' }, p.certNotAfter ? until(p.certNotAfter) : 'none reported'),
              h('td', {}, chain(p.filters?.inbound)),
              h('td', {}, chain(p.filters?.outbound)),
              h('td', {}, p.outbound ? `${rps(p.outbound.rps)}, err ${pct(p.outbound.errorRate + p.outbound.clientErrorRate)}, p99 ${ms(p.outbound.p99Ms)}` : '–'),
              h('td', {}, sparkline(pts, 'rps', 'requests per second')),
              h('td', {}, sparkline(pts, 'p99', 'p99 latency')),
            );
          }),
        ),
      ),
    );
  }, status);
}

// ---- Filters ---------------------------------------------------------------------------------

function actButton(text, attrs, onclick) {
  const b = h('button', { type: 'button', ...attrs, disabled: !me.mayAct || attrs.disabled === true, title: me.mayAct ? undefined : `a ${me.role} token cannot act` }, text);
  b.addEventListener('click', onclick);
  return b;
}

function filtersView(root) {
  const body = h('div');
  const { bar, status } = toolbar(() => {}, { window: false });
  const message = h('p', { class: 'message', role: 'alert' });
  root.append(h('h1', {}, 'Filters'), bar, message, body);
  // Forms keep what the user typed across refreshes.
  const forms = new Map();
  let shown = '';
  const act = async (what, fn) => {
    shown = ''; // redraw on the next refresh
    try {
      await fn();
      message.textContent = `${what}: done`;
      message.classList.remove('error');
    } catch (e) {
      message.textContent = `${what}: ${e.message}`;
      message.classList.add('error');
    }
  };
  return every(3000, async () => {
    const list = await api(`/apis/wasmplugins${nsQuery()}`);
    const details = await Promise.all(list.items.map((r) => api(`/filters/${encodeURIComponent(r.metadata.namespace)}/${encodeURIComponent(r.metadata.name)}`)));
    // Redrawn only when something changed: a button does not move under the pointer.
    const json = JSON.stringify(details);
    if (json === shown) return;
    shown = json;
    clear(body);
    if (details.length === 0) body.append(h('p', { class: 'empty' }, 'No WasmPlugin.'));
    for (const f of details) {
      const id = `${f.namespace}/${f.plugin}`;
      const path = `/filters/${encodeURIComponent(f.namespace)}/${encodeURIComponent(f.plugin)}`;
      const r = f.rollout;
      const running = r?.phase === 'Progressing';
      let form = forms.get(id);
      if (!form) {
        form = {
          to: h('select', { class: 'rollout-to', 'aria-label': 'version to roll out' }),
          steps: h('input', { class: 'rollout-steps', value: '10,50,100', size: 10, 'aria-label': 'steps' }),
          interval: h('input', { class: 'rollout-interval', value: '10', size: 4, 'aria-label': 'seconds per step' }),
          file: h('input', { type: 'file', class: 'upload-file', accept: '.wasm,application/wasm', 'aria-label': 'module file' }),
          version: h('input', { class: 'upload-version', placeholder: 'version', size: 8, 'aria-label': 'version to upload' }),
        };
        forms.set(id, form);
      }
      const chosen = form.to.value;
      clear(form.to);
      for (const v of f.versions.filter((v) => !v.current)) form.to.append(h('option', { value: v.version, selected: v.version === chosen }, v.version));
      const card = h('section', { class: 'card filter', dataset: { plugin: id } });
      card.append(
        h('h2', {}, id, h('span', { class: 'hint' }, ` module ${f.module}`)),
        h('p', {}, 'Serves ', h('b', { class: 'current-version' }, f.current.version ?? short(f.current.sha256)), f.canary ? h('span', {}, ` and canary `, h('b', {}, f.canary.version ?? short(f.canary.sha256)), ` at ${f.canary.weight} %`) : null),
      );
      if (r) {
        const stats = (label, v) =>
          v ? h('tr', {}, h('td', {}, label), h('td', {}, String(v.streams)), h('td', {}, `${v.failedStreams} (${pct(v.errorRate)})`), h('td', {}, `${v.traps}`), h('td', {}, String(v.proxies))) : null;
        card.append(
          h(
            'div',
            { class: `rollout ${r.phase.toLowerCase()}` },
            h('p', {}, h('b', { class: 'rollout-phase' }, r.phase), ` ${r.from.version ?? short(r.from.sha256)} → ${r.to.version ?? short(r.to.sha256)}: step ${r.step + 1} of ${r.steps.length} (${r.steps.join(', ')} %), canary at ${r.weight} %`),
            h('div', { class: 'progress', role: 'progressbar', 'aria-valuenow': r.weight, 'aria-valuemin': 0, 'aria-valuemax': 100 }, h('div', { class: 'bar', style: { width: `${Math.max(0, Math.min(100, r.weight))}%` } })),
            r.message ? h('p', { class: 'hint' }, r.message) : null,
            r.stable || r.canary
              ? h('table', {}, h('thead', {}, h('tr', {}, ...['version', 'streams', 'failed', 'traps', 'proxies'].map((c) => h('th', {}, c)))), h('tbody', {}, stats('stable', r.stable), stats('canary', r.canary)))
              : null,
          ),
        );
      }
      const actions = h('div', { class: 'actions' });
      if (running) {
        actions.append(actButton('Abort rollout', { class: 'abort' }, () => confirm(`Abort the rollout of ${id}? The canary is removed; the old version keeps serving.`) && act('abort', () => api(`${path}/rollout`, { method: 'DELETE' }))));
      } else {
        actions.append(
          h('label', {}, 'Roll out ', form.to),
          h('label', {}, ' steps % ', form.steps),
          h('label', {}, ' s/step ', form.interval),
          actButton('Start rollout', { class: 'start', disabled: !me.mayAct || form.to.options.length === 0 }, () => {
            const to = form.to.value;
            const steps = form.steps.value.split(',').map((x) => Number(x.trim()));
            const intervalMs = Math.round(Number(form.interval.value) * 1000);
            if (!to || steps.some((x) => !(x > 0 && x <= 100)) || !(intervalMs > 0)) return act('rollout', async () => { throw new Error('choose a version, steps as percentages (10,50,100) and seconds per step'); });
            if (confirm(`Roll out ${f.module}@${to} on ${id} in steps of ${steps.join(', ')} %, ${intervalMs / 1000} s each?`)) act('rollout', () => api(`${path}/rollout`, { method: 'POST', body: { to, steps, intervalMs } }));
          }),
        );
      }
      actions.append(actButton('Roll back', { class: 'rollback' }, () => confirm(`Roll ${id} back to the version before?`) && act('rollback', () => api(`${path}/rollback`, { method: 'POST', body: {} }))));
      card.append(actions);
      card.append(
        h('div', { class: 'actions upload' },
          h('label', {}, 'Upload a new version of ', h('b', {}, f.module), ': ', form.file),
          form.version,
          actButton('Upload', { class: 'upload' }, () => {
            const file = form.file.files?.[0];
            const version = form.version.value.trim();
            if (!file || !version) return act('upload', async () => { throw new Error('choose a .wasm file and name its version'); });
            if (confirm(`Upload ${file.name} (${file.size} bytes) as ${f.module}@${version}? Nothing runs it until a rollout or a rollback points at it.`)) {
              act(`upload ${f.module}@${version}`, () => api(`/modules?name=${encodeURIComponent(f.module)}&version=${encodeURIComponent(version)}`, { method: 'POST', body: file }));
            }
          }),
        ),
      );
      card.append(
        h('details', {}, h('summary', {}, `${f.versions.length} versions`),
          h('table', { class: 'versions' }, h('thead', {}, h('tr', {}, ...['version', 'made with', 'sha256', 'size', 'uploaded', ''].map((c) => h('th', {}, c)))),
            h('tbody', {}, ...f.versions.map((v) => h('tr', {}, h('td', {}, v.version), madeWith(v.metadata), h('td', {}, h('code', {}, short(v.sha256))), h('td', {}, v.size !== undefined ? `${v.size} B` : ''), h('td', {}, v.uploadedAt ?? ''), h('td', {}, v.current ? 'current' : v.canary ? 'canary' : '')))))),
        h('details', {}, h('summary', {}, `deploy history (${f.history.length})`),
          h('table', {}, h('thead', {}, h('tr', {}, ...['at', 'version', 'by', 'cause'].map((c) => h('th', {}, c)))),
            h('tbody', {}, ...[...f.history].reverse().map((e) => h('tr', {}, h('td', {}, e.at), h('td', {}, e.version ?? short(e.sha256) ?? e.url), h('td', {}, e.by), h('td', {}, e.cause ?? '')))))),
      );
      body.append(card);
    }
  }, status);
}

/**
 * What a module version was made with, as the orchestrator read it at upload (producers section; a
 * component's world): "component, JavaScript (ComponentizeJS 0.23.0)" or "core, AssemblyScript 0.28.9".
 * The full record (compilers, SDK, the world's exports) is in the cell's title.
 */
function madeWith(m) {
  if (!m) return h('td', { class: 'made-with' }, 'not recorded');
  const main = [m.language, m.sdk].filter(Boolean).join(', ') || 'unknown toolchain';
  const detail = [
    m.processedBy ? `processed by: ${m.processedBy}` : '',
    m.world ? `world exports: ${m.world.exports.join(', ') || 'none'}; imports: ${m.world.imports.join(', ') || 'none'}` : '',
    ...(m.problems ?? []),
  ].filter(Boolean).join('\n');
  return h('td', { class: 'made-with', title: detail }, `${m.kind}, ${main}`);
}

// ---- Config ----------------------------------------------------------------------------------

function configView(root) {
  const kind = h('select', { id: 'kind', 'aria-label': 'kind' }, ...me.kinds.map((k) => h('option', { value: k.plural }, k.kind)));
  const list = h('div', { class: 'resources' });
  const editor = codeEditor({ id: 'editor', placeholder: 'YAML documents to apply (---between them)', label: 'YAML to apply' });
  const result = h('div', { id: 'apply-result', role: 'status' });
  const validate = h('button', { type: 'button', id: 'validate', disabled: !me.mayAct, title: me.mayAct ? undefined : `a ${me.role} token cannot validate or apply` }, 'Validate (dry run)');
  const apply = h('button', { type: 'button', id: 'apply', disabled: !me.mayAct, title: me.mayAct ? undefined : `a ${me.role} token cannot apply` }, 'Apply');
  const { bar, status } = toolbar(() => load(), { window: false });
  root.append(
    h('h1', {}, 'Config'),
    bar,
    h('div', { class: 'toolbar' }, h('label', {}, 'Kind ', kind)),
    h('div', { class: 'split' }, list, h('div', { class: 'editor' }, h('h2', {}, 'Edit and apply'), editor.root, h('div', { class: 'actions' }, validate, apply, me.mayAct ? h('span', { class: 'hint' }, 'Validated as you type (a dry run); errors are marked on their lines.') : null), result)),
  );

  // Every validation is numbered: an answer to an older one (typing went on) is dropped.
  let asked = 0;
  const showErrors = (e) => {
    clear(result);
    result.className = 'error';
    const unplaced = editor.mark(e.errors ?? []);
    result.append(h('p', {}, e.message.length > 200 ? `${e.status ?? ''} refused:` : `${e.status ?? ''} ${e.message}`));
    if (e.errors?.length) {
      result.append(
        h(
          'ul',
          { id: 'error-list' },
          ...e.errors.map((x) => {
            const item = h('li', { class: Number.isInteger(x.line) ? 'jump' : undefined, dataset: x.line ? { line: x.line } : {} }, h('b', {}, x.document ?? ''), x.line ? ` line ${x.line}${x.column ? `:${x.column}` : ''}` : '', x.path ? ` ${formatPath(x.path)}` : '', `: ${x.message}`);
            if (Number.isInteger(x.line)) item.addEventListener('click', () => editor.goTo(x.line, x.column));
            return item;
          }),
        ),
      );
    }
    if (unplaced.length > 0 && unplaced.length < (e.errors?.length ?? 0)) result.append(h('p', { class: 'hint' }, `${unplaced.length} error(s) name no line: see the list.`));
  };
  const dryRun = async () => {
    const mine = ++asked;
    const res = await api('/apply?dryRun=true', { method: 'POST', body: editor.value });
    if (mine !== asked) return undefined;
    editor.mark([]);
    clear(result);
    result.className = 'ok';
    result.append(h('p', {}, 'Valid. Applying would:'), h('ul', {}, ...res.items.map((i) => h('li', {}, `${i.action === 'created' ? 'create' : 'replace'} ${i.kind} ${i.namespace}/${i.name}`))));
    return res;
  };
  validate.addEventListener('click', () => {
    const mine = asked + 1;
    dryRun().catch((e) => mine === asked && showErrors(e));
  });
  // As the user types: a dry run once typing pauses (an editor or admin only; a viewer may not).
  let typing;
  editor.textarea.addEventListener('input', () => {
    if (!me.mayAct) return;
    clearTimeout(typing);
    typing = setTimeout(() => {
      if (editor.value.trim() === '') {
        asked++;
        editor.mark([]);
        clear(result);
        return;
      }
      const mine = asked + 1;
      dryRun().catch((e) => mine === asked && showErrors(e));
    }, 700);
  });
  apply.addEventListener('click', async () => {
    clearTimeout(typing);
    try {
      const res = await dryRun();
      if (res === undefined) return;
      if (!confirm(`Apply ${res.items.length} document(s)?\n${res.items.map((i) => `${i.kind} ${i.namespace}/${i.name}`).join('\n')}`)) return;
      const done = await api('/apply', { method: 'POST', body: editor.value });
      clear(result);
      result.className = 'ok';
      result.append(h('p', {}, 'Applied:'), h('ul', {}, ...done.items.map((i) => h('li', {}, `${i.kind} ${i.namespace}/${i.name} ${i.action}`))));
      load();
    } catch (e) {
      showErrors(e);
    }
  });

  let stopped = false;
  const load = async () => {
    try {
      const res = await api(`/console/api/yaml/${encodeURIComponent(kind.value)}${nsQuery()}`);
      if (stopped) return;
      clear(list);
      if (res.items.length === 0) list.append(h('p', { class: 'empty' }, `No ${res.kind}${state.namespace ? ` in ${state.namespace}` : ''}.`));
      for (const r of res.items) {
        const edit = h('button', { type: 'button', class: 'edit' }, 'Edit');
        edit.addEventListener('click', () => {
          editor.value = r.yaml;
          editor.textarea.focus();
        });
        list.append(h('details', { class: 'resource', dataset: { name: `${r.namespace}/${r.name}` } }, h('summary', {}, `${r.namespace}/${r.name}`, ' ', edit), h('pre', {}, r.yaml)));
      }
      status.textContent = `loaded ${new Date().toLocaleTimeString()}`;
      status.classList.remove('error');
    } catch (e) {
      status.textContent = e.message;
      status.classList.add('error');
    }
  };
  kind.addEventListener('change', load);
  load();
  return () => {
    stopped = true;
    clearTimeout(typing);
  };
}

start();
