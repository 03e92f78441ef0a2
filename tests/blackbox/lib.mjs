// Black-box harness for duckspread: a real redis-server and the real binary,
// each on spare loopback ports, in temporary directories that are always
// removed (test hooks and process exit handlers), plus an HTTP client whose
// every response body is validated against web/openapi.json (Ajv, JSON Schema
// 2020-12, the schema of that operation and status).
//
// Environment:
//   DS_BIN            the binary (default build/duckspread of this tree)
//   DS_DBQUERY        the file reader (default tests/dbquery next to the binary)
//   DS_OPENAPI        the OpenAPI document (default web/openapi.json)
//   DS_SCALE          demo facts (default 20000)
//   DS_BLACKBOX_LOGS  where server and redis logs are kept (default tests/tmp/blackbox)
//   DS_KEEP_TMP=1     keep the temporary data directories

import { spawn, spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient, createCluster } from 'redis';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

export { sleep };

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '..', '..');
export const BIN = process.env.DS_BIN || path.join(ROOT, 'build', 'duckspread');
// reads the DuckDB file after the server stopped (tests/tools/dbquery.c)
export const DBQUERY = process.env.DS_DBQUERY || path.join(path.dirname(BIN), 'tests', 'dbquery');
export const SCALE = process.env.DS_SCALE || '20000';
export const OPENAPI = process.env.DS_OPENAPI || path.join(ROOT, 'web', 'openapi.json');
export const LOG_DIR = process.env.DS_BLACKBOX_LOGS || path.join(ROOT, 'tests', 'tmp', 'blackbox');
export const MODEL = 'sales';

// ---------------------------------------------------------------------------
// cleanup: every process and temp dir we create is registered here

const children = new Set();
const tmpDirs = new Set();

function cleanupSync() {
    for (const c of children) {
        try {
            if (c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
        } catch {
            /* already gone */
        }
    }
    children.clear();
    if (process.env.DS_KEEP_TMP !== '1') {
        for (const d of tmpDirs) {
            try {
                fs.rmSync(d, { recursive: true, force: true });
            } catch {
                /* best effort */
            }
        }
        tmpDirs.clear();
    }
}
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        cleanupSync();
        process.exit(128 + (os.constants.signals[sig] || 1));
    });
}
process.on('uncaughtException', (e) => {
    console.error(e);
    cleanupSync();
    process.exit(1);
});

export function mkTmp(prefix) {
    // short paths: unix socket paths are limited to 107 bytes
    const d = fs.mkdtempSync(path.join(os.tmpdir(), `dsbb-${prefix}-`));
    tmpDirs.add(d);
    return d;
}

function rmTmp(d) {
    if (process.env.DS_KEEP_TMP === '1') return;
    fs.rmSync(d, { recursive: true, force: true });
    tmpDirs.delete(d);
}

export async function sparePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.unref();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

function logFile(name) {
    fs.mkdirSync(LOG_DIR, { recursive: true });
    return path.join(LOG_DIR, `${name}-${process.pid}-${Date.now()}.log`);
}

function exitOf(child) {
    if (child.exitCode !== null || child.signalCode !== null)
        return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
    return new Promise((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
    );
}

async function withTimeout(p, ms, what) {
    let timer;
    const t = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    });
    try {
        return await Promise.race([p, t]);
    } finally {
        clearTimeout(timer);
    }
}

// ---------------------------------------------------------------------------
// redis-server

function redisPing(port, timeoutMs = 500, password = null) {
    return new Promise((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' });
        let buf = '';
        const done = (ok) => {
            s.destroy();
            resolve(ok);
        };
        s.setTimeout(timeoutMs, () => done(false));
        s.on('error', () => done(false));
        s.on('connect', () => s.write(password ? `AUTH ${password}\r\nPING\r\n` : 'PING\r\n'));
        s.on('data', (d) => {
            buf += d;
            if (buf.includes('+PONG') || buf.startsWith('-')) done(buf.includes('+PONG'));
        });
    });
}

export class Redis {
    // opts: {password} (requirepass; the url carries it), args (more of
    // redis-server's, e.g. ['--replicaof', '127.0.0.1', port])
    constructor(name, opts = {}) {
        this.password = opts.password || null;
        this.args = opts.args || [];
        this.name = name;
        this.dir = mkTmp(`redis-${name}`);
        this.port = null;
        this.proc = null;
        this.log = logFile(`redis-${name}`);
        this._client = null;
    }

    get url() {
        return this.password ? `redis://:${this.password}@127.0.0.1:${this.port}` : `redis://127.0.0.1:${this.port}`;
    }

    async start() {
        if (this.port === null) this.port = await sparePort();
        const args = [
            '--port', String(this.port), '--bind', '127.0.0.1',
            '--save', '', '--appendonly', 'yes', '--appendfsync', 'always',
            '--dir', this.dir, '--daemonize', 'no', '--logfile', this.log,
            ...(this.password ? ['--requirepass', this.password] : []), ...this.args,
        ];
        const p = spawn('redis-server', args, { stdio: 'ignore' });
        children.add(p);
        p.once('exit', () => children.delete(p));
        this.proc = p;
        const t0 = Date.now();
        while (!(await redisPing(this.port, 500, this.password))) {
            if (p.exitCode !== null) throw new Error(`redis-server exited (${p.exitCode}); see ${this.log}`);
            if (Date.now() - t0 > 10000) throw new Error(`redis-server did not answer PING; see ${this.log}`);
            await sleep(25);
        }
        return this;
    }

    // SIGTERM (redis fsyncs its AOF and exits) or SIGKILL
    async stop(signal = 'SIGTERM') {
        if (this._client) {
            const c = this._client;
            this._client = null;
            try {
                c.destroy();
            } catch {
                /* ignore */
            }
        }
        if (!this.proc) return;
        const p = this.proc;
        this.proc = null;
        if (p.exitCode === null && p.signalCode === null) p.kill(signal);
        await withTimeout(exitOf(p), 15000, 'redis-server exit');
    }

    async client() {
        if (this._client) return this._client;
        const c = createClient({ url: this.url, socket: { reconnectStrategy: false } });
        c.on('error', () => {});
        await c.connect();
        this._client = c;
        return c;
    }

    async xlen(key) {
        return (await this.client()).xLen(key);
    }

    // [{id, message: {field: value}}]
    async xrange(key, start = '-', end = '+') {
        return (await this.client()).xRange(key, start, end);
    }

    async dispose() {
        await this.stop('SIGKILL');
        rmTmp(this.dir);
    }
}

// A local Redis Cluster of scripts/redis-cluster.sh (3 primaries, 3
// replicas, appendfsync always); a Server given it runs --redis-cluster.
export class Cluster {
    constructor(name, opts = {}) {
        this.name = name;
        this.opts = opts; // {tls, acl}: not used by the tests yet
        this.dir = mkTmp(`cluster-${name}`);
        this.cluster = true;
        this.url = null;
        this._client = null;
    }

    script(...args) {
        const r = spawnSync(path.join(ROOT, 'scripts', 'redis-cluster.sh'), [args[0], this.dir, ...args.slice(1)],
            { encoding: 'utf8', timeout: 120000 });
        fs.appendFileSync(logFile(`cluster-${this.name}`), `$ redis-cluster.sh ${args.join(' ')}\n${r.stdout}${r.stderr}`);
        assert.equal(r.status, 0, `redis-cluster.sh ${args.join(' ')}: ${r.stderr}`);
        return r.stdout.trim();
    }

    async start() {
        const out = this.script('start', ...(this.opts.tls ? ['--tls'] : []), ...(this.opts.acl ? ['--acl'] : []));
        this.url = out.split('\n').pop().trim();
        return this;
    }

    // the port of the primary serving a key's slot
    owner(key) {
        return Number(this.script('owner', '--key', key));
    }

    // the ports of the primaries, from status lines "127.0.0.1:P master ..."
    primaries() {
        return this.script('status').split('\n').filter((l) => / primary /.test(l))
            .map((l) => Number(/:(\d+)/.exec(l)[1]));
    }

    // the port of a replica of the primary on port
    replicaOf(port) {
        const l = this.script('status').split('\n').find((x) => x.endsWith(` replica of 127.0.0.1:${port}`));
        return l ? Number(/:(\d+)/.exec(l)[1]) : null;
    }

    pid(port) {
        return Number(fs.readFileSync(path.join(this.dir, `node-${port}`, 'redis.pid'), 'utf8'));
    }

    async client() {
        if (this._client) return this._client;
        const seeds = this.url.replace(/^redis:\/\//, '').split(',');
        const c = createCluster({ rootNodes: seeds.map((s) => ({ url: `redis://${s}` })) });
        c.on('error', () => {});
        await c.connect();
        this._client = c;
        return c;
    }

    async closeClient() {
        const c = this._client;
        this._client = null;
        if (c) await c.disconnect().catch(() => {});
    }

    async xlen(key) {
        return (await this.client()).xLen(key);
    }

    async xrange(key, start = '-', end = '+') {
        return (await this.client()).xRange(key, start, end);
    }

    async dispose() {
        await this.closeClient();
        if (fs.existsSync(path.join(this.dir, 'nodes'))) {
            try {
                this.script('stop');
            } catch (e) {
                console.error('cluster stop:', e.message);
            }
        }
        rmTmp(this.dir);
    }
}

// setup() of the files that run against a cluster (useCluster before they
// are imported): their server uses it instead of a redis-server of its own.
let setupCluster = null;
export function useCluster(cluster) {
    setupCluster = cluster;
}

// ---------------------------------------------------------------------------
// OpenAPI response validation

let validatorState = null;

function loadValidator() {
    if (validatorState) return validatorState;
    if (!fs.existsSync(OPENAPI))
        throw new Error(`${OPENAPI} is missing: responses cannot be validated`);
    const doc = JSON.parse(fs.readFileSync(OPENAPI, 'utf8'));
    assert.match(String(doc.openapi), /^3\.1\./, 'web/openapi.json must be OpenAPI 3.1');
    assert.ok(doc.paths && doc.components && doc.components.schemas, 'openapi.json lacks paths/components');
    const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
    addFormats(ajv);
    const ID = 'https://duckspread.invalid/openapi.json';
    ajv.addSchema({ ...doc, $id: ID });
    const ops = [];
    for (const [tmpl, item] of Object.entries(doc.paths)) {
        const rx = new RegExp(
            '^' + tmpl.split(/(\{[^}]+\})/).map((s) => (s.startsWith('{') ? '([^/]+)' : s.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))).join('') + '$',
        );
        for (const m of ['get', 'post', 'put', 'patch', 'delete']) {
            if (item[m]) ops.push({ tmpl, rx, method: m.toUpperCase(), op: item[m], ptr: ['paths', tmpl, m] });
        }
    }
    const esc = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');
    const cache = new Map();
    const deref = (obj, ptr) => {
        // follow a local $ref of a response object; returns [object, pointer]
        let guard = 0;
        while (obj && obj.$ref && guard++ < 10) {
            const r = obj.$ref;
            assert.ok(r.startsWith('#/'), `non-local $ref ${r}`);
            ptr = r.slice(2).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
            obj = ptr.reduce((o, k) => (o ? o[k] : undefined), doc);
        }
        return [obj, ptr];
    };
    function schemaFor(method, pathname, status) {
        const o = ops.find((x) => x.method === method && x.rx.test(pathname));
        if (!o) return { error: `no operation ${method} ${pathname} in openapi.json` };
        const rs = o.op.responses || {};
        let key = String(status);
        if (!rs[key]) key = `${String(status)[0]}XX`;
        if (!rs[key]) key = 'default';
        if (!rs[key]) return { error: `${method} ${o.tmpl}: status ${status} is not documented in openapi.json` };
        const [resp, rptr] = deref(rs[key], [...o.ptr, 'responses', key]);
        const content = (resp && resp.content) || {};
        const id = `${method} ${o.tmpl} ${key}`;
        return { id, tmpl: o.tmpl, content, rptr };
    }
    function validatorAt(ptr) {
        const ref = `${ID}#/${ptr.map((s) => esc(String(s))).join('/')}`;
        let v = cache.get(ref);
        if (!v) {
            v = ajv.compile({ $ref: ref });
            cache.set(ref, v);
        }
        return v;
    }
    validatorState = { doc, ajv, schemaFor, validatorAt, ID };
    return validatorState;
}

export class ContractError extends assert.AssertionError {}

function contractFail(message) {
    return new ContractError({ message, operator: 'openapi' });
}

// Validates one response (status, content type, parsed body) against the
// operation's documented response. Throws on any mismatch.
export function validateResponse(method, pathname, status, contentType, body, text) {
    const V = loadValidator();
    const s = V.schemaFor(method, pathname, status);
    if (s.error) throw contractFail(s.error);
    const types = Object.keys(s.content);
    if (types.length === 0) return; // documented without a body (e.g. 101)
    const ct = (contentType || '').split(';')[0].trim().toLowerCase();
    if (!types.includes(ct))
        throw contractFail(`${s.id}: content type '${ct}' not documented (documented: ${types.join(', ')}); body: ${String(text).slice(0, 300)}`);
    if (ct !== 'application/json') return; // text/plain, text/html, text/event-stream: no JSON schema
    const media = s.content[ct];
    if (!media.schema) throw contractFail(`${s.id}: no schema for ${ct}`);
    const v = V.validatorAt([...s.rptr, 'content', ct, 'schema']);
    if (!v(body)) {
        throw contractFail(
            `${s.id}: response body does not match openapi.json: ${V.ajv.errorsText(v.errors, { separator: '; ' })}\nbody: ${String(text).slice(0, 800)}`,
        );
    }
}

// Validates a value against #/components/schemas/<name>.
export function validateSchema(name, value, what = name) {
    const V = loadValidator();
    assert.ok(V.doc.components.schemas[name], `openapi.json has no components.schemas.${name}`);
    const v = V.validatorAt(['components', 'schemas', name]);
    if (!v(value))
        throw contractFail(`${what} does not match #/components/schemas/${name}: ${V.ajv.errorsText(v.errors, { separator: '; ' })}\nvalue: ${JSON.stringify(value).slice(0, 800)}`);
}

// ---------------------------------------------------------------------------
// HTTP client

export function makeClient(base, extraHeaders = {}) {
    const headers = { 'Content-Type': 'application/json', ...extraHeaders };
    async function request(method, p, body, opts = {}) {
        const url = new URL(p, base);
        const init = { method, headers: { ...headers, ...(opts.headers || {}) } };
        if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
        init.signal = AbortSignal.timeout(opts.timeout ?? 30000);
        const t0 = performance.now();
        const res = await fetch(url, init);
        const text = await res.text();
        const ms = performance.now() - t0;
        const ct = res.headers.get('content-type') || '';
        let json;
        if (ct.startsWith('application/json')) {
            try {
                json = JSON.parse(text);
            } catch (e) {
                throw contractFail(`${method} ${url.pathname}: ${res.status} with invalid JSON: ${e.message}: ${text.slice(0, 300)}`);
            }
        }
        if (opts.validate !== false) validateResponse(method, url.pathname, res.status, ct, json, text);
        return { status: res.status, body: json, text, headers: res.headers, ms, tEnd: performance.now() };
    }
    return {
        base,
        request,
        get: (p, opts) => request('GET', p, undefined, opts),
        post: (p, body, opts) => request('POST', p, body, opts),
        del: (p, opts) => request('DELETE', p, undefined, opts),
    };
}

// ---------------------------------------------------------------------------
// duckspread server

export class Server {
    // opts: {name, redis (Redis; null: the server's own private redis-server),
    //        dataDir?, demo=true, scale, extraArgs, env,
    //        headers (sent with every request of server.http, e.g. a key),
    //        command ('serve', or 'replica' with from: a backup file)}
    constructor(opts) {
        this.headers = opts.headers || {};
        this.command = opts.command || 'serve';
        this.from = opts.from || null;
        this.name = opts.name;
        this.redis = opts.redis;
        this.dataDir = opts.dataDir || mkTmp(`data-${opts.name}`);
        this.demo = opts.demo ?? true;
        this.scale = opts.scale || SCALE;
        this.extraArgs = opts.extraArgs || [];
        this.env = opts.env || {};
        this.port = null;
        this.proc = null;
        this.log = logFile(`server-${opts.name}`);
        this.starts = 0;
    }

    get base() {
        return `http://127.0.0.1:${this.port}`;
    }

    get pid() {
        return this.proc ? this.proc.pid : null;
    }

    alive() {
        return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
    }

    // Starts the process; waits for /ready 200 unless waitReady is false.
    async start({ env = {}, waitReady = true, timeoutMs = 60000 } = {}) {
        assert.ok(!this.alive(), 'server already running');
        if (this.port === null) this.port = await sparePort();
        const serve = this.command === 'serve';
        const args = [this.command, '--data', this.dataDir, '--listen', `127.0.0.1:${this.port}`,
            ...(this.redis ? ['--redis', this.redis.url] : []),
            ...(this.redis?.cluster ? ['--redis-cluster'] : []),
            ...(serve && this.demo ? ['--demo', '--scale', String(this.scale)] : []),
            ...(this.from ? ['--from', this.from] : []), ...this.extraArgs];
        fs.appendFileSync(this.log, `\n==== start #${++this.starts} ${new Date().toISOString()} env=${JSON.stringify(env)} ${BIN} ${args.join(' ')}\n`);
        const out = fs.openSync(this.log, 'a');
        const childEnv = { ...process.env, ...this.env, ...env };
        delete childEnv.REDIS_URL;
        if (!('DS_CRASH_AT' in env) && !('DS_CRASH_AT' in this.env)) delete childEnv.DS_CRASH_AT;
        const p = spawn(BIN, args, { stdio: ['ignore', out, out], env: childEnv });
        fs.closeSync(out);
        children.add(p);
        p.once('exit', (code, signal) => {
            children.delete(p);
            try {
                fs.appendFileSync(this.log, `==== exit code=${code} signal=${signal} ${new Date().toISOString()}\n`);
            } catch {
                /* tmp gone */
            }
        });
        this.proc = p;
        this.exited = exitOf(p);
        this.http = makeClient(this.base, this.headers);
        if (waitReady) await this.waitReady(timeoutMs);
        return this;
    }

    async waitReady(timeoutMs = 60000) {
        const t0 = Date.now();
        for (;;) {
            if (!this.alive()) throw new Error(`server exited during start (${this.proc.exitCode}/${this.proc.signalCode}); log ${this.log}\n${this.tail()}`);
            try {
                const r = await this.http.get('/ready', { timeout: 2000 });
                if (r.status === 200) return r;
            } catch (e) {
                if (e instanceof ContractError) throw e;
            }
            if (Date.now() - t0 > timeoutMs) throw new Error(`server not ready after ${timeoutMs} ms; log ${this.log}\n${this.tail()}`);
            await sleep(50);
        }
    }

    // The private redis-server (started without --redis): its socket, and
    // the pids the log names, in order (the first start, then each restart).
    get privateRedisSocket() {
        return path.join(this.dataDir, 'redis', 'redis.sock');
    }

    privateRedisPids() {
        const text = fs.readFileSync(this.log, 'utf8');
        return [...text.matchAll(/redis: (?:started a|restarted the) private redis-server \(pid (\d+)/g)].map((m) => Number(m[1]));
    }

    tail(n = 30) {
        try {
            return fs.readFileSync(this.log, 'utf8').split('\n').slice(-n).join('\n');
        } catch {
            return '';
        }
    }

    // SIGTERM and wait: returns {code, signal, ms}
    async stop({ timeoutMs = 30000 } = {}) {
        if (!this.alive()) return { code: this.proc?.exitCode ?? null, signal: this.proc?.signalCode ?? null, ms: 0 };
        const t0 = Date.now();
        this.proc.kill('SIGTERM');
        const r = await withTimeout(this.exited, timeoutMs, `server exit after SIGTERM (log ${this.log})`);
        return { ...r, ms: Date.now() - t0 };
    }

    async kill9() {
        if (!this.alive()) return;
        this.proc.kill('SIGKILL');
        await withTimeout(this.exited, 10000, 'server exit after SIGKILL');
    }

    // SIGTERM (expects exit 0), then start again on the same data dir, Redis and port
    async restart(startOpts = {}) {
        const r = await this.stop();
        assert.equal(r.code, 0, `server exit code after SIGTERM (signal ${r.signal}); log ${this.log}`);
        await this.start(startOpts);
        return r;
    }

    async dispose() {
        if (this.alive()) {
            this.proc.kill('SIGKILL');
            await withTimeout(this.exited, 10000, 'server exit').catch(() => {});
        }
        rmTmp(this.dataDir);
    }

    // convenience
    get(p, opts) {
        return this.http.get(p, opts);
    }

    post(p, body, opts) {
        return this.http.post(p, body, opts);
    }
}

// One redis-server and one duckspread server with the demo model; cleaned up
// by the test file's after hook (and by the exit handler in any case).
export async function setup(name, { serverOpts = {}, start = true } = {}) {
    const redis = setupCluster || await new Redis(name).start();
    const server = new Server({ name, redis, ...serverOpts });
    if (start) await server.start();
    return { redis, server };
}

export async function teardown(...things) {
    for (const t of things) {
        if (t) await t.dispose().catch((e) => console.error('teardown:', e));
    }
}

// ---------------------------------------------------------------------------
// model helpers

const cellQuery = (cell) =>
    Object.entries(cell)
        .map(([d, m]) => `&${encodeURIComponent(d)}=${encodeURIComponent(m)}`)
        .join('');

// Reads one cell: returns the number (throws on a non-200).
export async function readCell(server, cell, measure = 'quantity') {
    const r = await server.get(`/v1/models/${MODEL}/cell?measure=${encodeURIComponent(measure)}${cellQuery(cell)}`);
    assert.equal(r.status, 200, `GET cell ${JSON.stringify(cell)}: ${r.text}`);
    return r.body.value;
}

export async function readCellFull(server, cell, measure = 'quantity') {
    return server.get(`/v1/models/${MODEL}/cell?measure=${encodeURIComponent(measure)}${cellQuery(cell)}`);
}

export async function modelSeq(server) {
    const r = await server.get(`/v1/models/${MODEL}`);
    assert.equal(r.status, 200, r.text);
    return r.body.seq;
}

export async function memberChildren(server, dim, parent) {
    const q = parent === undefined ? '' : `?parent=${encodeURIComponent(parent)}`;
    const r = await server.get(`/v1/models/${MODEL}/dimensions/${dim}/members${q}`);
    assert.equal(r.status, 200, r.text);
    return r.body.members;
}

// All events with seq > since up to (at least) untilSeq, following `next`.
export async function feed(server, since, untilSeq = null, { path: p = 'get_updates', detail = null, model = MODEL } = {}) {
    const out = [];
    let cur = since;
    const d = detail ? `&detail=${detail}` : '';
    for (let i = 0; i < 100000; i++) {
        const url = p === 'get_updates'
            ? `/get_updates?table=${model}&since=${cur}&timeout=0${d}`
            : `/v1/models/${model}/changes?since=${cur}&timeout=0${d}`;
        const r = await server.get(url);
        assert.equal(r.status, 200, `${url}: ${r.text}`);
        const { updates, next } = r.body;
        out.push(...updates);
        if (updates.length === 0) {
            assert.equal(next, cur, `${url}: empty updates must answer next = since`);
            break;
        }
        assert.equal(next, updates[updates.length - 1].seq, `${url}: next must be the highest seq included`);
        cur = next;
        if (untilSeq !== null && cur >= untilSeq) break;
    }
    return out;
}

export const isLeafCell = (cell) =>
    /^P-\d+$/.test(cell.product || '') && /^C-\d+$/.test(cell.customer || '') && /^\d{4}-\d{2}$/.test(cell.time || '');

export const cellKey = (cell) => JSON.stringify(Object.keys(cell).sort().map((k) => [k, cell[k]]));

// Events in seq order: for every cell in changes that `filter` selects (by
// default the leaf cells), old = previous new. `known` maps cellKey -> value
// before the first event (optional). A cell listed more than once in one
// event must repeat the same old and new (the repeats are collected in
// `duplicates`, which a dedicated test checks). Returns the map of last new
// values. Throws (assert) on the first inconsistency.
export function checkChains(events, known = new Map(), filter = isLeafCell, column = 'quantity', duplicates = []) {
    const last = new Map(known);
    for (const ev of events) {
        const parts = ev.kind === 'batch' ? ev.writes || [] : [ev];
        for (const w of parts) {
            const seen = new Map();
            for (const ch of w.changes || []) {
                if (ch.column !== column || !filter(ch.cell)) continue;
                const k = cellKey(ch.cell);
                const prev = seen.get(k);
                if (prev) {
                    assert.ok(prev.old === ch.old && prev.new === ch.new,
                        `seq ${ev.seq} (${ev.request_id}): cell ${k} listed twice with different values: ${JSON.stringify(prev)} and ${JSON.stringify(ch)}`);
                    duplicates.push({ seq: ev.seq, cell: ch.cell });
                    continue;
                }
                seen.set(k, ch);
                if (last.has(k))
                    assert.equal(ch.old, last.get(k), `seq ${ev.seq} (${ev.request_id}): cell ${k} old ${ch.old} != previous new ${last.get(k)}`);
                last.set(k, ch.new);
            }
        }
    }
    return last;
}

// Waits for a condition, never for a time: calls cond() (it may be async)
// every intervalMs until it returns something truthy, and returns that;
// fails after timeoutMs (generous: sanitizer builds are slow) saying what()
// (or what) was awaited.
export async function waitFor(cond, what, { timeoutMs = 60000, intervalMs = 50 } = {}) {
    const t0 = Date.now();
    for (;;) {
        const v = await cond();
        if (v) return v;
        if (Date.now() - t0 > timeoutMs) assert.fail(`not within ${timeoutMs} ms: ${typeof what === 'function' ? what() : what}`);
        await sleep(intervalMs);
    }
}

// The server's log: its size now, and what was written from such an offset on.
export const logSize = (server) => fs.statSync(server.log).size;
export const logFrom = (server, offset) => fs.readFileSync(server.log).subarray(offset).toString('utf8');

// Runs fn(i) for i in [0, n) with at most `width` in flight.
export async function pool(n, width, fn) {
    let next = 0;
    const results = new Array(n);
    async function worker() {
        for (;;) {
            const i = next++;
            if (i >= n) return;
            results[i] = await fn(i);
        }
    }
    await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
    return results;
}

// Waits until `pred()` (sync or async) is truthy, checking every `everyMs`;
// throws after `ms` with what `what()` says. Returns the milliseconds waited.
export async function waitUntil(pred, ms, what = () => '', everyMs = 20) {
    const t0 = Date.now();
    for (;;) {
        if (await pred()) return Date.now() - t0;
        if (Date.now() - t0 > ms) throw new Error(`timeout after ${ms} ms: ${what()}`);
        await sleep(everyMs);
    }
}

// Waits until GET /ready answers `want` (200 or 503); returns {r, ms}.
export async function waitReadyStatus(server, want, ms) {
    const t0 = Date.now();
    let last;
    while (Date.now() - t0 < ms) {
        try {
            last = await server.get('/ready', { timeout: 2000 });
            if (last.status === want) return { r: last, ms: Date.now() - t0 };
        } catch (e) {
            if (e instanceof ContractError) throw e;
            last = { error: String(e) };
        }
        await sleep(50);
    }
    assert.fail(`/ready did not answer ${want} within ${ms} ms; last: ${JSON.stringify(last?.body ?? last)}`);
}

export function metricValue(text, name) {
    const m = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([-+0-9.eE]+)\\s*$`, 'm'));
    return m ? Number(m[1]) : null;
}

// Parses a text/event-stream from a fetch Response; calls onEvent({id, event, data}).
export async function readSSE(res, onEvent, signal) {
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let cur = { data: [] };
    try {
        for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += dec.decode(value, { stream: true });
            let i;
            while ((i = buf.search(/\r\n|\n|\r/)) >= 0) {
                const line = buf.slice(0, i);
                buf = buf.slice(i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1));
                if (line === '') {
                    if (cur.data.length || cur.event || cur.id !== undefined)
                        onEvent({ id: cur.id, event: cur.event || 'message', data: cur.data.join('\n') });
                    cur = { data: [] };
                    continue;
                }
                if (line.startsWith(':')) continue;
                const c = line.indexOf(':');
                const field = c < 0 ? line : line.slice(0, c);
                let val = c < 0 ? '' : line.slice(c + 1);
                if (val.startsWith(' ')) val = val.slice(1);
                if (field === 'data') cur.data.push(val);
                else if (field === 'event') cur.event = val;
                else if (field === 'id') cur.id = val;
            }
            if (signal?.aborted) break;
        }
    } catch (e) {
        if (!signal?.aborted) throw e;
    }
}

export function rid(prefix) {
    return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

export function writeBody(cell, amount, extra = {}) {
    return { table: MODEL, column: 'quantity', cell, ...amount, ...extra };
}

export function hasRedisServer() {
    return spawnSync('redis-server', ['--version']).status === 0;
}

// ---------------------------------------------------------------------------
// the delta-write oracle (kill -9 of the server, restarts of Redis)
//
// Clients send +1 deltas with request_ids to two sibling leaves and (every
// fourth) to their parent total, each request retried with its id until it
// is answered 200. Afterwards: one distinct seq per acknowledged request and
// nothing else (nothing applied twice, none lost), no gap in the feed, each
// seq once on the response stream, in seq order every change's old value is
// the previous new value, and the stored values are the start plus the
// acknowledged deltas.

export const DELTA_CELLS = [
    { product: 'P-0045', customer: 'C-0007', time: '2025-08' },
    { product: 'P-0046', customer: 'C-0007', time: '2025-08' },
];
export const DELTA_TOTAL = { product: 'S02-B3-F3', customer: 'C-0007', time: '2025-08' }; // P-0045 + P-0046

// Sets the leaves to `value` (away from zero, so that -1 on the total is
// never refused); returns the oracle's starting point.
export async function deltaStart(server, cells = DELTA_CELLS, total = DELTA_TOTAL, value = 1000) {
    const fam = await server.get(`/v1/models/${MODEL}/dimensions/product/members?parent=${total.product}`);
    assert.deepEqual(fam.body.members.map((m) => m.key), cells.map((c) => c.product), 'the family holds the leaves');
    for (const c of cells) {
        const w = await server.post('/update_cell', writeBody(c, { value }));
        assert.equal(w.status, 200, w.text);
    }
    return {
        cells, total, seq0: await modelSeq(server),
        start: new Map(cells.map((c) => [cellKey(c), value])), startTotal: value * cells.length,
    };
}

// Starts `clients` writers of `per` requests each (per = Infinity: until
// stop()); returns {done, stop, acked (request_id -> seq), attempts: {n,
// failed}}. A request not answered 200 before deadlineMs fails the run.
// onAck(n) is called with the count right after each acknowledgement.
export function deltaWriters(server, st, { clients = 8, per = 40, deadlineMs = 60000, tag = 'dw', timeout = 5000, onAck = null } = {}) {
    const acked = new Map();
    const attempts = { n: 0, failed: 0 };
    const deadline = Date.now() + deadlineMs;
    let stopped = false;
    const client = async (c) => {
        for (let i = 0; i < per && !stopped; i++) {
            const id = `${tag}-${c}-${i}-${rid('k')}`;
            const target = i % 4 === 3 ? st.total : st.cells[(c + i) % st.cells.length];
            const body = writeBody(target, { delta: 1 }, { request_id: id });
            for (;;) {
                assert.ok(Date.now() < deadline, `request ${id} not acknowledged before the deadline`);
                attempts.n++;
                try {
                    const r = await server.post('/update_cell', body, { timeout });
                    if (r.status === 200) {
                        assert.equal(r.body.request_id, id);
                        acked.set(id, r.body.seq);
                        if (onAck) onAck(acked.size);
                        break;
                    }
                    assert.ok([202, 503].includes(r.status), `unexpected answer for ${id}: ${r.status} ${r.text}`);
                } catch (e) {
                    if (e instanceof assert.AssertionError) throw e;
                }
                attempts.failed++;
                await sleep(50);
            }
        }
    };
    const done = Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
    return { done, acked, attempts, stop: () => { stopped = true; } };
}

// The checks above, once every writer is done. responses(): reads the
// entries of the {model}:response_duck stream ([{message: {seq}}]); a 200
// is answered once the batch is committed, and its events are published
// just after, so the stream is read until it holds every seq (10 s).
export async function checkDeltaOracle(server, st, acked, responses) {
    const seqs = [...acked.values()];
    assert.equal(new Set(seqs).size, seqs.length, 'one distinct seq per request');
    const end = await modelSeq(server);
    assert.equal(end, st.seq0 + acked.size, 'exactly one seq per request (nothing applied twice)');
    const evs = await feed(server, st.seq0, end);
    assert.equal(evs.length, acked.size);
    evs.forEach((e, i) => assert.equal(e.seq, st.seq0 + 1 + i, 'no gap in the feed'));
    for (const e of evs) assert.equal(acked.get(e.request_id), e.seq, `${e.request_id}: response seq = event seq`);
    let perSeq = new Map();
    const published = async () => {
        perSeq = new Map();
        for (const e of await responses()) perSeq.set(e.message.seq, (perSeq.get(e.message.seq) || 0) + 1);
        for (let s = st.seq0 + 1; s <= end; s++) if (!perSeq.has(String(s))) return false;
        return true;
    };
    const waitedMs = await waitUntil(published, 10000, () => `every seq up to ${end} on {${MODEL}}:response_duck`, 100);
    if (waitedMs) console.log(`# the response stream held every seq after ${waitedMs} ms`);
    for (let s = st.seq0 + 1; s <= end; s++) assert.equal(perSeq.get(String(s)), 1, `seq ${s} is in {${MODEL}}:response_duck once`);
    const last = checkChains(evs, st.start);
    let sum = 0;
    for (const c of st.cells) {
        const v = await readCell(server, c);
        assert.equal(v, last.get(cellKey(c)), `${c.product}: stored = last new in the feed`);
        sum += v;
    }
    assert.equal(sum, st.startTotal + acked.size, 'final = start + number of distinct acknowledged requests');
    assert.equal(await readCell(server, st.total), st.startTotal + acked.size);
}

// --redis-replicas 1 with the replica stopped (stop(), then cont()): a
// write is queued (202) and not applied, /ready turns 503 with
// redis_replicas.acked 0; once the replica goes on, the same request is
// applied, once. The WAIT must cover the entry's XADD and its delivery to
// the writer, whichever connection made them.
export async function checkWriteWaitsForReplica(server, stop, cont) {
    const st = await deltaStart(server);
    const body = writeBody(st.cells[0], { delta: 1 }, { request_id: rid('wait') });
    stop();
    try {
        const r = await server.post('/update_cell', body);
        assert.equal(r.status, 202, r.text);
        // /ready says so once the writer gave up waiting for this batch
        let ready = null;
        await waitFor(async () => (ready = await server.get('/ready')).status === 503, '/ready 503');
        assert.equal(ready.body.redis_replicas.acked, 0, ready.text);
        assert.equal(await modelSeq(server), st.seq0, 'not applied while the replica lacks it');
    } finally {
        cont();
    }
    let done = null;
    await waitFor(async () => (done = await server.post('/update_cell', body)).status === 200, 'applied once the replica goes on');
    assert.equal(done.body.seq, st.seq0 + 1, 'applied once');
}

// What a model is in a stopped server's database file, table by table, as
// text to compare between processes (replicas, standbys): facts in row
// order, members, closure, the command and leaf logs, the model row and
// the demo's view. Not the request ledger: a writer's holds its refusals.
export function dumpModel(dataDir) {
    const q = (sql) => {
        const r = spawnSync(DBQUERY, [path.join(dataDir, 'duckspread.db'), sql], { encoding: 'utf8', maxBuffer: 1 << 28 });
        assert.equal(r.status, 0, `dbquery: ${r.stderr}`);
        return r.stdout;
    };
    return {
        facts: q('SELECT * FROM f_1 ORDER BY rowid'),
        members: q('SELECT * FROM ds_member ORDER BY ALL'),
        closure: q('SELECT * FROM ds_closure ORDER BY ALL'),
        commands: q('SELECT * FROM ds_command ORDER BY ALL'),
        leaflog: q('SELECT * FROM l_1 ORDER BY ALL'),
        model: q('SELECT name, seq, struct_seq FROM ds_model ORDER BY ALL'),
        view: q('SELECT * FROM sales_summary_by_product_family ORDER BY ALL'),
    };
}

// Two dumps (dumpModel) are equal, table by table.
export function assertSameModel(a, b, what) {
    for (const k of Object.keys(a)) {
        assert.ok(a[k].length > 0 || k === 'leaflog', `${what}: ${k} is not empty`);
        assert.ok(a[k] === b[k], `${what}: ${k} differs (${a[k].length} vs ${b[k].length} bytes)`);
    }
}
