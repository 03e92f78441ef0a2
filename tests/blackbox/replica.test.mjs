// Read replicas (duckspread replica): a replica starts from a backup of the
// writer, follows the commands the writer applied (its response stream) and
// must equal the writer at the same seq: facts, members, the change log,
// views and the change feed. Real processes: one redis-server, the writer,
// replicas; the database files are compared after both stopped.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    MODEL, dumpModel, assertSameModel, Server, setup, teardown, modelSeq, readCell, feed, rid, writeBody, waitFor,
    waitUntil, pool, mkTmp,
} from './lib.mjs';

let redis, writer;
const replicas = [];

before(async () => {
    ({ redis, server: writer } = await setup('replica', {
        // a short response stream, so that a replica can fall behind it
        serverOpts: { extraArgs: ['--response-keep', '1000'] },
    }));
});

after(async () => {
    await teardown(...replicas, writer, redis);
});

const MEMBERS = `/v1/models/${MODEL}/dimensions/product/members`;

async function ok(p, what) {
    const r = await p;
    assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
    return r.body;
}

// A mixed load: leaf writes (delta and value), spreads of totals
// (proportional, equal, with holds), batches and member operations; `round`
// keeps member keys apart between calls.
async function mixedLoad(server, round, n = 40) {
    const leaves = ['P-0001', 'P-0002', 'P-0007', 'P-0045', 'P-0046'];
    const one = async (i) => {
        const k = i % 6;
        const id = rid(`mx${round}-${i}`);
        if (k === 0) {
            const cell = { product: leaves[i % leaves.length], customer: `C-000${1 + (i % 9)}`, time: `2025-0${1 + (i % 9)}` };
            return ok(server.post('/update_cell', writeBody(cell, { delta: 1 + i }, { request_id: id })), 'leaf delta');
        }
        if (k === 1) {
            const cell = { product: 'S01-B2', time: `2025-Q${1 + (i % 4)}` };
            return ok(server.post('/update_cell', writeBody(cell, { percent: i % 2 ? 3 : -2 }, { request_id: id })), 'spread');
        }
        if (k === 2) {
            const cell = { product: 'S02-B1-F1', customer: 'C-0003', time: `2025-0${1 + (i % 9)}` };
            return ok(server.post('/update_cell', writeBody(cell, { value: 900 + i }, { method: 'equal', request_id: id })), 'equal spread');
        }
        if (k === 3) {
            const cell = { product: 'S01', time: '2025' };
            return ok(server.post('/update_cell', writeBody(cell, { delta: 120 + i }, { holds: [{ product: 'S01-B1' }], request_id: id })), 'held spread');
        }
        if (k === 4) {
            return ok(server.post(`/v1/models/${MODEL}/cells:batch`, {
                request_id: id,
                writes: [
                    { column: 'quantity', cell: { product: 'P-0003', customer: 'C-0002', time: '2025-02' }, delta: 5 },
                    { column: 'net_amount', cell: { product: 'S02-B2', time: '2025-Q3' }, percent: 1 },
                ],
            }), 'batch');
        }
        return ok(server.post('/update_cell', writeBody({ product: 'S02', time: '2025' }, { percent: 1 }, { request_id: id })), 'top spread');
    };
    await pool(n, 6, one);
    // member operations, in order: add, rename, a value on the new leaf, move, delete
    const key = `RX-${round}`;
    await ok(server.post(MEMBERS, { op: 'add', key, name: `Replica ${round}`, parent: 'S01-B1-F1', request_id: rid('add') }), 'add');
    await ok(server.post(MEMBERS, { op: 'rename', member: key, name: `Renamed ${round}` }), 'rename');
    await ok(server.post('/update_cell', writeBody({ product: key, customer: 'C-0001', time: '2025-01' }, { value: 77 })), 'new leaf');
    await ok(server.post(MEMBERS, { op: 'move', member: key, parent: 'S02-B1-F1' }), 'move');
    if (round % 2) await ok(server.post(MEMBERS, { op: 'delete', member: key, force: true }), 'delete');
}

async function backup(server, name) {
    const r = await server.post('/v1/backups', { name });
    assert.equal(r.status, 200, `backup: ${r.text}`);
    return r.body.backup;
}

async function startReplica(name, from, extra = []) {
    const dataDir = mkTmp(`replica-${name}`);
    const r = new Server({ name: `replica-${name}`, redis, command: 'replica', from, dataDir, extraArgs: extra });
    replicas.push(r);
    await r.start();
    return r;
}

async function caughtUp(replica, seq, what = 'the replica') {
    await waitFor(async () => (await modelSeq(replica)) >= seq, `${what} at seq ${seq}`, { timeoutMs: 60000 });
}

test('a replica from a backup taken under load follows a mixed load and equals the writer', async () => {
    await mixedLoad(writer, 1);
    // the backup is taken while writes go on
    const load = mixedLoad(writer, 2);
    const bk = await backup(writer, 'r-under-load');
    await load;
    assert.ok(bk.seqs[MODEL] > 0, 'the backup names its seq');
    const rep = await startReplica('a', bk.file, ['--writer-url', writer.base]);
    const ready = await rep.get('/ready');
    assert.equal(ready.body.role, 'replica');

    // the replica serves while it follows: read your writes with min_seq, on
    // a leaf of S01-B1 (held in the load's spreads of S01, under no other)
    const fam = (await ok(writer.get(`${MEMBERS}?parent=S01-B1-F1`), 'members')).members;
    const leaf = fam[0].key;
    const loadMore = mixedLoad(writer, 3);
    for (let i = 0; i < 5; i++) {
        const cell = { product: leaf, customer: 'C-0004', time: `2025-0${1 + i}` };
        const w = await ok(writer.post('/update_cell', writeBody(cell, { value: 1000 + i })), 'write');
        const r = await rep.get(`/v1/models/${MODEL}/cell?measure=quantity&product=${leaf}&customer=C-0004&time=2025-0${1 + i}&min_seq=${w.seq}`);
        assert.equal(r.status, 200, r.text);
        assert.ok(r.body.seq >= w.seq, 'the read reflects the write');
        assert.equal(r.body.value, 1000 + i);
    }
    await loadMore;

    // writes to a replica: a 503 naming the writer, and nothing changes
    const before = await modelSeq(rep);
    const refused = await rep.post('/update_cell', writeBody({ product: 'P-0001', customer: 'C-0001', time: '2025-01' }, { value: 1 }));
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'unavailable');
    assert.match(refused.body.error.message, new RegExp(`read replica.*${writer.base.replace(/[.]/g, '\\.')}`));
    assert.equal((await rep.post(MEMBERS, { op: 'add', key: 'NOPE', parent: 'S01-B1-F1' })).status, 503);
    assert.equal((await rep.post('/v1/models', { name: 'nope' })).status, 503);

    const end = await modelSeq(writer);
    await caughtUp(rep, end);
    assert.equal(await modelSeq(rep), before > end ? before : end);

    // the same change feed, event for event, and the same cells
    const since = bk.seqs[MODEL];
    assert.deepEqual(await feed(rep, since, end), await feed(writer, since, end), 'the change feed');
    for (const cell of [{ product: 'S01' }, { product: 'S02-B1-F1', customer: 'C-0003' }, { time: '2025-Q2' }, {}]) {
        assert.equal(await readCell(rep, cell), await readCell(writer, cell), JSON.stringify(cell));
        assert.equal(await readCell(rep, cell, 'net_amount'), await readCell(writer, cell, 'net_amount'));
    }
    const metrics = await rep.get('/metrics');
    assert.match(metrics.text, /duckspread_replica_lag\{model="sales"\} 0/);

    // the files, after both stopped at the same seq
    assert.equal((await rep.stop()).code, 0);
    assert.equal((await writer.stop()).code, 0);
    assertSameModel(dumpModel(writer.dataDir), dumpModel(rep.dataDir), 'replica vs writer');
    await writer.start();
});

test('a replica stopped or killed mid-stream resumes from its own database', async () => {
    const bk = await backup(writer, 'r-resume');
    const rep = await startReplica('b', bk.file);
    const load = mixedLoad(writer, 4, 60);
    await waitFor(async () => (await modelSeq(rep)) > bk.seqs[MODEL], 'the replica applies something');
    assert.equal((await rep.stop()).code, 0);
    await rep.start(); // no --from needed: it has a database (from is ignored, said on stderr)
    await rep.kill9();
    await rep.start();
    await load;
    await mixedLoad(writer, 5);
    const end = await modelSeq(writer);
    await caughtUp(rep, end);
    assert.deepEqual(await feed(rep, bk.seqs[MODEL], end), await feed(writer, bk.seqs[MODEL], end));
    assert.equal((await rep.stop()).code, 0);
    assert.equal((await writer.stop()).code, 0);
    assertSameModel(dumpModel(writer.dataDir), dumpModel(rep.dataDir), 'resumed replica vs writer');
    await writer.start();
});

test('a replica further behind than the response stream says so and serves nothing stale', async () => {
    const bk = await backup(writer, 'r-old');
    // more commands than the writer keeps (--response-keep 1000)
    const cell = { product: 'P-0011', customer: 'C-0005', time: '2025-05' };
    await pool(1600, 16, async (i) => ok(writer.post('/update_cell', writeBody(cell, { delta: 1 }, { request_id: rid(`far-${i}`) })), 'write'));
    const oldest = await redis.xrange(`{${MODEL}}:response_duck`);
    const first = Number(oldest[0].message.seq);
    assert.ok(first > bk.seqs[MODEL] + 1, `the stream was trimmed past the backup's seq ${bk.seqs[MODEL]} (it starts at ${first})`);

    const dataDir = mkTmp('replica-far');
    const rep = new Server({ name: 'replica-far', redis, command: 'replica', from: bk.file, dataDir });
    replicas.push(rep);
    await rep.start({ waitReady: false });
    const ready = await waitFor(async () => {
        try {
            const r = await rep.get('/ready', { timeout: 2000 });
            return r.status === 503 && r.body.replica?.[0]?.stalled ? r : null;
        } catch {
            return null;
        }
    }, 'the replica says it is stalled');
    const why = ready.body.replica[0].error;
    assert.match(why, new RegExp(`at seq ${bk.seqs[MODEL]} but the writer's response stream now starts at seq \\d+`));
    assert.match(why, /newer backup/);
    const read = await rep.get(`/v1/models/${MODEL}/cell?measure=quantity&product=P-0011`);
    assert.equal(read.status, 503, 'no stale read');
    assert.equal(read.body.error.code, 'unavailable');
    assert.equal(read.body.error.message, why);
    assert.equal(await modelSeq(writer) > bk.seqs[MODEL], true);
    assert.match((await rep.get('/metrics')).text, /duckspread_replica_stalled\{model="sales"\} 1/);
});
