// Crash points (DS_CRASH_AT) and a random kill -9 under load: no
// acknowledged edit lost, none applied twice (delta writes with request_ids).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    setup, teardown, readCell, modelSeq, feed, writeBody, rid, sleep, waitFor, MODEL, deltaStart, deltaWriters, checkDeltaOracle,
} from './lib.mjs';

let env;
before(async () => {
    env = await setup('crash');
});
after(async () => {
    await teardown(env?.server, env?.redis);
});

const CRASH_POINTS = ['before_commit', 'after_commit', 'after_publish', 'before_xack'];

for (const [n, point] of CRASH_POINTS.entries()) {
    test(`crash point ${point}: the retried request is applied exactly once`, { timeout: 60000 }, async () => {
        const { server } = env;
        if (server.alive()) await server.stop();
        await server.start({ env: { DS_CRASH_AT: point } });
        const cell = { product: `P-00${41 + n}`, customer: 'C-0006', time: '2025-02' };
        const v0 = await readCell(server, cell);
        const seq0 = await modelSeq(server);
        const id = rid(`crash-${point}`);
        const body = writeBody(cell, { delta: 7 }, { request_id: id });
        let first;
        try {
            first = await server.post('/update_cell', body, { timeout: 5000 });
        } catch (e) {
            first = { error: e.cause?.code || e.name };
        }
        await waitFor(() => !server.alive(), () => `the server dying at ${point} (first answer: ${JSON.stringify(first.status ?? first.error)}); log ${server.log}`);
        const exit = await server.exited;
        assert.equal(exit.signal, 'SIGKILL', `killed at ${point}: ${JSON.stringify(exit)}`);
        // log first (--ack logged): the answer goes out once the engine has
        // applied an entry Redis holds, before the DuckDB commit, so a 200
        // may come before any of these points; the retry below must then
        // answer the same seq

        await server.start(); // without DS_CRASH_AT
        const r = await server.post('/update_cell', body, { timeout: 20000 });
        assert.equal(r.status, 200, `retry after ${point}: ${r.text}`);
        assert.equal(r.body.request_id, id);
        if (first.status === 200) assert.equal(r.body.seq, first.body.seq, `${point}: the retry answers the seq acknowledged before the kill`);
        assert.equal(await readCell(server, cell), v0 + 7, `${point}: the cell changed by exactly the delta`);
        const evs = (await feed(server, seq0)).filter((e) => e.request_id === id);
        assert.equal(evs.length, 1, `${point}: one event for the request`);
        assert.equal(r.body.seq, evs[0].seq, `${point}: response seq = event seq`);
        assert.equal(evs[0].target.old, v0);
        assert.equal(evs[0].target.new, v0 + 7);
        assert.equal(await modelSeq(server), seq0 + 1, `${point}: one seq used`);
        // the response stream holds the event once (a re-publish after recovery
        // only for events that were not published)
        const published = (await env.redis.xrange(`{${MODEL}}:response_duck`)).filter((e) => e.message.seq === String(r.body.seq));
        assert.equal(published.length, 1, `${point}: ${published.length} entries with seq ${r.body.seq} in {${MODEL}}:response_duck: ${JSON.stringify(published.map((e) => e.id))}`);
        const ev = JSON.parse(published[0].message.event);
        assert.equal(ev.request_id, id);
        // the request was acknowledged in the consumer group: nothing pending
        const pending = await (await env.redis.client()).xPending(`{${MODEL}}:request_duck`, 'writers');
        assert.equal(Number(pending.pending), 0, `${point}: no pending entries left: ${JSON.stringify(pending)}`);
        // and once more after a clean restart
        await server.restart();
        const again = await server.post('/update_cell', body);
        assert.equal(again.status, 200, again.text);
        assert.equal(again.body.seq, r.body.seq);
        assert.equal(await readCell(server, cell), v0 + 7);
    });
}

test('kill -9 after a random number of acknowledged delta writes: nothing acknowledged lost, nothing applied twice', { timeout: 300000 }, async () => {
    const { server } = env;
    if (!server.alive()) await server.start();
    const st = await deltaStart(server);
    const CLIENTS = 8;
    const PER = 40;
    // the kill comes with the killAfter-th acknowledgement, never at a
    // time: mid-stream on a fast machine and on a sanitizer build alike
    const killAfter = 20 + Math.floor(Math.random() * (CLIENTS * PER - 120));
    let killed = null;
    const w = deltaWriters(server, st, {
        clients: CLIENTS, per: PER, tag: 'k9', deadlineMs: 200000,
        onAck: (n) => { if (n === killAfter) killed = server.kill9(); }, // SIGKILL goes out now
    });
    await waitFor(() => killed !== null, () => `the ${killAfter}th acknowledgement (${w.acked.size} so far)`, { timeoutMs: 200000 });
    await killed;
    const ackedAtKill = killAfter;
    const failedAtKill = w.attempts.failed;
    await server.start();
    await w.done;
    console.log(`# kill -9 after the ${ackedAtKill}th acknowledgement; ${w.attempts.n} attempts, ${w.attempts.failed} retried`);
    assert.ok(ackedAtKill < CLIENTS * PER, `the kill happened mid-stream (${ackedAtKill} acknowledged)`);
    assert.ok(w.attempts.failed > failedAtKill, 'requests sent to the killed server failed and were retried');
    assert.equal(w.acked.size, CLIENTS * PER);
    await checkDeltaOracle(server, st, w.acked, () => env.redis.xrange(`{${MODEL}}:response_duck`));
});
