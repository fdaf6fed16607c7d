// rancher-rs console: a page over the server's own API (`/v3`, `/k8s/clusters/<id>`), logged in with a
// browser session (the HttpOnly `R_SESS` cookie; every state-changing request echoes the `CSRF` cookie
// in `X-API-CSRF`). Text reaches the page only through `textContent`: nothing the API returns is
// parsed as HTML. No token is ever read or shown by this code.

import { run as runKubectl } from './kubectl.js';

const POLL_MS = 2000;
const main = document.getElementById('main');
const nav = document.getElementById('nav');
let me = null; // { user, schemas }
let poll = null;

class ApiError extends Error {
  constructor(message, code) { super(message); this.code = code; }
}

function csrf() {
  const c = document.cookie.split('; ').find((p) => p.startsWith('CSRF='));
  return c ? decodeURIComponent(c.slice(5)) : '';
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-API-CSRF'] = csrf();
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (resp.status === 401 && !path.startsWith('/v3-public/')) {
    me = null;
    location.hash = '#/login';
    throw new ApiError('your session has ended: log in again', 401);
  }
  if (!resp.ok) throw new ApiError((data && data.message) || `${resp.status} ${resp.statusText}`, resp.status);
  return data;
}

// h('tag.class', {attr: v, onclick: f}, children…): an element, its text set with textContent.
function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function alertBox(message) {
  return h('div.alert', { role: 'alert' }, message);
}

function age(ts) {
  if (!ts) return '-';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

// The one word a cluster's state is, as the server computes it (`rancherctl cluster ls` shows the same).
function clusterState(c) {
  return c.state || 'unknown';
}

function can(kind, method) {
  const s = me && me.schemas[kind];
  return !!s && (s.collectionMethods || []).includes(method);
}

function table(headers, rows, empty) {
  if (!rows.length) return h('p.muted', {}, empty);
  return h('table.responsive', {},
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((cell, i) => h('td', { 'data-label': headers[i] }, cell))))));
}

// ---- session -------------------------------------------------------------------------------------

async function loadMe() {
  const [users, schemas] = await Promise.all([api('GET', '/v3/users?me=true'), api('GET', '/v3/schemas')]);
  const byId = {};
  for (const s of schemas.data || []) byId[s.id] = s;
  me = { user: (users.data || [])[0], schemas: byId };
  renderNav();
}

function renderNav() {
  if (!me) { nav.hidden = true; nav.replaceChildren(); return; }
  const who = (me.user && (me.user.spec.displayName || me.user.spec.username)) || 'you';
  nav.replaceChildren(
    h('a', { href: '#/clusters' }, 'Clusters'),
    can('user', 'GET') ? h('a', { href: '#/users' }, 'Users') : null,
    can('globalRole', 'GET') ? h('a', { href: '#/roles' }, 'Roles') : null,
    can('auditLog', 'GET') ? h('a', { href: '#/audit' }, 'Audit') : null,
    h('span.spacer'),
    h('span', { 'aria-label': 'Logged in as' }, who),
    h('button', { type: 'button', onclick: logout }, 'Log out'),
  );
  nav.hidden = false;
}

async function logout() {
  try { await api('POST', '/v3/tokens?action=logout', {}); } catch { /* the session is gone either way */ }
  me = null;
  renderNav();
  location.hash = '#/login';
}

async function loginPage() {
  const providers = await api('GET', '/v3-public/authProviders').catch(() => ({ data: [{ id: 'local', type: 'localProvider', kind: 'local', password: true }] }));
  const usable = (providers.data || []).filter((p) => p.password);
  const redirecting = (providers.data || []).filter((p) => !p.password);
  const error = h('div', { 'aria-live': 'polite' });
  const provider = h('select', { id: 'provider', name: 'provider' },
    usable.map((p) => h('option', { value: `${p.kind}Providers/${p.id}` }, p.displayName || p.id)));
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const form = h('form.card.login', { 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in'),
    usable.length > 1 ? [h('label', { for: 'provider' }, 'Log in with'), provider] : null,
    h('label', { for: 'username' }, 'Username'), user,
    h('label', { for: 'password' }, 'Password'), pass,
    h('p', {}, h('button', { type: 'submit', id: 'login' }, 'Log in')),
    redirecting.map((p) => h('p', {}, h('button.secondary', {
      type: 'button',
      id: `login-${p.id}`,
      onclick: () => redirectLogin(p, error),
    }, `Log in with ${p.displayName || p.id}`))),
    error);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.replaceChildren();
    const at = usable.length > 1 ? provider.value : 'localProviders/local';
    try {
      await api('POST', `/v3-public/${at}?action=login`, { username: user.value, password: pass.value, responseType: 'cookie' });
      pass.value = '';
      await loadMe();
      location.hash = '#/clusters';
    } catch (e) {
      error.replaceChildren(alertBox(e.message));
    }
  });
  show(form);
  user.focus();
}

// A login at a provider that takes the browser to its own pages (OIDC, GitHub): the server hands out
// the provider's address and a state; the provider sends the browser back here with a code.
const PENDING_LOGIN = 'rancher-login';

async function redirectLogin(p, error) {
  try {
    const back = `${location.origin}/dashboard/`;
    const a = await api('GET', `/v3-public/${p.kind}Providers/${encodeURIComponent(p.id)}?action=authorize&redirectUri=${encodeURIComponent(back)}`);
    sessionStorage.setItem(PENDING_LOGIN, JSON.stringify({ at: `${p.kind}Providers/${p.id}`, state: a.state }));
    location.assign(a.redirectUrl);
  } catch (e) { error.replaceChildren(alertBox(e.message)); }
}

// Back from a provider: trade the code for a session, and take it out of the address bar.
async function finishRedirectLogin() {
  const q = new URLSearchParams(location.search);
  if (!q.has('code') && !q.has('error')) return;
  const pending = JSON.parse(sessionStorage.getItem(PENDING_LOGIN) || 'null');
  sessionStorage.removeItem(PENDING_LOGIN);
  history.replaceState(null, '', '/dashboard/#/login');
  if (q.has('error')) throw new ApiError(`the provider refused the login: ${q.get('error_description') || q.get('error')}`, 401);
  if (!pending || pending.state !== q.get('state')) throw new ApiError('this login was not started from this page: log in again', 401);
  await api('POST', `/v3-public/${pending.at}?action=login`, { code: q.get('code'), state: q.get('state'), responseType: 'cookie' });
  history.replaceState(null, '', '/dashboard/#/clusters');
}

// ---- clusters ------------------------------------------------------------------------------------

function capacity(c, what) {
  const cap = (c.status && c.status.capacity) || {};
  return cap[what] || '-';
}

async function clustersPage() {
  const list = h('div', { id: 'clusters', 'aria-live': 'polite' }, h('p.muted', {}, 'Loading…'));
  const bar = h('div.bar', {}, h('h1.grow', {}, 'Clusters'),
    can('cluster', 'POST') ? h('a.button', { href: '#/create', id: 'create-link' }, 'Create cluster') : null,
    can('cluster', 'POST') ? h('a.button', { href: '#/import', id: 'import-link' }, 'Import cluster') : null);
  show(bar, list);
  const refresh = async () => {
    const clusters = await api('GET', '/v3/clusters');
    const rows = (clusters.data || []).map((c) => {
      const st = c.status || {};
      const state = clusterState(c);
      return [
        h('a', { href: `#/clusters/${encodeURIComponent(c.id)}` }, (c.spec && c.spec.displayName) || c.id),
        h(`span.state.${state}`, { dataset: { cluster: c.id } }, state),
        st.provider || st.driver || '-',
        (st.version && st.version.gitVersion) || '-',
        st.nodeCount === undefined ? '-' : String(st.nodeCount),
        capacity(c, 'cpu'), capacity(c, 'memory'),
        age(c.metadata && c.metadata.creationTimestamp),
      ];
    });
    list.replaceChildren(table(['Name', 'State', 'Provider', 'Version', 'Nodes', 'CPU', 'Memory', 'Age'], rows, 'No clusters you may see.'));
    // When the first list is on the page (what console_bench times from the navigation's start).
    if (!performance.getEntriesByName('clusters-rendered').length) performance.mark('clusters-rendered');
  };
  await refresh();
  poll = setInterval(() => refresh().catch((e) => list.replaceChildren(alertBox(e.message))), POLL_MS);
}

async function importPage() {
  const name = h('input', { id: 'cluster-name', name: 'name', required: true, pattern: '[a-z0-9]([-a-z0-9]*[a-z0-9])?', maxlength: 63 });
  const description = h('input', { id: 'cluster-description', name: 'description' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form.card', {},
    h('h1', {}, 'Import a cluster'),
    h('label', { for: 'cluster-name' }, 'Name (lower case letters, digits and dashes)'), name,
    h('label', { for: 'cluster-description' }, 'Description'), description,
    h('p', {}, h('button', { type: 'submit', id: 'create-import' }, 'Create')), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    try {
      const body = { metadata: { name: name.value }, spec: { description: description.value, importedConfig: {} } };
      const c = await api('POST', '/v3/clusters', body);
      out.replaceChildren(await joinInstructions(c.id));
    } catch (e) {
      out.replaceChildren(alertBox(e.message));
    }
  });
  show(form);
  name.focus();
}

// ---- create, from each provisioner's settings schema -----------------------------------------------

// The schema a property stands for: `$ref`s resolved, `null` alternatives dropped.
function resolve(root, s) {
  let cur = s || {};
  for (let i = 0; i < 8; i += 1) {
    if (cur.$ref) {
      const name = cur.$ref.split('/').pop();
      cur = (root.$defs || root.definitions || {})[name] || {};
    } else if (cur.anyOf || cur.oneOf) {
      const alt = (cur.anyOf || cur.oneOf).filter((x) => x.type !== 'null');
      cur = alt.length === 1 ? { ...alt[0], description: cur.description || alt[0].description } : { type: 'object', description: cur.description };
    } else break;
  }
  const type = Array.isArray(cur.type) ? cur.type.find((t) => t !== 'null') : cur.type;
  return { ...cur, type: type || (cur.enum ? 'string' : 'object') };
}

// One form field per top-level setting: text, number, a checkbox, a choice, or JSON for the rest.
function settingsFields(schema) {
  const required = new Set(schema.required || []);
  return Object.entries(schema.properties || {}).map(([key, raw]) => {
    const p = resolve(schema, raw);
    const id = `setting-${key}`;
    const help = p.description ? h('small.muted', { id: `${id}-help` }, p.description.split('\n')[0]) : null;
    const common = { id, name: key, 'aria-describedby': help ? `${id}-help` : undefined, required: required.has(key) };
    let input;
    let read;
    if (p.enum) {
      input = h('select', common, required.has(key) ? null : h('option', { value: '' }, '(default)'), p.enum.map((v) => h('option', { value: v }, v)));
      read = () => input.value || undefined;
    } else if (p.type === 'boolean') {
      input = h('input', { ...common, type: 'checkbox', required: false, checked: p.default === true });
      read = () => input.checked;
    } else if (p.type === 'integer' || p.type === 'number') {
      input = h('input', { ...common, type: 'number', step: p.type === 'integer' ? 1 : 'any' });
      read = () => (input.value === '' ? undefined : Number(input.value));
    } else if (p.type === 'string') {
      input = h('input', common);
      read = () => input.value || undefined;
    } else {
      input = h('textarea', { ...common, rows: 3, placeholder: p.type === 'array' ? '[ … ] (JSON)' : '{ … } (JSON)' });
      read = () => {
        if (!input.value.trim()) return undefined;
        try { return JSON.parse(input.value); } catch (e) { throw new ApiError(`${key}: not JSON (${e.message})`, 400); }
      };
    }
    return { key, read, node: h('div.field', {}, h('label', { for: id }, key, required.has(key) ? ' *' : ''), input, help) };
  });
}

async function createPage() {
  const provs = await api('GET', '/v3/provisioners');
  const usable = (provs.data || []).filter((p) => p.field && p.schema);
  if (!usable.length) { show(h('h1', {}, 'Create a cluster'), h('p.muted', {}, 'This server has no provisioner with settings: import a cluster instead.')); return; }
  const driver = h('select', { id: 'driver', name: 'driver' }, usable.map((p) => h('option', { value: p.id }, p.id)));
  const name = h('input', { id: 'new-cluster-name', name: 'name', required: true, pattern: '[a-z0-9]([-a-z0-9]*[a-z0-9])?', maxlength: 63 });
  const fieldsBox = h('fieldset', { id: 'settings' });
  const out = h('div', { 'aria-live': 'polite' });
  let fields = [];
  const render = () => {
    const p = usable.find((x) => x.id === driver.value);
    fields = settingsFields(p.schema);
    fieldsBox.replaceChildren(h('legend', {}, `${p.id} settings (spec.${p.field})`), ...fields.map((f) => f.node));
  };
  driver.addEventListener('change', render);
  const form = h('form.card', {}, h('h1', {}, 'Create a cluster'),
    h('label', { for: 'driver' }, 'Provisioner'), driver,
    h('label', { for: 'new-cluster-name' }, 'Name (lower case letters, digits and dashes)'), name,
    fieldsBox, h('p', {}, h('button', { type: 'submit', id: 'create-submit' }, 'Create')), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    try {
      const p = usable.find((x) => x.id === driver.value);
      const settings = {};
      for (const f of fields) {
        const v = f.read();
        if (v !== undefined) settings[f.key] = v;
      }
      const c = await api('POST', '/v3/clusters', { metadata: { name: name.value }, spec: { [p.field]: settings } });
      location.hash = `#/clusters/${encodeURIComponent(c.id)}`;
    } catch (e) { out.replaceChildren(alertBox(e.message)); }
  });
  render();
  show(form);
  name.focus();
}

async function joinInstructions(id) {
  const crt = await api('GET', `/v3/clusterregistrationtokens/${encodeURIComponent(id)}:default-token`);
  const st = crt.status || {};
  return h('div', { id: 'join' },
    h('p', {}, `Run this against the cluster to import (kubectl's current context):`),
    h('pre.cmd', { id: 'import-command' }, st.command || ''),
    st.insecureCommand ? [h('p', {}, 'Or, when kubectl does not trust this server\'s certificate:'), h('pre.cmd', {}, st.insecureCommand)] : null,
    h('p', {}, h('a', { href: `#/clusters/${encodeURIComponent(id)}` }, `The cluster ${id}`), ' becomes active when its agent connects.'));
}

async function clusterPage(id) {
  const head = h('div.bar', {}, h('h1.grow', {}, id),
    h('a.button', { href: `#/clusters/${encodeURIComponent(id)}/shell`, id: 'shell-link' }, 'kubectl shell'),
    h('button.secondary', { type: 'button', id: 'kubeconfig', onclick: () => downloadKubeconfig(id) }, 'Download kubeconfig'));
  const facts = h('div', { 'aria-live': 'polite' });
  const members = h('div');
  const nodes = h('div');
  const events = h('div');
  const projects = h('div');
  show(head, facts, h('h2', {}, 'Nodes'), nodes, h('h2', {}, 'Projects'), projects, h('h2', {}, 'Members'), members, h('h2', {}, 'Recent events'), events);
  loadProjects(id, projects);
  const refresh = async () => {
    const c = await api('GET', `/v3/clusters/${encodeURIComponent(id)}`);
    const st = c.status || {};
    const state = clusterState(c);
    facts.replaceChildren(h('dl.facts.card', {},
      h('dt', {}, 'State'), h('dd', {}, h(`span.state.${state}`, { id: 'cluster-state' }, state)),
      h('dt', {}, 'Provider'), h('dd', {}, st.provider || st.driver || '-'),
      h('dt', {}, 'Kubernetes'), h('dd', {}, (st.version && st.version.gitVersion) || '-'),
      h('dt', {}, 'Nodes'), h('dd', {}, st.nodeCount === undefined ? '-' : String(st.nodeCount)),
      h('dt', {}, 'CPU / memory'), h('dd', {}, `${capacity(c, 'cpu')} / ${capacity(c, 'memory')}`),
      h('dt', {}, 'Description'), h('dd', {}, (c.spec && c.spec.description) || '-')),
    h('h2', {}, 'Conditions'),
    table(['Type', 'Status', 'Reason', 'Message', 'Changed'], (st.conditions || []).map((x) =>
      [x.type, x.status, x.reason || '', x.message || '', age(x.lastTransitionTime)]), 'None reported yet.'));
    return state;
  };
  const state = await refresh();
  await Promise.all([loadMembers(id, members), state === 'active' ? loadNodes(id, nodes, events) : Promise.resolve(nodes.replaceChildren(h('p.muted', {}, 'Shown once the cluster is active.')))]);
  poll = setInterval(() => refresh().catch((e) => facts.replaceChildren(alertBox(e.message))), POLL_MS);
}

async function loadNodes(id, nodes, events) {
  const k8s = `/k8s/clusters/${encodeURIComponent(id)}`;
  try {
    const list = await api('GET', `${k8s}/api/v1/nodes`);
    nodes.replaceChildren(table(['Name', 'Ready', 'Kubelet', 'CPU', 'Memory'], (list.items || []).map((n) => {
      const ready = ((n.status && n.status.conditions) || []).find((x) => x.type === 'Ready');
      const cap = (n.status && n.status.capacity) || {};
      return [n.metadata.name, ready ? ready.status : '-', (n.status && n.status.nodeInfo && n.status.nodeInfo.kubeletVersion) || '-', cap.cpu || '-', cap.memory || '-'];
    }), 'No nodes.'));
  } catch (e) { nodes.replaceChildren(alertBox(e.message)); }
  try {
    const list = await api('GET', `${k8s}/api/v1/events?limit=20`);
    events.replaceChildren(table(['Namespace', 'Object', 'Reason', 'Message'], (list.items || []).map((e) =>
      [e.metadata.namespace || '', `${(e.involvedObject || {}).kind || ''}/${(e.involvedObject || {}).name || ''}`, e.reason || '', e.message || '']), 'No events.'));
  } catch (e) { events.replaceChildren(alertBox(e.message)); }
}

async function loadMembers(id, box) {
  try {
    const [all, names] = await Promise.all([
      api('GET', `/v3/clusterroletemplatebindings?clusterId=${encodeURIComponent(id)}`), loginNames()]);
    const rows = (all.data || []).map((b) => [who(b, names), b.spec.roleTemplateName]);
    box.replaceChildren(table(['User', 'Role'], rows, 'No members you may see.'));
  } catch (e) { box.replaceChildren(alertBox(e.message)); }
}

async function loadProjects(id, box) {
  try {
    const all = await api('GET', `/v3/projects?clusterId=${encodeURIComponent(id)}`);
    box.replaceChildren(table(['Project', 'Id', 'Age'], (all.data || []).map((p) => [
      h('a', { href: `#/projects/${encodeURIComponent(p.id)}` }, (p.spec && p.spec.displayName) || p.id),
      p.id, age(p.metadata.creationTimestamp)]), 'No projects you may see.'));
  } catch (e) { box.replaceChildren(alertBox(e.message)); }
}

// Login names by user id, for those who may list users (others see ids).
async function loginNames() {
  if (!can('user', 'GET')) return {};
  try {
    const users = await api('GET', '/v3/users');
    return Object.fromEntries((users.data || []).map((u) => [u.id, u.spec.username || u.id]));
  } catch { return {}; }
}

function who(b, names) {
  const id = b.spec.userName;
  if (!id) return b.spec.groupPrincipalName || b.spec.serviceAccount || '-';
  return names[id] ? `${names[id]} (${id})` : id;
}

// A user id for a login name (the principal search finds exact login names for everyone).
async function userId(login) {
  const found = await api('POST', '/v3/principals?action=search', { name: login, principalType: 'user' });
  const hit = (found.data || []).find((p) => p.loginName === login);
  if (!hit || !String(hit.id).startsWith('local://')) throw new ApiError(`no user with login name ${login}`, 404);
  return String(hit.id).slice('local://'.length);
}

async function projectPage(id) {
  const [cluster] = id.split(':');
  const p = await api('GET', `/v3/projects/${encodeURIComponent(id)}`);
  const namespaces = h('div');
  const members = h('div', { id: 'project-members' });
  const login = h('input', { id: 'member-login', name: 'login', autocomplete: 'off', required: true });
  const role = h('select', { id: 'member-role', name: 'role' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form.card', { id: 'add-member' },
    h('h2', {}, 'Add a member'),
    h('label', { for: 'member-login' }, 'Login name'), login,
    h('label', { for: 'member-role' }, 'Role'), role,
    h('p', {}, h('button', { type: 'submit', id: 'add-member-submit' }, 'Add')), out);
  show(h('div.bar', {}, h('h1.grow', {}, `Project ${(p.spec && p.spec.displayName) || id}`),
    h('a', { href: `#/clusters/${encodeURIComponent(cluster)}` }, `Cluster ${cluster}`)),
  h('h2', {}, 'Namespaces'), namespaces, h('h2', {}, 'Members'), members, can('projectRoleTemplateBinding', 'GET') ? form : null);
  const refresh = async () => {
    const [list, names] = await Promise.all([
      api('GET', `/v3/projectroletemplatebindings?projectId=${encodeURIComponent(id)}`), loginNames()]);
    members.replaceChildren(table(['User', 'Role'], (list.data || []).map((b) => [who(b, names), b.spec.roleTemplateName]), 'No members.'));
  };
  try {
    const ns = await api('GET', `/v3/clusters/${encodeURIComponent(cluster)}/namespaces`);
    namespaces.replaceChildren(table(['Namespace', 'State'], (ns.data || []).filter((n) => n.projectId === id)
      .map((n) => [n.name || n.id, n.state || '-']), 'No namespaces in this project.'));
  } catch (e) { namespaces.replaceChildren(alertBox(e.message)); }
  try {
    const roles = await api('GET', '/v3/roletemplates');
    const usable = (roles.data || []).filter((r) => r.spec.context === 'project' && !r.spec.hidden && !r.spec.locked);
    role.replaceChildren(...usable.map((r) => h('option', { value: r.metadata.name, selected: r.metadata.name === 'project-member' }, r.spec.displayName || r.metadata.name)));
  } catch { role.replaceChildren(h('option', { value: 'project-member' }, 'Project Member')); }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    try {
      const user = await userId(login.value.trim());
      const name = id.split(':')[1];
      await api('POST', '/v3/projectroletemplatebindings', {
        metadata: { namespace: name },
        spec: { projectName: id, roleTemplateName: role.value, userName: user },
      });
      login.value = '';
      out.replaceChildren(h('p', { role: 'status' }, 'Added.'));
      await refresh();
    } catch (e) { out.replaceChildren(alertBox(e.message)); }
  });
  await refresh();
}

async function downloadKubeconfig(id) {
  try {
    const out = await api('POST', `/v3/clusters/${encodeURIComponent(id)}?action=generateKubeconfig`, {});
    const blob = new Blob([out.config], { type: 'application/yaml' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `${id}.yaml` });
    document.body.append(a);
    a.click();
    a.remove();
  } catch (e) {
    main.prepend(alertBox(e.message));
  }
}

// ---- kubectl shell -------------------------------------------------------------------------------

let shellAbort = null;

function shellPage(id) {
  const log = h('pre.cmd.shell', { id: 'shell-output', role: 'log', 'aria-live': 'polite', tabindex: 0 });
  const input = h('input', { id: 'shell-input', name: 'command', autocomplete: 'off', spellcheck: 'false', placeholder: 'get pods -A' });
  const run = h('button', { type: 'submit', id: 'shell-run' }, 'Run');
  const cancel = h('button.secondary', { type: 'button', id: 'shell-cancel', disabled: true }, 'Cancel');
  const form = h('form.bar', {}, h('label', { for: 'shell-input' }, 'kubectl'), h('span.grow', {}, input), run, cancel);
  show(h('div.bar', {}, h('h1.grow', {}, `kubectl shell: ${id}`), h('a', { href: `#/clusters/${encodeURIComponent(id)}` }, 'Back to the cluster')),
    h('p.muted', {}, 'kubectl\'s get, logs (-f follows), delete, api-resources and version, run by this page against the cluster\'s API as you, through the server. For everything else: rancherctl kubectl CLUSTER -- ARGS'),
    log, form);
  const print = (text, cls) => {
    log.append(cls ? h(`span.${cls}`, {}, text) : document.createTextNode(text));
    log.scrollTop = log.scrollHeight;
  };
  const busy = (b) => { input.disabled = b; run.disabled = b; cancel.disabled = !b; if (!b) input.focus(); };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const line = input.value.trim();
    if (!line) return;
    print(`$ kubectl ${line}\n`, 'prompt');
    input.value = '';
    busy(true);
    shellAbort = new AbortController();
    try {
      await runKubectl(id, line, (t) => print(t), shellAbort.signal);
      print('[exit 0]\n', 'muted');
    } catch (e) {
      print(e.name === 'AbortError' ? '\ncancelled\n' : `${e.message}\n`, 'stderr');
      print('[exit 1]\n', 'muted');
    } finally {
      shellAbort = null;
      busy(false);
    }
  });
  cancel.addEventListener('click', () => { if (shellAbort) shellAbort.abort(); });
  input.focus();
}

// ---- users (admins) ------------------------------------------------------------------------------

async function usersPage() {
  const list = h('div', { id: 'users' });
  const out = h('div', { 'aria-live': 'polite' });
  const refresh = async () => {
    const users = await api('GET', '/v3/users');
    const mayEdit = me.schemas.user && (me.schemas.user.resourceMethods || []).includes('PUT');
    list.replaceChildren(table(['Username', 'Display name', 'Id', 'Enabled', 'Last login', 'Age', ''], (users.data || []).map((u) => [
      u.spec.username || '-', u.spec.displayName || '', u.id, u.spec.enabled === false ? 'no' : 'yes',
      age(u.status && u.status.lastLogin), age(u.metadata.creationTimestamp),
      mayEdit && u.id !== me.user.id ? h('button.secondary', {
        type: 'button',
        'data-user': u.spec.username,
        onclick: async () => {
          try {
            const fresh = await api('GET', `/v3/users/${encodeURIComponent(u.id)}`);
            fresh.spec.enabled = fresh.spec.enabled === false;
            await api('PUT', `/v3/users/${encodeURIComponent(u.id)}`, fresh);
            await refresh();
          } catch (e) { out.replaceChildren(alertBox(e.message)); }
        },
      }, u.spec.enabled === false ? 'Enable' : 'Disable') : '',
    ]), 'No users.'));
  };
  const username = h('input', { id: 'new-username', name: 'username', required: true, autocomplete: 'off' });
  const display = h('input', { id: 'new-display-name', name: 'displayName' });
  const password = h('input', { id: 'new-password', name: 'password', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' });
  const form = h('form.card', { id: 'new-user' }, h('h2', {}, 'Add a local user'),
    h('label', { for: 'new-username' }, 'Username'), username,
    h('label', { for: 'new-display-name' }, 'Display name'), display,
    h('label', { for: 'new-password' }, 'Password (at least 12 characters)'), password,
    h('p', {}, h('button', { type: 'submit', id: 'new-user-submit' }, 'Add')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    try {
      await api('POST', '/v3/users', { spec: { username: username.value, displayName: display.value || username.value, password: password.value, enabled: true } });
      username.value = ''; display.value = ''; password.value = '';
      out.replaceChildren(h('p', { role: 'status' }, 'Added.'));
      await refresh();
    } catch (e) { out.replaceChildren(alertBox(e.message)); }
  });
  show(h('h1', {}, 'Users'), list, out, can('user', 'POST') ? form : null);
  await refresh();
}

function rulesText(rules) {
  return (rules || []).map((r) => `${(r.verbs || []).join(',')} ${(r.resources || r.nonResourceURLs || []).join(',')}`).join('; ') || '-';
}

async function rolesPage() {
  const [globals, templates] = await Promise.all([api('GET', '/v3/globalroles'), api('GET', '/v3/roletemplates')]);
  show(h('h1', {}, 'Roles'),
    h('p.muted', {}, 'Created and changed with rancherctl (roletemplate, globalrole) or the API; the server refuses a rule its author does not hold.'),
    h('h2', {}, 'Global roles'),
    table(['Name', 'Display name', 'Rules', 'New users', 'Builtin'], (globals.data || []).map((r) => [
      r.metadata.name, r.spec.displayName || '', rulesText(r.spec.rules), r.spec.newUserDefault ? 'yes' : 'no', r.spec.builtin ? 'yes' : 'no']), 'None.'),
    h('h2', {}, 'Role templates'),
    table(['Name', 'Context', 'Display name', 'Inherits', 'Rules'], (templates.data || []).filter((t) => !t.spec.hidden).map((t) => [
      t.metadata.name, t.spec.context || '', t.spec.displayName || '', (t.spec.roleTemplateNames || []).join(', ') || '-', rulesText(t.spec.rules)]), 'None.'));
}

async function auditPage() {
  const box = h('div', { id: 'audit' });
  show(h('h1', {}, 'Audit log'), h('p.muted', {}, 'Every request through the authentication proxy, newest first.'), box);
  try {
    const log = await api('GET', '/v3/auditlog?limit=200');
    box.replaceChildren(table(['Time', 'User', 'Cluster', 'Verb', 'Resource', 'Namespace', 'Name', 'Status'], (log.data || []).map((e) => [
      e.time || '', e.user || '', e.cluster || '', e.verb || '', e.resource || e.path || '', e.namespace || '', e.name || '', String(e.status || '')]), 'Nothing recorded yet.'));
  } catch (e) { box.replaceChildren(alertBox(e.message)); }
}

// ---- routing -------------------------------------------------------------------------------------

async function route() {
  clearInterval(poll);
  poll = null;
  if (shellAbort) { shellAbort.abort(); shellAbort = null; }
  const path = location.hash.replace(/^#/, '') || '/clusters';
  try {
    if (path === '/login') { await loginPage(); return; }
    if (!me) {
      try { await loadMe(); } catch (e) { if (e.code !== 401) throw e; return; }
    }
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'clusters' && parts[1] && parts[2] === 'shell') shellPage(parts[1]);
    else if (parts[0] === 'clusters' && parts[1]) await clusterPage(parts[1]);
    else if (parts[0] === 'projects' && parts[1]) await projectPage(parts[1]);
    else if (parts[0] === 'import') await importPage();
    else if (parts[0] === 'create') await createPage();
    else if (parts[0] === 'users') await usersPage();
    else if (parts[0] === 'roles') await rolesPage();
    else if (parts[0] === 'audit') await auditPage();
    else await clustersPage();
    main.focus({ preventScroll: true });
  } catch (e) {
    if (e.code !== 401) show(alertBox(e.message));
  }
}

window.addEventListener('hashchange', route);
finishRedirectLogin().then(route, (e) => { route().then(() => main.prepend(alertBox(e.message))); });
