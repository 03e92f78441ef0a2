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
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import WebSocket from 'ws';
import { DBQUERY, setup, teardown, validateResponse, validateSchema, sleep, waitFor, rid, MODEL } from './lib.mjs';

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

function raw(data, { ms = 3000, chunks = null, gapMs = 0 } = {}) {
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
            if (!chunks) return s.write(data);
            let i = 0;
            timer = setInterval(() => {
                if (i < chunks.length) s.write(chunks[i++]);
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
    expectError(await write({ column: 'q'.repeat(LIM.string) }), 404, 'not_found', 'column');
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

const variants = {
    table: ['Sales', 'SALES', 'sales ', ' sales', 'ｓａｌｅｓ', 'sales\u200b'],
    column: ['Quantity', 'quantity ', 'ｑｕａｎｔｉｔｙ'],
    dimension: ['Product', 'product ', 'ｐｒｏｄｕｃｔ'],
    cell: ['p-0002', 'P-0002 ', ' P-0002', 'Ｐ-0002', 'brand x', 'P-0002\u0000'],
};
for (const t of variants.table) {
    hcase(`table ${JSON.stringify(t)} (not 'sales') -> 404 table, in the body and in the path`, async () => {
        expectError(await post('/update_cell', { table: t, column: 'quantity', cell: LEAF, value: 1 }), 404, 'not_found', 'table');
        expectError(await get(`/v1/models/${enc(t)}/cell?measure=quantity`), 404, 'not_found', 'table');
    });
}
hcase('column, dimension and member variants of case, spaces, full-width, NUL -> 404 column, dimension, cell', async () => {
    for (const c of variants.column) expectError(await write({ column: c }), 404, 'not_found', 'column', c);
    for (const d of variants.dimension) expectError(await write({ cell: { [d]: 'P-0002' } }), 404, 'not_found', 'dimension', d);
    for (const m of variants.cell) {
        expectError(await write({ cell: { ...LEAF, product: m } }), 404, 'not_found', 'cell', JSON.stringify(m));
        if (!m.includes('\u0000')) expectError(await get(cellUrl(`measure=quantity&product=${enc(m)}`)), 404, 'not_found', 'cell', m);
    }
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
        expectError(await post(`/v1/models/${enc(s)}/grid`, { measure: 'quantity' }), 404, 'not_found', 'table');
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
// invalid UTF-8: in bodies (400), in paths and queries (404 or 400), and
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

hcase('invalid UTF-8 in path and query identifiers -> 404 naming the target, the answer valid UTF-8', async () => {
    const m = `/v1/models/${MODEL}`;
    expectError(await get('/v1/models/%FF%FE/cell?measure=quantity'), 404, 'not_found', 'table');
    expectError(await get(cellUrl('measure=%ED%A0%80')), 404, 'not_found', 'column');
    expectError(await get(cellUrl('measure=quantity&%FF=P-0001')), 404, 'not_found', 'dimension');
    expectError(await get(cellUrl('measure=quantity&product=%C3%28')), 404, 'not_found', 'cell');
    // a valid prefix cut short: the message quotes at most 200 bytes
    expectError(await get(cellUrl(`measure=quantity&product=${'%E2%82%AC'.repeat(80)}`)), 404, 'not_found', 'cell');
    expectError(await get(`${m}/dimensions/product/members?parent=%C0%AF`), 404, 'not_found', 'cell');
    expectError(await get(`${m}/dimensions/%FF/members`), 404, 'not_found', 'dimension');
    expectError(await get(`${m}/views/%FF%80`), 404, 'not_found', 'view');
    expectError(await get('/get_updates?table=%FF&since=0&timeout=0'), 404, 'not_found', 'table');
});

hcase('raw (unescaped) invalid UTF-8 bytes in the request line -> 404 naming the target, the answer valid UTF-8', async () => {
    const line = (a, b) => Buffer.concat([Buffer.from(a), Buffer.from(b), Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]);
    const cases = [
        [line('GET /v1/models/', [0xff, 0xfe, ...Buffer.from('/cell?measure=quantity')]), 'table', `/v1/models/x/cell`],
        [line(`GET /v1/models/${MODEL}/cell?measure=quantity&product=`, [0xc3, 0x28]), 'cell', `/v1/models/${MODEL}/cell`],
    ];
    for (const [req, target, p] of cases) {
        const r = await raw(req);
        const [res] = responses(r.buf);
        assert.equal(res?.status, 404, r.text);
        const text = utf8.decode(r.buf.subarray(r.buf.indexOf('\r\n\r\n') + 4));
        const body = JSON.parse(text);
        validateResponse('GET', p, 404, res.headers['content-type'], body, text);
        assert.equal(body.error.code, 'not_found');
        assert.equal(body.error.target, target);
        assert.ok(body.error.message.includes('\ufffd'), `the bytes are shown as U+FFFD: ${text}`);
    }
});

hcase('bad escapes, %00 and too long query values -> 400 malformed; never the root', async () => {
    expectError(await get(cellUrl('measure=quantity&product=%00')), 400, 'malformed', 'query');
    expectError(await get(cellUrl('measure=quantity&product=%G1')), 400, 'malformed', 'query');
    expectError(await get(cellUrl(`measure=quantity&product=${'A'.repeat(2000)}`)), 400, 'malformed', 'query');
    expectError(await get(`/v1/models/${MODEL}/dimensions/product/members?parent=%00`), 400, 'malformed', 'parent');
    expectError(await get(`/v1/models/${MODEL}/dimensions/product/members?parent=%ZZ`), 400, 'malformed', 'parent');
    expectError(await get(`/v1/models/${MODEL}/views/sales_summary_by_product_family?family=%00`), 400, 'malformed', 'query');
    expectError(await get('/v1/models/sa%00les'), 404, 'not_found', 'route');
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

hcase('obs-fold of a plain value is unfolded; the same Content-Length twice and chunked alone frame as usual', async () => {
    const fold = await raw('GET /health HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n  b\r\nConnection: close\r\n\r\n');
    assert.equal(responses(fold.buf)[0]?.status, 200, fold.text);
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

hcase('slow body: a byte every 200 ms -> closed after --request-timeout, nothing applied', async () => {
    const body = '{"column":"quantity","cell":{"product":"P-0002","customer":"C-0002","time":"2025-02"},"value":424242}';
    const chunks = [`${postHead}Content-Length: ${body.length}\r\n\r\n`, ...body.split('')];
    const r = await responsiveMeanwhile(raw(null, { chunks, gapMs: 200, ms: 15000 }), 'slow body');
    assert.ok(closedByServer(r), `closed by the server, not ${r.how}`);
    assert.ok(r.ms < closeBy, `closed after ${r.ms} ms`);
    assert.equal(responses(r.buf).length, 0, 'never answered');
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
