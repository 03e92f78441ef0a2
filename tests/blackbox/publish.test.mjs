// The response stream after trouble: a lease that lapses under load and is
// taken again by the same server, a lease another writer holds for a while
// (the publisher leaves its batch, the writer re-publishes it from the
// database once the lease is back), and Redis killed and restarted under
// load, leave every seq on {model}:response_duck exactly once and nothing
// pending; a restart finds nothing to repair. wait=false is answered 503
// when the command surely did not reach Redis (never 202 for a command that
// is not queued). Every step waits for a condition (answers, log lines,
// /ready), never for a time.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
    Redis, Server, setup, teardown, modelSeq, readCell, writeBody, rid, sleep, waitFor, logSize, logFrom, MODEL,
} from './lib.mjs';

const cleanup = [];
after(async () => {
    await teardown(...cleanup);
});

const CELL = { product: 'P-0007', customer: 'C-0003', time: '2025-03' };

function cli(redis, ...args) {
    const auth = redis.password ? ['-a', redis.password, '--no-auth-warning'] : [];
    return execFileSync('redis-cli', ['-p', String(redis.port), ...auth, ...args]).toString().trim();
}

// clients writing deltas until stop(); returns {stop, answers, ok}; ok()
// counts the writes answered 200 so far
function load(server, clients) {
    let stopped = false;
    const answers = new Map();
    const done = Promise.all(Array.from({ length: clients }, async () => {
        while (!stopped) {
            const id = rid('pub');
            try {
                const r = await server.post('/update_cell', writeBody(CELL, { delta: 1 }, { request_id: id }), { timeout: 20000 });
                answers.set(id, r.status);
            } catch {
                answers.set(id, 'error');
            }
            await sleep(3);
        }
    }));
    return {
        answers,
        ok: () => [...answers.values()].filter((st) => st === 200).length,
        stop: async () => {
            stopped = true;
            await done;
        },
    };
}

// n more writes answered 200 than now
async function moreAnswers(l, n, what) {
    const want = l.ok() + n;
    await waitFor(() => l.ok() >= want, () => `${n} more writes answered 200 ${what} (${l.ok()} of ${want})`);
}

// every seq 1..model seq once on the response stream, nothing pending
async function checkStream(server, redis, what) {
    let pending = '';
    await waitFor(() => { // the publisher may still be catching up
        pending = cli(redis, 'XPENDING', `{${MODEL}}:request_duck`, 'writers').split('\n')[0];
        return pending === '0';
    }, () => `${what}: no entry pending (${pending} pending)`);
    const seq = await modelSeq(server);
    const events = await redis.xrange(`{${MODEL}}:response_duck`);
    const count = new Map();
    for (const e of events) count.set(Number(e.message.seq), (count.get(Number(e.message.seq)) || 0) + 1);
    const missing = [];
    for (let s = 1; s <= seq; s++) if (!count.has(s)) missing.push(s);
    const twice = [...count].filter(([, c]) => c > 1).map(([s]) => s);
    assert.deepEqual(missing.slice(0, 20), [], `${what}: seqs missing from the response stream (model at ${seq})`);
    assert.deepEqual(twice.slice(0, 20), [], `${what}: seqs published twice`);
    assert.equal(pending, '0', `${what}: entries left pending`);
    return seq;
}

test('a lease that lapses under load is taken again: every seq published once, nothing pending', { timeout: 120000 }, async () => {
    const { redis, server } = await setup('lease');
    cleanup.push(server, redis);
    const l = load(server, 4);
    await moreAnswers(l, 30, 'before the lease lapses');
    const at = logSize(server);
    cli(redis, 'DEL', `{${MODEL}}:lease`); // as if the writer had stalled past the lease
    await waitFor(() => /holds the lease/.test(logFrom(server, at)), 'the lease taken again');
    await moreAnswers(l, 30, 'after the lease was taken again');
    await l.stop();
    const seq = await checkStream(server, redis, 'after the lease lapsed');
    assert.ok(seq > 20, `writes went through (${seq})`);
    assert.ok([...l.answers.values()].every((s) => s === 200), 'every write answered 200');
    await server.restart();
    assert.match(server.tail(10), /holds the lease/);
    assert.ok(!/re-publishing/.test(server.tail(10)), 'the restart had nothing to re-publish');
    await checkStream(server, redis, 'after a restart');
});

test('another writer holds the lease for a while: the batch left unpublished is re-published from the database, every seq once, nothing pending', { timeout: 240000 }, async () => {
    const { redis, server } = await setup('foreign');
    cleanup.push(server, redis);
    const v0 = await readCell(server, CELL);
    const l = load(server, 4);
    // the other writer's lease outlives a renewal of ours (a third of 5 s),
    // so ours notices; the publisher leaves a batch when it publishes in that
    // window (nearly always under load: tried again until it did)
    let from = logSize(server);
    let left = false;
    for (let round = 1; round <= 5 && !left; round++) {
        await moreAnswers(l, 20, `before another writer takes the lease (round ${round})`);
        from = logSize(server);
        cli(redis, 'SET', `{${MODEL}}:lease`, '999999:another-writer', 'PX', '2500');
        await waitFor(() => /holds the lease/.test(logFrom(server, from)), 'the lease ours again once the other lapsed');
        left = /another writer holds the lease/.test(logFrom(server, from));
    }
    assert.ok(left, 'the publisher left a batch to another writer');
    await waitFor(() => /re-publishing events/.test(logFrom(server, from)), 'the writer re-publishes the batch from the database');
    await moreAnswers(l, 20, 'after the lease is back');
    await l.stop();
    await checkStream(server, redis, 'after another writer held the lease');
    // every write applied once: the queued ones (202) answer 200 when
    // retried, and so do those refused while the other held the lease (503:
    // this process was not the writer then, nothing was queued)
    for (const [id, st] of l.answers) {
        assert.ok([200, 202, 503].includes(st), `${id}: ${st}`);
        if (st === 200) continue;
        const r = await server.post('/update_cell', writeBody(CELL, { delta: 1 }, { request_id: id }), { timeout: 30000 });
        assert.equal(r.status, 200, `retry of ${id}: ${r.text}`);
    }
    assert.equal(await readCell(server, CELL), v0 + l.answers.size, 'each write applied exactly once');
    await checkStream(server, redis, 'after the retries');
    await server.restart();
    assert.ok(!/re-publishing/.test(server.tail(10)), 'the restart had nothing to re-publish');
    await checkStream(server, redis, 'after a restart');
});

test('Redis killed and restarted under load, twice: every seq published once, nothing pending', { timeout: 180000 }, async () => {
    const { redis, server } = await setup('rkill');
    cleanup.push(server, redis);
    const answers = new Map();
    const ready = async (want) => (await server.get('/ready', { validate: false }).catch(() => null))?.status === want;
    for (let round = 0; round < 2; round++) {
        const l = load(server, 6);
        await moreAnswers(l, 30, `before Redis dies (round ${round + 1})`);
        await redis.stop('SIGKILL');
        await waitFor(() => ready(503), 'the server noticed Redis is gone (/ready 503)');
        await redis.start();
        await waitFor(() => ready(200), 'ready again');
        await moreAnswers(l, 30, `after Redis is back (round ${round + 1})`);
        await l.stop();
        for (const [k, v] of l.answers) answers.set(k, v);
        await checkStream(server, redis, `round ${round + 1}`);
    }
    // every write answered 200 has its event
    const events = await redis.xrange(`{${MODEL}}:response_duck`);
    const rids = new Set(events.map((e) => e.message.rid));
    const lost = [...answers].filter(([id, s]) => s === 200 && !rids.has(id));
    assert.deepEqual(lost, [], 'writes answered 200 without an event');
});

test('wait=false while Redis hangs before the command is sent: 503, nothing queued', { timeout: 60000 }, async () => {
    const redis = await new Redis('nowait', { password: 'pw' }).start();
    const server = new Server({ name: 'nowait', redis });
    cleanup.push(server, redis);
    await server.start();
    const w0 = await server.post('/update_cell', writeBody(CELL, { delta: 1 }, { request_id: rid('warm') }));
    assert.equal(w0.status, 200, w0.text);
    const before = await readCell(server, CELL);
    cli(redis, 'CLIENT', 'KILL', 'TYPE', 'normal'); // the server's connections end
    process.kill(redis.proc.pid, 'SIGSTOP'); // a new connection's AUTH gets no answer
    const id = rid('nowait');
    let r;
    try {
        r = await server.post('/update_cell', writeBody(CELL, { delta: 1000 }, { request_id: id, wait: false }), { timeout: 20000 });
    } finally {
        process.kill(redis.proc.pid, 'SIGCONT');
    }
    assert.equal(r.status, 503, `wait=false with the XADD never sent: ${r.text}`);
    assert.equal(r.body.error.code, 'unavailable');
    // a write after it: once that is applied, anything queued before it
    // would have been (one stream, applied in order)
    const marker = await server.post('/update_cell', writeBody(CELL, { delta: 1 }, { request_id: rid('marker') }), { timeout: 30000 });
    assert.equal(marker.status, 200, marker.text);
    assert.equal(await readCell(server, CELL), before + 1, 'nothing applied but the write after it');
    const retry = await server.post('/update_cell', writeBody(CELL, { delta: 1000 }, { request_id: id }), { timeout: 20000 });
    assert.equal(retry.status, 200, retry.text);
    assert.equal(await readCell(server, CELL), before + 1 + 1000, 'the retry applied once');
});

test('wait=false, and its retry while the first is in flight, both answered when Redis hangs and dies; the next retry applies it once', { timeout: 90000 }, async () => {
    const redis = await new Redis('phantom', { password: 'pw' }).start();
    const server = new Server({ name: 'phantom', redis, extraArgs: ['--wait-ms', '4000'] });
    cleanup.push(server, redis);
    await server.start();
    const w0 = await server.post('/update_cell', writeBody(CELL, { delta: 1 }, { request_id: rid('warm') }));
    assert.equal(w0.status, 200, w0.text);
    const before = await readCell(server, CELL);
    const id = rid('phantom');
    const body = writeBody(CELL, { delta: 1000 }, { request_id: id, wait: false });
    process.kill(redis.proc.pid, 'SIGSTOP'); // the XADD goes out and gets no answer
    let a;
    let b;
    try {
        const pa = server.post('/update_cell', body, { timeout: 40000 });
        await sleep(300);
        b = server.post('/update_cell', body, { timeout: 40000 }); // waits on the first
        a = await pa;
        b = await b;
    } finally {
        await redis.stop('SIGKILL'); // what it had not processed is gone
    }
    assert.equal(a.status, 202, `the first, its XADD unanswered: ${a.text}`);
    assert.equal(b.status, 202, `the retry that waited on it: ${b.text}`);
    await redis.start();
    await waitFor(async () => (await server.get('/ready', { validate: false }).catch(() => null))?.status === 200, 'ready again');
    const c = await server.post('/update_cell', { ...body, wait: true }, { timeout: 30000 });
    assert.equal(c.status, 200, `a retry once Redis is back: ${c.text}`);
    assert.equal(await readCell(server, CELL), before + 1000, 'applied once');
});
