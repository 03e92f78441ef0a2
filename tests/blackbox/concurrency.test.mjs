// Original test case 2: many users update at once; Redis and DuckDB apply
// them one after another, none lost. 32 clients x 200 delta writes (+1/-1,
// wait=true) on overlapping leaves and totals of one small region.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    setup, teardown, readCell, modelSeq, feed, checkChains, cellKey, isLeafCell,
    pool, metricValue, writeBody, rid, MODEL,
} from './lib.mjs';

let env;
before(async () => {
    env = await setup('concurrency');
});
after(async () => {
    await teardown(env?.server, env?.redis);
});

const CLIENTS = Number(process.env.DS_BB_CLIENTS || 32);
const PER_CLIENT = Number(process.env.DS_BB_PER_CLIENT || 200);
const CUST = 'C-0001';
const MONTH = '2025-03';

test(`${CLIENTS} clients x ${PER_CLIENT} delta writes on overlapping leaves and totals`, { timeout: 120000 }, async () => {
    const { server } = env;

    // the region: Brand X (S01-B2) x C-0001 x 2025-03, every product leaf of it
    const families = (await server.get(`/v1/models/${MODEL}/dimensions/product/members?parent=S01-B2`)).body.members;
    assert.ok(families.length >= 2, 'Brand X has families');
    const famProducts = {};
    for (const f of families) {
        const r = await server.get(`/v1/models/${MODEL}/dimensions/product/members?parent=${encodeURIComponent(f.key)}`);
        assert.equal(r.status, 200);
        famProducts[f.key] = r.body.members.map((m) => m.key);
    }
    const products = Object.values(famProducts).flat();
    assert.ok(products.length >= 4);
    const leaf = (p) => ({ product: p, customer: CUST, time: MONTH });

    // start every leaf of the region at 10000 (one batch, one seq) so that
    // +-1 deltas never bring a total near zero (no signs_cancel refusals)
    const pre = await server.post(`/v1/models/${MODEL}/cells:batch`, {
        writes: products.map((p) => ({ column: 'quantity', cell: leaf(p), value: 10000 })),
        request_id: rid('preset'),
    });
    assert.equal(pre.status, 200, pre.text);
    assert.equal(pre.body.kind, 'batch');
    const startSeq = pre.body.seq;
    assert.equal(await modelSeq(server), startSeq);
    const known = new Map(products.map((p) => [cellKey(leaf(p)), 10000]));
    const brandStart = await readCell(server, { product: 'S01-B2', customer: CUST, time: MONTH });
    assert.equal(brandStart, 10000 * products.length);

    const [fam1, fam2] = families.map((f) => f.key);
    const targets = [
        leaf(famProducts[fam1][0]),
        leaf(famProducts[fam1][1] ?? famProducts[fam1][0]),
        leaf(famProducts[fam2][0]),
        { product: fam1, customer: CUST, time: MONTH },
        { product: 'Brand X', customer: CUST, time: MONTH }, // by display name
    ];

    // mostly leaves (writes to totals cost the server ~4x more); every
    // client hits every target
    const MIX = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4];

    const metricsBefore = (await server.get('/metrics')).text;
    const sum0 = metricValue(metricsBefore, 'duckspread_batch_size_sum') ?? 0;
    const cnt0 = metricValue(metricsBefore, 'duckspread_batch_size_count') ?? 0;

    const acks = new Map(); // request_id -> {seq, delta, target}
    let deltaSum = 0;
    const failures = [];
    const t0 = Date.now();
    await pool(CLIENTS, CLIENTS, async (c) => {
        for (let i = 0; i < PER_CLIENT; i++) {
            const target = targets[MIX[(c * 5 + i) % MIX.length]];
            const delta = (c + i) % 2 === 0 ? 1 : -1;
            const id = `c${c}-i${i}-${rid('w')}`;
            const r = await server.post('/update_cell',
                writeBody(target, { delta }, { method: 'proportional', request_id: id, wait: true, detail: 'totals' }),
                { timeout: 60000 });
            if (r.status !== 200) {
                failures.push(`${id}: ${r.status} ${r.text}`);
                continue;
            }
            assert.equal(r.body.status, 'applied');
            assert.equal(r.body.request_id, id);
            assert.equal(r.body.target.new - r.body.target.old, delta, `${id}: target moved by the delta`);
            acks.set(id, { seq: r.body.seq, delta, target });
            deltaSum += delta;
        }
    });
    const elapsed = Date.now() - t0;
    console.log(`# ${CLIENTS * PER_CLIENT} writes in ${elapsed} ms (${Math.round((CLIENTS * PER_CLIENT * 1000) / elapsed)}/s)`);
    assert.deepEqual(failures, [], 'every write is answered 200 applied');
    assert.equal(acks.size, CLIENTS * PER_CLIENT);

    // one seq per acknowledged request, distinct, dense after startSeq
    const seqs = [...acks.values()].map((a) => a.seq);
    const distinct = new Set(seqs);
    assert.equal(distinct.size, seqs.length, 'seqs are distinct across requests');
    const endSeq = startSeq + acks.size;
    assert.equal(Math.min(...seqs), startSeq + 1);
    assert.equal(Math.max(...seqs), endSeq);
    assert.equal(await modelSeq(server), endSeq);

    // the feed: no gaps, no duplicates, each event is its request's
    // at detail totals every event lists the cells above its target too (the
    // chains below follow totals as well as leaves)
    const events = await feed(server, startSeq, endSeq, { detail: 'totals' });
    assert.equal(events.length, acks.size, 'feed length');
    events.forEach((ev, i) => assert.equal(ev.seq, startSeq + 1 + i, `feed has no gap or duplicate at index ${i}`));
    for (const ev of events) {
        const a = acks.get(ev.request_id);
        assert.ok(a, `event seq ${ev.seq} has an acknowledged request_id (${ev.request_id})`);
        assert.equal(a.seq, ev.seq, `${ev.request_id}: response seq = event seq`);
        assert.equal(ev.truncated, false, `seq ${ev.seq}: changes not truncated (the chain check needs them all)`);
        assert.equal(ev.target.new - ev.target.old, a.delta);
    }

    // in seq order, for every leaf cell of the region and every target cell
    // (totals included) appearing in changes: old = previous new; the last
    // new = the value read at the end
    const canon = (t) => ({ ...t, product: t.product === 'Brand X' ? 'S01-B2' : t.product });
    const targetKeys = new Set(targets.map((t) => cellKey(canon(t))));
    known.set(cellKey(canon(targets[3])), 10000 * famProducts[fam1].length);
    known.set(cellKey(canon(targets[4])), brandStart);
    const last = checkChains(events, known, (cell) => isLeafCell(cell) || targetKeys.has(cellKey(cell)));
    for (const p of products) {
        const v = await readCell(server, leaf(p));
        assert.equal(v, last.get(cellKey(leaf(p))), `final value of ${p} equals the last new value in the feed`);
    }
    for (const t of targets) {
        const v = await readCell(server, t);
        assert.equal(v, last.get(cellKey(canon(t))), `final value of target ${JSON.stringify(t)} = last new in the feed`);
    }

    // totals equal the sums of their leaves (GET cell and grid)
    const leafVals = {};
    for (const p of products) leafVals[p] = await readCell(server, leaf(p));
    let brandSum = 0;
    for (const [f, ps] of Object.entries(famProducts)) {
        const s = ps.reduce((a, p) => a + leafVals[p], 0);
        brandSum += s;
        assert.equal(await readCell(server, { product: f, customer: CUST, time: MONTH }), s, `family ${f} = sum of its leaves`);
    }
    const brand = await readCell(server, { product: 'S01-B2', customer: CUST, time: MONTH });
    assert.equal(brand, brandSum, 'Brand X = sum of its leaves');
    assert.equal(brand, brandStart + deltaSum, 'Brand X moved by exactly the sum of all acknowledged deltas');
    const grid = await server.post(`/v1/models/${MODEL}/grid`, {
        rows: { dimension: 'product', members: ['S01-B2', ...Object.keys(famProducts), ...products] },
        cols: { dimension: 'time', members: [MONTH, '2025-Q1'] },
        measure: 'quantity', filters: { customer: CUST },
    });
    assert.equal(grid.status, 200, grid.text);
    const g = Object.fromEntries(grid.body.rows.map((k, i) => [k, grid.body.values[i]]));
    assert.equal(g['S01-B2'][0], brand, 'grid Brand X');
    for (const [f, ps] of Object.entries(famProducts)) {
        assert.equal(g[f][0], ps.reduce((a, p) => a + g[p][0], 0), `grid: family ${f} = sum of its products`);
    }
    for (const p of products) assert.equal(g[p][0], leafVals[p], `grid leaf ${p}`);

    // the events are also in the response stream in Redis
    assert.ok((await env.redis.xlen(`{${MODEL}}:response_duck`)) >= acks.size);

    // group commit: more than one command per transaction on average
    const m = (await server.get('/metrics')).text;
    const sum = metricValue(m, 'duckspread_batch_size_sum') - sum0;
    const cnt = metricValue(m, 'duckspread_batch_size_count') - cnt0;
    console.log(`# batches: ${cnt}, mean batch size ${(sum / cnt).toFixed(2)}`);
    assert.ok(cnt > 0 && sum / cnt > 1, `mean batch size ${sum}/${cnt} > 1`);
});
