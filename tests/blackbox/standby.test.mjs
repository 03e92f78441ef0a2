// A standby writer (serve --standby): it follows the writer as a replica;
// when the writer is killed -9 under load it takes the lease, claims what
// the dead writer read and did not finish, and answers writes. Delta
// writes from many clients with request_ids, retried on any error against
// whichever server answers: afterwards nothing acknowledged is lost,
// nothing applied twice, the seq is dense, and the old writer restarted
// becomes a standby of the new one and equals it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    MODEL, dumpModel, assertSameModel, Server, Redis, teardown, modelSeq, feed, rid, writeBody, waitFor, sleep,
    deltaStart, checkDeltaOracle, mkTmp,
} from './lib.mjs';

const LEASE_MS = 1000;
let redis, a, b;

before(async () => {
    redis = await new Redis('standby').start();
    a = new Server({ name: 'standby-a', redis, extraArgs: ['--lease-ms', String(LEASE_MS)] });
    await a.start();
});

after(async () => {
    await teardown(a, b, redis);
});

const role = async (s) => (await s.get('/ready')).body.role;

test('kill -9 of the writer under load: the standby takes over; nothing lost or doubled; the old writer comes back as a standby', async () => {
    const st = await deltaStart(a);
    const bk = await a.post('/v1/backups', { name: 'for-standby' });
    assert.equal(bk.status, 200, bk.text);
    const dataDir = mkTmp('standby-b');
    b = new Server({
        name: 'standby-b', redis, dataDir, demo: false, from: bk.body.backup.file,
        extraArgs: ['--standby', '--lease-ms', String(LEASE_MS)],
    });
    await b.start();
    assert.equal(await role(b), 'standby');
    // a standby refuses writes, naming the writer
    const refused = await b.post('/update_cell', writeBody(st.cells[0], { delta: 1 }));
    assert.equal(refused.status, 503);
    assert.match(refused.body.error.message, /read replica/);

    // 12 clients, 30 delta writes each, each retried with its request_id on
    // any error against the other server; the writer is killed after the
    // 120th acknowledgement
    const acked = new Map();
    let killedAt = null, firstAfter = null;
    const servers = [a, b];
    const deadline = Date.now() + 120000;
    const client = async (c) => {
        let at = 0;
        for (let i = 0; i < 30; i++) {
            const id = `sb-${c}-${i}-${rid('k')}`;
            const target = i % 4 === 3 ? st.total : st.cells[(c + i) % st.cells.length];
            const body = writeBody(target, { delta: 1 }, { request_id: id });
            for (;;) {
                assert.ok(Date.now() < deadline, `request ${id} not acknowledged before the deadline`);
                const s = servers[at];
                try {
                    const r = await s.post('/update_cell', body, { timeout: 5000 });
                    if (r.status === 200) {
                        assert.equal(r.body.request_id, id);
                        if (acked.has(id)) assert.equal(acked.get(id), r.body.seq, 'a retry gets the original seq');
                        acked.set(id, r.body.seq);
                        if (killedAt && s === b && !firstAfter) firstAfter = Date.now();
                        break;
                    }
                    assert.ok([202, 503].includes(r.status), `unexpected ${r.status} ${r.text}`);
                } catch (e) {
                    if (e instanceof assert.AssertionError) throw e;
                }
                at = 1 - at; // the other one
                await sleep(20);
            }
            if (acked.size >= 120 && !killedAt) {
                killedAt = Date.now();
                await a.kill9();
            }
        }
    };
    await Promise.all(Array.from({ length: 12 }, (_, c) => client(c)));
    assert.ok(killedAt, 'the writer was killed under load');
    assert.equal(await role(b), 'writer', 'the standby is the writer now');
    console.log(`# kill -9 of the writer -> first 200 from the standby: ${firstAfter - killedAt} ms (lease ${LEASE_MS} ms)`);

    // the delta-write oracle on the new writer: one dense seq per request,
    // chains of old -> new values, the totals
    await checkDeltaOracle(b, st, acked, () => redis.xrange(`{${MODEL}}:response_duck`));

    // the old writer comes back: fenced, it follows the new one
    await a.start();
    assert.equal(await role(a), 'standby');
    const end = await modelSeq(b);
    await waitFor(async () => (await modelSeq(a)) === end, 'the old writer caught up');
    assert.deepEqual(await feed(a, st.seq0, end), await feed(b, st.seq0, end), 'the same change feed');
    const refusedA = await a.post('/update_cell', writeBody(st.cells[0], { delta: 1 }));
    assert.equal(refusedA.status, 503, 'the old writer answers no write');

    // and takes over again when the new one dies
    await b.kill9();
    await waitFor(async () => (await a.post('/update_cell', writeBody(st.cells[0], { delta: 1 }, { request_id: rid('back') }))).status === 200,
        'the old writer takes over again', { timeoutMs: 60000, intervalMs: 100 });
    await b.start();
    assert.equal(await role(b), 'standby');
    const end2 = await modelSeq(a);
    await waitFor(async () => (await modelSeq(b)) === end2, 'b caught up');
    assert.equal((await b.stop()).code, 0);
    assert.equal((await a.stop()).code, 0);
    assertSameModel(dumpModel(a.dataDir), dumpModel(b.dataDir), 'the old writer vs the new');
    await a.start(); // the writer again (nobody holds the leases after a clean stop)
    await b.start(); // and b its standby, by itself
});

test('a writer stopped (SIGSTOP) past its lease is fenced when it wakes and becomes the standby', async () => {
    // after the first test: a is the writer, b its standby (both running)
    const [w, s] = (await role(a)) === 'writer' ? [a, b] : [b, a];
    assert.equal(await role(s), 'standby');
    const st = await deltaStart(w);
    const acked = new Map();
    const write = async (srv, i) => {
        const id = `stop-${i}-${rid('k')}`;
        const body = writeBody(st.cells[i % st.cells.length], { delta: 1 }, { request_id: id });
        for (;;) {
            for (const x of [srv, srv === w ? s : w]) {
                try {
                    const r = await x.post('/update_cell', body, { timeout: 5000 });
                    if (r.status === 200) {
                        acked.set(id, r.body.seq);
                        return;
                    }
                } catch (e) {
                    if (e instanceof assert.AssertionError) throw e;
                }
            }
            await sleep(20);
        }
    };
    for (let i = 0; i < 20; i++) await write(w, i);
    w.proc.kill('SIGSTOP');
    try {
        await waitFor(async () => (await role(s)) === 'writer', 'the standby took over', { timeoutMs: 60000, intervalMs: 100 });
        for (let i = 20; i < 40; i++) await write(s, i);
    } finally {
        w.proc.kill('SIGCONT');
    }
    await waitFor(async () => (await role(w)) === 'standby', 'the stopped writer, woken, follows the new one', { timeoutMs: 60000, intervalMs: 100 });
    const refused = await w.post('/update_cell', writeBody(st.cells[0], { delta: 1 }));
    assert.equal(refused.status, 503);
    for (let i = 40; i < 60; i++) await write(s, i);
    await checkDeltaOracle(s, st, acked, () => redis.xrange(`{${MODEL}}:response_duck`));
    const end = await modelSeq(s);
    await waitFor(async () => (await modelSeq(w)) === end, 'the old writer caught up');
    assert.deepEqual(await feed(w, st.seq0, end), await feed(s, st.seq0, end));
    assert.equal((await w.stop()).code, 0);
    assert.equal((await s.stop()).code, 0);
    assertSameModel(dumpModel(w.dataDir), dumpModel(s.dataDir), 'the fenced writer vs the new');
});
