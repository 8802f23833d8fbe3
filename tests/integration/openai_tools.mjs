// Tools and structured output through the official `openai` npm client
// against `byoai serve` running stories260K: the model writes nonsense, so
// every valid result here is the grammar's doing. Tool-call arguments and
// json_schema contents are checked with a real validator (ajv). Run by
// openai_client.sh with BYOAI_URL and BYOAI_KEY set.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import test from 'node:test';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const OpenAI = require('openai');
const Ajv = require('ajv');
const ajv = new (Ajv.default || Ajv)({ strict: true, allErrors: true });
const client = new OpenAI({ baseURL: process.env.BYOAI_URL + '/v1', apiKey: process.env.BYOAI_KEY, maxRetries: 0, timeout: 120000 });
const MODEL = 'stories260k';
const user = (content) => [{ role: 'user', content }];

const weather = {
  type: 'object',
  properties: { city: { type: 'string', minLength: 1, maxLength: 20 }, unit: { enum: ['celsius', 'fahrenheit'] } },
  required: ['city', 'unit'], additionalProperties: false,
};
const add = {
  type: 'object', properties: { a: { type: 'integer', minimum: -100, maximum: 100 }, b: { type: 'integer' } },
  required: ['a', 'b'], additionalProperties: false,
};
const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: weather } },
  { type: 'function', function: { name: 'add', description: 'Add two integers', parameters: add } },
];
const params = { get_weather: ajv.compile(weather), add: ajv.compile(add) };

function checkCall(call) {
  assert.equal(call.type, 'function');
  assert.ok(/^call_/.test(call.id), call.id);
  const v = params[call.function.name];
  assert.ok(v, `a known tool: ${call.function.name}`);
  const args = JSON.parse(call.function.arguments);
  assert.ok(v(args), `${call.function.arguments}: ${ajv.errorsText(v.errors)}`);
}

test('tools, not streamed: "required" gives schema-valid calls', async () => {
  for (let seed = 1; seed <= 6; seed++) {
    const r = await client.chat.completions.create({
      model: MODEL, messages: user('What is the weather in Paris?'), tools, tool_choice: 'required', seed,
      temperature: 1, max_tokens: 300,
    });
    const ch = r.choices[0];
    // a story model may ramble inside the arguments until max_tokens: the budget still closes the call
    assert.ok(['tool_calls', 'length'].includes(ch.finish_reason), JSON.stringify(ch));
    assert.equal(ch.message.role, 'assistant');
    assert.ok(ch.message.tool_calls.length >= 1);
    ch.message.tool_calls.forEach(checkCall);
  }
});

test('tools, streamed: a named tool, calls in the deltas', async () => {
  for (let seed = 1; seed <= 4; seed++) {
    const stream = await client.chat.completions.create({
      model: MODEL, messages: user('Add 2 and 3'), tools, seed, temperature: 1, max_tokens: 200, stream: true,
      tool_choice: { type: 'function', function: { name: 'add' } }, parallel_tool_calls: false,
    });
    const calls = [];
    let finish = null, content = '';
    for await (const c of stream) {
      const ch = c.choices[0];
      if (!ch) continue;
      content += ch.delta.content || '';
      for (const d of ch.delta.tool_calls || []) {
        calls[d.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
        const t = calls[d.index];
        if (d.id) t.id = d.id;
        if (d.function?.name) t.function.name += d.function.name;
        if (d.function?.arguments) t.function.arguments += d.function.arguments;
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    assert.ok(['tool_calls', 'length'].includes(finish), finish);
    assert.equal(content, '');
    assert.equal(calls.length, 1, 'parallel_tool_calls false: one call');
    assert.equal(calls[0].function.name, 'add');
    checkCall(calls[0]);
  }
});

test('tools: auto, none, and a conversation with tool results', async () => {
  const auto = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), tools, temperature: 0, max_tokens: 30 });
  assert.equal(typeof auto.choices[0].message.content, 'string'); // a story model just writes text
  assert.equal(auto.choices[0].finish_reason, 'length');
  const none = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), tools, tool_choice: 'none', temperature: 0, max_tokens: 10 });
  assert.equal(none.choices[0].message.tool_calls, undefined);
  const history = [
    { role: 'user', content: 'Weather in Oslo?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo","unit":"celsius"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": -3}' },
  ];
  const r = await client.chat.completions.create({ model: MODEL, messages: history, tools, tool_choice: 'required', max_tokens: 200, seed: 9 });
  r.choices[0].message.tool_calls.forEach(checkCall);
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: user('x'), tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { s: { type: 'string', pattern: 'a+' } } } } }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'tools[0]' && /'pattern'/.test(e.message));
});

const schemas = [
  { type: 'object', properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 150 } }, required: ['name', 'age'], additionalProperties: false },
  { type: 'object', properties: { items: { type: 'array', items: { type: 'number' }, minItems: 1, maxItems: 4 } }, required: ['items'], additionalProperties: false },
  { type: 'object', properties: { color: { enum: ['red', 'green', 'blue'] }, ok: { type: 'boolean' } }, required: ['color', 'ok'], additionalProperties: false },
  { type: 'object', properties: { tags: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 5 }, maxItems: 3 } }, required: ['tags'], additionalProperties: false },
  { type: 'object', properties: { note: { type: ['string', 'null'] }, score: { type: 'number', minimum: 0, maximum: 1 } }, required: ['note', 'score'], additionalProperties: false },
  { $defs: { p: { type: 'object', properties: { x: { type: 'integer' }, y: { type: 'integer' } }, required: ['x', 'y'], additionalProperties: false } },
    type: 'object', properties: { from: { $ref: '#/$defs/p' }, to: { $ref: '#/$defs/p' } }, required: ['from', 'to'], additionalProperties: false },
  { type: 'object', properties: { shape: { anyOf: [
    { type: 'object', properties: { kind: { const: 'circle' }, r: { type: 'number' } }, required: ['kind', 'r'], additionalProperties: false },
    { type: 'object', properties: { kind: { const: 'square' }, side: { type: 'integer' } }, required: ['kind', 'side'], additionalProperties: false }] } },
    required: ['shape'], additionalProperties: false },
  { $defs: { list: { type: 'object', properties: { v: { type: 'integer' }, next: { anyOf: [{ $ref: '#/$defs/list' }, { type: 'null' }] } }, required: ['v', 'next'], additionalProperties: false } },
    type: 'object', properties: { head: { $ref: '#/$defs/list' } }, required: ['head'], additionalProperties: false },
  { type: 'object', properties: { a: { type: 'object', properties: { b: { type: 'object', properties: { c: { const: 42 } }, required: ['c'], additionalProperties: false } }, required: ['b'], additionalProperties: false } }, required: ['a'], additionalProperties: false },
  { type: 'object', properties: { id: { type: 'integer', exclusiveMinimum: -3, exclusiveMaximum: 3 }, when: { type: 'string', format: 'date' }, flag: { type: 'boolean' } }, required: ['id', 'flag'], additionalProperties: false },
];

test('json_schema: ten schemas, streamed and not, validate with ajv', async () => {
  let stops = 0;
  const lax = new (Ajv.default || Ajv)({ strict: true, validateFormats: false });
  for (let i = 0; i < schemas.length; i++) {
    const validate = lax.compile(schemas[i]);
    for (let seed = 1; seed <= 4; seed++) {
      const args = {
        model: MODEL, messages: user('Once upon a time'), temperature: 1, seed, max_tokens: 400,
        response_format: { type: 'json_schema', json_schema: { name: `s${i}`, strict: true, schema: schemas[i] } },
      };
      let text, finish;
      if (seed % 2) {
        const r = await client.chat.completions.create(args);
        text = r.choices[0].message.content;
        finish = r.choices[0].finish_reason;
      } else {
        text = '';
        for await (const c of await client.chat.completions.create({ ...args, stream: true })) {
          const ch = c.choices[0];
          if (!ch) continue;
          text += ch.delta.content || '';
          if (ch.finish_reason) finish = ch.finish_reason;
        }
      }
      // stop, or length when the model rambled (inside a string, say) until the budget closed it
      assert.ok(['stop', 'length'].includes(finish), `schema ${i} seed ${seed}: ${finish}`);
      const v = JSON.parse(text);
      assert.ok(validate(v), `schema ${i} seed ${seed}: ${text}: ${lax.errorsText(validate.errors)}`);
      stops += finish === 'stop';
    }
  }
  assert.ok(stops >= 10, `most answers end by themselves (${stops} of 40)`);
});

test('json_schema: a small max_tokens still closes the JSON; too small says length', async () => {
  const schema = schemas[0];
  const validate = ajv.compile(schema);
  const r = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), max_tokens: 30, seed: 3, temperature: 1.5,
    response_format: { type: 'json_schema', json_schema: { name: 'p', schema } } });
  assert.ok(validate(JSON.parse(r.choices[0].message.content)), r.choices[0].message.content);
  const tiny = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), max_tokens: 3,
    response_format: { type: 'json_schema', json_schema: { name: 'p', schema } } });
  assert.equal(tiny.choices[0].finish_reason, 'length');
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: user('x'),
    response_format: { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'object', properties: { a: { not: {} } } } } } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'response_format.json_schema.schema' && /'not'/.test(e.message));
});
