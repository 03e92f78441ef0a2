// The private redis-server of `serve` (started without --redis) is
// supervised: killed -9 again and again under a stream of delta writes with
// request_ids (clients retrying), it is reaped and restarted on the same
// socket and append-only file each time, with a backoff and a log line,
// /ready is 503 while it is down and 200 again within seconds, and nothing
// acknowledged is lost or applied twice (the delta-write oracle of lib.mjs).
// SIGTERM stops it for good: the drain never restarts it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createClient } from 'redis';
import {
    Server, teardown, MODEL, deltaStart, deltaWriters, checkDeltaOracle, waitReadyStatus, waitUntil,
} from './lib.mjs';

let server;
before(async () => {
    server = new Server({ name: 'embedded', redis: null });
    await server.start();
});
after(async () => {
    await teardown(server);
});

const alive = (pid) => {
    try {
        process.kill(pid, 0);
        return true;
    } catch {
        return false;
    }
};
// a dead child that was not reaped stays in /proc as a zombie
const reaped = (pid) => !fs.existsSync(`/proc/${pid}`);

async function responses() {
    const c = createClient({ socket: { path: server.privateRedisSocket, reconnectStrategy: false } });
    c.on('error', () => {});
    await c.connect();
    try {
        return await c.xRange(`{${MODEL}}:response_duck`, '-', '+');
    } finally {
        await c.quit();
    }
}

test('kill -9 of the private redis-server, four times under load: restarted each time, nothing lost or doubled', { timeout: 180000 }, async () => {
    const st = await deltaStart(server);
    // a client's timeout above --wait-ms (10 s): a request whose XADD's fate
    // is unknown is answered 202 before the client gives up, and retried
    const w = deltaWriters(server, st, { clients: 8, per: Infinity, deadlineMs: 150000, tag: 'emb', timeout: 15000 });
    const progress = () => `${w.acked.size} acknowledged, ${w.attempts.n} attempts; log ${server.log}\n${server.tail(12)}`;
    const killed = [];
    let finished = false;
    try {
        for (let k = 0; k < 4; k++) {
            const acked0 = w.acked.size;
            await waitUntil(() => w.acked.size >= acked0 + 20, 30000, () => `writes before kill ${k + 1}: ${progress()}`);
            const pids = server.privateRedisPids();
            const pid = pids.at(-1);
            assert.ok(alive(pid), `the private redis-server ${pid} runs`);
            // every other time, hold the restart back until the outage is seen:
            // a directory where the socket goes makes each redis-server exit at
            // once (it cannot bind), until it is removed
            const hold = k % 2 === 1;
            const sock = server.privateRedisSocket;
            if (hold) {
                fs.renameSync(sock, `${sock}.old`);
                fs.mkdirSync(sock);
            }
            process.kill(pid, 'SIGKILL');
            killed.push(pid);
            const t0 = Date.now();
            if (hold) {
                const down = await waitReadyStatus(server, 503, 10000);
                assert.equal(down.r.body.ready, false);
                assert.equal(down.r.body.redis, false);
                // restarts are tried (and fail) with a growing backoff, each logged
                await waitUntil(() => server.privateRedisPids().length >= pids.length + 2, 10000, () => `two restarts tried: ${progress()}`);
                assert.equal((await waitReadyStatus(server, 503, 1000)).r.status, 503, 'still down while no restart can bind');
                fs.rmdirSync(sock);
                fs.rmSync(`${sock}.old`, { force: true });
            }
            const up = await waitReadyStatus(server, 200, 20000);
            const acked1 = w.acked.size;
            await waitUntil(() => w.acked.size >= acked1 + 20, 20000, () => `writes after kill ${k + 1}: ${progress()}`);
            console.log(`# kill ${k + 1}${hold ? ' (restart held back)' : ''}: /ready 200 after ${up.ms} ms more, writes resumed ${Date.now() - t0} ms after the kill`);
            assert.ok(server.privateRedisPids().length > pids.length, 'a restart is logged');
            assert.notEqual(server.privateRedisPids().at(-1), pid, 'another redis-server');
            await waitUntil(() => reaped(pid), 5000, () => `pid ${pid} reaped`);
        }
        finished = true;
    } finally {
        w.stop(); // the writers finish the request in hand
        if (finished) await w.done;
        else w.done.catch(() => {}); // the failure above is the one to report
    }
    console.log(`# ${w.acked.size} acknowledged in ${w.attempts.n} attempts (${w.attempts.failed} retried)`);
    const log = fs.readFileSync(server.log, 'utf8');
    const delays = [...log.matchAll(/killed by signal 9 after [0-9.]+ s; restarting it in (\d+) ms/g)].map((m) => Number(m[1]));
    assert.equal(delays.length, 4, 'each kill -9 is logged');
    assert.ok(/exited with status \d+ after [0-9.]+ s; restarting it in \d+ ms/.test(log), 'a restart that could not bind is logged');
    await checkDeltaOracle(server, st, w.acked, responses);
    assert.ok(server.alive(), 'the server ran throughout');

    // SIGTERM: the drain stops the private redis-server and never restarts it
    const last = server.privateRedisPids().at(-1);
    const n = server.privateRedisPids().length;
    const r = await server.stop();
    assert.equal(r.code, 0, `exit after SIGTERM: ${JSON.stringify(r)}`);
    assert.ok(!alive(last), 'the private redis-server stopped with the server');
    assert.equal(server.privateRedisPids().length, n, 'no restart during the drain');
    for (const pid of killed) assert.ok(reaped(pid), `pid ${pid} reaped`);
});

test('a new server on the data directory goes on from the same database and append-only file', { timeout: 60000 }, async () => {
    if (!server.alive()) await server.start();
    const r = await server.get(`/v1/models/${MODEL}`);
    assert.equal(r.status, 200, r.text);
    const c = await server.post('/update_cell', { table: MODEL, column: 'quantity', cell: { product: 'P-0045', customer: 'C-0007', time: '2025-08' }, delta: 1 });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.body.seq, r.body.seq + 1, 'seqs go on from where the killed and restarted Redis left them');
});
