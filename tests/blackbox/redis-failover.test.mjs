// A Redis primary with a replica (serve --redis redis://A,B
// --redis-replicas 1): kill -9 of the primary under delta writes, the
// replica promoted (as Sentinel would: REPLICAOF NO ONE) and the old
// primary back as its replica. Nothing acknowledged is lost, nothing
// applied twice, with the writer alive and with the writer killed together
// with the primary. A response stream that lost events is named and filled
// again from the database.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
    MODEL, Server, Redis, teardown, modelSeq, rid, writeBody, waitFor, sleep, deltaStart,
    checkDeltaOracle, logSize, logFrom, metricValue, checkWriteWaitsForReplica,
} from './lib.mjs';

const cleanup = [];
after(async () => teardown(...cleanup.reverse()));

function cli(redis, ...args) {
    return execFileSync('redis-cli', ['-p', String(redis.port), ...args]).toString().trim();
}

// A primary and a replica of it, the replica in sync.
async function pair(name) {
    const a = await new Redis(`${name}-a`).start();
    const b = await new Redis(`${name}-b`, { args: ['--replicaof', '127.0.0.1', String(a.port)] }).start();
    await waitFor(() => /master_link_status:up/.test(cli(b, 'INFO', 'replication')), 'the replica in sync');
    cleanup.push(a, b);
    return { a, b, url: `redis://127.0.0.1:${a.port},127.0.0.1:${b.port}` };
}

// b becomes the primary; a (killed) comes back on its port as b's replica.
async function failover(a, b) {
    await a.stop('SIGKILL');
    cli(b, 'REPLICAOF', 'NO', 'ONE');
    a.args = ['--replicaof', '127.0.0.1', String(b.port)];
    await a.start();
    await waitFor(() => /connected_slaves:1/.test(cli(b, 'INFO', 'replication')), 'the old primary follows the new one');
}

// delta writes from `clients` clients with request_ids, each retried on any
// error; onAck(n) after each acknowledgement
function writers(server, st, clients, per, onAck) {
    const acked = new Map();
    const deadline = Date.now() + 180000;
    const client = async (c) => {
        for (let i = 0; i < per; i++) {
            const id = `rf-${c}-${i}-${rid('k')}`;
            const target = i % 4 === 3 ? st.total : st.cells[(c + i) % st.cells.length];
            const body = writeBody(target, { delta: 1 }, { request_id: id });
            for (;;) {
                assert.ok(Date.now() < deadline, `request ${id} not acknowledged before the deadline`);
                try {
                    const r = await server.post('/update_cell', body, { timeout: 10000 });
                    if (r.status === 200) {
                        acked.set(id, r.body.seq);
                        await onAck(acked.size);
                        break;
                    }
                    assert.ok([202, 503].includes(r.status), `unexpected ${r.status} ${r.text}`);
                } catch (e) {
                    if (e instanceof assert.AssertionError) throw e;
                }
                await sleep(30);
            }
        }
    };
    return { acked, done: Promise.all(Array.from({ length: clients }, (_, c) => client(c))) };
}

test('--redis-replicas 1: the primary killed under load, the replica promoted: nothing acknowledged lost or doubled', async () => {
    const { a, b, url } = await pair('rf1');
    const server = new Server({ name: 'rf1', redis: { url }, extraArgs: ['--redis-replicas', '1'] });
    cleanup.push(server);
    await server.start();
    const ready = await server.get('/ready');
    assert.deepEqual(ready.body.redis_replicas?.want, 1);
    const st = await deltaStart(server);
    let failed = null;
    const w = writers(server, st, 8, 30, async (n) => {
        if (n === 60 && !failed) failed = failover(a, b);
    });
    await w.done;
    await failed;
    const r = await server.get('/ready');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.redis_replicas.acked, 1);
    await checkDeltaOracle(server, st, w.acked, () => b.xrange(`{${MODEL}}:response_duck`));
});

test('--redis-replicas 1: the writer and the primary killed together, the replica promoted: the writer restarted loses nothing', async () => {
    const { a, b, url } = await pair('rf2');
    const server = new Server({ name: 'rf2', redis: { url }, extraArgs: ['--redis-replicas', '1'] });
    cleanup.push(server);
    await server.start();
    const st = await deltaStart(server);
    let killed = null;
    const w = writers(server, st, 8, 25, async (n) => {
        if (n === 60 && !killed) {
            killed = (async () => {
                await server.kill9();
                await failover(a, b);
                await server.start();
            })();
        }
    });
    await w.done;
    await killed;
    await checkDeltaOracle(server, st, w.acked, () => b.xrange(`{${MODEL}}:response_duck`));
});

test('a response stream that lost events is named and published again from the database', async () => {
    const redis = await new Redis('rf3').start();
    cleanup.push(redis);
    const server = new Server({ name: 'rf3', redis });
    cleanup.push(server);
    await server.start();
    const st = await deltaStart(server);
    for (let i = 0; i < 5; i++) {
        const r = await server.post('/update_cell', writeBody(st.cells[0], { delta: 1 }));
        assert.equal(r.status, 200, r.text);
    }
    const seq = await modelSeq(server);
    await waitFor(async () => (await redis.xrange(`{${MODEL}}:response_duck`)).some((e) => Number(e.message.seq) === seq), 'published');
    const from = logSize(server);
    cli(redis, 'DEL', `{${MODEL}}:response_duck`); // as a Redis that came back without them
    const r = await server.post('/update_cell', writeBody(st.cells[0], { delta: 1 }));
    assert.equal(r.status, 200, r.text);
    await waitFor(() => /Redis lost events/.test(logFrom(server, from)), 'the loss named in the log');
    const m = await server.get('/metrics');
    assert.ok(metricValue(m.text, 'duckspread_redis_lost_events_total') >= seq, m.text.slice(0, 200));
    // every seq on the stream again, once, in order
    await waitFor(async () => {
        const seqs = (await redis.xrange(`{${MODEL}}:response_duck`)).map((e) => Number(e.message.seq));
        return seqs.length === r.body.seq && seqs.every((s, i) => s === i + 1);
    }, 'the stream holds every seq again');
});

test('a writer restarted on a Redis that lost its applied entries and events names the loss (log, /ready, metrics) and publishes them again', async () => {
    const redis = await new Redis('rf4').start();
    cleanup.push(redis);
    const server = new Server({ name: 'rf4', redis });
    cleanup.push(server);
    await server.start();
    const st = await deltaStart(server);
    for (let i = 0; i < 6; i++) {
        const r = await server.post('/update_cell', writeBody(st.cells[0], { delta: 1 }));
        assert.equal(r.status, 200, r.text);
    }
    const seq = await modelSeq(server);
    await waitFor(async () => (await server.get('/ready')).body.persist_lag === 0, 'everything in the database');
    await server.kill9();
    // as a replica promoted without the last entries: both streams gone
    cli(redis, 'DEL', `{${MODEL}}:response_duck`, `{${MODEL}}:request_duck`);
    const from = logSize(server);
    await server.start();
    assert.match(logFrom(server, from), new RegExp(`Redis lost at least ${seq} request entries of '${MODEL}'`));
    const ready = await server.get('/ready');
    assert.equal(ready.status, 200, ready.text);
    assert.match(ready.body.redis_lost, /Redis lost at least/);
    const m = await server.get('/metrics');
    assert.equal(metricValue(m.text, 'duckspread_redis_lost_entries_total'), seq);
    await waitFor(async () => {
        const seqs = (await redis.xrange(`{${MODEL}}:response_duck`)).map((e) => Number(e.message.seq));
        return seqs.length === seq && seqs.every((s, i) => s === i + 1);
    }, 'the stream holds every seq again');
    // a plain restart (nothing lost) names nothing
    await server.restart();
    assert.equal((await server.get('/ready')).body.redis_lost, undefined);
});

test('--redis-replicas 1: a write waits while the replica is stopped, and is applied once it goes on', async () => {
    const { b, url } = await pair('rf5');
    const server = new Server({ name: 'rf5', redis: { url }, extraArgs: ['--redis-replicas', '1', '--wait-ms', '1000'] });
    cleanup.push(server);
    await server.start();
    await checkWriteWaitsForReplica(server, () => b.proc.kill('SIGSTOP'), () => b.proc.kill('SIGCONT'));
});
