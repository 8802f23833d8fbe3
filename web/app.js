// byoai web app: chat with the models a byoai server runs.
// Talks only to the server it came from: the OpenAI API for answers
// (streamed as server-sent events) and /api/conversations to keep chats.
import { renderMarkdown } from './markdown.js';

const $ = (id) => document.getElementById(id);
const ui = {
  app: $('app'), list: $('conversations'), newChat: $('new-chat'), model: $('model'), speed: $('speed'),
  messages: $('messages'), empty: $('empty'), form: $('composer'), input: $('input'), send: $('send'),
  stop: $('stop'), regenerate: $('regenerate'), status: $('status'), keyButton: $('key-button'),
  toggle: $('toggle-sidebar'), scrim: $('scrim'),
  temperature: $('temperature'), maxTokens: $('max-tokens'), system: $('system-prompt'),
  installForm: $('install-form'), installName: $('install-name'), installButton: $('install-button'),
  installProgress: $('install-progress'),
};

// Sampling settings, kept in this browser.
const settings = JSON.parse(localStorage.getItem('byoai-settings') || '{}');
ui.temperature.value = settings.temperature ?? '';
ui.maxTokens.value = settings.max_tokens ?? '';
ui.system.value = settings.system ?? '';
for (const input of [ui.temperature, ui.maxTokens, ui.system]) {
  input.addEventListener('change', () => {
    const t = parseFloat(ui.temperature.value), m = parseInt(ui.maxTokens.value, 10);
    settings.temperature = Number.isFinite(t) ? Math.min(2, Math.max(0, t)) : undefined;
    settings.max_tokens = Number.isFinite(m) && m > 0 ? m : undefined;
    settings.system = ui.system.value.trim() || undefined;
    localStorage.setItem('byoai-settings', JSON.stringify(settings));
  });
}

const state = {
  conversations: [],   // [{id, title, model, updated_at}]
  current: null,       // {id, title, model, messages: [{role, content}]}
  controller: null,    // AbortController of the running answer
  key: localStorage.getItem('byoai-api-key') || '',
  noticed: new WeakSet(), // conversations already told that their oldest turns no longer fit
};

// ---- HTTP ------------------------------------------------------------------------
function headers(json) {
  const h = {};
  if (json) h['Content-Type'] = 'application/json';
  if (state.key) h['Authorization'] = 'Bearer ' + state.key;
  return h;
}

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) { askKey('This server needs an API key.'); throw new Error('an API key is needed'); }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error((data && data.error && data.error.message) || res.status + ' ' + res.statusText);
  return data;
}

function askKey(why) {
  ui.keyButton.hidden = false;
  const k = window.prompt((why ? why + '\n' : '') + 'API key (stored in this browser):', state.key);
  if (k === null) return;
  state.key = k.trim();
  localStorage.setItem('byoai-api-key', state.key);
  init();
}

function setStatus(text) { ui.status.textContent = text || ''; }

// ---- rendering ----------------------------------------------------------------------
function messageNode(m) {
  const div = document.createElement('div');
  div.className = 'msg ' + (m.role === 'user' ? 'user' : m.role === 'system' ? 'system' : 'assistant');
  const role = document.createElement('div');
  role.className = 'role';
  role.textContent = m.role === 'assistant' ? (state.current && state.current.model) || 'assistant' : m.role;
  const body = document.createElement('div');
  body.className = 'body';
  if (m.role === 'user') body.textContent = m.content;      // what the user typed, verbatim
  else body.append(renderMarkdown(m.content));
  div.append(role, body);
  if (m.meta) {
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = m.meta;
    div.append(meta);
  }
  return div;
}

// A line in the conversation that is not a message: a notice, or an error.
function noticeNode(text, error) {
  const div = document.createElement('div');
  div.className = 'notice' + (error ? ' error' : '');
  div.setAttribute('role', error ? 'alert' : 'status');
  div.textContent = text;
  return div;
}

function renderMessages() {
  ui.messages.replaceChildren();
  const msgs = state.current ? state.current.messages : [];
  if (!msgs.length) ui.messages.append(ui.empty);
  for (const m of msgs) ui.messages.append(messageNode(m));
  ui.messages.scrollTop = ui.messages.scrollHeight;
  updateButtons();
}

function renderList() {
  ui.list.replaceChildren();
  for (const c of state.conversations) {
    const li = document.createElement('li');
    li.dataset.id = c.id;
    if (state.current && state.current.id === c.id) li.className = 'active';
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'open';
    open.textContent = c.title || 'New chat';
    open.title = c.title || '';
    open.addEventListener('click', () => openConversation(c.id));
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'delete';
    del.setAttribute('aria-label', 'Delete ' + (c.title || 'chat'));
    del.textContent = '\u00d7';
    del.addEventListener('click', () => deleteConversation(c.id));
    li.append(open, del);
    ui.list.append(li);
  }
}

function updateButtons() {
  const busy = !!state.controller;
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  const msgs = state.current ? state.current.messages : [];
  ui.regenerate.disabled = busy || !msgs.length || msgs[msgs.length - 1].role !== 'assistant';
  ui.model.disabled = busy;
}

function closeSidebar() { ui.app.classList.remove('sidebar-open'); ui.scrim.hidden = true; }

// ---- conversations -----------------------------------------------------------------------
async function loadList() {
  const r = await api('GET', '/api/conversations');
  state.conversations = r.data;
  renderList();
}

async function openConversation(id) {
  if (state.controller) return;
  try {
    state.current = await api('GET', '/api/conversations/' + encodeURIComponent(id));
    if (state.current.model && [...ui.model.options].some((o) => o.value === state.current.model)) ui.model.value = state.current.model;
    localStorage.setItem('byoai-current', id);
    renderList();
    renderMessages();
    closeSidebar();
  } catch (e) { setStatus(e.message); }
}

function newConversation() {
  if (state.controller) return;
  state.current = { id: null, title: '', model: ui.model.value, messages: [] };
  localStorage.removeItem('byoai-current');
  renderList();
  renderMessages();
  closeSidebar();
  ui.input.focus();
}

async function deleteConversation(id) {
  if (!window.confirm('Delete this conversation?')) return;
  try {
    await api('DELETE', '/api/conversations/' + encodeURIComponent(id));
    if (state.current && state.current.id === id) newConversation();
    await loadList();
  } catch (e) { setStatus(e.message); }
}

async function save() {
  const c = state.current;
  const body = { title: c.title, model: c.model, messages: c.messages.map(({ role, content }) => ({ role, content })) };
  if (!c.id) {
    const r = await api('POST', '/api/conversations', body);
    c.id = r.id;
    localStorage.setItem('byoai-current', c.id);
  } else {
    await api('PUT', '/api/conversations/' + encodeURIComponent(c.id), body);
  }
  await loadList();
}

// ---- answers -------------------------------------------------------------------------------
// Read a server-sent-event stream; call onEvent with each data payload.
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) !== -1) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (data) onEvent(data);
    }
  }
}

async function answer() {
  const c = state.current;
  c.model = ui.model.value;
  const msg = { role: 'assistant', content: '' };
  c.messages.push(msg);
  ui.empty.remove();
  const node = messageNode(msg);
  node.classList.add('streaming');
  node.dataset.chunks = '0';
  ui.messages.append(node);
  const body = node.querySelector('.body');
  state.controller = new AbortController();
  updateButtons();
  setStatus('');
  let first = 0, last = 0, tokens = 0, chunks = 0, pending = false, usage = null, finish = null, failure = null;
  const paint = () => {
    pending = false;
    body.replaceChildren(renderMarkdown(msg.content));
    node.dataset.chunks = String(chunks);
    ui.messages.scrollTop = ui.messages.scrollHeight;
  };
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST', headers: headers(true), signal: state.controller.signal,
      body: JSON.stringify({
        // a conversation longer than the context: the server drops its oldest turns (the notice below says so)
        model: c.model, stream: true, stream_options: { include_usage: true }, truncation: 'auto',
        temperature: settings.temperature, max_tokens: settings.max_tokens,
        messages: (settings.system ? [{ role: 'system', content: settings.system }] : [])
          .concat(c.messages.slice(0, -1).map(({ role, content }) => ({ role, content }))),
      }),
    });
    if (res.status === 401) { askKey('This server needs an API key.'); throw new Error('an API key is needed'); }
    if (!res.ok) {
      const data = await res.json().catch(() => null);
      throw new Error((data && data.error && data.error.message) || res.status + ' ' + res.statusText);
    }
    const dropped = Number(res.headers.get('X-Byoai-Truncated-Messages') || 0);
    if (dropped && !state.noticed.has(c)) {
      state.noticed.add(c);
      node.before(noticeNode(`This conversation is longer than the model's context: the oldest ${dropped} messages ` +
        'no longer fit, so the model does not see them (they stay here). Later answers leave out more.'));
    }
    await readEvents(res, (data) => {
      if (data === '[DONE]') return;
      const ev = JSON.parse(data);
      if (ev.error) throw new Error(ev.error.message);
      if (ev.usage) usage = ev.usage;
      const ch = ev.choices && ev.choices[0];
      if (!ch) return;
      if (ch.finish_reason) finish = ch.finish_reason;
      const text = ch.delta && ch.delta.content;
      if (!text) return;
      const now = performance.now();
      if (!first) first = now;
      last = now;
      tokens++;
      chunks++;
      msg.content += text;
      if (!pending) { pending = true; requestAnimationFrame(paint); }
    });
  } catch (e) {
    if (e.name !== 'AbortError') {
      failure = e.message;
      setStatus(e.message);
    }
  } finally {
    const n = usage ? usage.completion_tokens : tokens;
    const secs = (last - first) / 1000;
    const rate = n > 1 && secs > 0 ? (n - 1) / secs : 0;
    msg.meta = n ? `${n} tokens${rate ? ', ' + rate.toFixed(1) + ' tokens/s' : ''}${finish === 'length' ? ' (length limit)' : ''}` : '';
    if (rate) ui.speed.textContent = rate.toFixed(1) + ' tokens/s';
    paint();
    node.classList.remove('streaming');
    if (msg.content) {
      node.replaceWith(messageNode(msg));
    } else {
      // no answer (an error, a stop, or the model ended at once): never an empty bubble, and nothing saved
      c.messages.pop();
      node.replaceWith(noticeNode(failure ? 'No answer: ' + failure
        : finish === 'length' ? 'No answer: the context is full.' : 'The model gave no answer.', !!failure));
    }
    state.controller = null;
    updateButtons();
  }
  try { await save(); } catch (e) { setStatus('could not save the conversation: ' + e.message); }
}

async function send(text) {
  if (state.controller) return;
  if (!ui.model.value) { setStatus('No model to talk to: start byoai serve with a model.'); return; }
  if (!state.current) newConversation();
  const c = state.current;
  if (!c.title) c.title = text.replace(/\s+/g, ' ').slice(0, 60);
  c.messages.push({ role: 'user', content: text });
  ui.messages.append(messageNode(c.messages[c.messages.length - 1]));
  await answer();
}

// ---- installing models -------------------------------------------------------------------------
function mib(n) { return (n / 1048576).toFixed(1) + ' MiB'; }

async function install(name) {
  ui.installButton.disabled = true;
  const line = document.createElement('div');
  const bar = document.createElement('progress');
  bar.max = 1;
  bar.value = 0;
  ui.installProgress.replaceChildren(line, bar);
  line.textContent = 'starting...';
  try {
    const res = await fetch('/api/models/install', { method: 'POST', headers: headers(true), body: JSON.stringify({ model: name }) });
    if (res.status === 401) { askKey('This server needs an API key.'); throw new Error('an API key is needed'); }
    if (!res.ok) {
      const data = await res.json().catch(() => null);
      throw new Error((data && data.error && data.error.message) || res.status + ' ' + res.statusText);
    }
    let result = null;
    const dropped = Number(res.headers.get('X-Byoai-Truncated-Messages') || 0);
    if (dropped && !state.noticed.has(c)) {
      state.noticed.add(c);
      node.before(noticeNode(`This conversation is longer than the model's context: the oldest ${dropped} messages ` +
        'no longer fit, so the model does not see them (they stay here). Later answers leave out more.'));
    }
    await readEvents(res, (data) => {
      if (data === '[DONE]') return;
      const ev = JSON.parse(data);
      if (ev.error) throw new Error(ev.error.message);
      if (ev.status === 'success') { result = ev.model; return; }
      line.textContent = ev.status + (ev.what ? ' ' + ev.what : '') + (ev.total ? ': ' + mib(ev.completed) + ' of ' + mib(ev.total) : '');
      if (ev.total) bar.value = ev.completed / ev.total;
    });
    if (!result) throw new Error('the install ended without a result');
    bar.value = 1;
    // refresh the picker first: once the line says "installed", the model can be chosen
    await loadModels(result.id);
    line.textContent = 'installed ' + result.id + (result.variant ? ':' + result.variant : '') + ' (' + mib(result.size) + ')';
  } catch (e) {
    line.textContent = 'install failed: ' + e.message;
    bar.remove();
  } finally {
    ui.installButton.disabled = false;
  }
}

async function loadModels(select) {
  const models = await api('GET', '/v1/models');
  const keep = select || ui.model.value;
  ui.model.replaceChildren();
  for (const m of models.data) {
    const o = document.createElement('option');
    o.value = m.id;
    o.textContent = m.id + (m.byoai && m.byoai.bundle ? ' (bundle)' : '');
    ui.model.append(o);
  }
  if (keep && models.data.some((m) => m.id === keep)) ui.model.value = keep;
  if (state.current && !state.controller) state.current.model = ui.model.value;
  return models;
}

// ---- events and start-up ---------------------------------------------------------------------
ui.installForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = ui.installName.value.trim();
  if (name) install(name);
});
ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.input.value.trim();
  if (!text) return;
  ui.input.value = '';
  ui.input.style.height = '';
  send(text);
});
ui.input.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); ui.form.requestSubmit(); }
});
ui.input.addEventListener('input', () => {
  ui.input.style.height = '';
  ui.input.style.height = Math.min(ui.input.scrollHeight, window.innerHeight * 0.4) + 'px';
});
ui.stop.addEventListener('click', () => { if (state.controller) state.controller.abort(); });
ui.regenerate.addEventListener('click', () => {
  const msgs = state.current && state.current.messages;
  if (state.controller || !msgs || !msgs.length || msgs[msgs.length - 1].role !== 'assistant') return;
  msgs.pop();
  renderMessages();
  answer();
});
ui.newChat.addEventListener('click', newConversation);
ui.keyButton.addEventListener('click', () => askKey(''));
ui.toggle.addEventListener('click', () => { ui.app.classList.add('sidebar-open'); ui.scrim.hidden = false; });
ui.scrim.addEventListener('click', closeSidebar);
ui.model.addEventListener('change', () => { if (state.current) state.current.model = ui.model.value; });

async function init() {
  setStatus('');
  try {
    const health = await api('GET', '/api/health');
    ui.keyButton.hidden = !health.auth;
    await loadModels(localStorage.getItem('byoai-model'));
    await loadList();
    const cur = localStorage.getItem('byoai-current');
    if (cur && state.conversations.some((c) => c.id === cur)) await openConversation(cur);
    else newConversation();
    document.body.dataset.ready = '1';
  } catch (e) { setStatus(e.message); }
}
ui.model.addEventListener('change', () => localStorage.setItem('byoai-model', ui.model.value));
init();
