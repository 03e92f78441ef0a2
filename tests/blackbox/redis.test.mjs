// Redis stopped and started under load: /ready turns 503 while Redis is
// down, writes are refused 503 unavailable (nothing queued), reads keep
// working; after Redis is back (AOF, appendfsync always) the same server
// process is ready again and writes succeed; every acknowledged edit survives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    setup, teardown, readCell, modelSeq, feed, writeBody, rid, sleep, MODEL, waitReadyStatus, waitFor,
} from './lib.mjs';

let env;
before(async () => {
    env = await setup('redis');
});
after(async () => {
    await teardown(env?.server, env?.redis);
});

for (const signal of ['SIGTERM', 'SIGKILL']) {
    test(`Redis stopped (${signal}) and started under load`, { timeout: 90000 }, async () => {
        const { server, redis } = env;
        const pid = server.pid;
        const cell = { product: signal === 'SIGTERM' ? 'P-0047' : 'P-0048', customer: 'C-0008', time: '2025-09' };
        const v0 = await readCell(server, cell);
        const seq0 = await modelSeq(server);

        // load: 8 clients writing +1 with request ids
        const outcome = new Map(); // id -> last status
        const detail = new Map(); // id -> first answer, for reports
        let stop = false;
        const load = Promise.all(Array.from({ length: 8 }, async (_, c) => {
            for (let i = 0; !stop; i++) {
                const id = `rd-${signal}-${c}-${i}-${rid('x')}`;
                try {
                    const r = await server.post('/update_cell', writeBody(cell, { delta: 1 }, { request_id: id }), { timeout: 15000 });
                    outcome.set(id, r.status);
                    detail.set(id, `${r.status} ${r.text} (sent ${new Date(Date.now() - r.ms).toISOString()}, answered after ${r.ms.toFixed(0)} ms)`);
                    if (r.status === 503) assert.equal(r.body.error.code, 'unavailable', r.text);
                    else assert.ok([200, 202].includes(r.status), `${id}: ${r.status} ${r.text}`);
                } catch (e) {
                    if (e instanceof assert.AssertionError) throw e;
                    outcome.set(id, `error: ${e.cause?.code || e.name}`);
                }
                await sleep(10);
            }
        }));
        const acked = () => [...outcome.values()].filter((s) => s === 200).length;
        await waitFor(() => acked() >= 20, () => `writes acknowledged before Redis stops (${acked()})`);

        await redis.stop(signal);
        const down = await waitReadyStatus(server, 503, 10000);
        assert.equal(down.r.body.ready, false);
        assert.equal(down.r.body.redis, false);
        console.log(`# /ready 503 ${down.ms} ms after Redis stopped (${signal})`);

        // while down: a new write is refused 503 unavailable, reads work
        const refusedId = rid('refused');
        const w = await server.post('/update_cell', writeBody(cell, { delta: 1000 }, { request_id: refusedId }), { timeout: 15000 });
        assert.equal(w.status, 503, `a write while Redis is down: ${w.status} ${w.text}`);
        assert.equal(w.body.error.code, 'unavailable');
        const read = await server.get(`/v1/models/${MODEL}/cell?measure=quantity&product=${cell.product}&customer=${cell.customer}&time=${cell.time}`);
        assert.equal(read.status, 200, `GET cell while Redis is down: ${read.text}`);
        const grid = await server.post(`/v1/models/${MODEL}/grid`, { rows: { dimension: 'product', members: [cell.product] }, cols: { dimension: 'time', members: [cell.time] }, measure: 'quantity', filters: { customer: cell.customer } });
        assert.equal(grid.status, 200, `grid while Redis is down: ${grid.text}`);
        await sleep(500);

        await redis.start(); // same port, same dir: the AOF comes back
        const up = await waitReadyStatus(server, 200, 20000);
        console.log(`# /ready 200 ${up.ms} ms after Redis started`);
        assert.equal(server.pid, pid, 'the same server process');
        assert.ok(server.alive(), 'the server process is still running');
        const ackedUp = acked();
        await waitFor(() => acked() >= ackedUp + 20, () => `writes acknowledged after Redis is back (${acked() - ackedUp})`);
        stop = true;
        await load;

        const ok = await server.post('/update_cell', writeBody(cell, { delta: 1 }, { request_id: rid('after') }));
        assert.equal(ok.status, 200, `a write after Redis is back: ${ok.text}`);

        const counts = {};
        for (const st of outcome.values()) counts[st] = (counts[st] || 0) + 1;
        console.log(`# first answers under load: ${JSON.stringify(counts)}`);
        // requests without a definite answer (202, connection errors) are retried
        // with their id; 503-refused ones were not queued and must not appear
        const refused = new Set([refusedId]);
        for (const [id, st] of outcome) {
            if (st === 200) continue;
            if (st === 503) {
                refused.add(id);
                continue;
            }
            const r = await server.post('/update_cell', writeBody(cell, { delta: 1 }, { request_id: id }), { timeout: 20000 });
            assert.equal(r.status, 200, `retry of ${id} (first answer ${st}): ${r.text}`);
            outcome.set(id, 200);
        }
        const applied = [...outcome.values()].filter((s) => s === 200).length + 1; // + the write after
        const evs = await feed(server, seq0);
        const ids = evs.map((e) => e.request_id);
        assert.equal(new Set(ids).size, ids.length, 'no request applied twice');
        for (const id of refused) {
            const ev = evs.find((e) => e.request_id === id);
            assert.ok(!ev, `POST /update_cell ${JSON.stringify(writeBody(cell, { delta: 1 }, { request_id: id }))} was answered ${detail.get(id)} but was applied: seq ${ev?.seq} ts ${ev?.ts}`);
        }
        assert.equal(evs.length, applied, 'every acknowledged write is in the feed');
        assert.equal(await readCell(server, cell), v0 + applied, 'every acknowledged edit survived, none doubled');
        console.log(`# ${applied} applied, ${refused.size} refused 503`);
    });
}
