// kubectl in the browser: the console's shell reads kubectl's command lines and speaks them to one
// cluster's API through the server's authentication proxy (`/k8s/clusters/<id>`), as the logged-in
// user — nothing runs on the server, and the page reaches nothing but that cluster's API. It knows
// `get` (tables as the API server draws them, `-o wide|yaml|json|name`), `logs` (`-f` follows),
// `delete`, `api-resources` and `version`; anything else is refused with a pointer to
// `rancherctl kubectl`.

const VERBS = ['get', 'logs', 'delete', 'api-resources', 'version'];
const discoveries = new Map();

export class KubectlError extends Error {}

function csrf() {
  const c = document.cookie.split('; ').find((p) => p.startsWith('CSRF='));
  return c ? decodeURIComponent(c.slice(5)) : '';
}

// A command line as a shell splits it ('…', "…", \x), nothing expanded; a leading `kubectl` dropped.
export function words(line) {
  const out = [];
  let cur = '';
  let inWord = false;
  let quote = null;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < line.length) { i += 1; cur += line[i]; }
      else cur += c;
    } else if (c === '"' || c === "'") { quote = c; inWord = true; }
    else if (c === '\\' && i + 1 < line.length) { i += 1; cur += line[i]; inWord = true; }
    else if (/\s/.test(c)) { if (inWord) { out.push(cur); cur = ''; inWord = false; } }
    else { cur += c; inWord = true; }
  }
  if (quote) throw new KubectlError('an unterminated quote');
  if (inWord) out.push(cur);
  if (out[0] === 'kubectl') out.shift();
  return out;
}

const VALUE_FLAGS = {
  '-n': 'namespace', '--namespace': 'namespace', '-o': 'output', '--output': 'output', '-l': 'selector',
  '--selector': 'selector', '--field-selector': 'fieldSelector', '-c': 'container', '--container': 'container',
  '--tail': 'tail', '--since': 'since',
};
const BOOL_FLAGS = {
  '-A': 'allNamespaces', '--all-namespaces': 'allNamespaces', '-f': 'follow', '--follow': 'follow',
  '--no-headers': 'noHeaders', '-p': 'previous', '--previous': 'previous', '--timestamps': 'timestamps',
};

// `verb args… --flags`: the verb first, then its words and the flags this shell knows.
export function parse(line) {
  const w = words(line);
  if (!w.length) throw new KubectlError('type a kubectl command, e.g. get nodes');
  const [verb, ...rest] = w;
  if (!VERBS.includes(verb)) {
    throw new KubectlError(`"${verb}" does not run in the browser (it runs ${VERBS.join(', ')}); for the rest: rancherctl kubectl CLUSTER -- ${w.join(' ')}`);
  }
  const cmd = { verb, args: [], flags: {} };
  for (let i = 0; i < rest.length; i += 1) {
    const a = rest[i];
    if (!a.startsWith('-') || a === '-') { cmd.args.push(a); continue; }
    const [name, glued] = a.startsWith('--') ? a.split(/=(.*)/s, 2) : [a.slice(0, 2), a.length > 2 ? a.slice(2).replace(/^=/, '') : undefined];
    if (VALUE_FLAGS[name]) {
      const value = glued !== undefined ? glued : rest[++i];
      if (value === undefined) throw new KubectlError(`${name} needs a value`);
      cmd.flags[VALUE_FLAGS[name]] = value;
    } else if (BOOL_FLAGS[name] && glued === undefined) {
      cmd.flags[BOOL_FLAGS[name]] = true;
    } else {
      throw new KubectlError(`${a}: not a flag this shell knows`);
    }
  }
  return cmd;
}

async function request(base, method, path, accept, signal) {
  const headers = { Accept: accept || 'application/json' };
  if (method !== 'GET') headers['X-API-CSRF'] = csrf();
  const resp = await fetch(`${base}${path}`, { method, headers, credentials: 'same-origin', signal });
  if (!resp.ok) {
    let status = {};
    try { status = await resp.json(); } catch { status = {}; }
    const reason = status.reason || resp.statusText;
    throw new KubectlError(`Error from server (${reason}): ${status.message || resp.status}`);
  }
  return resp;
}

async function json(base, path, accept, signal) {
  return (await request(base, 'GET', path, accept, signal)).json();
}

// Every resource the cluster serves: its plural, singular, short names, kind, group, version, scope.
async function discover(base, signal) {
  if (discoveries.has(base)) return discoveries.get(base);
  const lists = [];
  const core = await json(base, '/api', undefined, signal);
  for (const v of core.versions || []) lists.push(['', v, `/api/${v}`]);
  const groups = await json(base, '/apis', undefined, signal);
  for (const g of groups.groups || []) {
    const v = g.preferredVersion || (g.versions || [])[0];
    if (v) lists.push([g.name, v.version, `/apis/${g.name}/${v.version}`]);
  }
  const found = [];
  await Promise.all(lists.map(async ([group, version, path]) => {
    try {
      const l = await json(base, path, undefined, signal);
      for (const r of l.resources || []) {
        if (!r.name.includes('/')) found.push({ ...r, group, version, path });
      }
    } catch { /* a group that does not answer is left out, as kubectl does */ }
  }));
  discoveries.set(base, found);
  return found;
}

async function resolve(base, name, signal) {
  const all = await discover(base, signal);
  const [res, ...group] = name.toLowerCase().split('.');
  const g = group.join('.');
  const matches = all.filter((r) => (!g || r.group === g) && (r.name === res || r.singularName === res
    || (r.shortNames || []).includes(res) || r.kind.toLowerCase() === res));
  if (!matches.length) throw new KubectlError(`error: the server doesn't have a resource type "${name}"`);
  return matches.find((r) => r.group === '') || matches.find((r) => !r.group.endsWith('.k8s.io')) || matches[0];
}

function columns(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => (i + 1 === r.length ? String(c) : String(c).padEnd(widths[i] + 3))).join('').trimEnd()).join('\n') + '\n';
}

// JSON as YAML (what `-o yaml` prints): keys in the order the API sent them.
export function yaml(v, indent = '') {
  const scalar = (x) => {
    if (x === null) return 'null';
    if (typeof x !== 'string') return String(x);
    return x === '' || /^[\s\-?:,[\]{}#&*!|>'"%@`]|[:#]\s|\s$|^(true|false|null|~|[-+.\d][\d.eE+-]*)$/i.test(x) || x.includes('\n') ? JSON.stringify(x) : x;
  };
  if (Array.isArray(v)) {
    if (!v.length) return '[]\n';
    return v.map((x) => (x !== null && typeof x === 'object' && Object.keys(x).length
      ? `${indent}- ${yaml(x, `${indent}  `).slice(indent.length + 2)}` : `${indent}- ${scalar(x)}\n`)).join('');
  }
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    if (!keys.length) return '{}\n';
    return keys.map((k) => {
      const x = v[k];
      const key = scalar(k);
      if (x !== null && typeof x === 'object' && (Array.isArray(x) ? x.length : Object.keys(x).length)) {
        return `${indent}${key}:\n${yaml(x, Array.isArray(x) ? indent : `${indent}  `)}`;
      }
      return `${indent}${key}: ${x !== null && typeof x === 'object' ? (Array.isArray(x) ? '[]' : '{}') : scalar(x)}\n`;
    }).join('');
  }
  return `${scalar(v)}\n`;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function get(base, cmd, print, signal) {
  const [kind, ...names] = cmd.args;
  if (!kind) throw new KubectlError('get needs a resource type: get pods, get nodes, get deployments.apps …');
  if (kind.includes(',')) throw new KubectlError('one resource type at a time here');
  const r = await resolve(base, kind, signal);
  const ns = r.namespaced && !cmd.flags.allNamespaces ? (cmd.flags.namespace || 'default') : null;
  const scope = ns ? `/namespaces/${encodeURIComponent(ns)}` : '';
  const q = query({ labelSelector: cmd.flags.selector, fieldSelector: cmd.flags.fieldSelector });
  const paths = names.length ? names.map((n) => `${r.path}${scope}/${r.name}/${encodeURIComponent(n)}`) : [`${r.path}${scope}/${r.name}${q}`];
  const output = cmd.flags.output || '';
  if (output === 'json' || output === 'yaml' || output === 'name') {
    const objects = [];
    for (const p of paths) {
      const o = await json(base, p, undefined, signal);
      if (o.items) objects.push(...o.items.map((i) => ({ apiVersion: r.group ? `${r.group}/${r.version}` : r.version, kind: r.kind, ...i })));
      else objects.push(o);
    }
    if (output === 'name') { print(objects.map((o) => `${r.kind.toLowerCase()}${r.group ? `.${r.group}` : ''}/${o.metadata.name}\n`).join('')); return; }
    const doc = names.length === 1 ? objects[0] : { apiVersion: 'v1', kind: 'List', items: objects };
    print(output === 'json' ? `${JSON.stringify(doc, null, 4)}\n` : yaml(doc));
    return;
  }
  if (output && output !== 'wide') throw new KubectlError(`-o ${output}: this shell prints tables, wide, yaml, json or name`);
  const table = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json';
  const defs = [];
  const rows = [];
  for (const p of paths) {
    const t = await json(base, p, table, signal);
    if (!defs.length) defs.push(...(t.columnDefinitions || []));
    for (const row of t.rows || []) rows.push(row);
  }
  if (!rows.length) { print(ns ? `No resources found in ${ns} namespace.\n` : 'No resources found\n'); return; }
  const shown = defs.map((d, i) => [d, i]).filter(([d]) => output === 'wide' || !d.priority);
  const head = shown.map(([d]) => d.name.toUpperCase());
  const body = rows.map((row) => shown.map(([, i]) => {
    const c = row.cells[i];
    return c === null || c === undefined || c === '' ? '<none>' : c;
  }));
  const withNs = r.namespaced && cmd.flags.allNamespaces;
  const lines = body.map((b, i) => (withNs ? [rows[i].object ? (rows[i].object.metadata || {}).namespace || '' : '', ...b] : b));
  const header = withNs ? ['NAMESPACE', ...head] : head;
  print(columns(cmd.flags.noHeaders ? lines : [header, ...lines]));
}

async function logs(base, cmd, print, signal) {
  const [pod] = cmd.args;
  if (!pod || cmd.args.length > 1) throw new KubectlError('logs takes one pod: logs POD [-c CONTAINER] [-f] [--tail N]');
  const ns = encodeURIComponent(cmd.flags.namespace || 'default');
  const q = query({ container: cmd.flags.container, tailLines: cmd.flags.tail, follow: cmd.flags.follow ? 'true' : undefined,
    previous: cmd.flags.previous ? 'true' : undefined, timestamps: cmd.flags.timestamps ? 'true' : undefined,
    sinceSeconds: cmd.flags.since ? String(parseInt(cmd.flags.since, 10) * ({ s: 1, m: 60, h: 3600 }[cmd.flags.since.slice(-1)] || 1)) : undefined });
  const resp = await request(base, 'GET', `/api/v1/namespaces/${ns}/pods/${encodeURIComponent(pod)}/log${q}`, '*/*', signal);
  const reader = resp.body.getReader();
  const text = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    print(text.decode(value, { stream: true }));
  }
}

async function del(base, cmd, print, signal) {
  const [kind, ...names] = cmd.args;
  if (!kind || !names.length) throw new KubectlError('delete takes a resource type and names: delete pod web-1');
  const r = await resolve(base, kind, signal);
  const scope = r.namespaced ? `/namespaces/${encodeURIComponent(cmd.flags.namespace || 'default')}` : '';
  for (const n of names) {
    await request(base, 'DELETE', `${r.path}${scope}/${r.name}/${encodeURIComponent(n)}`, undefined, signal);
    print(`${r.kind.toLowerCase()}${r.group ? `.${r.group}` : ''} "${n}" deleted\n`);
  }
}

// Runs one command line against cluster `id`; output goes to `print`.
export async function run(id, line, print, signal) {
  const base = `/k8s/clusters/${encodeURIComponent(id)}`;
  const cmd = parse(line);
  switch (cmd.verb) {
    case 'version': {
      const v = await json(base, '/version', undefined, signal);
      print(`Server Version: ${v.gitVersion}\n`);
      break;
    }
    case 'api-resources': {
      const all = await discover(base, signal);
      const rows = all.sort((a, b) => a.name.localeCompare(b.name)).map((r) => [r.name, (r.shortNames || []).join(','),
        r.group ? `${r.group}/${r.version}` : r.version, String(r.namespaced), r.kind]);
      print(columns([['NAME', 'SHORTNAMES', 'APIVERSION', 'NAMESPACED', 'KIND'], ...rows]));
      break;
    }
    case 'get': await get(base, cmd, print, signal); break;
    case 'logs': await logs(base, cmd, print, signal); break;
    case 'delete': await del(base, cmd, print, signal); break;
    default: throw new KubectlError(`${cmd.verb}: not in this shell`);
  }
}
