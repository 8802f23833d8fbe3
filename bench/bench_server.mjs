// Benchmark of `byoai serve`, printed as one JSON document:
//   - resident memory of an idle server with no model loaded (and after a load)
//   - latency p50/p99 of the endpoints that run no model
//   - time to first token and inter-token latency with 1, 4 and 8 concurrent
//     streaming clients
//   - aggregate tokens/s with continuous batching (--parallel 8) against one
//     request at a time (--parallel 1), same 8 requests
// Plain node (no packages). Usage:
//   node bench/bench_server.mjs BYOAI_BIN SMALL_MODEL.gguf [BIG_MODEL.gguf]
// SMALL_MODEL (stories260K) measures the server's own overhead; BIG_MODEL,
// when given, is used for the TTFT/ITL and batching numbers too.
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const [bin, small, big] = process.argv.slice(2);
if (!bin || !small) {
  console.error('usage: node bench/bench_server.mjs BYOAI_BIN SMALL_MODEL.gguf [BIG_MODEL.gguf]');
  process.exit(2);
}
const log = (s) => process.stderr.write('bench: ' + s + '\n');
const home = mkdtempSync(path.join(os.tmpdir(), 'byoai-bench-'));
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024 * 10) / 10 : null;
}

async function startServer(args) {
  const p = spawn(bin, ['serve', ...args, '--port', '0'], { env: { ...process.env, BYOAI_HOME: home }, stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/[^/\s]+)\//.exec(out);
      if (m) resolve(m[1]);
    });
    p.on('exit', (code) => reject(new Error('byoai serve exited with ' + code)));
  });
  return { p, url };
}

async function stopServer(s) {
  s.p.kill('SIGTERM');
  await new Promise((r) => s.p.on('exit', r));
}

function request(url, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : null;
    const req = http.request(url + path, { method, agent, headers: data ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

// A streamed chat completion: times of the first and every later content chunk.
function stream(url, model, prompt, maxTokens) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify({ model, messages: [{ role: 'user', content: prompt }], max_tokens: maxTokens, temperature: 0, stream: true });
    const t0 = performance.now();
    const times = [];
    let buf = '';
    const req = http.request(url + '/v1/chat/completions', { method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) !== -1) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
          const c = JSON.parse(ev.slice(6));
          if (c.choices && c.choices[0] && c.choices[0].delta && c.choices[0].delta.content) times.push(performance.now());
        }
      });
      res.on('end', () => resolve({ t0, times, end: performance.now() }));
    });
    req.on('error', reject);
    req.write(data);
    req.end();
  });
}

const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] * 1000) / 1000;
};

async function endpointLatency(url, n) {
  const out = {};
  for (const path of ['/api/health', '/api/version', '/v1/models', '/metrics']) {
    const lat = [];
    for (let i = 0; i < 50; i++) await request(url, 'GET', path); // warm up
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      const r = await request(url, 'GET', path);
      lat.push(performance.now() - t);
      if (r.status !== 200) throw new Error(path + ' ' + r.status);
    }
    out[path] = { p50_ms: pct(lat, 50), p99_ms: pct(lat, 99), requests: n };
  }
  return out;
}

const PROMPTS = ['Once upon a time', 'The cat sat', 'Lily wanted', 'One day, Tom', 'The sun was', 'A little bird', 'Sam and Sue', 'The big dog'];

async function concurrency(url, model, clients, maxTokens, rounds) {
  const ttft = [], itl = [];
  let tokens = 0, wall = 0;
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    const res = await Promise.all(Array.from({ length: clients }, (_, i) => stream(url, model, PROMPTS[(i + r) % PROMPTS.length], maxTokens)));
    wall += performance.now() - t;
    for (const s of res) {
      if (s.times.length) ttft.push(s.times[0] - s.t0);
      for (let i = 1; i < s.times.length; i++) itl.push(s.times[i] - s.times[i - 1]);
      tokens += s.times.length;
    }
  }
  return {
    clients, max_tokens: maxTokens, rounds,
    ttft_p50_ms: pct(ttft, 50), ttft_p99_ms: pct(ttft, 99),
    itl_p50_ms: pct(itl, 50), itl_p99_ms: pct(itl, 99),
    aggregate_tokens_per_second: Math.round(tokens / (wall / 1000) * 10) / 10,
  };
}

async function modelBench(model, file, maxTokens, rounds) {
  const res = { model: path.basename(file) };
  let s = await startServer([file, '--alias', model, '--parallel', '8', '--ctx', '1024']);
  await request(s.url, 'POST', '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Once' }], max_tokens: 2 }); // load
  res.rss_mib_loaded = rssMiB(s.p.pid);
  res.streaming = [];
  for (const c of [1, 4, 8]) {
    log(`${model}: ${c} concurrent streaming clients`);
    res.streaming.push(await concurrency(s.url, model, c, maxTokens, rounds));
  }
  const batched = res.streaming[2].aggregate_tokens_per_second;
  await stopServer(s);
  log(`${model}: 8 clients, one request at a time (--parallel 1)`);
  s = await startServer([file, '--alias', model, '--parallel', '1', '--ctx', '1024']);
  await request(s.url, 'POST', '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Once' }], max_tokens: 2 });
  const serial = await concurrency(s.url, model, 8, maxTokens, rounds);
  await stopServer(s);
  res.batching = {
    continuous_batching_tokens_per_second: batched,
    one_at_a_time_tokens_per_second: serial.aggregate_tokens_per_second,
    speedup: Math.round(batched / serial.aggregate_tokens_per_second * 100) / 100,
    one_at_a_time_ttft_p50_ms: serial.ttft_p50_ms, one_at_a_time_ttft_p99_ms: serial.ttft_p99_ms,
  };
  return res;
}

const result = { cpus: os.cpus().length, node: process.version };
try {
  log('idle server memory');
  let s = await startServer([small, '--alias', 'stories260k']);
  await new Promise((r) => setTimeout(r, 1000));
  result.idle_rss_mib_no_model = rssMiB(s.p.pid);
  log('endpoint latency');
  result.endpoints = await endpointLatency(s.url, 2000);
  await stopServer(s);
  result.models = [await modelBench('stories260k', small, 96, 5)];
  if (big) result.models.push(await modelBench('tinyllama-4l', big, 32, 3));
} finally {
  agent.destroy();
  rmSync(home, { recursive: true, force: true });
}
console.log(JSON.stringify(result, null, 2));
