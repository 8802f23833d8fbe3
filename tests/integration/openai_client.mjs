// The official `openai` npm client against `byoai serve` running stories260K:
// models, chat (streaming and not, logprobs, stop, seed, JSON mode),
// completions, embeddings, errors, 8 concurrent streams and a client that
// disconnects mid-stream. Run by openai_client.sh with BYOAI_URL and
// BYOAI_KEY set.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import test from 'node:test';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const OpenAI = require('openai');
const url = process.env.BYOAI_URL;
const client = new OpenAI({ baseURL: url + '/v1', apiKey: process.env.BYOAI_KEY, maxRetries: 0, timeout: 120000 });
const MODEL = 'stories260k';
const STORY = ', there was a little girl named Lily. She loved to play outside in the park.';
const user = (content) => [{ role: 'user', content }];

async function metric(name) {
  const r = await fetch(url + '/metrics', { headers: { Authorization: 'Bearer ' + process.env.BYOAI_KEY } });
  const text = await r.text();
  const m = new RegExp('^' + name + ' (\\S+)$', 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function collect(stream) {
  let text = '', chunks = 0, finish = null, usage = null, role = null;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    if (ch.delta && ch.delta.role) role = ch.delta.role;
    text += (ch.delta ? ch.delta.content : ch.text) || '';
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  return { text, chunks, finish, usage, role };
}

test('models: list and retrieve', async () => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  assert.deepEqual(ids, [MODEL]);
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  assert.equal(m.object, 'model');
});

test('chat: greedy, not streamed', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), temperature: 0, max_tokens: 20 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(STORY.startsWith(r.choices[0].message.content.slice(0, 40)), r.choices[0].message.content);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.prompt_tokens, 5);
  assert.equal(r.usage.completion_tokens, 20);
  assert.equal(r.usage.total_tokens, 25);
});

test('chat: streamed equals not streamed, with usage', async () => {
  const args = { model: MODEL, messages: user('Once upon a time'), temperature: 0, max_tokens: 40 };
  const whole = await client.chat.completions.create(args);
  const s = await collect(await client.chat.completions.create({ ...args, stream: true, stream_options: { include_usage: true } }));
  assert.equal(s.text, whole.choices[0].message.content);
  assert.equal(s.role, 'assistant');
  assert.equal(s.finish, 'length');
  assert.ok(s.chunks >= 40, `one chunk per token at least, got ${s.chunks}`);
  assert.equal(s.usage.completion_tokens, 40);
});

test('chat: stop sequences and system messages', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, temperature: 0, max_tokens: 60, stop: ['Lily'],
    messages: [{ role: 'system', content: 'Once upon a time' }, { role: 'user', content: [{ type: 'text', text: 'there' }] }],
  });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(!r.choices[0].message.content.includes('Lily'));
  const s = await collect(await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), temperature: 0, max_tokens: 60, stop: ['named'], stream: true }));
  assert.equal(s.text, ', there was a little girl ');
  assert.equal(s.finish, 'stop');
});

test('chat: the next turn of a conversation reuses the cached prompt', async () => {
  const first = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), temperature: 0, max_tokens: 12 });
  const turn = [...user('Once upon a time'), { role: 'assistant', content: first.choices[0].message.content }, ...user('The end')];
  const second = await client.chat.completions.create({ model: MODEL, messages: turn, temperature: 0, max_tokens: 8 });
  assert.ok(second.usage.prompt_tokens_details.cached_tokens >= 5, JSON.stringify(second.usage));
});

test('chat: logprobs and top_logprobs', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), temperature: 0, max_tokens: 5, logprobs: true, top_logprobs: 3 });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, 5);
  assert.equal(lp.map((t) => t.token).join(''), r.choices[0].message.content);
  for (const t of lp) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 3);
    assert.equal(t.top_logprobs[0].token, t.token);        // greedy takes the best
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
  }
});

test('chat: seeds reproduce, and differ', async () => {
  const args = { model: MODEL, messages: user('Once upon a time'), temperature: 1, max_tokens: 30 };
  const a = await client.chat.completions.create({ ...args, seed: 42 });
  const b = await client.chat.completions.create({ ...args, seed: 42 });
  const c = await client.chat.completions.create({ ...args, seed: 43 });
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.notEqual(a.choices[0].message.content, c.choices[0].message.content);
});

test('chat: response_format json_object gives valid JSON', async () => {
  for (const [seed, max_tokens] of [[1, 60], [2, 25], [3, 8], [4, 100]]) {
    const r = await client.chat.completions.create({ model: MODEL, messages: user('Give me JSON'), seed, max_tokens, response_format: { type: 'json_object' } });
    const text = r.choices[0].message.content;
    const v = JSON.parse(text);
    assert.equal(typeof v, 'object', text);
    assert.ok(!Array.isArray(v) && v !== null, text);
  }
  const s = await collect(await client.chat.completions.create({ model: MODEL, messages: user('JSON please'), seed: 5, max_tokens: 40, stream: true, response_format: { type: 'json_object' } }));
  JSON.parse(s.text);
});

test('completions: streamed and not', async () => {
  const args = { model: MODEL, prompt: 'Once upon a time', temperature: 0, max_tokens: 16 };
  const r = await client.completions.create(args);
  assert.equal(r.object, 'text_completion');
  assert.ok(STORY.startsWith(r.choices[0].text), r.choices[0].text);
  assert.equal(r.usage.completion_tokens, 16);
  const s = await collect(await client.completions.create({ ...args, stream: true }));
  assert.equal(s.text, r.choices[0].text);
  const e = await client.completions.create({ ...args, max_tokens: 3, echo: true, logprobs: 2 });
  assert.ok(e.choices[0].text.startsWith('Once upon a time,'));
  assert.equal(e.choices[0].logprobs.tokens.length, 3);
  assert.equal(Object.keys(e.choices[0].logprobs.top_logprobs[0]).length, 2);
});

test('embeddings: mean-pooled, normalised, base64 and float', async () => {
  const r = await client.embeddings.create({ model: MODEL, input: ['Once upon a time', 'Once upon a time', 'The dog ran to the park'] });
  assert.equal(r.data.length, 3);
  const [a, b, c] = r.data.map((d) => d.embedding);
  assert.equal(a.length, 64);
  assert.deepEqual(a, b);
  const dot = (x, y) => x.reduce((s, v, i) => s + v * y[i], 0);
  assert.ok(Math.abs(dot(a, a) - 1) < 1e-3);
  assert.ok(dot(a, c) < 0.999);
  assert.ok(r.usage.prompt_tokens > 10);
  const f = await client.embeddings.create({ model: MODEL, input: 'Once upon a time', encoding_format: 'float' });
  assert.ok(f.data[0].embedding.every((v, i) => Math.abs(v - a[i]) < 1e-6));
  const t = await client.embeddings.create({ model: MODEL, input: [1, 403, 407, 261, 378] }); // token ids
  assert.ok(t.data[0].embedding.every((v, i) => Math.abs(v - a[i]) < 1e-6));
});

test('errors in OpenAI shape', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'nope', messages: user('x') }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found' && /nope/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: user('x'), max_tokens: -5 }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'max_tokens');
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: user('x'), temperature: 'hot' }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'temperature' && /number/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'messages');
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [{ role: 'wizard', content: 'x' }] }),
    (e) => e instanceof OpenAI.BadRequestError && /role/.test(e.message));
  await assert.rejects(client.embeddings.create({ model: MODEL, input: [] }), (e) => e instanceof OpenAI.BadRequestError);
  const stranger = new OpenAI({ baseURL: url + '/v1', apiKey: 'wrong-key-123', maxRetries: 0 });
  await assert.rejects(stranger.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});

test('8 simultaneous streaming clients get the answers they get alone', async () => {
  const prompts = ['Once upon a time', 'The cat', 'Lily', 'One day', 'Tom had a big', 'The sun', 'Once', 'She saw a'];
  const alone = [];
  for (const p of prompts)
    alone.push((await client.chat.completions.create({ model: MODEL, messages: user(p), temperature: 0, max_tokens: 64 })).choices[0].message.content);
  const streams = await Promise.all(prompts.map((p) =>
    client.chat.completions.create({ model: MODEL, messages: user(p), temperature: 0, max_tokens: 64, stream: true }).then(collect)));
  streams.forEach((s, i) => assert.equal(s.text, alone[i], `client ${i} (${prompts[i]})`));
  assert.ok(new Set(alone).size >= 6, 'the prompts give different answers');
});

test('a client that disconnects mid-stream frees its slot', async () => {
  const before = await metric('byoai_requests_cancelled_total');
  const genBefore = await metric('byoai_generated_tokens_total');
  const ac = new AbortController();
  const stream = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), temperature: 0, max_tokens: 4000, stream: true }, { signal: ac.signal });
  let n = 0;
  try {
    for await (const c of stream) { if (++n === 5) ac.abort(); }   // the client ends iteration quietly on abort
  } catch (e) {
    assert.equal(e.name, 'AbortError');
  }
  assert.ok(n >= 5 && n < 100, `aborted after 5 chunks, read ${n}`);
  let active = NaN, cancelled = NaN;
  for (let i = 0; i < 100; i++) {
    active = await metric('byoai_active_sequences');
    cancelled = await metric('byoai_requests_cancelled_total');
    if (active === 0 && cancelled === before + 1) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(active, 0, 'no sequence left running');
  assert.equal(cancelled, before + 1, 'the generation was cancelled');
  const generated = (await metric('byoai_generated_tokens_total')) - genBefore;
  assert.ok(generated < 4000, `stopped early (${generated} tokens generated)`);
  // and the server goes on serving
  const r = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), temperature: 0, max_tokens: 5 });
  assert.equal(r.usage.completion_tokens, 5);
});
