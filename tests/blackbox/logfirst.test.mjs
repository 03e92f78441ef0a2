// Log first: what the in-memory engine, the persister behind it and the
// grid subscriptions promise, seen from outside.
//   - grid subscriptions on the WebSocket: a snapshot, then patches whose
//     contents equal a fresh grid read at the same seq, for random leaf
//     edits and spreads; equal grids share patches; errors name the field;
//   - detail levels of a write's answer and of the feed;
//   - min_seq on reads; a view read right after a 200 shows the write;
//   - the persister trailing with tiny bounds (backpressure) loses nothing;
//   - crash points after_apply and mid_checkpoint, and the middle of a big
//     spread's persistence: nothing acknowledged lost, nothing doubled;
//   - the disk filling up under the persister (a size-limited tmpfs): 503
//     and /ready false, nothing acknowledged lost, all persisted later.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import WebSocket from 'ws';
import {
    setup, teardown, readCell, modelSeq, writeBody, rid, sleep, waitUntil, MODEL, Server, Redis,
    deltaStart, deltaWriters, checkDeltaOracle, validateResponse, mkTmp, metricValue, waitReadyStatus,
} from './lib.mjs';

let env;
before(async () => {
    env = await setup('logfirst');
});
after(async () => {
    await teardown(env?.server, env?.redis);
});

// A WebSocket that collects messages; send() and next-condition helpers.
async function openWs(server, query = '') {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/models/${MODEL}/ws${query}`);
    const msgs = [];
    const errors = [];
    ws.on('message', (data) => {
        try {
            msgs.push(JSON.parse(data.toString()));
        } catch (e) {
            errors.push(e);
        }
    });
    ws.on('error', (e) => errors.push(e));
    await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
    });
    return { ws, msgs, errors, send: (m) => ws.send(JSON.stringify(m)) };
}

const decimal = (v) => BigInt(String(v).replace('.', ''));

// A subscriber's copy of its grid: the snapshot with every patch applied.
function follow(conn, id) {
    const st = { values: null, seq: -1, patches: 0, snapshots: 0, error: null, rows: null, cols: null };
    st.apply = () => {
        for (; st.read < conn.msgs.length; st.read++) {
            const m = conn.msgs[st.read];
            if (m.id !== id) continue;
            if (m.op === 'error') {
                st.error = m.error;
            } else if (m.op === 'snapshot') {
                st.values = m.values.map((row) => row.map(decimal));
                st.rows = m.rows;
                st.cols = m.cols;
                st.seq = m.seq;
                st.snapshots++;
            } else {
                assert.equal(m.op, 'patch');
                assert.ok(m.seq > st.seq, `grid ${id}: patch ${m.seq} after ${st.seq} (seq order, no repeat)`);
                assert.ok(m.cells.length > 0, `grid ${id}: a patch changes something`);
                for (const [r, c, v] of m.cells) st.values[r][c] = decimal(v);
                st.seq = m.seq;
                st.patches++;
            }
        }
        return st;
    };
    st.read = 0;
    return st;
}

const GRIDS = [
    { rows: { dimension: 'product', members: ['S01', 'S01-B2', 'S01-B2-F1', 'P-0009', 'S02'] },
        cols: { dimension: 'time', members: ['2025', '2025-Q1', '2025-03', '2024'] }, measure: 'quantity' },
    { rows: { dimension: 'product', members: ['S01-B2-F1', 'S01-B2-F2'] },
        cols: { dimension: 'customer', members: ['All', 'C-0001', 'C-0002'] }, measure: 'net_amount',
        filters: { time: '2025' } },
    { rows: { dimension: 'customer', members: ['C-0001', 'C-0003'] },
        cols: { dimension: 'time', members: ['2025-01', '2025-02', '2025-03'] }, measure: 'quantity',
        filters: { product: 'Brand X' } },
];

async function readGrid(server, g) {
    const r = await server.post(`/v1/models/${MODEL}/grid`, g);
    assert.equal(r.status, 200, r.text);
    return { seq: r.body.seq, values: r.body.values.map((row) => row.map(decimal)) };
}

test('grid subscriptions: a snapshot, then patches equal to fresh reads at each seq', { timeout: 120000 }, async () => {
    const { server } = env;
    const a = await openWs(server);
    const b = await openWs(server);
    const subs = [];
    GRIDS.forEach((g, i) => {
        a.send({ op: 'subscribe', id: `a${i}`, grid: g });
        subs.push(follow(a, `a${i}`));
    });
    b.send({ op: 'subscribe', id: 'b0', grid: GRIDS[0] }); // the same grid as a0
    subs.push(follow(b, 'b0'));
    const grids = [...GRIDS, GRIDS[0]];
    await waitUntil(() => subs.every((s) => s.apply().snapshots === 1), 5000, () => 'snapshots');
    for (const [i, s] of subs.entries()) {
        const fresh = await readGrid(server, grids[i]);
        assert.deepEqual(s.values, fresh.values, `grid ${i}: snapshot = read`);
    }
    // random leaf edits and spreads, one at a time; after each, every
    // subscriber's copy must become the grid as read at that seq
    const targets = [
        { product: 'P-0009', customer: 'C-0001', time: '2025-03' },
        { product: 'P-0010', customer: 'C-0002', time: '2025-01' },
        { product: 'S01-B2-F1', time: '2025' },
        { product: 'Brand X', customer: 'C-0003' },
        { product: 'S02', time: '2024' },
        { product: 'P-0200', customer: 'C-0009', time: '2024-06' }, // outside most grids
    ];
    let seed = 7;
    const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
    for (let i = 0; i < 40; i++) {
        const cell = targets[rnd(targets.length)];
        const column = rnd(3) === 0 ? 'net_amount' : 'quantity';
        const amount = rnd(2) === 0 ? { delta: rnd(50) + 1 } : { percent: rnd(20) - 5 };
        const w = await server.post('/update_cell', { ...writeBody(cell, amount), column, detail: 'none' });
        assert.equal(w.status, 200, w.text);
        for (const [k, s] of subs.entries()) {
            const fresh = await readGrid(server, grids[k]);
            assert.equal(fresh.seq, w.body.seq, 'nothing else writes');
            await waitUntil(() => {
                s.apply();
                return JSON.stringify(s.values.map((r) => r.map(String))) === JSON.stringify(fresh.values.map((r) => r.map(String)));
            }, 5000, () => `grid ${k} after seq ${w.body.seq}: copy ${JSON.stringify(s.values.map((r) => r.map(String)))} vs ${JSON.stringify(fresh.values.map((r) => r.map(String)))}`);
        }
    }
    // patches went out (each grid changed at least once), equal grids got
    // the same patches at the same seqs
    for (const [k, s] of subs.entries()) assert.ok(s.patches > 0, `grid ${k} got patches`);
    const seqsOf = (conn, id) => conn.msgs.filter((m) => m.id === id && m.op === 'patch').map((m) => m.seq);
    assert.deepEqual(seqsOf(a, 'a0'), seqsOf(b, 'b0'), 'the same grid, the same patches');
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
    // a grid connection gets grid messages only: no change events
    assert.ok(a.msgs.every((m) => m.op), 'no change event on a grid connection');
    // unsubscribe: nothing more for it
    a.send({ op: 'unsubscribe', id: 'a0' });
    await sleep(100);
    const before0 = seqsOf(a, 'a0').length;
    const w = await server.post('/update_cell', writeBody(targets[0], { delta: 3 }));
    assert.equal(w.status, 200);
    await waitUntil(() => seqsOf(b, 'b0').includes(w.body.seq), 5000, () => 'b0 got the patch');
    assert.equal(seqsOf(a, 'a0').length, before0, 'no patch after unsubscribe');
    a.ws.close();
    b.ws.close();
});

test('grid subscription refusals: each names what is wrong; the connection stays', async () => {
    const { server } = env;
    const c = await openWs(server);
    const cases = [
        [{ op: 'watch', id: 'x' }, 'malformed', 'op'],
        [{ op: 'subscribe', grid: GRIDS[0] }, 'malformed', 'id'],
        [{ op: 'subscribe', id: 'x', grid: 3 }, 'malformed', 'grid'],
        [{ op: 'subscribe', id: 'x', grid: { ...GRIDS[0], measure: 'nope' } }, 'not_found', 'column'],
        [{ op: 'subscribe', id: 'x', grid: { ...GRIDS[0], filters: { product: 'S01' } } }, 'invalid_value', 'filters'],
        [{ op: 'subscribe', id: 'x', grid: { ...GRIDS[0], cols: GRIDS[0].rows } }, 'invalid_value', 'cols'],
        [{ op: 'unsubscribe', id: 'never' }, 'not_found', 'id'],
        [{ op: 'subscribe', id: 'a\u0000b', grid: GRIDS[0] }, 'invalid_value', 'id'],
    ];
    for (const [i, [msg, code, target]] of cases.entries()) {
        const n = c.msgs.length;
        c.send(msg);
        await waitUntil(() => c.msgs.length > n, 3000, () => `answer to ${JSON.stringify(msg)}`);
        const m = c.msgs[n];
        assert.equal(m.op, 'error', `case ${i}: ${JSON.stringify(m)}`);
        assert.equal(m.error.code, code, `case ${i}: ${JSON.stringify(m)}`);
        assert.equal(m.error.target, target, `case ${i}: ${JSON.stringify(m)}`);
    }
    const n = c.msgs.length;
    c.ws.send('{not json');
    await waitUntil(() => c.msgs.length > n, 3000, () => 'answer to bad JSON');
    assert.equal(c.msgs[n].error.code, 'malformed');
    c.send({ op: 'subscribe', id: 'ok', grid: GRIDS[1] });
    await waitUntil(() => c.msgs.some((m) => m.id === 'ok' && m.op === 'snapshot'), 3000, () => 'snapshot after refusals');
    const dup = c.msgs.length;
    c.send({ op: 'subscribe', id: 'ok', grid: GRIDS[1] });
    await waitUntil(() => c.msgs.length > dup, 3000, () => 'answer to a second subscribe of one id');
    assert.equal(c.msgs[dup].error.target, 'id');
    c.ws.close();
});

test('detail: leaves (default), totals and none, on the answer and the feed', async () => {
    const { server } = env;
    const cell = { product: 'P-0011', customer: 'C-0004', time: '2025-05' };
    const leaves = await server.post('/update_cell', writeBody(cell, { delta: 2 }));
    assert.equal(leaves.status, 200, leaves.text);
    assert.equal(leaves.body.changes.length, 1, 'a leaf edit lists its leaf');
    assert.deepEqual(leaves.body.changes[0].cell, cell);
    const totals = await server.post('/update_cell', writeBody(cell, { delta: 2 }, { detail: 'totals' }));
    assert.equal(totals.status, 200, totals.text);
    // the target, then every cell above it: (4+1) x (2+1) x (3+1) - 1 above
    assert.equal(totals.body.changes.length, 5 * 3 * 4);
    assert.ok(totals.body.changes.some((c) => Object.keys(c.cell).length === 0), 'the grand total is listed');
    const none = await server.post('/update_cell', writeBody(cell, { delta: 2 }, { detail: 'none' }));
    assert.equal(none.status, 200, none.text);
    assert.equal(none.body.changes, undefined);
    assert.equal(none.body.leaves_changed, 1);
    const bad = await server.post('/update_cell', writeBody(cell, { delta: 2 }, { detail: 'all' }));
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.target, 'detail');
    const since = leaves.body.seq - 1;
    for (const [detail, count] of [['leaves', 1], ['totals', 60], ['none', undefined]]) {
        const r = await server.get(`/get_updates?table=${MODEL}&since=${since}&timeout=0&detail=${detail}`);
        assert.equal(r.status, 200, r.text);
        for (const ev of r.body.updates.slice(0, 3))
            assert.equal(ev.changes?.length, count, `${detail}: seq ${ev.seq}`);
    }
    const q = await server.get(`/get_updates?table=${MODEL}&since=${since}&detail=everything`);
    assert.equal(q.status, 422);
});

test('min_seq: a read waits for it; a view right after a 200 shows the write', async () => {
    const { server } = env;
    const cell = { product: 'P-0012', customer: 'C-0005', time: '2025-06' };
    for (let i = 0; i < 30; i++) {
        const w = await server.post('/update_cell', writeBody(cell, { delta: 5 }, { detail: 'none' }));
        assert.equal(w.status, 200, w.text);
        const c = await server.get(`/v1/models/${MODEL}/cell?measure=quantity&product=P-0012&customer=C-0005&time=2025-06&min_seq=${w.body.seq}`);
        assert.equal(c.status, 200, c.text);
        assert.ok(c.body.seq >= w.body.seq);
        assert.equal(c.body.value, w.body.target.new);
        // the view (SQL over the database) right after the answer: the
        // family's row of the month holds the write already
        const v = await server.get(`/v1/models/${MODEL}/views/sales_summary_by_product_family?month=2025-06&family_key=${encodeURIComponent('S01-B2-F2')}&grouping_id=0`);
        assert.equal(v.status, 200, v.text);
        assert.ok(v.body.seq >= w.body.seq, `view seq ${v.body.seq} reflects ${w.body.seq}`);
        const fam = await readCell(server, { product: 'S01-B2-F2', time: '2025-06' });
        assert.equal(v.body.rows.length, 1);
        assert.equal(v.body.rows[0].quantity, fam, 'the view equals the engine');
    }
    const badSeq = await server.get(`/v1/models/${MODEL}/cell?measure=quantity&min_seq=x`);
    assert.equal(badSeq.status, 400);
});

test('min_seq beyond the model: 503 with Retry-After after --min-seq-wait-ms', async () => {
    // a server of its own: the wait is short here, and the other tests'
    // views must not run into it on a slow machine
    const redis = await new Redis('logfirst-minseq').start();
    const server = new Server({ name: 'logfirst-minseq', redis, extraArgs: ['--min-seq-wait-ms', '300'] });
    try {
        await server.start();
        const now = await modelSeq(server);
        const t0 = Date.now();
        const late = await server.get(`/v1/models/${MODEL}/cell?measure=quantity&min_seq=${now + 1000}`);
        assert.equal(late.status, 503, late.text);
        assert.equal(late.body.error.target, 'min_seq');
        assert.ok(Number(late.headers.get('retry-after')) >= 1, 'Retry-After');
        assert.ok(Date.now() - t0 >= 250, 'it waited --min-seq-wait-ms');
    } finally {
        await teardown(server, redis);
    }
});

test('the persister trailing with tiny bounds (backpressure at every command): nothing lost or doubled', { timeout: 120000 }, async () => {
    const redis = await new Redis('logfirst-bp').start();
    const server = new Server({ name: 'logfirst-bp', redis, extraArgs: ['--persist-lag', '1', '--persist-lag-ms', '1'] });
    try {
        await server.start();
        const st = await deltaStart(server);
        const w = deltaWriters(server, st, { clients: 8, per: 30, tag: 'bp' });
        await w.done;
        const ready = await server.get('/ready');
        assert.equal(ready.status, 200);
        validateResponse('GET', '/ready', 200, 'application/json', ready.body, ready.text);
        await checkDeltaOracle(server, st, w.acked, () => redis.xrange(`{${MODEL}}:response_duck`));
        const m = (await server.get('/metrics')).text;
        assert.match(m, /duckspread_persist_lag \d+/);
        await server.restart();
        await checkDeltaOracle(server, st, w.acked, () => redis.xrange(`{${MODEL}}:response_duck`));
    } finally {
        await teardown(server, redis);
    }
});

test('crash point after_apply: applied in memory, not answered; the retry is applied exactly once', { timeout: 60000 }, async () => {
    const { server } = env;
    await server.stop();
    await server.start({ env: { DS_CRASH_AT: 'after_apply' } });
    const cell = { product: 'P-0013', customer: 'C-0006', time: '2025-07' };
    const body = writeBody(cell, { delta: 9 }, { request_id: rid('after-apply') });
    let first;
    try {
        first = await server.post('/update_cell', body, { timeout: 5000 });
    } catch (e) {
        first = { error: e.cause?.code || e.name };
    }
    const exit = await server.exited;
    assert.equal(exit.signal, 'SIGKILL');
    assert.notEqual(first.status, 200, 'no answer before the crash point');
    await server.start();
    const v0 = await readCell(server, cell);
    const seq0 = await modelSeq(server);
    // recovery applied the pending entry already; the retry gets its answer
    const r = await server.post('/update_cell', body, { timeout: 20000 });
    assert.equal(r.status, 200, r.text);
    assert.equal(await readCell(server, cell), v0, 'not applied again');
    assert.equal(await modelSeq(server), seq0);
    assert.equal(r.body.target.new, v0);
});

test('crash point mid_checkpoint under delta writes: nothing acknowledged lost, nothing doubled', { timeout: 120000 }, async () => {
    const redis = await new Redis('logfirst-ckpt').start();
    const server = new Server({ name: 'logfirst-ckpt', redis });
    try {
        await server.start();
        const st = await deltaStart(server);
        const w = deltaWriters(server, st, { clients: 4, per: 25, tag: 'ck' });
        await w.done;
        // the idle checkpoint comes a second after the last write: crash in it
        await server.stop();
        await server.start({ env: { DS_CRASH_AT: 'mid_checkpoint' } });
        const more = deltaWriters(server, st, { clients: 2, per: 10, tag: 'ck2', deadlineMs: 60000 });
        await more.done;
        const exit = await server.exited;
        assert.equal(exit.signal, 'SIGKILL', 'died in the checkpoint');
        await server.start();
        const all = new Map([...w.acked, ...more.acked]);
        await checkDeltaOracle(server, st, all, () => redis.xrange(`{${MODEL}}:response_duck`));
    } finally {
        await teardown(server, redis);
    }
});

test('crash point mid_persist in a big spread: the spread is applied exactly once after recovery', { timeout: 180000 }, async () => {
    const redis = await new Redis('logfirst-big').start();
    const server = new Server({ name: 'logfirst-big', redis, scale: Number(process.env.DS_BB_BIG_SCALE || 250000) });
    try {
        await server.start({ timeoutMs: 120000 });
        const before = await readCell(server, {});
        const seq0 = await modelSeq(server);
        await server.stop();
        await server.start({ env: { DS_CRASH_AT: 'mid_persist' }, timeoutMs: 120000 });
        const body = writeBody({}, { value: before * 2 }, { request_id: rid('big'), detail: 'none' });
        let first;
        try {
            first = await server.post('/update_cell', body, { timeout: 30000 });
        } catch (e) {
            first = { error: e.cause?.code || e.name };
        }
        const exit = await server.exited;
        assert.equal(exit.signal, 'SIGKILL', `died persisting the spread (first: ${JSON.stringify(first.status ?? first.error)})`);
        assert.ok(first.status === 200 || !first.status, 'answered (log first) or cut off by the kill');
        await server.start({ timeoutMs: 120000 });
        const r = await server.post('/update_cell', body, { timeout: 30000 });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.seq, seq0 + 1);
        if (first.status === 200) assert.equal(first.body.seq, r.body.seq);
        assert.ok(r.body.leaves_changed > 100000);
        assert.equal(await readCell(server, {}), before * 2);
        assert.equal(await modelSeq(server), seq0 + 1, 'one seq');
        // and the database has it: after a clean restart (engine reloaded from it)
        await server.restart({ timeoutMs: 120000 });
        assert.equal(await readCell(server, {}), before * 2);
        const v = await server.get(`/v1/models/${MODEL}/views/sales_summary_by_product_family?grouping_id=6&limit=100000`);
        assert.equal(v.status, 200);
        const sum = v.body.rows.reduce((a, row) => a + row.quantity, 0);
        assert.equal(sum, before * 2, 'the view sums to the spread total');
    } finally {
        await teardown(server, redis);
    }
});

// Fills a file system to its last byte; returns the filler's path.
function fillDisk(dir) {
    const filler = path.join(dir, 'filler');
    const fd = fs.openSync(filler, 'w');
    try {
        for (const size of [1 << 20, 1 << 12, 1]) {
            const buf = Buffer.alloc(size);
            for (;;) {
                try {
                    fs.writeSync(fd, buf);
                } catch (e) {
                    if (e.code !== 'ENOSPC') throw e;
                    break;
                }
            }
        }
    } finally {
        fs.closeSync(fd);
    }
    return filler;
}

test('disk full under the persister: writes 503 and /ready false, nothing acknowledged lost, all persisted once space is back', { timeout: 180000 }, async (t) => {
    if (process.getuid?.() !== 0) {
        t.skip('needs root to mount a size-limited tmpfs');
        return;
    }
    const redis = await new Redis('logfirst-full').start();
    const dataDir = mkTmp('full');
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', dataDir]);
    if (mounted.status !== 0) {
        t.skip(`cannot mount a tmpfs: ${mounted.stderr}`);
        await teardown(redis);
        return;
    }
    const server = new Server({ name: 'logfirst-full', redis, dataDir });
    let filler = null;
    try {
        await server.start();
        const checkpoints = async () => metricValue((await server.get('/metrics')).text, 'duckspread_checkpoints_total');
        const c0 = await checkpoints();
        const st = await deltaStart(server);
        // the idle checkpoint comes a second after the last write: wait for
        // it, so that the next commit must grow the WAL on a full disk
        await waitUntil(async () => (await checkpoints()) > c0, 10000, () => 'the idle checkpoint');
        filler = fillDisk(dataDir);
        const w = deltaWriters(server, st, { clients: 4, per: Infinity, tag: 'full', deadlineMs: 120000 });
        const down = await waitReadyStatus(server, 503, 60000);
        validateResponse('GET', '/ready', 503, 'application/json', down.r.body, down.r.text);
        assert.ok(down.r.body.persist_error, `/ready names the persister's error: ${down.r.text}`);
        assert.equal(metricValue((await server.get('/metrics')).text, 'duckspread_persist_failing'), 1);
        const refused = await server.post('/update_cell', writeBody(st.cells[0], { delta: 1 }, { request_id: rid('full-refused') }));
        assert.equal(refused.status, 503, refused.text);
        assert.equal(refused.body.error.code, 'unavailable');
        assert.match(refused.body.error.message, /database/);
        assert.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After');
        assert.match(server.tail(200), /persist/i, 'a log line says the persister fails');
        const ackedWhileFull = w.acked.size;
        // space is back: the persister's retry succeeds, writes are taken again
        fs.rmSync(filler);
        filler = null;
        await waitReadyStatus(server, 200, 60000);
        await waitUntil(() => w.acked.size >= ackedWhileFull + 20, 60000, () => `20 more writes acknowledged (${w.acked.size})`);
        w.stop();
        await w.done;
        await checkDeltaOracle(server, st, w.acked, () => redis.xrange(`{${MODEL}}:response_duck`));
        // and all of it is in the database: restart loads the engine from it
        await server.restart();
        await checkDeltaOracle(server, st, w.acked, () => redis.xrange(`{${MODEL}}:response_duck`));
        assert.equal(metricValue((await server.get('/metrics')).text, 'duckspread_persist_failing'), 0);
    } finally {
        if (filler) fs.rmSync(filler, { force: true });
        await server.stop().catch(() => {});
        spawnSync('umount', [dataDir]);
        await teardown(server, redis);
    }
});
