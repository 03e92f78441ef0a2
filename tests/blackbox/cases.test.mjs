// The six test cases duckspread was first specified with, but 2 (many users
// at once: concurrency.test.mjs): 1 a cell update shows in DuckDB and in
// Redis; 3 an update of a parent (Brand X) moves its children
// proportionally; 4 a parent whose children are all zero spreads equally;
// 5 the view sales_summary_by_product_family stays consistent with the
// facts; 6 an unknown table, column or cell is a clear error and changes
// nothing. Against the real binary, a real redis-server and, at the end,
// the DuckDB file itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
    DBQUERY, setup, teardown, readCell, readCellFull, modelSeq, feed, memberChildren,
    validateSchema, writeBody, rid, cellKey, MODEL,
} from './lib.mjs';

let env;
before(async () => {
    env = await setup('cases');
});
after(async () => {
    await teardown(env?.server, env?.redis);
});

const REQ = `{${MODEL}}:request_duck`;
const RESP = `{${MODEL}}:response_duck`;
const withoutStatus = ({ status, ...rest }) => rest;
const facts = {}; // what the DuckDB check at the end looks for

test('1. update a leaf: reads back, in the feed, in both Redis streams', async () => {
    const { server, redis } = env;
    const cell = { product: 'P-0003', customer: 'C-0005', time: '2025-04' }; // Brand 01: no later test touches it
    const v0 = await readCell(server, cell);
    const seq0 = await modelSeq(server);
    const id = rid('case1');
    const value = v0 + 17;
    const r = await server.post('/update_cell', writeBody(cell, { value }, { request_id: id }));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.status, 'applied');
    assert.equal(r.body.request_id, id);
    assert.equal(r.body.kind, 'write');
    assert.equal(r.body.seq, seq0 + 1, 'the next seq of the model');
    assert.deepEqual(r.body.target, { cell, column: 'quantity', old: v0, new: value });
    assert.equal(r.body.leaves_changed, 1);

    const back = await readCellFull(server, cell);
    assert.equal(back.status, 200);
    assert.equal(back.body.value, value, 'GET cell reads the new value');
    assert.ok(back.body.seq >= r.body.seq, 'the read reflects the write');
    assert.equal(await modelSeq(server), r.body.seq);

    // the feed, both routes: the event is the response without `status`
    for (const route of ['get_updates', 'changes']) {
        const evs = await feed(server, seq0, r.body.seq, { path: route });
        assert.equal(evs.length, 1, `${route}: one event`);
        assert.equal(evs[0].seq, r.body.seq);
        assert.equal(evs[0].request_id, id);
        assert.deepEqual(evs[0], withoutStatus(r.body), `${route}: event = applied response without status`);
    }

    // Redis: the request stream holds the request, the response stream the event
    const reqs = await redis.xrange(REQ);
    const mine = reqs.filter((e) => e.message.rid === id);
    assert.equal(mine.length, 1, `${REQ} has one entry with rid ${id}`);
    const cmd = JSON.parse(mine[0].message.cmd);
    assert.equal(JSON.stringify(cmd).includes('P-0003'), true, `${REQ} entry carries the command: ${mine[0].message.cmd}`);
    const resps = (await redis.xrange(RESP)).filter((e) => e.message.seq === String(r.body.seq));
    assert.equal(resps.length, 1, `${RESP} has one entry with seq ${r.body.seq}`);
    const ev = JSON.parse(resps[0].message.event);
    validateSchema('Event', ev, `${RESP} event`);
    assert.deepEqual(ev, withoutStatus(r.body), `${RESP} event = the applied response without status`);
    facts.case1 = { cell, value, seq: r.body.seq, old: v0, request_id: id };
});

test('3. update Brand X: children move proportionally, the sum is exact', async () => {
    const { server } = env;
    const families = await memberChildren(server, 'product', 'S01-B2');
    assert.deepEqual(families.length >= 2, true);
    const oldBrand = await readCell(server, { product: 'S01-B2' });
    const oldFam = {};
    for (const f of families) oldFam[f.key] = await readCell(server, { product: f.key });
    assert.equal(Object.values(oldFam).reduce((a, b) => a + b, 0), oldBrand, 'Brand X = sum of its families before');
    const products = {};
    for (const f of families) for (const p of await memberChildren(server, 'product', f.key)) products[p.key] = await readCell(server, { product: p.key });

    const value = oldBrand + 12345;
    const seq0 = await modelSeq(server);
    // detail totals: the answer lists the target, the cells above and the
    // children one level down (the default, leaves, lists the leaves only)
    const r = await server.post('/update_cell',
        writeBody({ product: 'Brand X' }, { value }, { method: 'proportional', detail: 'totals' }));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.seq, seq0 + 1);
    assert.equal(r.body.method, 'proportional');
    assert.deepEqual(r.body.target.cell, { product: 'S01-B2' }, 'members are named by key in responses');
    assert.equal(r.body.target.old, oldBrand);
    assert.equal(r.body.target.new, value);
    assert.ok(r.body.leaves_changed > 0);
    assert.equal(await readCell(server, { product: 'Brand X' }), value, 'Brand X reads back the value');

    let sum = 0n;
    for (const f of families) {
        const nf = await readCell(server, { product: f.key });
        sum += BigInt(nf);
        // |new_f - value * old_f / old_brand| <= 1
        const err = BigInt(nf) * BigInt(oldBrand) - BigInt(value) * BigInt(oldFam[f.key]);
        assert.ok((err < 0n ? -err : err) <= BigInt(oldBrand),
            `family ${f.key}: ${nf} within one unit of ${value} * ${oldFam[f.key]} / ${oldBrand}`);
    }
    assert.equal(sum, BigInt(value), 'families sum exactly to the value');
    // products are on the apportionment path too: floor or ceiling of their share
    for (const [p, old] of Object.entries(products)) {
        const np = await readCell(server, { product: p });
        const err = BigInt(np) * BigInt(oldBrand) - BigInt(value) * BigInt(old);
        assert.ok((err < 0n ? -err : err) <= BigInt(oldBrand), `product ${p}: ${np} within one unit of its exact share`);
    }
    // the change set names the families (children one level down) with their new values
    for (const f of families) {
        const ch = r.body.changes.find((c) => cellKey(c.cell) === cellKey({ product: f.key }));
        assert.ok(ch, `changes list family ${f.key}`);
        assert.equal(ch.new, await readCell(server, { product: f.key }));
    }
    facts.case3 = { seq: r.body.seq };
});

test('4. a parent whose children are all zero: equal distribution', async () => {
    const { server } = env;
    const fam = 'S01-B2-FZ';
    const add = async (body) => {
        const r = await server.post(`/v1/models/${MODEL}/dimensions/product/members`, { op: 'add', ...body, request_id: rid('member') });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.status, 'applied');
        assert.equal(r.body.kind, 'member');
        assert.equal(r.body.member.op, 'add');
        assert.equal(r.body.member.key, body.key);
        return r;
    };
    await add({ key: fam, name: 'Zero Family', parent: 'S01-B2' });
    const prods = ['PZ-1', 'PZ-2', 'PZ-3'];
    for (const p of prods) await add({ key: p, name: `Zero ${p}`, parent: fam });
    const kids = await memberChildren(server, 'product', fam);
    assert.deepEqual(kids.map((k) => k.key), prods);
    assert.ok(kids.every((k) => k.leaf));

    const cell = { product: fam, customer: 'C-0001', time: '2025' };
    assert.equal(await readCell(server, cell), 0);
    const brandBefore = await readCell(server, { product: 'S01-B2', customer: 'C-0001', time: '2025' });
    const r = await server.post('/update_cell', writeBody(cell, { value: 100 }, { method: 'proportional' }));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.method, 'equal', 'proportional over all-zero children becomes equal');
    assert.equal(r.body.target.old, 0);
    assert.equal(r.body.target.new, 100);
    let sum = 0;
    for (const p of prods) {
        const v = await readCell(server, { product: p, customer: 'C-0001', time: '2025' });
        assert.ok(v === 33 || v === 34, `${p} reads ${v}, expected 33 or 34`);
        sum += v;
    }
    assert.equal(sum, 100);
    assert.equal(await readCell(server, cell), 100);
    assert.equal(await readCell(server, { product: 'S01-B2', customer: 'C-0001', time: '2025' }), brandBefore + 100, 'Brand X follows');
    // every month of each product gets 100/36 -> 2 or 3
    const months = Array.from({ length: 12 }, (_, i) => `2025-${String(i + 1).padStart(2, '0')}`);
    const g = await server.post(`/v1/models/${MODEL}/grid`, {
        rows: { dimension: 'product', members: prods }, cols: { dimension: 'time', members: months },
        measure: 'quantity', filters: { customer: 'C-0001' },
    });
    assert.equal(g.status, 200, g.text);
    for (const row of g.body.values) for (const v of row) assert.ok(v === 2 || v === 3, `leaf ${v} is 2 or 3`);
    assert.equal(g.body.values.flat().reduce((a, b) => a + b, 0), 100);
    facts.case4 = { fam, prods };
});

test('changes list each cell once (leaf children of the target appear as children and as leaves)', async () => {
    const { server } = env;
    const cell = { product: 'S01-B2-F1', customer: 'C-0009', time: '2025-05' };
    const kids = await memberChildren(server, 'product', 'S01-B2-F1');
    // make the family non-zero so that the spread is proportional
    for (const k of kids) {
        const w = await server.post('/update_cell', writeBody({ ...cell, product: k.key }, { value: 50 }));
        assert.equal(w.status, 200, w.text);
    }
    const r = await server.post('/update_cell', writeBody(cell, { delta: 7 }));
    assert.equal(r.status, 200, r.text);
    const dup = [];
    const seen = new Set();
    for (const ch of r.body.changes) {
        const k = `${ch.column} ${cellKey(ch.cell)}`;
        if (seen.has(k)) dup.push(k);
        seen.add(k);
    }
    assert.deepEqual(dup, [], `POST /update_cell ${JSON.stringify(writeBody(cell, { delta: 7 }))}: cells listed more than once in changes`);
});

test('6. unknown table, column and member: 404 naming which, nothing applied, nothing queued', async () => {
    const { server, redis } = env;
    const seq0 = await modelSeq(server);
    const xlen0 = await redis.xlen(REQ);
    const probe = { product: 'P-0011', customer: 'C-0005', time: '2025-04' };
    const v0 = await readCell(server, probe);
    const cases = [
        ['/update_cell', { table: 'no_such_table', column: 'quantity', cell: probe, value: 1 }, 'table', 'no_such_table'],
        ['/update_cell', { table: MODEL, column: 'no_such_column', cell: probe, value: 1 }, 'column', 'no_such_column'],
        ['/update_cell', { table: MODEL, column: 'quantity', cell: { ...probe, product: 'P-9999' }, value: 1 }, 'cell', 'P-9999'],
        ['/update_cell', { table: MODEL, column: 'quantity', cell: { ...probe, customer: 'Nobody' }, delta: 5, request_id: rid('c6') }, 'cell', 'Nobody'],
        ['/v1/models/no_such_table/cells', { column: 'quantity', cell: probe, value: 1 }, 'table', 'no_such_table'],
        [`/v1/models/${MODEL}/cells`, { column: 'no_such_column', cell: probe, value: 1 }, 'column', 'no_such_column'],
        [`/v1/models/${MODEL}/cells`, { column: 'quantity', cell: { ...probe, time: '2099-13' }, value: 1 }, 'cell', '2099-13'],
    ];
    for (const [p, body, target, name] of cases) {
        const r = await server.post(p, body);
        assert.equal(r.status, 404, `POST ${p} ${JSON.stringify(body)} -> ${r.status} ${r.text}`);
        assert.equal(r.body.error.code, 'not_found');
        assert.equal(r.body.error.target, target, `POST ${p} ${JSON.stringify(body)}: target`);
        assert.ok(r.body.error.message.includes(name), `message names '${name}': ${r.body.error.message}`);
    }
    // reads name the missing thing too
    const rc = await server.get(`/v1/models/${MODEL}/cell?measure=quantity&product=P-9999`);
    assert.equal(rc.status, 404);
    assert.equal(rc.body.error.target, 'cell');
    const rt = await server.get('/v1/models/no_such_table/cell?measure=quantity');
    assert.equal(rt.status, 404);
    assert.equal(rt.body.error.target, 'table');
    const rm = await server.get(`/v1/models/${MODEL}/cell?measure=no_such_column`);
    assert.equal(rm.status, 404);
    assert.equal(rm.body.error.target, 'column');
    const gu = await server.get('/get_updates?table=no_such_table&since=0&timeout=0');
    assert.equal(gu.status, 404);
    assert.equal(gu.body.error.target, 'table');

    assert.equal(await modelSeq(server), seq0, 'the model seq is unchanged');
    assert.equal(await redis.xlen(REQ), xlen0, 'nothing was queued on the request stream');
    assert.equal(await readCell(server, probe), v0);
    assert.deepEqual(await feed(server, seq0), [], 'no event');
});

test('5. the view sales_summary_by_product_family equals the cells; and in the DuckDB file after SIGTERM', async () => {
    const { server } = env;
    // some more updates so that the view has something to follow
    const w1 = await server.post('/update_cell', writeBody({ product: 'S02-B1-F2', time: '2025-03' }, { percent: 10 }));
    assert.equal(w1.status, 200, w1.text);
    const w2 = await server.post('/update_cell', writeBody({ product: 'P-0012', customer: 'C-0002', time: '2024-01' }, { delta: 1000 }));
    assert.equal(w2.status, 200, w2.text);
    const w3 = await server.post('/update_cell', { table: MODEL, column: 'net_amount', cell: { product: 'S01-B2-F1', time: '2025-04' }, value: '12345.67' });
    assert.equal(w3.status, 200, w3.text);

    const view = `/v1/models/${MODEL}/views/sales_summary_by_product_family`;
    const fams = ['S01-B2-F1', 'S01-B2-F2', 'S01-B2-FZ', 'S02-B1-F2'];
    const months = ['2024-01', '2025-03', '2025-04'];
    const grid = await server.post(`/v1/models/${MODEL}/grid`, {
        rows: { dimension: 'product', members: fams }, cols: { dimension: 'time', members: months }, measure: 'quantity',
    });
    assert.equal(grid.status, 200, grid.text);
    for (const [fi, fam] of fams.entries()) {
        for (const [mi, month] of months.entries()) {
            const r = await server.get(`${view}?family_key=${fam}&month=${month}`);
            assert.equal(r.status, 200, r.text);
            const q = await readCell(server, { product: fam, time: month });
            const n = await readCell(server, { product: fam, time: month }, 'net_amount');
            assert.equal(grid.body.values[fi][mi], q, `grid ${fam} ${month}`);
            const rows = r.body.rows.filter((x) => x.grouping_id === 0);
            if (q === 0 && n === 0 && rows.length === 0) continue; // no facts: no row
            assert.equal(rows.length, 1, `${view}?family_key=${fam}&month=${month}: one family row: ${r.text}`);
            assert.equal(rows[0].quantity, q, `view quantity of ${fam} ${month}`);
            assert.equal(Number(rows[0].net_amount).toFixed(2), Number(n).toFixed(2), `view net_amount of ${fam} ${month}`);
            assert.equal(rows[0].family_key, fam);
            assert.equal(rows[0].month, month);
        }
    }
    // a brand row (grouping_id 2) and a supplier row (6)
    const b = await server.get(`${view}?brand_key=S01-B2&month=2025-03`);
    assert.equal(b.status, 200, b.text);
    const brandRow = b.body.rows.find((x) => x.grouping_id === 2);
    assert.ok(brandRow, `brand row in ${b.text.slice(0, 300)}`);
    assert.equal(brandRow.quantity, await readCell(server, { product: 'S01-B2', time: '2025-03' }));
    const s = await server.get(`${view}?supplier_key=S02&month=2025-03&grouping_id=6`);
    assert.equal(s.status, 200, s.text);
    assert.equal(s.body.rows.length, 1, s.text);
    assert.equal(s.body.rows[0].quantity, await readCell(server, { product: 'S02', time: '2025-03' }));

    // a full copy of the view for the file check
    const all = await server.get(`${view}?limit=100000`);
    assert.equal(all.status, 200);
    const seqAtEnd = await modelSeq(server);
    assert.equal(all.body.seq, seqAtEnd);

    // SIGTERM: exit 0; then open the file with DuckDB itself
    const st = await server.stop();
    assert.equal(st.code, 0, `exit code after SIGTERM (signal ${st.signal})`);

    // build/tests/dbquery: DuckDB's C API, read-only; rows as JSON lines of text values
    const dbfile = path.join(server.dataDir, 'duckspread.db');
    const q = async (sql, ...params) => {
        const r = spawnSync(DBQUERY, [dbfile, sql, ...params.map(String)], { encoding: 'utf8', maxBuffer: 1 << 28 });
        assert.equal(r.status, 0, `dbquery failed: ${r.stderr}`);
        return r.stdout.split('\n').filter((l) => l).map((l) => JSON.parse(l));
    };
    {
        const [model] = await q('SELECT model_id, seq FROM ds_model WHERE name = $1', MODEL);
        assert.ok(model, 'ds_model has sales');
        assert.equal(Number(model.seq), seqAtEnd, 'ds_model.seq = the last seq served');
        const mid = Number(model.model_id);
        const dims = Object.fromEntries((await q('SELECT name, dim_id FROM ds_dimension WHERE model_id = $1', mid)).map((d) => [d.name, Number(d.dim_id)]));
        const meas = Object.fromEntries((await q('SELECT name, measure_id FROM ds_measure WHERE model_id = $1', mid)).map((d) => [d.name, Number(d.measure_id)]));
        const F = `f_${mid}`;
        const dp = `d${dims.product}`, dt = `d${dims.time}`, dc = `d${dims.customer}`;
        const mq = `m${meas.quantity}`, mn = `m${meas.net_amount}`;
        const mem = (alias, dim) => `ds_member ${alias} ON ${alias}.model_id = ${mid} AND ${alias}.dim_id = ${dim}`;

        // case 1 in the file: the fact, the leaf log and the command row
        const c1 = facts.case1;
        const [fact] = await q(`SELECT CAST(f.${mq} AS VARCHAR) v FROM ${F} f
            JOIN ${mem('p', dims.product)} AND p.member_id = f.${dp} AND p.key = $1
            JOIN ${mem('c', dims.customer)} AND c.member_id = f.${dc} AND c.key = $2
            JOIN ${mem('t', dims.time)} AND t.member_id = f.${dt} AND t.key = $3`, c1.cell.product, c1.cell.customer, c1.cell.time);
        assert.equal(Number(fact?.v), c1.value, 'case 1: the fact in the DuckDB file');
        const cmdRows = await q('SELECT seq, request_id FROM ds_command WHERE model_id = $1 AND request_id = $2', mid, c1.request_id);
        assert.equal(cmdRows.length, 1, 'case 1: one ds_command row for the request');
        assert.equal(Number(cmdRows[0].seq), c1.seq);
        const logRows = await q(`SELECT old_value, new_value FROM l_${mid} WHERE seq = $1`, c1.seq);
        assert.equal(logRows.length, 1, 'case 1: one leaf in the change log');
        assert.equal(Number(logRows[0].old_value), c1.old);
        assert.equal(Number(logRows[0].new_value), c1.value);

        // the view in the file = the view served
        const fileView = await q(`SELECT supplier_key, brand_key, family_key, month, grouping_id,
                CAST(quantity AS VARCHAR) quantity, CAST(net_amount AS VARCHAR) net_amount
            FROM sales_summary_by_product_family`);
        const vkey = (r) => `${r.grouping_id}|${r.supplier_key}|${r.brand_key ?? ''}|${r.family_key ?? ''}|${r.month}`;
        const norm = (x, s) => (x === null || x === undefined ? null : Number(x).toFixed(s));
        const served = new Map(all.body.rows.map((r) => [vkey(r), [norm(r.quantity, 0), norm(r.net_amount, 2)]]));
        const inFile = new Map(fileView.map((r) => [vkey(r), [norm(r.quantity, 0), norm(r.net_amount, 2)]]));
        assert.equal(inFile.size, fileView.length, 'view rows are unique per grouping');
        assert.deepEqual(inFile, served, 'the view in the file = the view served at the last seq');

        // an independent GROUP BY over the facts and the member table
        const indep = await q(`SELECT s.key supplier_key, b.key brand_key, fa.key family_key, t.key AS "month",
                CAST(COALESCE(SUM(f.${mq}), 0) AS VARCHAR) quantity, CAST(COALESCE(SUM(f.${mn}), 0) AS VARCHAR) net_amount
            FROM ${F} f
            JOIN ${mem('p', dims.product)} AND p.member_id = f.${dp}
            JOIN ${mem('fa', dims.product)} AND fa.member_id = p.parent_id
            JOIN ${mem('b', dims.product)} AND b.member_id = fa.parent_id
            JOIN ${mem('s', dims.product)} AND s.member_id = b.parent_id
            JOIN ${mem('t', dims.time)} AND t.member_id = f.${dt}
            GROUP BY ALL`);
        const famRows = new Map(fileView.filter((r) => Number(r.grouping_id) === 0).map((r) => [vkey(r), [norm(r.quantity, 0), norm(r.net_amount, 2)]]));
        const indepRows = new Map(indep.map((r) => [vkey({ ...r, grouping_id: 0 }), [norm(r.quantity, 0), norm(r.net_amount, 2)]]));
        assert.ok(indepRows.size > 100, 'the independent GROUP BY found the facts');
        assert.deepEqual(famRows, indepRows, 'family rows of the view = an independent GROUP BY over the facts');
        // brand and supplier rows = sums of the independent family rows
        const roll = (keyOf) => {
            const m = new Map();
            for (const r of indep) {
                const k = keyOf(r);
                const [a, bb] = m.get(k) || [0n, 0n];
                const toMinor = (x, sc) => (x === null ? 0n : BigInt(Number(x).toFixed(sc).replace('.', '')));
                m.set(k, [a + toMinor(r.quantity, 0), bb + toMinor(r.net_amount, 2)]);
            }
            return m;
        };
        const fmt = (v, sc) => { const s = (v < 0n ? -v : v).toString().padStart(sc + 1, '0'); return (v < 0n ? '-' : '') + (sc ? `${s.slice(0, -sc)}.${s.slice(-sc)}` : s); };
        const brandI = roll((r) => `2|${r.supplier_key}|${r.brand_key}||${r.month}`);
        const supI = roll((r) => `6|${r.supplier_key}|||${r.month}`);
        for (const [k, [a, bb]] of [...brandI, ...supI]) {
            assert.deepEqual(inFile.get(k), [fmt(a, 0), fmt(bb, 2)], `view row ${k} = sum of the facts beneath`);
        }
        assert.equal(inFile.size, famRows.size + brandI.size + supI.size, 'the view has no other rows');
    }
    assert.ok(all.body.rows.some((r) => r.family_key === facts.case4.fam), 'the case-4 family is in the view');
});
