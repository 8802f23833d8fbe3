// The official `ollama` npm client (ollama-js) against `byoai serve`: a
// file model (stories-file) and stories260k pulled from a real byoai
// registry. Checks the shapes Ollama's clients rely on: NDJSON streams
// ending in done, done_reason, durations in ns, eval counts, structured
// output and tool calls (arguments as objects) that validate with ajv.
// Run by ollama_client.sh with BYOAI_URL set.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import test from 'node:test';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { Ollama } = require('ollama');
const Ajv = require('ajv');
const ajv = new (Ajv.default || Ajv)({ strict: true });
const ollama = new Ollama({ host: process.env.BYOAI_URL });
const FILE = 'stories-file', PULLED = 'stories260k';
const STORY = ', there was a little girl named Lily.';

async function collect(it) {
  const parts = [];
  for await (const p of it) parts.push(p);
  return parts;
}

function stats(r) {
  assert.equal(r.done, true);
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'])
    assert.ok(Number.isInteger(r[k]) && r[k] >= 0, `${k}: ${r[k]}`);
  assert.ok(r.total_duration >= r.eval_duration);
  assert.ok(r.prompt_eval_count > 0);
  assert.ok(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$/.test(r.created_at), r.created_at);
}

test('version and an empty list of installed models', async () => {
  const v = await ollama.version();
  assert.equal(typeof v.version, 'string');
  const l = await ollama.list();
  assert.deepEqual(l.models.map((m) => m.name), [FILE]);
  assert.equal(l.models[0].details.format, 'gguf');
  assert.equal(l.models[0].details.family, 'llama');
  assert.equal(l.models[0].size, 1185376);
});

test('pull: NDJSON progress through byoai\'s registry, then the model is listed', async () => {
  const parts = await collect(await ollama.pull({ model: PULLED, stream: true }));
  const statuses = parts.map((p) => p.status);
  assert.equal(statuses[0], 'pulling manifest');
  assert.equal(statuses.at(-1), 'success');
  const dl = parts.filter((p) => p.total);
  assert.ok(dl.length >= 1 && dl.at(-1).completed === 1185376 && dl.at(-1).total === 1185376, JSON.stringify(dl));
  assert.ok(statuses.includes('verifying sha256 digest'));
  const l = await ollama.list();
  assert.deepEqual(l.models.map((m) => m.name).sort(), [PULLED, FILE].sort());
  const again = await ollama.pull({ model: PULLED, stream: false });
  assert.equal(again.status, 'success');
  await assert.rejects(ollama.pull({ model: 'no-such-model', stream: false }), (e) => e.name === 'ResponseError' && e.status_code === 404);
  await assert.rejects(collect(await ollama.pull({ model: 'no-such-model', stream: true })), /no-such-model/);
});

test('show and ps', async () => {
  const s = await ollama.show({ model: PULLED });
  assert.equal(s.details.family, 'llama');
  assert.equal(s.model_info['general.architecture'], 'llama');
  assert.ok(s.capabilities.includes('completion'));
  await ollama.generate({ model: PULLED, prompt: 'Once', options: { num_predict: 1 } });
  const ps = await ollama.ps();
  assert.ok(ps.models.some((m) => m.name === PULLED), JSON.stringify(ps));
  await assert.rejects(ollama.show({ model: 'nope' }), (e) => e.status_code === 404 && /nope/.test(e.message));
});

test('chat: not streamed and streamed give the same greedy answer', async () => {
  const args = { model: PULLED, messages: [{ role: 'user', content: 'Once upon a time' }], options: { temperature: 0, num_predict: 12 } };
  const r = await ollama.chat(args);
  assert.equal(r.message.role, 'assistant');
  assert.ok(STORY.startsWith(r.message.content.slice(0, 20)), r.message.content);
  assert.equal(r.done_reason, 'length');
  assert.equal(r.eval_count, 12);
  stats(r);
  const parts = await collect(await ollama.chat({ ...args, stream: true }));
  assert.equal(parts.map((p) => p.message.content).join(''), r.message.content);
  assert.ok(parts.length >= 12);
  assert.ok(parts.slice(0, -1).every((p) => p.done === false));
  stats(parts.at(-1));
  assert.equal(parts.at(-1).eval_count, 12);
  const stop = await ollama.chat({ ...args, options: { temperature: 0, num_predict: 40, stop: ['girl'] } });
  assert.equal(stop.done_reason, 'stop');
  assert.ok(!stop.message.content.includes('girl'));
});

test('generate: streamed and not, with context; empty prompt only loads', async () => {
  const args = { model: FILE, prompt: 'Once upon a time', options: { temperature: 0, num_predict: 10, seed: 1 } };
  const r = await ollama.generate(args);
  stats(r);
  assert.ok(Array.isArray(r.context) && r.context.length >= 10);
  const parts = await collect(await ollama.generate({ ...args, stream: true }));
  assert.equal(parts.map((p) => p.response).join(''), r.response);
  const raw = await ollama.generate({ ...args, raw: true });
  assert.equal(typeof raw.response, 'string');
  const load = await ollama.generate({ model: FILE, prompt: '' });
  assert.equal(load.done_reason, 'load');
});

test('chat: format as a schema and as "json"', async () => {
  const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 1, maximum: 99 } }, required: ['name', 'age'], additionalProperties: false };
  const validate = ajv.compile(schema);
  for (let seed = 1; seed <= 4; seed++) {
    const r = await ollama.chat({ model: PULLED, messages: [{ role: 'user', content: 'Who?' }], format: schema, options: { seed, num_predict: 300 }, stream: seed % 2 === 0 });
    const text = r.message ? r.message.content : (await collect(r)).map((p) => p.message.content).join('');
    assert.ok(validate(JSON.parse(text)), `${text}: ${ajv.errorsText(validate.errors)}`);
  }
  const j = await ollama.generate({ model: FILE, prompt: 'Once', format: 'json', options: { seed: 2, num_predict: 200 } });
  assert.equal(typeof JSON.parse(j.response), 'object');
  await assert.rejects(ollama.chat({ model: PULLED, messages: [{ role: 'user', content: 'x' }], format: { type: 'string', pattern: 'x' } }),
    (e) => e.status_code === 400 && /'pattern'/.test(e.message));
});

test('chat: tool calls with arguments as objects, and tool results back', async () => {
  const parameters = { type: 'object', properties: { city: { type: 'string', maxLength: 16 }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'days'], additionalProperties: false };
  const validate = ajv.compile(parameters);
  const tools = [{ type: 'function', function: { name: 'forecast', description: 'Weather forecast', parameters } }];
  const messages = [{ role: 'user', content: 'Weather in Rome for 3 days?' }];
  const r = await ollama.chat({ model: PULLED, messages, tools, tool_choice: 'required', options: { seed: 5, num_predict: 300 } });
  assert.ok(r.message.tool_calls.length >= 1, JSON.stringify(r.message));
  for (const c of r.message.tool_calls) {
    assert.equal(c.function.name, 'forecast');
    assert.equal(typeof c.function.arguments, 'object');
    assert.ok(validate(c.function.arguments), JSON.stringify(c.function.arguments));
  }
  const parts = await collect(await ollama.chat({ model: PULLED, messages, tools, tool_choice: 'required', stream: true, options: { seed: 6, num_predict: 300 } }));
  const calls = parts.flatMap((p) => p.message.tool_calls || []);
  assert.ok(calls.length >= 1);
  calls.forEach((c) => assert.ok(validate(c.function.arguments), JSON.stringify(c)));
  const history = [...messages, { role: 'assistant', content: '', tool_calls: [{ function: { name: 'forecast', arguments: { city: 'Rome', days: 3 } } }] },
    { role: 'tool', content: 'sunny', tool_name: 'forecast' }];
  const next = await ollama.chat({ model: PULLED, messages: history, tools, options: { temperature: 0, num_predict: 8 } });
  assert.equal(typeof next.message.content, 'string');
});

test('embed and the older embeddings', async () => {
  const r = await ollama.embed({ model: FILE, input: ['Once upon a time', 'The cat'] });
  assert.equal(r.embeddings.length, 2);
  assert.equal(r.embeddings[0].length, 64);
  const norm = Math.hypot(...r.embeddings[0]);
  assert.ok(Math.abs(norm - 1) < 1e-4, `${norm}`);
  assert.ok(r.prompt_eval_count > 0);
  const one = await ollama.embed({ model: FILE, input: 'Once upon a time' });
  assert.ok(one.embeddings[0].every((v, i) => Math.abs(v - r.embeddings[0][i]) < 1e-6));
  const old = await ollama.embeddings({ model: FILE, prompt: 'Once upon a time' });
  assert.ok(old.embedding.every((v, i) => Math.abs(v - r.embeddings[0][i]) < 1e-6));
});

test('delete, and errors as Ollama sends them', async () => {
  await ollama.delete({ model: PULLED });
  assert.deepEqual((await ollama.list()).models.map((m) => m.name), [FILE]);
  await assert.rejects(ollama.delete({ model: PULLED }), (e) => e.status_code === 404);
  await assert.rejects(ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.name === 'ResponseError' && e.status_code === 404 && /nope/.test(e.error));
  await assert.rejects(ollama.chat({ model: FILE, messages: [{ role: 'user', content: 'x', images: ['aGk='] }] }),
    (e) => e.status_code === 400 && /images/.test(e.error));
});
