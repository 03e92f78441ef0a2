// Hostile input: malformed and truncated JSON, wrong
// types, unknown fields, deep nesting, huge bodies and strings, invalid
// UTF-8 in bodies, paths and queries, NaN/Infinity/1e400/-0/too many
// decimals/integers beyond 64 bits, identifiers that differ only in case,
// spaces or full-width letters, SQL injection strings in every identifier,
// request smuggling over raw sockets, slow clients, and every limit of
// `serve` (depth, string, batch, cells, subscribers). Each case asserts the
// documented status, code and target; every answer is valid UTF-8 and
// matches web/openapi.json; /health answers after every case and the model's
// seq does not move. Injection strings stored on purpose (a member named
// `x'); DROP TABLE ds_fact; --`) read back byte-exact, through the API and
// in the file. At the end a checksum over the catalog, members, facts and
// change log (SQL over the ds_* and f_/l_ tables in the DuckDB file, after
// SIGTERM) equals the one taken before the refusals.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import WebSocket from 'ws';
import { BIN, DBQUERY, setup, teardown, validateResponse, validateSchema, sleep, waitFor, rid, MODEL } from './lib.mjs';

const LIM = { depth: 16, string: 4096, writes: 50, cells: 2000, subscribers: 2, requestTimeout: 2, idleTimeout: 3 };
const ARGS = [
    '--json-depth', String(LIM.depth), '--string-max', String(LIM.string), '--writes-max', String(LIM.writes),
    '--cells-max', String(LIM.cells), '--subscribers-max', String(LIM.subscribers),
    '--request-timeout', String(LIM.requestTimeout), '--idle-timeout', String(LIM.idleTimeout),
];

// stored on purpose in setup (member key / display names)
const INJ = "x'); DROP TABLE ds_fact; --";
const INJ_KEY = `k'"; DROP TABLE ds_member; --`;
const REN_NAME = "Robert'); DROP TABLE ds_model;-- «ünïcødé» ＦＵＬＬ";
// never stored: every lookup with these must be a 404 naming the right target
const BAD = [`"; DROP TABLE ds_member; --`, "' OR '1'='1", '1; DELETE FROM f_1 WHERE 1=1; --'];
const LEAF = { product: 'P-0002', customer: 'C-0002', time: '2025-02' };
const CELLS = `/v1/models/${MODEL}/cells`;
const enc = encodeURIComponent;

let env;
let port;
let seqBase;
let sumBefore;
const setupFacts = {};

before(async () => {
    env = await setup('hostile', { serverOpts: { extraArgs: ARGS } });
    port = env.server.port;
});
after(async () => {
    await teardown(env?.server, env?.redis);
});

// ---------------------------------------------------------------------------
// HTTP: node:http, one connection per request (the server closes idle ones
// after --request-timeout), every answer checked for UTF-8 and the contract

function send(method, p, { body, headers = {}, type = 'application/json', timeout = 30000 } = {}) {
    return new Promise((resolve, reject) => {
        const buf = body === undefined ? null
            : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
        const h = { ...headers };
        if (buf) {
            h['Content-Length'] = buf.length;
            if (type) h['Content-Type'] = type;
        }
        const t0 = Date.now();
        const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: h, agent: false }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, raw: Buffer.concat(chunks), ms: Date.now() - t0 }));
            res.on('error', reject);
        });
        req.setTimeout(timeout, () => req.destroy(new Error(`timeout after ${timeout} ms: ${method} ${p}`)));
        req.on('error', reject);
        req.end(buf ?? undefined);
    });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

async function call(method, p, opts = {}) {
    const r = await send(method, p, opts);
    let text;
    try {
        text = utf8.decode(r.raw);
    } catch {
        assert.fail(`${method} ${p}: the answer is not valid UTF-8: ${r.raw.toString('latin1').slice(0, 300)}`);
    }
    const ct = r.headers['content-type'] || '';
    let json;
    if (ct.startsWith('application/json')) json = JSON.parse(text);
    if (opts.route === false) validateSchema('Error', json, `${method} ${p}`); // no operation: an unknown route
    else validateResponse(method, p.split('?')[0], r.status, ct, json, text);
    return { ...r, text, body: json };
}

function expectError(r, status, code, target, what = '') {
    assert.equal(r.status, status, `${what} status: ${r.text.slice(0, 400)}`);
    assert.equal(r.body?.error?.code, code, `${what} code: ${r.text.slice(0, 400)}`);
    if (target !== undefined) assert.equal(r.body.error.target, target, `${what} target: ${r.text.slice(0, 400)}`);
    assert.ok(r.body.error.message.length > 0, 'a message');
    return r.body.error;
}

const post = (p, body, opts = {}) => call('POST', p, { ...opts, body });
const get = (p, opts) => call('GET', p, opts);
const write = (w, opts) => post(CELLS, { column: 'quantity', cell: LEAF, value: 1, ...w }, opts);
const cellUrl = (q) => `/v1/models/${MODEL}/cell?${q}`;

async function modelSeq() {
    const r = await get(`/v1/models/${MODEL}`);
    assert.equal(r.status, 200, r.text);
    return r.body.seq;
}

// One case: its assertions, then the server is up and nothing was applied.
function hcase(name, fn, opts = {}) {
    test(name, { timeout: 60000, ...opts }, async () => {
        await fn();
        const h = await get('/health');
        assert.equal(h.status, 200, `/health after the case: ${h.text}`);
        assert.equal(await modelSeq(), seqBase, 'nothing was applied (the model seq did not move)');
    });
}

// ---------------------------------------------------------------------------
// raw sockets

// end: the client ends its side after writing (a FIN).
function raw(data, { ms = 3000, chunks = null, gapMs = 0, end = false } = {}) {
    return new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        let buf = Buffer.alloc(0);
        const t0 = Date.now();
        let timer = null;
        const done = (how) => {
            clearInterval(timer);
            s.destroy();
            resolve({ how, ms: Date.now() - t0, buf, text: buf.toString('latin1') });
        };
        s.on('data', (d) => (buf = Buffer.concat([buf, d])));
        s.on('end', () => done('closed'));
        s.on('error', (e) => done(`error ${e.code}`));
        s.setTimeout(ms, () => done('timeout'));
        s.on('connect', () => {
            if (!chunks) return end ? s.end(data) : s.write(data);
            let i = 0;
            timer = setInterval(() => {
                if (i < chunks.length) s.write(chunks[i++]);
                else if (end && i++ === chunks.length) s.end();
            }, gapMs);
        });
    });
}

// The server ended the connection (a FIN, or a reset when it closed with
// bytes of ours unread).
const closedByServer = (r) => r.how === 'closed' || r.how === 'error ECONNRESET' || r.how === 'error EPIPE';

// The HTTP responses in a buffer: [{status, headers, body}]
function responses(buf) {
    const out = [];
    let rest = buf;
    while (rest.length) {
        const end = rest.indexOf('\r\n\r\n');
        if (end < 0) break;
        const head = rest.subarray(0, end).toString('latin1').split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
        if (!m) break;
        const headers = {};
        for (const l of head.slice(1)) {
            const c = l.indexOf(':');
            headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
        }
        const len = Number(headers['content-length'] || 0);
        const body = rest.subarray(end + 4, end + 4 + len);
        out.push({ status: Number(m[1]), headers, body: body.toString('utf8') });
        rest = rest.subarray(end + 4 + len);
    }
    return out;
}

// A raw request refused for its framing: one JSON 400 naming the target,
// and the connection closed (nothing after it is taken as a request).
async function expectFramingRefused(req, target, p) {
    const r = await raw(req);
    assert.ok(closedByServer(r), `the server closes the connection: ${r.how} ${r.text.slice(0, 300)}`);
    const rs = responses(r.buf);
    assert.equal(rs.length, 1, `exactly one answer: ${r.text.slice(0, 600)}`);
    assert.equal(rs[0].status, 400, r.text.slice(0, 300));
    assert.equal(rs[0].headers.connection, 'close');
    const body = JSON.parse(rs[0].body);
    validateResponse(p.method, p.path, 400, rs[0].headers['content-type'], body, rs[0].body);
    assert.equal(body.error.code, 'malformed');
    assert.equal(body.error.target, target);
}

// ---------------------------------------------------------------------------
// the checksum of catalog, members, facts and change log (after SIGTERM)

function dbq(dataDir, sql, ...params) {
    const r = spawnSync(DBQUERY, [path.join(dataDir, 'duckspread.db'), sql, ...params.map(String)], { encoding: 'utf8', maxBuffer: 1 << 26 });
    assert.equal(r.status, 0, `dbquery failed: ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => l).map((l) => JSON.parse(l));
}

// Every ds_* table (but the request ledger, which records refused request
// ids by design) and every fact and change-log table: rows and a sum of row
// hashes (order-independent).
function checksum(dataDir) {
    const tables = dbq(dataDir, `SELECT table_name AS t FROM information_schema.tables
        WHERE table_schema = 'main' AND table_type = 'BASE TABLE'
          AND (table_name LIKE 'ds%' OR regexp_matches(table_name, '^[fl]_[0-9]+$'))
          AND table_name <> 'ds_request' ORDER BY 1`).map((r) => r.t);
    assert.ok(tables.includes('ds_member') && tables.includes('ds_model') && tables.some((t) => t.startsWith('f_')),
        `catalog, member and fact tables: ${tables}`);
    const sum = {};
    for (const t of tables) {
        const [row] = dbq(dataDir, `SELECT count(*)::VARCHAR AS n, coalesce(sum(hash(x)::HUGEINT), 0)::VARCHAR AS h FROM "${t}" x`);
        sum[t] = `${row.n}:${row.h}`;
    }
    return sum;
}

// ---------------------------------------------------------------------------
// setup: what must be stored exactly, then the checksum before the refusals

test('injection strings are stored and read back byte-exact (member add, rename, cell by key and by name)', async () => {
    const members = `/v1/models/${MODEL}/dimensions/product/members`;
    const add = await post(members, { op: 'add', key: INJ_KEY, name: INJ, parent: 'S01-B1-F1', request_id: rid('hi-add') });
    assert.equal(add.status, 200, add.text);
    assert.equal(add.body.member.key, INJ_KEY);
    const add2 = await post(members, { op: 'add', key: 'HI-REN', name: 'Tmp', parent: 'S01-B1-F1' });
    assert.equal(add2.status, 200, add2.text);
    const ren = await post(members, { op: 'rename', member: 'HI-REN', name: REN_NAME });
    assert.equal(ren.status, 200, ren.text);
    const kids = await get(`${members}?parent=S01-B1-F1`);
    assert.equal(kids.status, 200, kids.text);
    const byKey = Object.fromEntries(kids.body.members.map((m) => [m.key, m.name]));
    assert.equal(byKey[INJ_KEY], INJ, 'the injection member: key and name byte-exact');
    assert.equal(byKey['HI-REN'], REN_NAME, 'the renamed member: name byte-exact');

    const cell = { product: INJ_KEY, customer: 'C-0001', time: '2025-01' };
    const w = await post(CELLS, { column: 'quantity', cell, value: 5 });
    assert.equal(w.status, 200, w.text);
    assert.deepEqual(w.body.target.cell, cell, 'named by key in the answer');
    for (const who of [INJ_KEY, INJ]) { // by key, then by its (unique) display name
        const r = await get(cellUrl(`measure=quantity&product=${enc(who)}&customer=C-0001&time=2025-01`));
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.value, 5, `read by ${who}`);
    }
    // -0 is zero, 1e2 is 100, a decimal string keeps its scale; of duplicate keys the last wins
    const z = await post(CELLS, `{"column":"quantity","cell":${JSON.stringify(LEAF)},"value":-0}`);
    assert.equal(z.status, 200, z.text);
    assert.match(z.text, /"new":0[,}]/, '-0 is written as 0');
    const e2 = await post(CELLS, `{"column":"quantity","cell":${JSON.stringify(LEAF)},"value":1e2}`);
    assert.equal(e2.status, 200, e2.text);
    assert.equal(e2.body.target.new, 100);
    const nd = await post(CELLS, { column: 'net_amount', cell: LEAF, value: '12.50' });
    assert.equal(nd.status, 200, nd.text);
    assert.match(nd.text, /"new":12\.50[,}]/, 'written at the scale');
    const dup = await post(CELLS, `{"column":"quantity","cell":${JSON.stringify(LEAF)},"value":1,"value":7}`);
    assert.equal(dup.status, 200, dup.text);
    assert.equal(dup.body.target.new, 7, 'the last of duplicate keys wins');
    setupFacts.rid = rid('hi-reuse');
    const ri = await write({ value: 8, request_id: setupFacts.rid });
    assert.equal(ri.status, 200, ri.text);
});

// a model named at the name limit (256 bytes), written by a user at its limit
// (64 bytes) with a request_id at its limit (128 bytes): the request key
// (model, user, request_id: 450 bytes) is kept and matched whole, so the
// answer arrives (it was cut to 400 bytes and never matched: 202 after the
// wait limit)
const LONG = 'a'.repeat(256);
const RID128 = `r${'x'.repeat(127)}`;
const USER64 = { headers: { 'X-User': 'u'.repeat(64) } };
test('a model named at the limit, a request_id at the limit: the outcome arrives (200, not 202 after the wait limit)', async () => {
    const c = await post('/v1/models', { name: LONG, dimensions: [{ name: 'd', members: [{ key: 'x1' }, { key: 'x2' }] }], measures: [{ name: 'm' }] });
    assert.equal(c.status, 201, c.text);
    assert.equal(c.body.name, LONG);
    const body = { table: LONG, column: 'm', cell: { d: 'x1' }, value: 5, request_id: RID128 };
    const t0 = Date.now();
    const w = await post('/update_cell', body, USER64);
    assert.equal(w.status, 200, w.text);
    assert.equal(w.body.status, 'applied');
    assert.equal(w.body.request_id, RID128);
    assert.ok(Date.now() - t0 < 5000, `answered in ${Date.now() - t0} ms`);
    const again = await post('/update_cell', body, USER64);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.seq, w.body.seq, 'the retry gets the original answer');
    const f = await get(`/get_updates?table=${LONG}&since=0`);
    assert.equal(f.status, 200, f.text);
    assert.equal(f.body.updates.length, 1);
    assert.equal((await get(`/v1/models/${LONG}`)).status, 200);
});

test('checksum before the refusals (SIGTERM, the file, restart)', async () => {
    const { server } = env;
    const st = await server.stop();
    assert.equal(st.code, 0, `exit code after SIGTERM (signal ${st.signal})`);
    sumBefore = checksum(server.dataDir);
    const rows = dbq(server.dataDir, 'SELECT key, name FROM ds_member WHERE key = $1 OR key = $2 ORDER BY key', INJ_KEY, 'HI-REN');
    assert.deepEqual(rows, [{ key: 'HI-REN', name: REN_NAME }, { key: INJ_KEY, name: INJ }].sort((a, b) => (a.key < b.key ? -1 : 1)),
        'the file holds the names byte-exact (bound, never executed)');
    assert.ok(dbq(server.dataDir, "SELECT 1 AS x FROM information_schema.tables WHERE table_name = 'ds_model'").length === 1);
    await server.start();
    port = server.port;
    seqBase = await modelSeq();
});

// ---------------------------------------------------------------------------
// malformed and truncated JSON (400 malformed, target body)

const truncated = `{"column":"quantity","cell":{"product":"P-0002"},"value":1`;
const malformed = {
    'an empty body': '',
    'a lone brace': '{',
    'a truncated document': truncated,
    'a truncated string': '{"column":"quan',
    'a truncated \\u escape': '{"column":"\\u00',
    'single quotes': "{'column':'quantity'}",
    'unquoted keys': '{column:"quantity"}',
    'a trailing comma': '{"column":"quantity",}',
    'two documents': '{}{}',
    'a comment': '{/* x */"column":"quantity"}',
    'a byte order mark': '\ufeff{"column":"quantity"}',
    'a raw control character in a string': '{"column":"quan\ttity"}',
    'a lone surrogate escape': '{"column":"\\ud800"}',
    'an invalid escape': '{"column":"\\q"}',
    'a leading zero': '{"value":01}',
    'a bare NaN': `{"column":"quantity","cell":{},"value":NaN}`,
    'a bare Infinity': `{"column":"quantity","cell":{},"value":Infinity}`,
    'a bare -Infinity': `{"column":"quantity","cell":{},"value":-Infinity}`,
    'a hex number': `{"column":"quantity","cell":{},"value":0x10}`,
};
for (const [what, body] of Object.entries(malformed)) {
    hcase(`malformed JSON: ${what} -> 400 malformed (body)`, async () => {
        expectError(await post(CELLS, body), 400, 'malformed', 'body', what);
    });
}

hcase('not a JSON object: array, null, string, number -> 400 malformed', async () => {
    for (const b of ['[]', 'null', '"x"', '1']) expectError(await post(CELLS, b), 400, 'malformed', 'body', b);
    expectError(await post(`/v1/models/${MODEL}/grid`, '[1]'), 400, 'malformed', 'body');
});

hcase('content types: text/plain, form, none -> 415 not_json', async () => {
    const b = { column: 'quantity', cell: LEAF, value: 1 };
    expectError(await post(CELLS, b, { type: 'text/plain' }), 415, 'not_json', 'body');
    expectError(await post(CELLS, b, { type: 'application/x-www-form-urlencoded' }), 415, 'not_json', 'body');
    expectError(await post('/update_cell', b, { type: null }), 415, 'not_json', 'body');
});

// ---------------------------------------------------------------------------
// wrong types and unknown fields (400 malformed naming the field)

const wrongTypes = [
    ['value: true', { value: true }, 'value'],
    ['value: an object', { value: { n: 1 } }, 'value'],
    ['cell: a string', { cell: 'P-0002' }, 'cell'],
    ['a cell member: a number', { cell: { product: 2 } }, 'cell'],
    ['a cell member: null', { cell: { product: null } }, 'cell'],
    ['column: a number', { column: 7 }, 'column'],
    ['holds: an object', { holds: { product: 'P-0002' } }, 'holds'],
    ['a hold: an array', { holds: [['P-0002']] }, 'holds'],
    ['if_seq: a string', { if_seq: '12' }, 'if_seq'],
    ['wait: a string', { wait: 'yes' }, 'wait'],
    ['request_id: a number', { request_id: 5 }, 'request_id'],
    ['value and delta', { delta: 1 }, 'value'],
];
for (const [what, patch, target] of wrongTypes) {
    hcase(`wrong type: ${what} -> 400 malformed (${target})`, async () => {
        expectError(await write(patch), 400, 'malformed', target, what);
    });
}

hcase('no value, delta or percent -> 400 malformed (value)', async () => {
    expectError(await post(CELLS, { column: 'quantity', cell: LEAF }), 400, 'malformed', 'value');
});

hcase('batch: writes an object, empty, a write not an object -> 400 malformed', async () => {
    const b = `/v1/models/${MODEL}/cells:batch`;
    expectError(await post(b, { writes: {} }), 400, 'malformed', 'writes');
    expectError(await post(b, { writes: [] }), 400, 'malformed', 'writes');
    expectError(await post(b, { writes: ['x'] }), 400, 'malformed', 'writes[0].');
});

hcase('unknown fields are named: top level, in a batch write, grid, grid axis, member op, model definition', async () => {
    expectError(await write({ colour: 'red' }), 400, 'malformed', 'colour');
    expectError(await write({ [INJ]: 1 }), 400, 'malformed', INJ, 'an injection string as a field name');
    expectError(await post(`/v1/models/${MODEL}/cells:batch`, { writes: [{ column: 'quantity', cell: LEAF, vaule: 1 }] }), 400, 'malformed', 'vaule');
    expectError(await post(`/v1/models/${MODEL}/grid`, { measure: 'quantity', rowz: {} }), 400, 'malformed', 'rowz');
    expectError(await post(`/v1/models/${MODEL}/grid`, { measure: 'quantity', rows: { dimension: 'product', members: ['P-0001'], dim: 1 } }), 400, 'malformed', 'dim');
    expectError(await post(`/v1/models/${MODEL}/dimensions/product/members`, { op: 'add', key: 'HI-X', parnet: 'S01' }), 400, 'malformed', 'parnet');
    expectError(await post('/v1/models', { name: 'hi_model', dimentions: [], measures: [] }), 400, 'malformed', 'dimentions');
});

hcase('duplicate keys: the last one wins (an unknown column after a known one is the 404)', async () => {
    const r = await post(CELLS, `{"column":"quantity","column":${JSON.stringify(BAD[0])},"cell":{},"value":1}`);
    expectError(r, 404, 'not_found', 'column');
    assert.ok(r.body.error.message.includes(BAD[0]), r.text);
});

// ---------------------------------------------------------------------------
// nesting, sizes, limits

hcase(`nesting deeper than --json-depth ${LIM.depth} -> 400 malformed; 100,000 levels too`, async () => {
    const deep = (n) => `{"column":"quantity","cell":${'['.repeat(n)}${']'.repeat(n)},"value":1}`;
    const e = expectError(await post(CELLS, deep(LIM.depth)), 400, 'malformed', 'body');
    assert.match(e.message, new RegExp(`deeper than ${LIM.depth}`));
    const e2 = expectError(await post(CELLS, '['.repeat(100000)), 400, 'malformed', 'body');
    assert.match(e2.message, /deeper/);
    // exactly at the limit the document parses: the error is the shape
    expectError(await post(CELLS, deep(LIM.depth - 1)), 400, 'malformed', 'cell');
});

hcase('a 20 MB body -> 413 too_large, before its content type and its syntax', async () => {
    const big = Buffer.alloc(20 << 20, 'a');
    Buffer.from('{"column":"').copy(big);
    expectError(await post(CELLS, big), 413, 'too_large', 'body');
    expectError(await post(CELLS, big, { type: 'text/plain' }), 413, 'too_large', 'body');
    expectError(await post(`/v1/models/${MODEL}/grid`, big), 413, 'too_large', 'body');
});

hcase(`a string or key longer than --string-max ${LIM.string} -> 413 too_large; at the limit it is read`, async () => {
    const long = 'q'.repeat(LIM.string + 1);
    expectError(await write({ column: long }), 413, 'too_large', 'body');
    expectError(await write({ cell: { [long]: 'P-0001' } }), 413, 'too_large', 'body');
    // at the string limit it is read whole: a name over 256 bytes (never a prefix)
    expectError(await write({ column: 'q'.repeat(LIM.string) }), 422, 'invalid_value', 'column');
});

hcase(`a batch of ${LIM.writes + 1} writes (--writes-max ${LIM.writes}) -> 422 too_many_cells with count and limit`, async () => {
    const w = { column: 'quantity', cell: LEAF, value: 1 };
    const e = expectError(await post(`/v1/models/${MODEL}/cells:batch`, { writes: Array(LIM.writes + 1).fill(w) }), 422, 'too_many_cells', 'writes');
    assert.equal(e.count, LIM.writes + 1);
    assert.equal(e.limit, LIM.writes);
    // contract order: an unknown member in it is the 404
    const ws = Array(LIM.writes + 1).fill(w);
    ws[7] = { ...w, cell: { product: BAD[1] } };
    expectError(await post(`/v1/models/${MODEL}/cells:batch`, { writes: ws }), 404, 'not_found', 'cell');
});

async function allMembers(dim) {
    const out = [];
    const walk = async (parent) => {
        const r = await get(`/v1/models/${MODEL}/dimensions/${dim}/members${parent ? `?parent=${enc(parent)}` : ''}`);
        assert.equal(r.status, 200, r.text);
        for (const m of r.body.members) {
            out.push(m.key);
            if (!m.leaf) await walk(m.key);
        }
    };
    await walk(null);
    return out;
}

hcase(`a grid of more than --cells-max ${LIM.cells} cells -> 422 too_many_cells with count and limit`, async () => {
    const rows = await allMembers('product');
    const cols = await allMembers('time');
    assert.ok(rows.length * cols.length > LIM.cells);
    const g = (r, c) => post(`/v1/models/${MODEL}/grid`, { measure: 'quantity', rows: { dimension: 'product', members: r }, cols: { dimension: 'time', members: c } });
    const e = expectError(await g(rows, cols), 422, 'too_many_cells', 'grid');
    assert.equal(e.count, rows.length * cols.length);
    assert.equal(e.limit, LIM.cells);
    const ok = await g(rows.slice(0, 10), cols.slice(0, 10));
    assert.equal(ok.status, 200, ok.text);
});

hcase(`a spread that would create more than --cells-max ${LIM.cells} cells -> 422 too_many_cells`, async () => {
    const e = expectError(await post(CELLS, { column: 'quantity', cell: { product: 'S01' }, value: 1000, method: 'equal' }), 422, 'too_many_cells', 'cell');
    assert.ok(e.count > LIM.cells, JSON.stringify(e));
    assert.equal(e.limit, LIM.cells);
});

// ---------------------------------------------------------------------------
// numbers (parsed exactly from their text; NaN, Infinity, out of range,
// too many places are 422: docs/api.md)

const numbers = [
    ['"NaN" as a string', '"NaN"', 'invalid_value'],
    ['"Infinity" as a string', '"Infinity"', 'invalid_value'],
    ['"-Infinity" as a string', '"-Infinity"', 'invalid_value'],
    ['1e400', '1e400', 'out_of_range'],
    ['-1e400', '-1e400', 'out_of_range'],
    ['1e-400 (beyond any scale)', '1e-400', 'invalid_value'],
    ['1.5 on a scale-0 measure', '1.5', 'invalid_value'],
    ['-0.001 on a scale-0 measure', '-0.001', 'invalid_value'],
    ['1.0000000000000000000001', '1.0000000000000000000001', 'invalid_value'],
    ['an integer beyond 64 bits', '99999999999999999999', 'out_of_range'],
    ['a negative integer beyond 64 bits', '-99999999999999999999', 'out_of_range'],
    ['2^64', '18446744073709551616', 'out_of_range'],
    ['1e18 (beyond a stored leaf)', '1e18', 'out_of_range'],
    ['a 40-digit decimal string', `"${'9'.repeat(40)}"`, 'out_of_range'],
    ['"12,5"', '"12,5"', 'invalid_value'],
    ['" 12" (a space)', '" 12"', 'invalid_value'],
    ['"0x10"', '"0x10"', 'invalid_value'],
    ['"" (empty)', '""', 'invalid_value'],
    ['"+1", "1." and ".5"', ['"+1"', '"1."', '".5"'], 'invalid_value'],
    ['"1e2" (no exponent in strings)', '"1e2"', 'invalid_value'],
];
for (const [what, texts, code] of numbers) {
    hcase(`value ${what} -> 422 ${code}`, async () => {
        for (const t of [texts].flat()) {
            const r = await post(CELLS, `{"column":"quantity","cell":${JSON.stringify(LEAF)},"value":${t}}`);
            expectError(r, 422, code, 'value', t);
        }
    });
}

hcase('net_amount (scale 2): 12.345 -> 422 invalid_value; delta and percent too', async () => {
    expectError(await write({ column: 'net_amount', value: 12.345 }), 422, 'invalid_value', 'value');
    expectError(await post(CELLS, `{"column":"quantity","cell":${JSON.stringify(LEAF)},"delta":1e400}`), 422, 'out_of_range', 'delta');
    expectError(await post(CELLS, `{"column":"quantity","cell":${JSON.stringify(LEAF)},"percent":"NaN"}`), 422, 'invalid_value', 'percent');
});

hcase('if_seq: 1e400, 1.5, -1, beyond 64 bits -> 422 invalid_value (if_seq)', async () => {
    for (const t of ['1e400', '1.5', '-1', '99999999999999999999', '-0.5']) {
        const r = await post(CELLS, `{"column":"quantity","cell":${JSON.stringify(LEAF)},"value":1,"if_seq":${t}}`);
        expectError(r, 422, 'invalid_value', 'if_seq', t);
    }
});

hcase('method and request_id: unknown method, control character, too long -> 422 invalid_value', async () => {
    expectError(await write({ method: `equal'; DROP TABLE ds_fact; --` }), 422, 'invalid_value', 'method');
    expectError(await write({ request_id: 'a\u0001b' }), 422, 'invalid_value', 'request_id');
    expectError(await write({ request_id: 'r'.repeat(129) }), 422, 'invalid_value', 'request_id');
});

// ---------------------------------------------------------------------------
// identifiers: exact bytes, case sensitive, no trimming, no folding

// other names that could exist: 404; look-alikes that can never be created
// (white space at an end, invisible characters): 422, not trimmed or folded
const variants = {
    table: ['Sales', 'SALES', 'ｓａｌｅｓ', 'sales'.normalize('NFD') + '\u0301'],
    column: ['Quantity', 'ｑｕａｎｔｉｔｙ'],
    dimension: ['Product', 'ｐｒｏｄｕｃｔ'],
    cell: ['p-0002', 'Ｐ-0002', 'brand x', REN_NAME.normalize('NFD')],
};
const lookAlikes = (s) => [`${s} `, ` ${s}`, `${s}\u00a0`, `\u3000${s}`, `${s}\u200b`, `\u202e${s}`, `${s.slice(0, 2)}\u00ad${s.slice(2)}`,
    `${s}\ufeff`, `\u2066${s}\u2069`, `${s}\u{e0041}`];
for (const t of variants.table) {
    hcase(`table ${JSON.stringify(t)} (not 'sales') -> 404 table, in the body and in the path`, async () => {
        expectError(await post('/update_cell', { table: t, column: 'quantity', cell: LEAF, value: 1 }), 404, 'not_found', 'table');
        expectError(await get(`/v1/models/${enc(t)}/cell?measure=quantity`), 404, 'not_found', 'table');
    });
}
hcase('look-alike tables (white space at an end, invisible characters) -> 422 invalid_value (table) in the body, the path and the query', async () => {
    for (const t of lookAlikes(MODEL)) {
        expectError(await post('/update_cell', { table: t, column: 'quantity', cell: LEAF, value: 1 }), 422, 'invalid_value', 'table', JSON.stringify(t));
        expectError(await get(`/v1/models/${enc(t)}/cell?measure=quantity`), 422, 'invalid_value', 'table', JSON.stringify(t));
        expectError(await get(`/get_updates?table=${enc(t)}&since=0`), 422, 'invalid_value', 'table', JSON.stringify(t));
        expectError(await post('/v1/models', { name: t, dimensions: [], measures: [] }), 422, 'invalid_value', 'table', JSON.stringify(t));
    }
});
hcase('column, dimension and member variants of case, full-width, NFD -> 404; look-alikes -> 422 column, dimension, cell', async () => {
    for (const c of variants.column) expectError(await write({ column: c }), 404, 'not_found', 'column', c);
    for (const d of variants.dimension) expectError(await write({ cell: { [d]: 'P-0002' } }), 404, 'not_found', 'dimension', d);
    for (const m of variants.cell) {
        expectError(await write({ cell: { ...LEAF, product: m } }), 404, 'not_found', 'cell', JSON.stringify(m));
        expectError(await get(cellUrl(`measure=quantity&product=${enc(m)}`)), 404, 'not_found', 'cell', m);
    }
    for (const c of lookAlikes('quantity')) expectError(await write({ column: c }), 422, 'invalid_value', 'column', JSON.stringify(c));
    for (const d of lookAlikes('product')) expectError(await write({ cell: { [d]: 'P-0002' } }), 422, 'invalid_value', 'dimension', JSON.stringify(d));
    for (const m of lookAlikes('P-0002')) {
        expectError(await write({ cell: { ...LEAF, product: m } }), 422, 'invalid_value', 'cell', JSON.stringify(m));
        expectError(await get(cellUrl(`measure=quantity&product=${enc(m)}`)), 422, 'invalid_value', 'cell', JSON.stringify(m));
    }
    // the NFC spelling is the stored one
    const r = await get(cellUrl(`measure=quantity&product=${enc(REN_NAME.normalize('NFC'))}`));
    assert.equal(r.status, 200, r.text);
    expectError(await get(`/v1/models/${MODEL}/views/SALES_SUMMARY_BY_PRODUCT_FAMILY`), 404, 'not_found', 'view');
});

hcase('an ambiguous display name -> 422 ambiguous_member with the candidate keys', async () => {
    const e = expectError(await write({ cell: { ...LEAF, product: 'Shoes' } }), 422, 'ambiguous_member', 'cell');
    assert.ok(e.candidates.length >= 2 && e.candidates.every((k) => /^S\d\d-B\d-F\d$/.test(k)), JSON.stringify(e));
});

// ---------------------------------------------------------------------------
// injection strings in every identifier: a 404 naming the right target,
// the string echoed intact, nothing executed

for (const [i, s] of BAD.entries()) {
    hcase(`injection ${i + 1} in writes: table, column, dimension, member, hold dimension, hold member`, async () => {
        const t = expectError(await post('/update_cell', { table: s, column: 'quantity', cell: LEAF, value: 1 }), 404, 'not_found', 'table');
        assert.ok(t.message.includes(s), `the message names it intact: ${t.message}`);
        expectError(await post(`/v1/models/${enc(s)}/cells`, { column: 'quantity', cell: LEAF, value: 1 }), 404, 'not_found', 'table');
        expectError(await post(`/v1/models/${enc(s)}/cells:batch`, { writes: [{ column: 'quantity', cell: LEAF, value: 1 }] }), 404, 'not_found', 'table');
        expectError(await write({ column: s }), 404, 'not_found', 'column');
        expectError(await write({ cell: { [s]: 'P-0002' } }), 404, 'not_found', 'dimension');
        for (const dim of ['product', 'customer', 'time']) expectError(await write({ cell: { ...LEAF, [dim]: s } }), 404, 'not_found', 'cell', dim);
        expectError(await post(CELLS, { column: 'quantity', cell: { product: 'S01' }, value: 1, holds: [{ [s]: 'P-0001' }] }), 404, 'not_found', 'dimension');
        expectError(await post(CELLS, { column: 'quantity', cell: { product: 'S01' }, value: 1, holds: [{ product: s }] }), 404, 'not_found', 'cell');
    });
    hcase(`injection ${i + 1} in reads: cell query, grid, members, views, feeds, streams, model`, async () => {
        const m = `/v1/models/${MODEL}`;
        expectError(await get(`/v1/models/${enc(s)}/cell?measure=quantity`), 404, 'not_found', 'table');
        expectError(await get(cellUrl(`measure=${enc(s)}`)), 404, 'not_found', 'column');
        expectError(await get(cellUrl(`measure=quantity&${enc(s)}=P-0001`)), 404, 'not_found', 'dimension');
        expectError(await get(cellUrl(`measure=quantity&product=${enc(s)}`)), 404, 'not_found', 'cell');
        const grid = (b) => post(`${m}/grid`, { measure: 'quantity', rows: { dimension: 'product', members: ['P-0001'] }, cols: { dimension: 'time', members: ['2025'] }, ...b });
        expectError(await grid({ measure: s }), 404, 'not_found', 'column');
        expectError(await grid({ rows: { dimension: s, members: ['P-0001'] } }), 404, 'not_found', 'dimension');
        expectError(await grid({ cols: { dimension: 'time', members: [s] } }), 404, 'not_found', 'cell');
        expectError(await grid({ filters: { [s]: 'C-0001' } }), 404, 'not_found', 'dimension');
        expectError(await grid({ filters: { customer: s } }), 404, 'not_found', 'cell');
        expectError(await post(`/v1/models/${enc(s)}/grid`, { measure: 'quantity', rows: { dimension: 'product', members: ['P-0001'] }, cols: { dimension: 'time', members: ['2025'] } }), 404, 'not_found', 'table');
        expectError(await post(`/v1/models/${enc(s)}/grid`, { measure: 'quantity' }), 400, 'malformed', 'rows', 'the 400 before the 404');
        expectError(await get(`${m}/dimensions/${enc(s)}/members`), 404, 'not_found', 'dimension');
        expectError(await get(`${m}/dimensions/product/members?parent=${enc(s)}`), 404, 'not_found', 'cell');
        expectError(await get(`${m}/views/${enc(s)}`), 404, 'not_found', 'view');
        expectError(await get(`${m}/views/sales_summary_by_product_family?${enc(s)}=1`), 400, 'malformed', s.slice(0, 63));
        const v = await get(`${m}/views/sales_summary_by_product_family?family=${enc(s)}`);
        assert.equal(v.status, 200, v.text);
        assert.deepEqual(v.body.rows, [], 'a filter value is a bound parameter: no row matches');
        expectError(await get(`/get_updates?table=${enc(s)}&since=0&timeout=0`), 404, 'not_found', 'table');
        expectError(await get(`/v1/models/${enc(s)}/changes?since=0&timeout=0`), 404, 'not_found', 'table');
        expectError(await get(`/v1/models/${enc(s)}/events`), 404, 'not_found', 'table');
        expectError(await get(`/v1/models/${enc(s)}`), 404, 'not_found', 'table');
        expectError(await call('DELETE', `/v1/models/${enc(s)}`), 404, 'not_found', 'table');
    });
    hcase(`injection ${i + 1} in member operations: member, parent, facts_to, dimension`, async () => {
        const mp = (d) => `/v1/models/${MODEL}/dimensions/${enc(d)}/members`;
        expectError(await post(mp('product'), { op: 'rename', member: s, name: 'x' }), 404, 'not_found', 'cell');
        expectError(await post(mp('product'), { op: 'add', key: 'HI-NEW', parent: s }), 404, 'not_found', 'cell');
        expectError(await post(mp('product'), { op: 'move', member: 'HI-REN', parent: s }), 404, 'not_found', 'cell');
        expectError(await post(mp('product'), { op: 'delete', member: s }), 404, 'not_found', 'cell');
        expectError(await post(mp('product'), { op: 'add', key: 'HI-NEW', parent: 'P-0001', facts_to: s }), 404, 'not_found', 'cell');
        expectError(await post(mp(s), { op: 'add', key: 'HI-NEW' }), 404, 'not_found', 'dimension');
    });
}

hcase('member bodies: NUL, control characters, empty, too long, unknown op -> 422 invalid_value before anything is queued', async () => {
    const mp = `/v1/models/${MODEL}/dimensions/product/members`;
    expectError(await post(mp, { op: 'add', key: 'HI-\u0000x', parent: 'S01-B1-F1' }), 422, 'invalid_value', 'key');
    expectError(await post(mp, { op: 'add', key: 'HI-\u0007', parent: 'S01-B1-F1' }), 422, 'invalid_value', 'key');
    expectError(await post(mp, { op: 'add', key: '', parent: 'S01-B1-F1' }), 422, 'invalid_value', 'key');
    expectError(await post(mp, { op: 'add', key: 'k'.repeat(257), parent: 'S01-B1-F1' }), 422, 'invalid_value', 'key');
    expectError(await post(mp, { op: 'rename', member: 'HI-REN', name: `${INJ}\u0000tail` }), 422, 'invalid_value', 'name');
    expectError(await post(mp, { op: 'rename', member: 'HI-REN', name: '' }), 422, 'invalid_value', 'name');
    expectError(await post(mp, { op: `add'; DROP TABLE ds_member; --`, key: 'HI-X' }), 422, 'invalid_value', 'op');
});

// ---------------------------------------------------------------------------
// names are whole (issue 12): a NUL or any control character, at the start,
// in the middle and at the end of every name a request carries, is refused
// with the contract's code (422 for a JSON string, 400 for an object key, a
// path segment or a query parameter); every name at its limit is read whole
// and one byte past it is a 422, never a prefix

const at3 = (s, c) => [`${c}${s}`, `${s.slice(0, 2)}${c}${s.slice(2)}`, `${s}${c}`];
const CTRL = ['\u0000', '\u0001', '\u001f', '\u007f', '\u0085'];
const MP = `/v1/models/${MODEL}/dimensions/product/members`;
const GRID = `/v1/models/${MODEL}/grid`;
const grid = (b) => post(GRID, { measure: 'quantity', rows: { dimension: 'product', members: ['P-0001'] }, cols: { dimension: 'time', members: ['2025'] }, ...b });
const def = (patch) => ({ name: 'hi_def', dimensions: [{ name: 'd', root: { key: 'All', name: 'All d' }, members: [{ key: 'A1', name: 'a one' }, { key: 'A2', parent: 'A1' }] }], measures: [{ name: 'm', scale: 0 }], ...patch });
const defDim = (patch) => def({ dimensions: [{ name: 'd', root: { key: 'All', name: 'All d' }, members: [{ key: 'A1' }], ...patch }] });
const defMember = (patch) => def({ dimensions: [{ name: 'd', members: [{ key: 'A1' }, { key: 'A2', parent: 'A1', ...patch }] }] });

// [what, a request with the name v in it, status, code, target]
const nameFields = [
    ['/update_cell table', (v) => post('/update_cell', { table: v, column: 'quantity', cell: LEAF, value: 1 }), 'table'],
    ['cells table', (v) => write({ table: v }), 'table'],
    ['column', (v) => write({ column: v }), 'column'],
    ['a cell member', (v) => write({ cell: { ...LEAF, customer: v } }), 'cell'],
    ['a hold member', (v) => post(CELLS, { column: 'quantity', cell: { product: 'S01' }, value: 1, holds: [{ product: v }] }), 'cell'],
    ['a batch write column', (v) => post(`/v1/models/${MODEL}/cells:batch`, { writes: [{ column: v, cell: LEAF, value: 1 }] }), 'column'],
    ['method', (v) => write({ method: v }), 'method'],
    ['request_id', (v) => write({ request_id: v }), 'request_id'],
    ['member op key', (v) => post(MP, { op: 'add', key: v, parent: 'S01-B1-F1' }), 'key'],
    ['member op name', (v) => post(MP, { op: 'rename', member: 'HI-REN', name: v }), 'name'],
    ['member op member', (v) => post(MP, { op: 'delete', member: v }), 'cell'],
    ['member op parent', (v) => post(MP, { op: 'move', member: 'HI-REN', parent: v }), 'cell'],
    ['member op facts_to', (v) => post(MP, { op: 'add', key: 'HI-NEW', parent: 'P-0001', facts_to: v }), 'cell'],
    ['grid measure', (v) => grid({ measure: v }), 'column'],
    ['grid rows dimension', (v) => grid({ rows: { dimension: v, members: ['P-0001'] } }), 'dimension'],
    ['grid cols member', (v) => grid({ cols: { dimension: 'time', members: [v] } }), 'cell'],
    ['grid filter member', (v) => grid({ filters: { customer: v } }), 'cell'],
    ['model name', (v) => post('/v1/models', def({ name: v })), 'table'],
    ['model dimension name', (v) => post('/v1/models', defDim({ name: v })), 'dimension'],
    ['model root key', (v) => post('/v1/models', defDim({ root: { key: v } })), 'key'],
    ['model root name', (v) => post('/v1/models', defDim({ root: { key: 'All', name: v } })), 'name'],
    ['model member key', (v) => post('/v1/models', defMember({ key: v })), 'key'],
    ['model member name', (v) => post('/v1/models', defMember({ name: v })), 'name'],
    ['model member parent', (v) => post('/v1/models', defMember({ parent: v })), 'cell'],
    ['model measure name', (v) => post('/v1/models', def({ measures: [{ name: v }] })), 'measure'],
];
for (const [what, send, target] of nameFields) {
    hcase(`${what}: a NUL or control character at its start, middle and end -> 422 invalid_value (${target})`, async () => {
        for (const c of CTRL)
            for (const v of at3(what === 'method' ? 'equal' : 'P-0001', c))
                expectError(await send(v), 422, 'invalid_value', target, `${JSON.stringify(v)}`);
    });
}

hcase('a model definition: members A1 and A1\\u0000x are no two members keyed A1 -> 422, nothing created', async () => {
    expectError(await post('/v1/models', def({ dimensions: [{ name: 'd', members: [{ key: 'A1' }, { key: 'A1\u0000x' }] }] })), 422, 'invalid_value', 'key');
    expectError(await post('/v1/models', def({ dimensions: [{ name: 'd', members: [{ key: 'A1' }, { key: 'A1' }] }] })), 422, 'invalid_value', 'key');
    // the definition's 400s come before its names
    expectError(await post('/v1/models', def({ name: 'x\u0000', dimensions: [{ name: 'd', members: [{ key: 1 }] }] })), 400, 'malformed', 'key');
    expectError(await post('/v1/models', def({ dimensions: [{ name: 'd', root: { key: 5 } }] })), 400, 'malformed', 'key');
    expectError(await post('/v1/models', def({ dimensions: [{ name: 'd', members: [{ key: 'A1', parent: 7 }] }] })), 400, 'malformed', 'parent');
    expectError(await get('/v1/models/hi_def'), 404, 'not_found', 'table');
});

// every object key is a field or a dimension name: a control character in
// one is malformed JSON for the server (json-c would cut the key at a NUL)
const keyCases = [
    ['a cell dimension', (k) => write({ cell: { ...LEAF, [k]: 'C-0001' } })],
    ['a hold dimension', (k) => post(CELLS, { column: 'quantity', cell: { product: 'S01' }, value: 1, holds: [{ [k]: 'P-0001' }] })],
    ['a grid filter dimension', (k) => grid({ filters: { [k]: 'C-0001' } })],
    ['a field of a write', (k) => post(CELLS, { column: 'quantity', cell: LEAF, [k]: 1 })],
    ['a field of a batch', (k) => post(`/v1/models/${MODEL}/cells:batch`, { [k]: [{ column: 'quantity', cell: LEAF, value: 1 }] })],
    ['a field of a grid', (k) => grid({ [k]: { product: 'P-0001' } })],
    ['a field of a model definition', (k) => post('/v1/models', def({ [k]: 'x' }))],
];
for (const [what, send] of keyCases) {
    hcase(`${what} as a key with a NUL or control character at its start, middle and end -> 400 malformed (body)`, async () => {
        const base = { 'a cell dimension': 'customer', 'a hold dimension': 'product', 'a grid filter dimension': 'customer',
            'a field of a write': 'value', 'a field of a batch': 'writes', 'a field of a grid': 'filters', 'a field of a model definition': 'name' }[what];
        for (const c of CTRL)
            for (const k of at3(base, c)) {
                const e = expectError(await send(k), 400, 'malformed', 'body', JSON.stringify(k));
                assert.match(e.message, /control character/);
            }
    });
}

hcase('every name at its limit is read whole (404 or found); one byte past it is a 422, never the prefix', async () => {
    const n256 = 'n'.repeat(256), n257 = 'n'.repeat(257);
    // the model named with 256 a's exists: 257 bytes, or 256 + XYZ, are not it
    for (const t of [`${LONG}a`, `${LONG}XYZ`]) {
        expectError(await post('/update_cell', { table: t, column: 'm', cell: { d: 'x1' }, value: 9 }), 422, 'invalid_value', 'table');
        expectError(await get(`/get_updates?table=${t}&since=0`), 422, 'invalid_value', 'table');
        expectError(await get(`/v1/models/${t}`), 422, 'invalid_value', 'table');
        expectError(await post(`/v1/models/${t}/cells`, { column: 'm', cell: { d: 'x1' }, value: 9 }), 422, 'invalid_value', 'table');
        expectError(await get(`/v1/models/${t}/changes?since=0`), 422, 'invalid_value', 'table');
    }
    expectError(await post('/update_cell', { table: LONG, column: 'm', cell: { d: 'x1' }, value: 9, if_seq: 0 }), 409, 'stale', undefined, 'the 256-byte table itself');
    expectError(await write({ column: n256 }), 404, 'not_found', 'column');
    expectError(await write({ column: n257 }), 422, 'invalid_value', 'column');
    expectError(await write({ cell: { [n256]: 'x' } }), 404, 'not_found', 'dimension');
    expectError(await write({ cell: { [n257]: 'x' } }), 422, 'invalid_value', 'dimension');
    expectError(await write({ cell: { ...LEAF, product: n256 } }), 404, 'not_found', 'cell');
    expectError(await write({ cell: { ...LEAF, product: n257 } }), 422, 'invalid_value', 'cell');
    expectError(await get(cellUrl(`measure=quantity&product=${n256}`)), 404, 'not_found', 'cell');
    expectError(await get(cellUrl(`measure=quantity&product=${n257}`)), 422, 'invalid_value', 'cell');
    expectError(await get(cellUrl(`measure=${n257}`)), 422, 'invalid_value', 'column');
    expectError(await get(cellUrl(`measure=quantity&${n257}=x`)), 422, 'invalid_value', 'dimension');
    expectError(await get(`${MP}?parent=${n256}`), 404, 'not_found', 'cell');
    expectError(await get(`${MP}?parent=${n257}`), 422, 'invalid_value', 'cell');
    expectError(await get(`/v1/models/${MODEL}/dimensions/${n256}/members`), 404, 'not_found', 'dimension');
    expectError(await get(`/v1/models/${MODEL}/dimensions/${n257}/members`), 422, 'invalid_value', 'dimension');
    expectError(await get(`/v1/models/${MODEL}/views/${n256}`), 404, 'not_found', 'view');
    expectError(await get(`/v1/models/${MODEL}/views/${n257}`), 422, 'invalid_value', 'view');
    expectError(await post(MP, { op: 'add', key: n256, parent: 'NO-SUCH' }), 404, 'not_found', 'cell', 'a 256-byte key is a key');
    expectError(await post(MP, { op: 'add', key: n257, parent: 'S01-B1-F1' }), 422, 'invalid_value', 'key');
    expectError(await post('/v1/models', def({ name: n257 })), 422, 'invalid_value', 'table');
    // a request_id at its limit is taken (the writer's refusal is recorded), one past is a 422
    expectError(await write({ holds: [{ product: 'P-0002' }], request_id: `h${'r'.repeat(127)}` }), 409, 'held');
    expectError(await write({ request_id: 'r'.repeat(129) }), 422, 'invalid_value', 'request_id');
});

// ---------------------------------------------------------------------------
// silent acceptance (issue 12 item 10): each is refused naming what is wrong

hcase('a query parameter given twice -> 400 malformed naming it (never the last one)', async () => {
    expectError(await get(`/v1/models/${MODEL}/changes?since=0&since=${seqBase}`), 400, 'malformed', 'since');
    expectError(await get(`/get_updates?table=${MODEL}&table=${LONG}&since=0`), 400, 'malformed', 'table');
    expectError(await get(cellUrl('measure=quantity&product=P-0001&product=P-0002')), 400, 'malformed', 'product');
    expectError(await get(cellUrl('measure=quantity&measure=net_amount')), 400, 'malformed', 'measure');
    expectError(await get(`${MP}?parent=S01&parent=S02`), 400, 'malformed', 'parent');
    expectError(await get(`/v1/models/${MODEL}/views/sales_summary_by_product_family?limit=1&limit=2`), 400, 'malformed', 'limit');
});

hcase('a query parameter the route does not take -> 400 malformed naming it (members?parentx=S01 is not the root\'s children)', async () => {
    expectError(await get(`${MP}?parentx=S01`), 400, 'malformed', 'parentx');
    expectError(await get(`/v1/models/${MODEL}/changes?since=0&timeout=0&detial=none`), 400, 'malformed', 'detial');
    expectError(await get(`/get_updates?table=${MODEL}&since=0&tabel=x`), 400, 'malformed', 'tabel');
    expectError(await get(`/v1/models?x=1`), 400, 'malformed', 'x');
    expectError(await get(`/v1/models/${MODEL}?seq=1`), 400, 'malformed', 'seq');
    expectError(await get('/health?probe'), 400, 'malformed', 'probe');
    expectError(await post(`${CELLS}?wait=false`, { column: 'quantity', cell: LEAF, value: 1 }), 400, 'malformed', 'wait');
    // the cell read takes any dimension: an unknown one is a 404
    expectError(await get(cellUrl('measure=quantity&colour=red')), 404, 'not_found', 'dimension');
});

hcase('numbers in the query: a sign, a space, a leading zero, %00 -> 400 malformed (never absent)', async () => {
    for (const q of ['since=+1', 'since=%201', 'since=01', 'since=0&timeout=3%00', 'since=0&timeout=', 'since=0&timeout']) {
        const target = q.includes('timeout') ? 'timeout' : 'since';
        expectError(await get(`/v1/models/${MODEL}/changes?${q}`), 400, 'malformed', target, q);
    }
    expectError(await get(`/v1/models/${MODEL}/views/sales_summary_by_product_family?limit=010`), 400, 'malformed', 'limit');
});

hcase('a grid filter on the dimension on rows or columns -> 422 invalid_value (filters)', async () => {
    const e = expectError(await grid({ filters: { product: 'P-0002' } }), 422, 'invalid_value', 'filters');
    assert.match(e.message, /product/);
    expectError(await grid({ filters: { time: '2025-01' } }), 422, 'invalid_value', 'filters');
    const ok = await grid({ filters: { customer: 'C-0001' } });
    assert.equal(ok.status, 200, ok.text);
});

hcase('an if_seq above the model\'s seq -> 409 stale with the current seq, on a leaf, a total, a batch and a member op', async () => {
    for (const r of [await write({ if_seq: seqBase + 1 }), await write({ if_seq: 2 ** 53 }),
        await post(CELLS, { column: 'quantity', cell: { product: 'S01' }, value: 1, if_seq: seqBase + 5 }),
        await post(`/v1/models/${MODEL}/cells:batch`, { writes: [{ column: 'quantity', cell: LEAF, value: 1 }], if_seq: seqBase + 1 }),
        await post(MP, { op: 'rename', member: 'HI-REN', name: 'x', if_seq: seqBase + 1 })]) {
        const e = expectError(r, 409, 'stale', 'if_seq');
        assert.equal(e.seq, seqBase);
    }
});

hcase('decimal strings with a leading zero ("012", "-012", "00.5") -> 422 invalid_value, as JSON numbers', async () => {
    for (const [field, v] of [['value', '012'], ['value', '-012'], ['value', '00.5'], ['delta', '01'], ['percent', '05']]) {
        const b = { column: 'quantity', cell: LEAF, [field]: v };
        expectError(await post(CELLS, b), 422, 'invalid_value', field, `${field} ${v}`);
    }
});

// ---------------------------------------------------------------------------
// NUL bytes on the wire: libmicrohttpd keeps the request line and headers as
// C strings; such a request is refused before it is routed, and closed

const headTail = 'Host: x\r\nConnection: close\r\n\r\n';
hcase('a NUL byte in the request line (path, query, method, version) -> 400 malformed (url), closed; /health\\0/x is not /health', async () => {
    for (const line of ['GET /health\0/x HTTP/1.1', 'GET /he\0alth HTTP/1.1', 'GET \0/health HTTP/1.1', 'GET /health\0 HTTP/1.1',
        `GET /v1/models/${MODEL}/cell?measure=quantity&product=S01\0&x=1 HTTP/1.1`, `GET /v1/models/${MODEL}/changes?since=0&timeout=3\0 HTTP/1.1`,
        'GET /health?\0 HTTP/1.1', 'GET\0X /health HTTP/1.1']) {
        await expectFramingRefused(`${line}\r\n${headTail}`, 'url', { method: 'GET', path: '/health' });
    }
    // in the version libmicrohttpd refuses it itself (its own 400 page)
    const v = await raw(`GET /health HTTP/1.1\0x\r\n${headTail}`);
    assert.ok(closedByServer(v), v.how);
    assert.equal(responses(v.buf)[0]?.status, 400, v.text.slice(0, 200));
});

hcase('a NUL byte in a header (X-API-Key, Authorization, X-User, Content-Type) at its start, middle and end -> 400 malformed (headers), closed', async () => {
    for (const [name, value] of [['X-API-Key', 'key'], ['Authorization', 'Bearer key'], ['X-User', 'bob'], ['Content-Type', 'application/json']])
        for (const v of at3(value, '\0').concat(at3(value, '\0\0z')))
            await expectFramingRefused(`GET /v1/models HTTP/1.1\r\n${name}: ${v}\r\n${headTail}`, 'headers', { method: 'GET', path: '/v1/models' });
    // a NUL in the last header, and lines ending with a bare LF (the request line's too: the
    // line end is the head's, target headers; a NUL before it is the request line's, url)
    await expectFramingRefused(`GET /health HTTP/1.1\r\nHost: x\r\nX-Last: a\0\0\0\0zz\r\n\r\n`, 'headers', { method: 'GET', path: '/health' });
    await expectFramingRefused('GET /health HTTP/1.1\nHost: x\nConnection: close\n\n', 'headers', { method: 'GET', path: '/health' });
    await expectFramingRefused('GET /he\0alth HTTP/1.1\nHost: x\nConnection: close\n\n', 'url', { method: 'GET', path: '/health' });
    await expectFramingRefused('GET /health HTTP/1.1\r\nHost: x\nConnection: close\r\n\r\n', 'headers', { method: 'GET', path: '/health' });
});

hcase('large heads are read whole: a 12 KB header, 100 header lines (the limit), a 6 KB query -> answered', async () => {
    const big = await raw(`GET /health HTTP/1.1\r\nX-Big: ${'b'.repeat(12000)}\r\n${headTail}`);
    assert.equal(responses(big.buf)[0]?.status, 200, big.text.slice(0, 300));
    // 98 of them, then Host and Connection (headTail): 100 lines, the most a head takes
    const many = await raw(`GET /health HTTP/1.1\r\n${Array.from({ length: 98 }, (_, i) => `X-H${i}: ${'v'.repeat(i)}`).join('\r\n')}\r\n${headTail}`);
    assert.equal(responses(many.buf)[0]?.status, 200, many.text.slice(0, 300));
    const q = await raw(`GET /v1/models/${MODEL}/views/sales_summary_by_product_family?family=${'f'.repeat(6000)} HTTP/1.1\r\n${headTail}`);
    assert.equal(responses(q.buf)[0]?.status, 200, q.text.slice(0, 300));
});

hcase('X-User (open mode): over 64 bytes, a space, a byte beyond ASCII -> 400 malformed (X-User); a control character is the head check\'s (headers, closed)', async () => {
    for (const u of ['u'.repeat(65), 'bob smith', 'b\u00f8b', 'bob\u00a0']) {
        const r = await raw(Buffer.from(`GET /v1/models HTTP/1.1\r\nX-User: ${u}\r\n${headTail}`, 'utf8'));
        const [res] = responses(r.buf);
        assert.equal(res?.status, 400, r.text.slice(0, 300));
        assert.equal(JSON.parse(res.body).error.target, 'X-User', `${JSON.stringify(u)}: ${res.body}`);
    }
    for (const u of ['bob\u0001', 'bob\u007f', 'b\rob', '\u001bbob'])
        await expectFramingRefused(`GET /v1/models HTTP/1.1\r\nX-User: ${u}\r\n${headTail}`, 'headers', { method: 'GET', path: '/v1/models' });
    const ok = await get('/v1/models', { headers: { 'X-User': 'u'.repeat(64) } });
    assert.equal(ok.status, 200, ok.text);
});

// ---------------------------------------------------------------------------
// invalid UTF-8: in bodies, paths and queries (400), and
// the answer that echoes it is still valid UTF-8 (checked by call())

const invalidUtf8 = {
    'a stray continuation byte': [0x80],
    'a truncated sequence': [0xc3],
    'an overlong slash': [0xc0, 0xaf],
    'a UTF-16 surrogate': [0xed, 0xa0, 0x80],
    'beyond U+10FFFF': [0xf4, 0x90, 0x80, 0x80],
    'bytes 0xFE 0xFF': [0xfe, 0xff],
};
for (const [what, bytes] of Object.entries(invalidUtf8)) {
    hcase(`invalid UTF-8 (${what}) in a body string and in a key -> 400 malformed (body)`, async () => {
        const b = Buffer.from(bytes);
        const inValue = Buffer.concat([Buffer.from('{"column":"quantity","cell":{"product":"P-'), b, Buffer.from('"},"value":1}')]);
        expectError(await post(CELLS, inValue), 400, 'malformed', 'body');
        const inKey = Buffer.concat([Buffer.from('{"column":"quantity","cell":{"pro'), b, Buffer.from('duct":"P-0002"},"value":1}')]);
        expectError(await post(CELLS, inKey), 400, 'malformed', 'body');
    });
}

hcase('invalid UTF-8 in path and query identifiers -> 400 malformed naming the path or the parameter, the answer valid UTF-8', async () => {
    const m = `/v1/models/${MODEL}`;
    expectError(await get('/v1/models/%FF%FE/cell?measure=quantity'), 400, 'malformed', 'path');
    expectError(await get(cellUrl('measure=%ED%A0%80')), 400, 'malformed', 'measure');
    expectError(await get(cellUrl('measure=quantity&%FF=P-0001')), 400, 'malformed', 'query');
    expectError(await get(cellUrl('measure=quantity&product=%C3%28')), 400, 'malformed', 'product');
    // a valid 3-byte character 80 times: 240 bytes, a name; 86 times: 258 bytes, over the limit
    expectError(await get(cellUrl(`measure=quantity&product=${'%E2%82%AC'.repeat(80)}`)), 404, 'not_found', 'cell');
    expectError(await get(cellUrl(`measure=quantity&product=${'%E2%82%AC'.repeat(86)}`)), 422, 'invalid_value', 'cell');
    expectError(await get(`${m}/dimensions/product/members?parent=%C0%AF`), 400, 'malformed', 'parent');
    expectError(await get(`${m}/dimensions/%FF/members`), 400, 'malformed', 'path');
    expectError(await get(`${m}/views/%FF%80`), 400, 'malformed', 'path');
    expectError(await get('/get_updates?table=%FF&since=0&timeout=0'), 400, 'malformed', 'table');
});

hcase('raw (unescaped) invalid UTF-8 bytes in the request line -> 400 malformed naming the path or the parameter, the answer valid UTF-8', async () => {
    const line = (a, b) => Buffer.concat([Buffer.from(a), Buffer.from(b), Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]);
    const cases = [
        [line('GET /v1/models/', [0xff, 0xfe, ...Buffer.from('/cell?measure=quantity')]), 'path', `/v1/models/x/cell`],
        [line(`GET /v1/models/${MODEL}/cell?measure=quantity&product=`, [0xc3, 0x28]), 'product', `/v1/models/${MODEL}/cell`],
    ];
    for (const [req, target, p] of cases) {
        const r = await raw(req);
        const [res] = responses(r.buf);
        assert.equal(res?.status, 400, r.text);
        const text = utf8.decode(r.buf.subarray(r.buf.indexOf('\r\n\r\n') + 4));
        const body = JSON.parse(text);
        validateResponse('GET', p, 400, res.headers['content-type'], body, text);
        assert.equal(body.error.code, 'malformed');
        assert.equal(body.error.target, target);
    }
});

hcase('bad escapes, %00, control characters and too long query values -> 400 malformed (422 past a limit); never the root', async () => {
    for (const [q, target] of [['product=%00', 'product'], ['product=%G1', 'product'], ['product=P%0', 'product'], ['product=P-0002%01', 'product'],
        ['product=%7FP', 'product'], ['product=P%C2%85', 'product'], ['pro%00duct=P-0002', 'query'], ['pro%0Aduct=P-0002', 'query']]) {
        expectError(await get(cellUrl(`measure=quantity&${q}`)), 400, 'malformed', target, q);
    }
    expectError(await get(cellUrl(`measure=quantity&product=${'A'.repeat(2000)}`)), 422, 'invalid_value', 'cell');
    expectError(await get(`/v1/models/${MODEL}/dimensions/product/members?parent=%00`), 400, 'malformed', 'parent');
    expectError(await get(`/v1/models/${MODEL}/dimensions/product/members?parent=%ZZ`), 400, 'malformed', 'parent');
    expectError(await get(`/v1/models/${MODEL}/views/sales_summary_by_product_family?family=%00`), 400, 'malformed', 'family');
    for (const seg of ['sa%00les', '%00sales', 'sales%00', 'sa%01les', 'sales%0A', 'sa%7Fles', 'sa%ZZles']) {
        expectError(await get(`/v1/models/${seg}`), 400, 'malformed', 'path', seg);
        expectError(await get(`/v1/models/${MODEL}/dimensions/${seg}/members`), 400, 'malformed', 'path', seg);
        expectError(await get(`/v1/models/${MODEL}/views/${seg}`), 400, 'malformed', 'path', seg);
        expectError(await post(`/v1/models/${seg}/cells`, { column: 'quantity', cell: LEAF, value: 1 }), 400, 'malformed', 'path', seg);
    }
});

hcase('since and timeout: negative, huge, NaN -> 400 malformed', async () => {
    for (const q of ['since=-1', 'since=99999999999999999999', 'since=NaN', 'since=1e3', 'since=0&timeout=-1', 'since=0&timeout=1e9']) {
        const target = q.includes('timeout') ? 'timeout' : 'since';
        expectError(await get(`/v1/models/${MODEL}/changes?${q}`), 400, 'malformed', target, q);
    }
});

hcase('routes: unknown path 404 route, wrong method 405 with Allow', async () => {
    expectError(await get(`/v1/models/${MODEL}/cells/../../../etc/passwd`, { route: false }), 404, 'not_found', 'route');
    expectError(await get('/v1/models/sales/cell/%2e%2e/%2e%2e', { route: false }), 404, 'not_found', 'route');
    const r = await call('PUT', CELLS, { body: '{}', route: false });
    assert.equal(r.status, 405, r.text);
    assert.equal(r.body.error.code, 'method_not_allowed');
    assert.equal(r.headers.allow, 'POST');
});

// ---------------------------------------------------------------------------
// refusals decided by the writer: nothing applied, no seq

hcase('writer refusals: held 409, stale 409 with seq, request_id_reused 409', async () => {
    expectError(await write({ holds: [{ product: 'P-0002' }] }), 409, 'held');
    const e = expectError(await write({ value: 3, if_seq: 0 }), 409, 'stale');
    assert.equal(e.seq, seqBase);
    expectError(await write({ value: 9, request_id: setupFacts.rid }), 409, 'request_id_reused', 'request_id');
});

// ---------------------------------------------------------------------------
// subscribers per model (--subscribers-max): SSE and WebSocket together

function openSSE(q = '') {
    return new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: `/v1/models/${MODEL}/events${q}`, agent: false }, (res) => {
            let text = '';
            res.on('data', (d) => (text += d));
            res.on('error', () => {});
            if (res.statusCode === 200) {
                resolve({ status: 200, res, req, text: () => text, ended: new Promise((r) => res.on('close', r)) });
            } else {
                res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: JSON.parse(text), text: () => text }));
            }
        });
        req.on('error', reject);
    });
}

function openWS() {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/models/${MODEL}/ws`);
        ws.once('open', () => resolve({ status: 101, ws }));
        ws.once('unexpected-response', (req, res) => {
            let text = '';
            res.on('data', (d) => (text += d));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: JSON.parse(text), text: () => text }));
        });
        ws.once('error', (e) => reject(e));
    });
}

function expectSubscribersFull(r, kind) {
    assert.equal(r.status, 429, `${kind}: ${r.text()}`);
    const path = `/v1/models/${MODEL}/${kind === 'ws' ? 'ws' : 'events'}`;
    validateResponse('GET', path, 429, r.headers['content-type'], r.body, r.text());
    assert.equal(r.body.error.code, 'rate_limited');
    assert.equal(r.body.error.target, 'subscribers');
    assert.equal(r.body.error.count, LIM.subscribers);
    assert.equal(r.body.error.limit, LIM.subscribers);
    assert.ok(Number(r.headers['retry-after']) >= 1, 'Retry-After');
}

hcase(`subscribers beyond --subscribers-max ${LIM.subscribers} (SSE + WebSocket) -> 429 rate_limited; a place frees when one leaves`, async () => {
    const sse = await openSSE();
    assert.equal(sse.status, 200);
    const ws = await openWS();
    assert.equal(ws.status, 101);
    try {
        expectSubscribersFull(await openSSE(), 'sse');
        expectSubscribersFull(await openWS(), 'ws');
        // streams are answers in progress: --request-timeout does not cut them
        await sleep((LIM.requestTimeout + 1) * 1000);
        assert.equal(ws.ws.readyState, WebSocket.OPEN, 'the WebSocket outlives --request-timeout');
        assert.ok(!sse.res.destroyed && sse.text().includes('retry:'), 'the event stream outlives --request-timeout');
        ws.ws.close();
        const again = await waitFor(async () => {
            const a = await openWS();
            return a.status === 101 && a;
        }, 'the WebSocket gave its place back', { intervalMs: 100 });
        again.ws.close();
    } finally {
        ws.ws.terminate();
        sse.req.destroy();
    }
});

// ---------------------------------------------------------------------------
// request smuggling and broken framing over raw sockets

const junk = '{"column":"quantity","cell":{"product":"P-0002"},"value":"x"}';
const postHead = `POST ${CELLS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n`;
const smuggled = `GET /v1/models/${MODEL}/views HTTP/1.1\r\nHost: x\r\n\r\n`;
const P = { method: 'POST', path: CELLS };

hcase('Content-Length twice with different values -> 400 malformed (Content-Length), closed', async () => {
    await expectFramingRefused(`${postHead}Content-Length: 5\r\nContent-Length: ${junk.length}\r\n\r\n${junk}`, 'Content-Length', P);
});

hcase('Transfer-Encoding chunked with Content-Length (CL.TE smuggling) -> 400, closed, the smuggled request never answered', async () => {
    await expectFramingRefused(`${postHead}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`, 'Transfer-Encoding', P);
    await expectFramingRefused(`${postHead}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${smuggled}`, 'Transfer-Encoding', P);
});

hcase('Transfer-Encoding other than one chunked (gzip, identity, twice) -> 400, closed', async () => {
    await expectFramingRefused(`${postHead}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 'Transfer-Encoding', P);
    await expectFramingRefused(`${postHead}Transfer-Encoding: identity\r\n\r\n${junk}`, 'Transfer-Encoding', P);
    await expectFramingRefused(`${postHead}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 'Transfer-Encoding', P);
});

hcase('whitespace before the colon and a folded Content-Length line -> 400 malformed (headers), closed', async () => {
    await expectFramingRefused(`${postHead}Content-Length : ${junk.length}\r\n\r\n${junk}`, 'headers', P);
    await expectFramingRefused(`GET /health HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n Content-Length: 40\r\n\r\n${smuggled}`, 'headers', { method: 'GET', path: '/health' });
});

hcase('the same Content-Length twice and chunked alone frame as usual', async () => {
    const body = '{"column":"quantity","cell":{"product":"P-9999"},"value":1}';
    const twice = await raw(`${postHead}Content-Length: ${body.length}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    const rs = responses(twice.buf);
    assert.equal(rs.length, 1, twice.text);
    assert.equal(rs[0].status, 404, twice.text);
    assert.equal(JSON.parse(rs[0].body).error.target, 'cell');
    const chunked = await raw(`${postHead}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
    assert.equal(responses(chunked.buf)[0]?.status, 404, chunked.text);
});

hcase('pipelined requests are answered in order, each once', async () => {
    const r = await raw(`GET /health HTTP/1.1\r\nHost: x\r\n\r\n${smuggled.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')}`);
    assert.deepEqual(responses(r.buf).map((x) => x.status), [200, 200], r.text);
});

hcase('broken HTTP (libmicrohttpd answers): negative, +N and huge Content-Length, bad chunk size, a line without colon, HTTP/0.9, a 100 KB URL, 3000 headers', async () => {
    const cases = [
        [`${postHead}Content-Length: -5\r\n\r\n`, 400],
        [`${postHead}Content-Length: +5\r\n\r\nhello`, 400],
        [`${postHead}Content-Length: 99999999999999999999999\r\n\r\n`, 413],
        [`${postHead}Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n`, 400],
        [`${postHead}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc`, 413],
        ['GET /health HTTP/1.1\r\nHost: x\r\nBadHeader\r\n\r\n', 400],
        ['GET /health\r\n\r\n', 400],
        [`GET ${cellUrl(`measure=quantity&product=${'A'.repeat(100000)}`)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
        [`GET /health HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`, 431],
    ];
    for (const [req, status] of cases) {
        const r = await raw(req);
        assert.ok(closedByServer(r), `${req.slice(0, 80)}: closed, not ${r.how}`);
        assert.equal(responses(r.buf)[0]?.status, status, `${req.slice(0, 80)}: ${r.text.slice(0, 200)}`);
    }
});

// ---------------------------------------------------------------------------
// The request head, Expect, late bodies and the WebSocket handshake (issue
// 12, items 4-7): every head HTTP/1.1 refuses, or that a proxy in front
// could frame otherwise, is one JSON answer with the precise status, code
// and target, the connection is closed and nothing after it is answered (a
// smuggled `GET /metrics` never is).

describe('request head, Expect, late bodies, WebSocket handshake', () => {
    const SMUGGLED = 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n';
    const ERR_PATH = { method: 'GET', path: '/health' };

    // One raw request refused: one JSON answer (status, code, target; valid
    // against the contract for p, or the Error schema), closed by the server.
    async function refused(req, status, code, target, p = P, what = '') {
        const r = await raw(req);
        const label = `${what} ${JSON.stringify(String(req).slice(0, 120))}`;
        assert.ok(closedByServer(r), `${label}: the server closes the connection: ${r.how} ${r.text.slice(0, 300)}`);
        const rs = responses(r.buf);
        assert.equal(rs.length, 1, `${label}: exactly one answer: ${r.text.slice(0, 600)}`);
        assert.equal(rs[0].status, status, `${label}: ${r.text.slice(0, 400)}`);
        assert.equal(rs[0].headers.connection, 'close', label);
        assert.match(rs[0].headers['content-type'] || '', /^application\/json/, label);
        const body = JSON.parse(rs[0].body);
        if (p) validateResponse(p.method, p.path, status, rs[0].headers['content-type'], body, rs[0].body);
        else validateSchema('Error', body, label);
        assert.equal(body.error.code, code, `${label}: ${rs[0].body}`);
        assert.equal(body.error.target, target, `${label}: ${rs[0].body}`);
        return body.error;
    }

    // The first answer on a raw connection (it may stay open): resolves as
    // soon as one whole answer is in, or the server closed, or after ms.
    function firstAnswer(data, { ms = 5000 } = {}) {
        return new Promise((resolve) => {
            const s = net.connect(port, '127.0.0.1');
            let buf = Buffer.alloc(0);
            const done = (how) => {
                s.destroy();
                resolve({ how, buf, text: buf.toString('latin1'), rs: responses(buf) });
            };
            s.on('data', (d) => {
                buf = Buffer.concat([buf, d]);
                const rs = responses(buf);
                if (rs.length && rs[0].body.length >= Number(rs[0].headers['content-length'] || 0)) done('answer');
            });
            s.on('end', () => done('closed'));
            s.on('error', (e) => done(`error ${e.code}`));
            s.setTimeout(ms, () => done('timeout'));
            s.on('connect', () => s.write(data));
        });
    }

    const cellsBody = '{"column":"quantity","cell":{"product":"P-9999"},"value":1}';

    hcase('obs-fold of Transfer-Encoding (the smuggling of the issue) in every order, casing, value and fold -> 400 headers, closed, the smuggled GET /metrics never answered', async () => {
        let n = 0;
        for (const name of ['Transfer-Encoding', 'transfer-encoding', 'TRANSFER-ENCODING']) {
            for (const [first, cont] of [['', 'chunked'], ['identity', 'chunked'], ['chunked', 'identity'], ['', 'identity'], ['gzip', 'chunked'], ['', 'CHUNKED']]) {
                for (const fold of [' ', '\t', '  \t']) {
                    const te = `${name}:${first ? ` ${first}` : ''}\r\n${fold}${cont}\r\n`;
                    const cl = `Content-Length: ${SMUGGLED.length}\r\n`;
                    for (const head of [te + cl, cl + te]) {
                        await refused(`${postHead}${head}\r\n${SMUGGLED}`, 400, 'malformed', 'headers', P, name);
                        n++;
                    }
                }
            }
        }
        assert.equal(n, 108);
    });

    hcase('obs-fold anywhere -> 400 headers: a folded plain value, a folded Content-Length, a first header line that starts with whitespace', async () => {
        const cases = [
            'GET /health HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n  b\r\n\r\n',
            'GET /health HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n\tb\r\n\r\n',
            `${postHead}Content-Length:\r\n ${cellsBody.length}\r\n\r\n${cellsBody}`,
            'GET /health HTTP/1.1\r\n Host: x\r\n\r\n',
            'GET /health HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n b\r\n c\r\n\r\n',
        ];
        for (const req of cases) await refused(req, 400, 'malformed', 'headers', req.startsWith('POST') ? P : ERR_PATH);
    });

    hcase('Transfer-Encoding other than exactly one chunked (lists, a trailing space, parameters, HTTP/1.0) -> 400 Transfer-Encoding, closed', async () => {
        for (const te of ['chunked, chunked', 'chunked, gzip', 'gzip, chunked', 'identity', 'chunked ', 'chunked\t', 'chunked;x=1', 'x-chunked', '']) {
            await refused(`${postHead}Transfer-Encoding: ${te}\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400, 'malformed', 'Transfer-Encoding', P, te);
        }
        await refused(`POST ${CELLS} HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400, 'malformed', 'Transfer-Encoding');
        await refused(`GET /health HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'malformed', 'Transfer-Encoding', ERR_PATH);
        await refused(`${postHead}Content-Length: 5\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n`, 400, 'malformed', 'Transfer-Encoding');
        // exactly chunked, in any case and header-name case, frames as usual
        for (const h of ['Transfer-Encoding: CHUNKED', 'transfer-encoding: Chunked']) {
            const r = await raw(`${postHead}${h}\r\nConnection: close\r\n\r\n${cellsBody.length.toString(16)}\r\n${cellsBody}\r\n0\r\n\r\n`);
            const rs = responses(r.buf);
            assert.equal(rs.length, 1, r.text);
            assert.equal(rs[0].status, 404, r.text);
            assert.equal(JSON.parse(rs[0].body).error.target, 'cell');
        }
    });

    hcase('a bare CR, a bare LF, a NUL or another control character in the head -> 400 headers or request line, closed', async () => {
        for (const v of ['a\rb', 'a\r', '\ra', 'a\u0000b', 'a\u0001b', 'a\u007fb', 'a\u000bb', 'a\u001bb']) {
            await refused(`GET /health HTTP/1.1\r\nHost: x\r\nX-Foo: ${v}\r\nX-Bar: y\r\n\r\n`, 400, 'malformed', 'headers', ERR_PATH, JSON.stringify(v));
            await refused(`GET /health HTTP/1.1\r\nHost: x\r\nX-Foo: ${v}\r\n\r\n`, 400, 'malformed', 'headers', ERR_PATH, `last ${JSON.stringify(v)}`);
        }
        // a bare LF ends a line for libmicrohttpd but not for a strict proxy:
        // here it would hide a Transfer-Encoding inside X-Foo's value
        await refused(`${postHead}X-Foo: a\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${SMUGGLED}`, 400, 'malformed', 'headers');
        await refused(`${postHead}X-Foo: a\nContent-Length: ${cellsBody.length}\r\n\r\n${cellsBody}`, 400, 'malformed', 'headers');
        await refused('GET /health HTTP/1.1\nHost: x\r\n\r\n', 400, 'malformed', 'headers', ERR_PATH, 'request line LF');
        await refused('GET /health HTTP/1.1\r\nHost: x\r\n\n', 400, 'malformed', 'headers', ERR_PATH, 'last line LF');
        await refused('GET /health HTTP/1.1\nHost: x\n\n', 400, 'malformed', 'headers', ERR_PATH, 'every line LF');
        // a control character between the colon and the value
        for (const c of ['\u000b', '\u000c', '\r', '\u0001'])
            await refused(`GET /health HTTP/1.1\r\nHost: x\r\nX-Foo:${c}v\r\n\r\n`, 400, 'malformed', 'headers', ERR_PATH, `after the colon ${JSON.stringify(c)}`);
        // names that are not tokens, and none
        for (const name of ['X(Foo)', 'X"Foo', 'X Foo', 'X-Foo\t', 'X/Foo', 'X{Foo}', ''])
            await refused(`GET /health HTTP/1.1\r\nHost: x\r\n${name}: v\r\n\r\n`, 400, 'malformed', 'headers', ERR_PATH, name);
        // the request target and query, as sent (a space: between path and version too)
        for (const t of ['/he\rlth', '/he\tlth', '/he lth', '/health ', '/health?a=\u0001', '/health?a=b\u007f', '/health?a=\rb', '/health?a b', '/health?\u007f=1'])
            await refused(`GET ${t} HTTP/1.1\r\nHost: x\r\n\r\n`, 400, 'malformed', 'request line', null, JSON.stringify(t));
        // a method that is not a token
        await refused('G(T /health HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'malformed', 'request line', null, 'method');
    });

    hcase('Expect: 100-continue without a body (no Content-Length or Transfer-Encoding) -> 400 Expect, no 100, closed', async () => {
        for (const tail of ['', '{"column":"quantity"}', SMUGGLED]) {
            const e = await refused(`${postHead}Expect: 100-continue\r\n\r\n${tail}`, 400, 'malformed', 'Expect');
            assert.match(e.message, /body/);
        }
        const r = await raw(`${postHead}Expect: 100-continue\r\n\r\n`);
        assert.ok(!r.text.includes('100 Continue'), r.text.slice(0, 200));
    });

    hcase('Host on HTTP/1.1: none, twice, not host[:port] -> 400 Host; HTTP/1.0 takes none; valid forms are served', async () => {
        await refused('GET /health HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'malformed', 'Host', ERR_PATH, 'none');
        await refused('GET /health HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n', 400, 'malformed', 'Host', ERR_PATH, 'twice, same');
        await refused('GET /health HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n', 400, 'malformed', 'Host', ERR_PATH, 'twice');
        await refused('GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n', 400, 'malformed', 'Host', ERR_PATH, 'twice on 1.0');
        for (const h of ['a b', 'a/b', 'a@b', 'a"b', 'a\\b', 'a\tb'])
            await refused(`GET /health HTTP/1.1\r\nHost: ${h}\r\n\r\n`, 400, 'malformed', 'Host', ERR_PATH, h);
        for (const req of ['GET /health HTTP/1.0\r\n\r\n', 'GET /health HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n',
            'GET /health HTTP/1.1\r\nHost: example.com \r\nConnection: close\r\n\r\n', 'GET /health HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n',
            '\r\nGET /health HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Ws: \t\r\nConnection: close\r\n\r\n']) {
            const r = await raw(req);
            assert.equal(responses(r.buf)[0]?.status, 200, `${JSON.stringify(req)}: ${r.text.slice(0, 300)}`);
        }
    });

    hcase('over-long request target and head, HTTP/1.2 to 1.9 -> 414, 431, 505 with the JSON shape, closed', async () => {
        const long = `/health?x=${'a'.repeat(9000)}`;
        await refused(`GET ${long} HTTP/1.1\r\nHost: x\r\n\r\n`, 414, 'too_large', 'uri', ERR_PATH);
        await refused(`GET /health?x=${'a'.repeat(8192)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414, 'too_large', 'uri', ERR_PATH, 'one byte over');
        const lines = (n) => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');
        await refused(`GET /health HTTP/1.1\r\nHost: x\r\n${lines(100)}\r\n`, 431, 'too_large', 'headers', ERR_PATH, '101 lines');
        await refused(`GET /health HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(9000)}\r\nX-B: ${'b'.repeat(9000)}\r\n\r\n`, 431, 'too_large', 'headers', ERR_PATH, '18 KB');
        for (const v of ['HTTP/1.2', 'HTTP/1.9'])
            await refused(`GET /health ${v}\r\nHost: x\r\n\r\n`, 505, 'version_not_supported', 'version', ERR_PATH, v);
        // a parameter the route takes: 414 one byte over, served at the limits (a target of
        // 8192 bytes, 100 header lines)
        const view = `/v1/models/${MODEL}/views/sales_summary_by_product_family?family=`;
        const target = (n) => `${view}${'f'.repeat(n - view.length)}`;
        await refused(`GET ${target(8193)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414, 'too_large', 'uri', null, 'a parameter the route takes');
        const atLimit = await raw(`GET ${target(8192)} HTTP/1.1\r\nHost: x\r\n${lines(98)}Connection: close\r\n\r\n`);
        assert.equal(responses(atLimit.buf)[0]?.status, 200, atLimit.text.slice(0, 300));
    });

    // One order for every head (issue 12's two checks, made one): the version, then the
    // sizes (414, 431) before anything about the content, then a NUL in the request line
    // (url), then its other bytes (request line), then each header line (headers), then
    // what the headers mean (Transfer-Encoding, Host, ...); the URL's parameters and names
    // only after the whole head is taken.
    hcase('a head with two faults gets the first in one order: 505, 414/431, url, request line, headers, framing, then the URL', async () => {
        const longQ = `x=${'a'.repeat(9000)}`;
        const lines = (n, bad = '') => Array.from({ length: n }, (_, i) => `X-H${i}: v${i === 7 ? bad : ''}\r\n`).join('');
        const cases = [
            // [what, request, status, code, target]
            ['a NUL and HTTP/1.2', 'GET /he\0alth HTTP/1.2\r\nHost: x\r\n\r\n', 505, 'version_not_supported', 'version'],
            ['an over-long target with a NUL', `GET /health?${longQ}\0 HTTP/1.1\r\nHost: x\r\n\r\n`, 414, 'too_large', 'uri'],
            ['an over-long target with a tab', `GET /health?\t${longQ} HTTP/1.1\r\nHost: x\r\n\r\n`, 414, 'too_large', 'uri'],
            ['an over-long target, 101 header lines', `GET /health?${longQ} HTTP/1.1\r\nHost: x\r\n${lines(100)}\r\n`, 414, 'too_large', 'uri'],
            ['101 header lines, one with a control character', `GET /health HTTP/1.1\r\nHost: x\r\n${lines(100, '\u0001')}\r\n`, 431, 'too_large', 'headers'],
            ['101 header lines, one with a NUL', `GET /health HTTP/1.1\r\nHost: x\r\n${lines(100, '\0z')}\r\n`, 431, 'too_large', 'headers'],
            ['an 18 KB head with a folded line', `GET /health HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(18000)}\r\n b\r\n\r\n`, 431, 'too_large', 'headers'],
            ['101 header lines with a NUL in the target', `GET /he\0alth HTTP/1.1\r\nHost: x\r\n${lines(100)}\r\n`, 431, 'too_large', 'headers'],
            ['a NUL in the target and a tab', 'GET /he\0a\tlth HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'malformed', 'url'],
            ['a NUL in the method, a header with a control character', 'GET\0X /health HTTP/1.1\r\nHost: x\r\nX-Foo: \u0001\r\n\r\n', 400, 'malformed', 'url'],
            ['a NUL in the target, the request line ended by a bare LF', 'GET /he\0alth HTTP/1.1\nHost: x\r\n\r\n', 400, 'malformed', 'url'],
            ['a space in the target, a NUL in a header', 'GET /he lth HTTP/1.1\r\nHost: x\r\nX-Foo: a\0b\r\n\r\n', 400, 'malformed', 'request line'],
            ['a control character in the query, a folded line', 'GET /health?a=\u0001 HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n b\r\n\r\n', 400, 'malformed', 'request line'],
            ['a bare CR in a header, no Host', 'GET /health HTTP/1.1\r\nX-Foo: a\rb\r\n\r\n', 400, 'malformed', 'headers'],
            ['a NUL in a header, Transfer-Encoding with Content-Length', `${postHead}X-Foo: a\0b\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`, 400, 'malformed', 'headers'],
            ['no Host, a parameter the route does not take', 'GET /health?x=1 HTTP/1.1\r\n\r\n', 400, 'malformed', 'Host'],
            ['a header line with a control character, %00 in the query', 'GET /health?a=%00 HTTP/1.1\r\nHost: x\r\nX-Foo: \u007f\r\n\r\n', 400, 'malformed', 'headers'],
        ];
        for (const [what, req, status, code, target] of cases) await refused(req, status, code, target, ERR_PATH, what);
        // a whole head: the URL is judged after it, a 400 naming the parameter that does not
        // close the connection (the next request on it is answered)
        const r = await raw('GET /health?x=1%00 HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        const rs = responses(r.buf);
        assert.deepEqual(rs.map((a) => a.status), [400, 200], r.text.slice(0, 600));
        assert.equal(JSON.parse(rs[0].body).error.target, 'x', rs[0].body);
    });

    hcase('what libmicrohttpd still answers itself (HTML, documented): HTTP/2.0 and 0.9 505, http/1.1 and HTTP/1.10 400, heads beyond its 64 KiB buffer 414/431', async () => {
        const cases = [
            ['GET /health HTTP/2.0\r\nHost: x\r\n\r\n', 505],
            ['GET /health HTTP/0.9\r\nHost: x\r\n\r\n', 505],
            ['GET /health http/1.1\r\nHost: x\r\n\r\n', 400],
            ['GET /health HTTP/1.10\r\nHost: x\r\n\r\n', 400],
            [`GET /health?x=${'a'.repeat(70000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
            [`GET /health HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 1500 }, (_, i) => `X-H${i}: ${'v'.repeat(30)}`).join('\r\n')}\r\n\r\n`, 431],
        ];
        for (const [req, status] of cases) {
            const r = await raw(req);
            assert.ok(closedByServer(r), `${req.slice(0, 40)}: closed, not ${r.how}`);
            assert.equal(responses(r.buf)[0]?.status, status, `${req.slice(0, 40)}: ${r.text.slice(0, 200)}`);
        }
    });

    hcase('a body not whole: the client waits -> 408 request_timeout (target body) at --request-timeout; the client ends its side -> closed before the deadline (400 body, or no answer)', async () => {
        const short = cellsBody.slice(0, 10);
        const cl = raw(`${postHead}Content-Length: ${cellsBody.length}\r\n\r\n${short}`, { ms: 15000 });
        const ch = raw(`${postHead}Transfer-Encoding: chunked\r\n\r\n${cellsBody.length.toString(16)}\r\n${cellsBody}\r\n`, { ms: 15000 });
        const [a, b] = await responsiveMeanwhile(Promise.all([cl, ch]), 'late bodies');
        expectLateBody(a, 'Content-Length larger than the body');
        expectLateBody(b, 'chunked without its last chunk');
        for (const r of [a, b]) assert.ok(r.ms >= LIM.requestTimeout * 1000 - 300 && r.ms < closeBy, `answered after ${r.ms} ms`);
        // ended: nothing more can come. libmicrohttpd closes at once when it
        // reads the end with the head, else the reaper answers 400 within a
        // second; never the 408 of the deadline
        for (const req of [`${postHead}Content-Length: ${cellsBody.length}\r\n\r\n${short}`,
            `${postHead}Content-Length: ${cellsBody.length}\r\n\r\n`,
            `${postHead}Transfer-Encoding: chunked\r\n\r\n${cellsBody.length.toString(16)}\r\n${cellsBody}\r\n`,
            `${postHead}Transfer-Encoding: chunked\r\n\r\n${cellsBody.length.toString(16)}\r\n${short}`]) {
            for (const chunks of [null, [req, '']]) { // the end with the head, or after it
                const r = await raw(chunks ? null : req, { end: true, ms: 15000, chunks, gapMs: 100 });
                const rs = responses(r.buf);
                assert.ok(closedByServer(r), `closed, not ${r.how}`);
                assert.ok(rs.length <= 1, r.text);
                if (rs.length) {
                    assert.equal(rs[0].status, 400, `the 400, never the 408 of the deadline: ${r.text.slice(0, 400)}`);
                    const body = JSON.parse(rs[0].body);
                    validateResponse('POST', CELLS, 400, rs[0].headers['content-type'], body, rs[0].body);
                    assert.equal(body.error.target, 'body');
                }
            }
        }
    });

    // ---- the WebSocket handshake

    const WS = { method: 'GET', path: `/v1/models/${MODEL}/ws` };
    const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
    function wsHead({ version = 'HTTP/1.1', upgrade = 'websocket', connection = 'Upgrade', wsVersion = '13', key = KEY, extra = '' } = {}) {
        let h = `GET /v1/models/${MODEL}/ws ${version}\r\nHost: x\r\n`;
        if (upgrade !== null) h += `Upgrade: ${upgrade}\r\n`;
        if (connection !== null) h += `Connection: ${connection}\r\n`;
        if (wsVersion !== null) h += `Sec-WebSocket-Version: ${wsVersion}\r\n`;
        if (key !== null) h += `Sec-WebSocket-Key: ${key}\r\n`;
        return `${h}${extra}\r\n`;
    }
    async function wsRefused(opts, status, code, target) {
        const r = await firstAnswer(wsHead(opts));
        const what = JSON.stringify(opts);
        assert.equal(r.rs.length, 1, `${what}: ${r.text.slice(0, 400)}`);
        const [res] = r.rs;
        assert.equal(res.status, status, `${what}: ${r.text.slice(0, 400)}`);
        const body = JSON.parse(res.body);
        validateResponse(WS.method, WS.path, status, res.headers['content-type'], body, res.body);
        assert.equal(body.error.code, code, what);
        assert.equal(body.error.target, target, what);
        if (status === 426) assert.equal(res.headers['sec-websocket-version'], '13', `${what}: the version served`);
    }

    hcase('WebSocket handshakes with a wrong header -> 400 naming it, or 426 with Sec-WebSocket-Version: 13 (RFC 6455 4.2.2)', async () => {
        for (const v of ['99', '', '12', '13, 8', ' 14']) await wsRefused({ wsVersion: v }, 426, 'upgrade_required', 'Sec-WebSocket-Version');
        await wsRefused({ wsVersion: null }, 426, 'upgrade_required', 'Sec-WebSocket-Version');
        await wsRefused({ extra: 'Sec-WebSocket-Version: 13\r\n' }, 426, 'upgrade_required', 'Sec-WebSocket-Version');
        for (const u of ['notwebsocket', 'websocketx', 'web socket', 'h2c', '']) await wsRefused({ upgrade: u }, 400, 'malformed', 'Upgrade');
        await wsRefused({ upgrade: null }, 400, 'malformed', 'Upgrade');
        for (const c of ['noupgrade', 'keep-alive', 'upgrades', '']) await wsRefused({ connection: c }, 400, 'malformed', 'Connection');
        await wsRefused({ connection: null }, 400, 'malformed', 'Connection');
        for (const k of ['!'.repeat(24), 'dGhlIHNhbXBsZSBub25jZR==', 'dGhlIHNhbXBsZSBub25jZQ=x', 'dGhlIHNhbXBsZSBub25jZQ', `${KEY}A`, 'dGhlIHNhbXBsZSBub25j ZQ==', ''])
            await wsRefused({ key: k }, 400, 'malformed', 'Sec-WebSocket-Key');
        await wsRefused({ key: null }, 400, 'malformed', 'Sec-WebSocket-Key');
        await wsRefused({ extra: `Sec-WebSocket-Key: ${KEY}\r\n` }, 400, 'malformed', 'Sec-WebSocket-Key');
        const r = await raw(wsHead({ version: 'HTTP/1.0' }));
        const [res] = responses(r.buf);
        assert.equal(res?.status, 400, r.text.slice(0, 300));
        assert.equal(JSON.parse(res.body).error.target, 'version');
    });

    // the frames a client sends: masked (RFC 6455 5.3)
    function clientFrame(opcode, payload) {
        const mask = Buffer.from([1, 2, 3, 4]);
        const p = Buffer.from(payload);
        return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | p.length]), mask, Buffer.from(p.map((b, i) => b ^ mask[i % 4]))]);
    }

    hcase('what the client sends in the same write as its handshake is its WebSocket stream: a close is answered and closes, a ping is answered; handshake variants are taken', async () => {
        for (const opts of [{}, { upgrade: 'WebSocket' }, { connection: 'keep-alive, Upgrade' }, { upgrade: 'h2c, websocket' }]) {
            const close = clientFrame(0x8, Buffer.from([0x03, 0xe8]));
            const r = await raw(Buffer.concat([Buffer.from(wsHead(opts)), close]), { ms: 10000 });
            const what = JSON.stringify(opts);
            assert.match(r.text, /^HTTP\/1\.1 101 /, `${what}: ${r.text.slice(0, 200)}`);
            const frames = r.buf.subarray(r.buf.indexOf('\r\n\r\n') + 4);
            assert.equal(frames[0], 0x88, `${what}: a close frame comes back: ${frames.toString('hex')}`);
            assert.ok(closedByServer(r), `${what}: the server closed the connection: ${r.how}`);
        }
        // a ping in the same write: its pong follows the 101 (maybe in another segment)
        const ping = clientFrame(0x9, 'hi');
        const s = net.connect(port, '127.0.0.1');
        const got = await new Promise((resolve) => {
            let buf = Buffer.alloc(0);
            s.on('data', (d) => {
                buf = Buffer.concat([buf, d]);
                const at = buf.indexOf('\r\n\r\n');
                if (at >= 0 && buf.length >= at + 4 + 4) resolve(buf.subarray(at + 4));
            });
            s.on('error', () => resolve(buf));
            s.setTimeout(10000, () => resolve(buf));
            s.on('connect', () => s.write(Buffer.concat([Buffer.from(wsHead()), ping])));
        });
        s.destroy();
        assert.equal(got[0], 0x8a, `a pong after the 101: ${got.toString('hex')}`);
        assert.equal(got.subarray(2, 4).toString(), 'hi');
        // every WebSocket ended: none is left open (the gauge of /metrics)
        const deadline = Date.now() + 10000;
        let left;
        for (;;) {
            const m = await get('/metrics');
            left = Number(/duckspread_subscribers\{kind="ws"\} (\d+)/.exec(m.text)?.[1]);
            if (left === 0 || Date.now() > deadline) break;
            await sleep(100);
        }
        assert.equal(left, 0, 'every WebSocket of this case ended and gave its place back');
    });

    // ---- the log: a burst of one message is a dozen lines, not thousands

    hcase('3,000 half-sent connections cut at --request-timeout: the log has a few lines of the burst and summaries that count the rest', async () => {
        const log = env.server.log;
        const from = fs.statSync(log).size;
        const N = 3000;
        const socks = await Promise.all(Array.from({ length: N }, () => new Promise((resolve) => {
            const s = net.connect(port, '127.0.0.1', () => {
                s.write(`${postHead}Content-Length: 100\r\n\r\n{"a":`);
                resolve(s);
            });
            s.got = '';
            s.on('data', (d) => (s.got += d.toString('latin1')));
            s.on('error', () => {});
        })));
        await Promise.all(socks.map((s) => new Promise((resolve) => {
            if (s.destroyed) return resolve();
            s.on('close', resolve);
        })));
        // the reaper cut every one, with a 408 (its body was not whole)
        assert.equal(socks.filter((s) => /^HTTP\/1\.1 408 /.test(s.got)).length, N, 'a 408 each');
        // every warning of the burst is written or counted, once the
        // summaries are out (a second after the burst)
        const deadline = Date.now() + 20000;
        let lines = [];
        let counted = 0;
        for (;;) {
            const text = fs.readFileSync(log, 'latin1').slice(from);
            lines = text.split('\n').filter((l) => / warn  http: /.test(l));
            counted = lines.reduce((n, l) => {
                const m = / \((\d+) more like this in the last [0-9.]+ s\)$/.exec(l);
                return n + (m ? Number(m[1]) + 1 : 1);
            }, 0);
            if (counted >= N || Date.now() > deadline) break;
            await sleep(200);
        }
        assert.ok(counted >= N, `the log accounts for a warning per connection: ${counted} of ${N}`);
        assert.ok(lines.length <= 60, `a few lines, not one per connection: ${lines.length}\n${lines.slice(0, 20).join('\n')}`);
        assert.ok(lines.some((l) => l.includes('more like this')), 'a summary line');
    }, { timeout: 120000 });

    // ---- Expect: 100-continue on a server with keys: no 100 before the key is checked

    describe('Expect: 100-continue', () => {
        let kenv;
        let kport;
        const KEYS = {};
        const keys = (dir, ...args) => {
            const r = spawnSync(BIN, ['keys', ...args, '--data', dir], { encoding: 'utf8' });
            assert.equal(r.status, 0, `keys ${args.join(' ')}: ${r.stderr}`);
            return r.stdout.trimEnd().split('\n').pop();
        };
        before(async () => {
            kenv = await setup('hostile-expect', { serverOpts: { scale: 2000, extraArgs: ARGS }, start: false });
            const dir = kenv.server.dataDir;
            KEYS.editor = keys(dir, 'create', '--user', 'ed', '--role', 'editor');
            KEYS.revoked = keys(dir, 'create', '--user', 'gone', '--role', 'editor');
            keys(dir, 'revoke', '--user', 'gone');
            kenv.server.headers = { Authorization: `Bearer ${KEYS.editor}` }; // /ready needs a key
            await kenv.server.start();
            kport = kenv.server.port;
        });
        after(async () => {
            await teardown(kenv?.server, kenv?.redis);
        });

        // Sends the head; the body only once 100 Continue came. Returns the
        // bytes read until the server closed or one final answer is whole.
        function expectFlow(head, body) {
            return new Promise((resolve) => {
                const s = net.connect(kport, '127.0.0.1');
                let buf = Buffer.alloc(0);
                let sent = false;
                const done = (how) => {
                    s.destroy();
                    resolve({ how, buf, text: buf.toString('latin1'), rs: responses(buf) });
                };
                s.on('data', (d) => {
                    buf = Buffer.concat([buf, d]);
                    const rs = responses(buf);
                    if (!sent && rs[0]?.status === 100) {
                        sent = true;
                        s.write(body);
                    }
                    const fin = rs.find((x) => x.status >= 200);
                    if (fin && fin.body.length >= Number(fin.headers['content-length'] || 0)) done('answer');
                });
                s.on('end', () => done('closed'));
                s.on('error', (e) => done(`error ${e.code}`));
                s.setTimeout(10000, () => done('timeout'));
                s.on('connect', () => s.write(head));
            });
        }
        const kseq = async () => {
            const r = await kenv.server.get(`/v1/models/${MODEL}`);
            assert.equal(r.status, 200);
            return r.body.seq;
        };

        test('no key, an unknown key, a revoked key -> 401 instead of 100 Continue; nothing applied', { timeout: 60000 }, async () => {
            const seq0 = await kseq();
            const body = JSON.stringify({ column: 'quantity', cell: LEAF, value: 77 });
            for (const [what, auth] of [['no key', ''], ['unknown key', 'X-API-Key: not-a-key\r\n'], ['revoked key', `Authorization: Bearer ${KEYS.revoked}\r\n`]]) {
                for (const p of [CELLS, '/update_cell', `/v1/models/${MODEL}/grid`]) {
                    const head = `POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n${auth}Content-Length: ${body.length}\r\n\r\n`;
                    const r = await expectFlow(head, body);
                    assert.ok(!r.text.includes('100 Continue'), `${what} ${p}: no 100 Continue before the key is checked: ${r.text.slice(0, 300)}`);
                    assert.equal(r.rs.length, 1, `${what} ${p}: ${r.text.slice(0, 300)}`);
                    assert.equal(r.rs[0].status, 401, `${what} ${p}: ${r.text.slice(0, 300)}`);
                    const b = JSON.parse(r.rs[0].body);
                    validateResponse('POST', p, 401, r.rs[0].headers['content-type'], b, r.rs[0].body);
                    assert.equal(b.error.code, 'unauthenticated');
                }
            }
            // an unknown route: still 401 first, no 100
            const r = await expectFlow(`POST /nowhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n`, '{}');
            assert.ok(!r.text.includes('100 Continue') && r.rs[0]?.status === 401, r.text.slice(0, 300));
            const h = await kenv.server.get('/health');
            assert.equal(h.status, 200);
            assert.equal(await kseq(), seq0, 'nothing was applied');
        });

        test('a valid key -> 100 Continue, then the answer to the body', { timeout: 60000 }, async () => {
            const seq0 = await kseq();
            const body = JSON.stringify({ column: 'quantity', cell: { product: 'P-9999' }, value: 1 });
            const head = `POST ${CELLS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nAuthorization: Bearer ${KEYS.editor}\r\nContent-Length: ${body.length}\r\n\r\n`;
            const r = await expectFlow(head, body);
            assert.deepEqual(r.rs.map((x) => x.status), [100, 404], r.text.slice(0, 400));
            const b = JSON.parse(r.rs[1].body);
            validateResponse('POST', CELLS, 404, r.rs[1].headers['content-type'], b, r.rs[1].body);
            assert.equal(b.error.target, 'cell');
            assert.equal(await kseq(), seq0, 'nothing was applied');
        });
    });
});

// ---------------------------------------------------------------------------
// slow clients: the server answers others meanwhile and closes the slow one

async function responsiveMeanwhile(slow, what) {
    const lat = [];
    let settled = false;
    const watcher = (async () => {
        while (!settled) {
            const r = await get('/health');
            assert.equal(r.status, 200);
            lat.push(r.ms);
            await sleep(100);
        }
    })();
    const res = await slow;
    settled = true;
    await watcher;
    assert.ok(lat.length >= 5, `${what}: /health answered ${lat.length} times meanwhile`);
    assert.ok(Math.max(...lat) < 1500, `${what}: /health answered within 1.5 s meanwhile (max ${Math.max(...lat)} ms)`);
    return res;
}

const closeBy = (LIM.requestTimeout + 2.5) * 1000; // the reaper looks every 200 ms; a busy machine

hcase('slowloris headers: a header line every 200 ms -> closed after --request-timeout, others answered meanwhile', async () => {
    const chunks = ['GET /health HTTP/1.1\r\nHost: x\r\n', ...Array.from({ length: 100 }, (_, i) => `X-Slow-${i}: y\r\n`)];
    const r = await responsiveMeanwhile(raw(null, { chunks, gapMs: 200, ms: 15000 }), 'slow headers');
    assert.ok(closedByServer(r), `closed by the server, not ${r.how}`);
    assert.ok(r.ms >= LIM.requestTimeout * 1000 - 300 && r.ms < closeBy, `closed after ${r.ms} ms`);
    assert.equal(responses(r.buf).length, 0, 'never answered');
});

// A body not whole by the deadline: 408 with the JSON shape, then closed.
function expectLateBody(r, what) {
    assert.ok(closedByServer(r), `${what}: closed by the server, not ${r.how}`);
    const rs = responses(r.buf);
    assert.equal(rs.length, 1, `${what}: one answer: ${r.text.slice(0, 400)}`);
    assert.equal(rs[0].status, 408, `${what}: ${r.text.slice(0, 400)}`);
    assert.equal(rs[0].headers.connection, 'close');
    const body = JSON.parse(rs[0].body);
    validateResponse('POST', CELLS, 408, rs[0].headers['content-type'], body, rs[0].body);
    assert.equal(body.error.code, 'request_timeout');
    assert.equal(body.error.target, 'body');
}

hcase('slow body: a byte every 200 ms -> 408 request_timeout after --request-timeout, closed, nothing applied', async () => {
    const body = '{"column":"quantity","cell":{"product":"P-0002","customer":"C-0002","time":"2025-02"},"value":424242}';
    const chunks = [`${postHead}Content-Length: ${body.length}\r\n\r\n`, ...body.split('')];
    const r = await responsiveMeanwhile(raw(null, { chunks, gapMs: 200, ms: 15000 }), 'slow body');
    assert.ok(r.ms < closeBy, `closed after ${r.ms} ms`);
    expectLateBody(r, 'slow body');
});

hcase('silent after half a request line, and 40 slow connections at once -> all closed, others answered meanwhile', async () => {
    const silent = raw('GET /hea', { ms: 15000 });
    const many = Array.from({ length: 40 }, (_, i) => raw(null, { chunks: [`POST ${CELLS} HTTP/1.1\r\n`, ...Array(60).fill(`X-${i}: z\r\n`)], gapMs: 150, ms: 15000 }));
    const rs = await responsiveMeanwhile(Promise.all([silent, ...many]), '41 slow connections');
    for (const r of rs) {
        assert.ok(closedByServer(r), `closed by the server, not ${r.how}`);
        assert.ok(r.ms < closeBy + 1000, `closed after ${r.ms} ms`);
    }
});

hcase('a long-poll longer than --request-timeout is an answer in progress: not cut', async () => {
    const r = await get(`/v1/models/${MODEL}/changes?since=${seqBase}&timeout=${LIM.requestTimeout + 1}`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.updates, []);
    assert.ok(r.ms >= LIM.requestTimeout * 1000, `waited ${r.ms} ms`);
});

// ---------------------------------------------------------------------------

test('after every refusal: the checksum of catalog, members, facts and change log is unchanged', async () => {
    const { server } = env;
    assert.equal(await modelSeq(), seqBase, 'the model seq did not move');
    const st = await server.stop();
    assert.equal(st.code, 0, `exit code after SIGTERM (signal ${st.signal}); log ${server.log}`);
    const sumAfter = checksum(server.dataDir);
    assert.deepEqual(sumAfter, sumBefore, 'the DuckDB file: every table but the request ledger is unchanged');
});
