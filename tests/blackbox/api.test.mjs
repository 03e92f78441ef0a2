// Idempotency (also across a restart), wait=false, long-poll latency and
// SIGTERM drain.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    setup, teardown, readCell, modelSeq, feed, writeBody, rid, pool, sleep, waitFor, MODEL,
} from './lib.mjs';

let env;
before(async () => {
    env = await setup('api');
});
after(async () => {
    await teardown(env?.server, env?.redis);
});

const CELL = { product: 'P-0021', customer: 'C-0002', time: '2025-06' };

test('idempotent retry: same answer, also after a restart; another body is 409 request_id_reused', async () => {
    const { server } = env;
    const id = rid('idem');
    const body = writeBody(CELL, { delta: 5 }, { request_id: id });
    const v0 = await readCell(server, CELL);
    const first = await server.post('/update_cell', body);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.request_id, id);
    const seqAfterFirst = await modelSeq(server);
    assert.equal(seqAfterFirst, first.body.seq);

    const again = await server.post('/update_cell', body);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.seq, first.body.seq, 'a retry gets the same seq');
    assert.deepEqual(again.body, first.body, 'a retry gets the original answer');
    // the same command on the v1 route is the same request
    const v1 = await server.post(`/v1/models/${MODEL}/cells`, body);
    assert.equal(v1.status, 200, v1.text);
    assert.equal(v1.body.seq, first.body.seq, 'the v1 route answers the same request with its seq');

    const other = await server.post('/update_cell', writeBody(CELL, { delta: 6 }, { request_id: id }));
    assert.equal(other.status, 409, other.text);
    assert.equal(other.body.error.code, 'request_id_reused');

    assert.equal(await modelSeq(server), seqAfterFirst, 'retries applied nothing');
    assert.equal(await readCell(server, CELL), v0 + 5);

    // another user may use the same request_id (scoped to model and user)
    const bob = await server.post('/update_cell', body, { headers: { 'X-User': 'bob' } });
    assert.equal(bob.status, 200, bob.text);
    assert.equal(bob.body.user, 'bob');
    assert.equal(bob.body.seq, seqAfterFirst + 1, "bob's request is a new command");
    assert.equal(await readCell(server, CELL), v0 + 10);

    // restart: SIGTERM (exit 0), same data dir and Redis
    const st = await server.restart();
    assert.equal(st.code, 0);
    const afterRestart = await server.post('/update_cell', body);
    assert.equal(afterRestart.status, 200, afterRestart.text);
    assert.equal(afterRestart.body.seq, first.body.seq, 'the same seq after a restart');
    assert.deepEqual(afterRestart.body, first.body, 'the original answer after a restart');
    const reused = await server.post('/update_cell', writeBody(CELL, { delta: 6 }, { request_id: id }));
    assert.equal(reused.status, 409, reused.text);
    assert.equal(reused.body.error.code, 'request_id_reused');
    assert.equal(await modelSeq(server), seqAfterFirst + 1);
    assert.equal(await readCell(server, CELL), v0 + 10);
    const evs = (await feed(server, 0)).filter((e) => e.request_id === id);
    assert.equal(evs.length, 2, 'two events carry the id: the api user and bob');
    assert.deepEqual(evs.map((e) => e.user).sort(), ['api', 'bob']);
});

test('wait=false: 202 queued, applied later and in the feed', async () => {
    const { server } = env;
    const v0 = await readCell(server, CELL);
    const seq0 = await modelSeq(server);
    const id = rid('nowait');
    const r = await server.post('/update_cell', writeBody(CELL, { delta: 3 }, { request_id: id, wait: false }));
    assert.equal(r.status, 202, r.text);
    assert.deepEqual(r.body, { status: 'queued', request_id: id });
    const ev = await waitFor(async () => {
        const u = await server.get(`/get_updates?table=${MODEL}&since=${seq0}&timeout=5`);
        assert.equal(u.status, 200, u.text);
        return u.body.updates.find((e) => e.request_id === id);
    }, 'the queued write in the feed');
    assert.equal(ev.target.new - ev.target.old, 3);
    assert.equal(await readCell(server, CELL), v0 + 3);
    // a retry with wait=true now answers the outcome
    const retry = await server.post('/update_cell', writeBody(CELL, { delta: 3 }, { request_id: id, wait: true }));
    assert.equal(retry.status, 200, retry.text);
    assert.equal(retry.body.seq, ev.seq);
});

test('long-poll (timeout=25) answers well under a second after a commit', async () => {
    const { server } = env;
    for (let round = 0; round < 3; round++) {
        const seq0 = await modelSeq(server);
        const poll = server.get(`/get_updates?table=${MODEL}&since=${seq0}&timeout=25`, { timeout: 30000 });
        let pollDone = false;
        poll.then(() => { pollDone = true; }, () => { pollDone = true; });
        await sleep(300);
        assert.equal(pollDone, false, 'the long-poll waits while nothing is newer');
        const w = await server.post('/update_cell', writeBody(CELL, { delta: 1 }, { request_id: rid('lp') }));
        assert.equal(w.status, 200, w.text);
        const r = await poll;
        assert.equal(r.status, 200, r.text);
        const lag = r.tEnd - w.tEnd;
        console.log(`# long-poll answered ${lag.toFixed(1)} ms after the write's 200`);
        assert.ok(lag < 1000, `long-poll answered ${lag.toFixed(0)} ms after the write's 200`);
        assert.equal(r.body.updates[0]?.seq, w.body.seq);
        assert.equal(r.body.next, w.body.seq);
    }
    // nothing newer: an empty answer after the timeout, next = since
    const seq = await modelSeq(server);
    const t0 = Date.now();
    const e = await server.get(`/v1/models/${MODEL}/changes?since=${seq}&timeout=1`);
    const ms = Date.now() - t0;
    assert.equal(e.status, 200, e.text);
    assert.deepEqual(e.body, { updates: [], next: seq });
    assert.ok(ms >= 900 && ms < 3000, `timeout=1 answered after ${ms} ms`);
    // since newer than the model: 410
    const g = await server.get(`/get_updates?table=${MODEL}&since=${seq + 1000}&timeout=0`);
    assert.equal(g.status, 410, g.text);
});

test('SIGTERM drains: writes in flight are answered or retried, exit 0, nothing lost or doubled', async () => {
    const { server } = env;
    const cell = { product: 'P-0022', customer: 'C-0003', time: '2025-07' };
    const v0 = await readCell(server, cell);
    const ids = Array.from({ length: 64 }, (_, i) => `drain-${i}-${rid('d')}`);
    const status = new Map();
    const writes = pool(ids.length, 16, async (i) => {
        try {
            const r = await server.post('/update_cell', writeBody(cell, { delta: 1 }, { request_id: ids[i] }), { timeout: 15000 });
            status.set(ids[i], r.status);
        } catch (e) {
            status.set(ids[i], `error: ${e.cause?.code || e.name}`);
        }
    });
    // SIGTERM once the first answers are in (a sanitizer build takes longer)
    await waitFor(() => [...status.values()].includes(200), 'a first write answered 200');
    const st = await server.stop();
    await writes;
    console.log(`# SIGTERM exit after ${st.ms} ms; answers: ${JSON.stringify(Object.fromEntries([...new Set(status.values())].map((s) => [s, [...status.values()].filter((x) => x === s).length])))}`);
    assert.equal(st.code, 0, `exit code after SIGTERM (signal ${st.signal})`);
    const acked = ids.filter((id) => status.get(id) === 200);
    assert.ok(acked.length > 0, 'some writes were answered before the drain');
    await server.start();
    const mid = await readCell(server, cell);
    assert.ok(mid >= v0 + acked.length, `every acknowledged write survived (${mid} >= ${v0} + ${acked.length})`);
    for (const id of ids) {
        if (status.get(id) === 200) continue;
        const r = await server.post('/update_cell', writeBody(cell, { delta: 1 }, { request_id: id }));
        assert.equal(r.status, 200, `retry ${id}: ${r.text}`);
    }
    assert.equal(await readCell(server, cell), v0 + ids.length, 'each request applied exactly once');
    const evs = (await feed(server, 0)).filter((e) => ids.includes(e.request_id));
    assert.equal(evs.length, ids.length);
    assert.equal(new Set(evs.map((e) => e.request_id)).size, ids.length);
});
