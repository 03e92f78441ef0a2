// duckspread on a local Redis Cluster (scripts/redis-cluster.sh: three
// primaries, three replicas, appendfsync always; serve --redis-cluster):
// three models whose slots sit on three different primaries, written at
// once; a resharding of a model's slot under load; kill -9 of the primary
// of a model's slot under load, with --redis-replicas 1 and without. The
// delta-write oracle (lib.mjs) checks that nothing acknowledged is lost,
// nothing is applied twice and every seq is on the response stream once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import {
    MODEL, Server, Cluster, teardown, deltaStart, deltaWriters, checkDeltaOracle, feed,
    metricValue, writeBody, rid, waitFor, checkWriteWaitsForReplica,
} from './lib.mjs';

let cluster;
const cleanup = [];
before(async () => {
    cluster = await new Cluster('main').start();
});
after(async () => teardown(...cleanup.reverse(), cluster));

const key = (m) => `{${m}}:request_duck`;
const xlenAt = (port, k) => execFileSync('redis-cli', ['-p', String(port), 'XLEN', k]).toString().trim();

// A model with one dimension (all > p1..p4) and one measure.
async function createModel(server, name) {
    const r = await server.post('/v1/models', {
        name,
        dimensions: [{
            name: 'product', root: { key: 'all', name: 'All' },
            members: ['p1', 'p2', 'p3', 'p4'].map((k) => ({ key: k, name: k.toUpperCase(), parent: 'all' })),
        }],
        measures: [{ name: 'q', scale: 2 }],
    });
    assert.equal(r.status, 201, r.text);
}

// Each test starts from an empty cluster: the server before it stopped
// (its lease would make this one a standby), every primary flushed.
async function startServer(name, extraArgs = []) {
    while (cleanup.length) await teardown(cleanup.pop());
    for (const p of cluster.primaries()) execFileSync('redis-cli', ['-p', String(p), 'FLUSHALL']);
    await cluster.closeClient();
    const server = new Server({ name, redis: cluster, extraArgs });
    cleanup.push(server);
    await server.start();
    return server;
}

// Kills the primary of a model's slot, waits for its replica to take over,
// and brings the killed node back, a replica of the new primary now (what
// an operator does; with --redis-replicas 1 writes wait until then).
async function killPrimary(model) {
    const out = cluster.script('kill-primary', '--key', key(model));
    const killed = Number(/killed (\d+)/.exec(out)[1]);
    cluster.script('restart-node', String(killed));
    return killed;
}

test('three models on three primaries: written at once, each on its own node', async () => {
    const server = await startServer('cl-three');
    // sales (the demo), plan and budget hash to slots that the three
    // primaries of a fresh cluster split between them
    const models = ['sales', 'plan', 'budget'];
    for (const m of models.slice(1)) await createModel(server, m);
    const owners = models.map((m) => cluster.owner(key(m)));
    assert.equal(new Set(owners).size, 3, `owners ${owners}`);

    // a read replica from a backup follows the three response streams,
    // one read per slot
    const bk = await server.post('/v1/backups', { name: 'three' });
    assert.equal(bk.status, 200, bk.text);
    const replica = new Server({ name: 'cl-three-replica', redis: cluster, command: 'replica', from: bk.body.backup.file });
    cleanup.push(replica);
    await replica.start();

    const per = 25;
    const write = async (m, c) => {
        for (let i = 0; i < per; i++) {
            const body = m === 'sales'
                ? writeBody({ product: 'P-0001', customer: 'C-0001', time: '2025-01' }, { delta: 1 })
                : { column: 'q', cell: { product: `p${1 + ((c + i) % 4)}` }, delta: '0.01' };
            const r = await server.post(`/v1/models/${m}/cells`, { ...body, request_id: rid(`${m}-${c}`) });
            assert.equal(r.status, 200, r.text);
        }
    };
    const seq0 = Object.fromEntries(await Promise.all(models.map(async (m) => [m, (await server.get(`/v1/models/${m}`)).body.seq])));
    await Promise.all(models.flatMap((m) => [0, 1, 2, 3].map((c) => write(m, c))));
    for (const [i, m] of models.entries()) {
        const seq = (await server.get(`/v1/models/${m}`)).body.seq;
        assert.equal(seq, seq0[m] + 4 * per, `${m}: one seq per write`);
        const evs = await feed(server, seq0[m], seq, { path: 'changes', model: m });
        assert.equal(evs.length, 4 * per, `${m}: every write in the change feed`);
        // the model's streams live on its slot's primary: it answers without MOVED
        assert.match(xlenAt(owners[i], key(m)), /^\d+$/, `${m}'s request stream on ${owners[i]}`);
        const resp = await cluster.xrange(`{${m}}:response_duck`);
        assert.deepEqual(resp.slice(-4 * per).map((e) => Number(e.message.seq)),
            Array.from({ length: 4 * per }, (_, k) => seq0[m] + 1 + k), `${m}: every event on its response stream, in order`);
    }
    for (const s of [server, replica]) {
        const total = await s.get(`/v1/models/plan/cell?measure=q&product=all&min_seq=${seq0.plan + 4 * per}`);
        assert.equal(total.status, 200, total.text);
        assert.equal(total.text.match(/"value":([^,}]+)/)[1], '1.00', 'plan: 100 deltas of 0.01');
    }
    for (const m of models) {
        await waitFor(async () => (await replica.get(`/v1/models/${m}`)).body.seq === seq0[m] + 4 * per, `the replica's ${m} at the writer's seq`);
        const [a, b] = await Promise.all([server, replica].map((s) => s.get(`/v1/models/${m}/changes?since=${seq0[m]}&timeout=0`)));
        assert.equal(b.status, 200, b.text);
        assert.deepEqual(b.body.updates, a.body.updates, `${m}: the replica's change feed is the writer's`);
    }
});

test('resharding the slot of a model under load: followed, nothing lost or doubled', async () => {
    const server = await startServer('cl-reshard');
    const st = await deltaStart(server);
    const from = cluster.owner(key(MODEL));
    const to = cluster.primaries().find((p) => p !== from);
    let moved = null;
    const w = deltaWriters(server, st, {
        clients: 8, per: 40, tag: 'rs',
        onAck: (n) => {
            if (n === 80 && !moved) moved = (async () => cluster.script('reshard', '--key', key(MODEL), String(to)))();
        },
    });
    await w.done;
    await moved;
    assert.equal(cluster.owner(key(MODEL)), to, 'the slot moved');
    console.log(`# resharding: ${w.attempts.failed} of ${w.attempts.n} attempts answered 202/503 and were retried`);
    await checkDeltaOracle(server, st, w.acked, () => cluster.xrange(`{${MODEL}}:response_duck`));
    const m = await server.get('/metrics');
    assert.equal(m.status, 200);
});

for (const replicas of [1, 0]) {
    test(`kill -9 of the model's primary under load, ${replicas ? 'with --redis-replicas 1' : 'without --redis-replicas'}: nothing acknowledged lost, every seq published once`, async () => {
        const server = await startServer(`cl-fail${replicas}`, replicas ? ['--redis-replicas', '1'] : []);
        const st = await deltaStart(server);
        let killed = null;
        const w = deltaWriters(server, st, {
            clients: 8, per: 30, tag: `kf${replicas}`, deadlineMs: 90000,
            onAck: (n) => {
                if (n === 60 && !killed) killed = (async () => killPrimary(MODEL))();
            },
        });
        await w.done;
        await killed;
        await checkDeltaOracle(server, st, w.acked, () => cluster.xrange(`{${MODEL}}:response_duck`));
        const m = await server.get('/metrics');
        console.log(`# failover ${replicas ? 'with' : 'without'} WAIT: ${w.attempts.failed} retried attempts; ` +
            `events the new primary lacked and the writer published again: ${metricValue(m.text, 'duckspread_redis_lost_events_total')}`);
    });
}

const cliAt = (port, ...args) => execFileSync('redis-cli', ['-p', String(port), ...args.map(String)]).toString().trim();
// a command at a node after ASKING (a key of a slot it is importing)
const askingAt = (port, ...args) => execFileSync('redis-cli', ['-p', String(port)],
    { input: `ASKING\n${args.join(' ')}\n` }).toString().trim().split('\n').pop();

test('a slot half migrated, its request stream moved first: writes follow ASK, are applied, and published once the slot has moved', async () => {
    const server = await startServer('cl-ask');
    const st = await deltaStart(server);
    const src = cluster.owner(key(MODEL));
    const dst = cluster.primaries().find((p) => p !== src);
    const slot = cliAt(src, 'CLUSTER', 'KEYSLOT', key(MODEL));
    cliAt(dst, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', cliAt(src, 'CLUSTER', 'MYID'));
    cliAt(src, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', cliAt(dst, 'CLUSTER', 'MYID'));
    assert.equal(cliAt(src, 'MIGRATE', '127.0.0.1', dst, '', 0, 5000, 'KEYS', key(MODEL)), 'OK');
    const before = Number(askingAt(dst, 'XLEN', key(MODEL)));
    // the enqueuer's XADD and the writer's read go to the new node (ASKING)
    const body = writeBody(st.cells[0], { delta: 1 }, { request_id: rid('ask') });
    let r = null;
    await waitFor(async () => (r = await server.post('/update_cell', body)).status === 200, 'the write applied');
    assert.equal(r.body.seq, st.seq0 + 1);
    assert.equal(Number(askingAt(dst, 'XLEN', key(MODEL))), before + 1, 'the entry was added at the importing node');
    // the rest of the slot moves; its event is published there
    assert.equal(cliAt(src, 'MIGRATE', '127.0.0.1', dst, '', 0, 5000, 'KEYS',
        `{${MODEL}}:lease`, `{${MODEL}}:epoch`, `{${MODEL}}:response_duck`), 'OK');
    for (const p of [dst, src, ...cluster.primaries().filter((p) => p !== src && p !== dst)])
        cliAt(p, 'CLUSTER', 'SETSLOT', slot, 'NODE', cliAt(dst, 'CLUSTER', 'MYID'));
    await waitFor(async () => (await cluster.xrange(`{${MODEL}}:response_duck`))
        .some((e) => Number(e.message.seq) === st.seq0 + 1), 'the event published at the new node');
    assert.equal(cluster.owner(key(MODEL)), dst);
    const w = await server.post('/update_cell', writeBody(st.cells[0], { delta: 1 }));
    assert.equal(w.status, 200, w.text);
    assert.equal(w.body.seq, st.seq0 + 2);
});

test('--redis-replicas 1 in a cluster: a write waits while its shard\'s replica is stopped, and is applied once it goes on', async () => {
    const server = await startServer('cl-wait', ['--redis-replicas', '1', '--wait-ms', '1000']);
    const replica = cluster.replicaOf(cluster.owner(key(MODEL)));
    assert.ok(replica, 'the primary has a replica');
    const pid = cluster.pid(replica);
    await checkWriteWaitsForReplica(server, () => process.kill(pid, 'SIGSTOP'), () => process.kill(pid, 'SIGCONT'));
});

test('a cluster over TLS with the least-privilege ACL user: checked at start on every model\'s node, written and read through', async () => {
    const secure = await new Cluster('tls', { tls: true, acl: true }).start();
    try {
        assert.match(secure.url, /^rediss:\/\/duckspread:[^@]+@/, 'the seed URL carries the ACL user');
        const server = new Server({ name: 'cl-tls', redis: secure, extraArgs: ['--redis-ca', `${secure.dir}/ca.pem`] });
        cleanup.push(server);
        await server.start();
        await createModel(server, 'plan');
        for (const m of ['sales', 'plan']) {
            const body = m === 'sales'
                ? writeBody({ product: 'P-0001', customer: 'C-0001', time: '2025-01' }, { delta: 1 })
                : { column: 'q', cell: { product: 'p1' }, value: '2.50' };
            const r = await server.post(`/v1/models/${m}/cells`, body);
            assert.equal(r.status, 200, r.text);
            const evs = await feed(server, r.body.seq - 1, r.body.seq, { model: m });
            assert.equal(evs.length, 1);
        }
        await server.stop();
        // the ACL check at start covers both models, each on its node
        await server.start();
        assert.match(fs.readFileSync(server.log, 'utf8'), /\(cluster\); the ACL allows duckspread's commands on the keys of 2 models/);
        await server.stop();
        // a user with the single-Redis rules only (no CLUSTER SLOTS, no
        // ASKING): the start ends at once, naming what is missing
        const rules = ('resetchannels ~*:request_duck ~*:response_duck ~*:lease ~*:epoch -@all +ping +xadd ' +
            '+xgroup|create +xreadgroup +xrevrange +xack +xpending +xtrim +get +set +incr +pexpire +evalsha +eval').split(' ');
        const admin = fs.readFileSync(`${secure.dir}/admin-password`, 'utf8').trim();
        for (const p of fs.readFileSync(`${secure.dir}/nodes`, 'utf8').trim().split('\n')) {
            execFileSync('redis-cli', ['--tls', '--cacert', `${secure.dir}/ca.pem`, '-p', String(p), '--user', 'default',
                '--pass', admin, '--no-auth-warning', 'ACL', 'SETUSER', 'narrow', 'on', '>narrowpw', ...rules]);
        }
        const narrow = new Server({
            name: 'cl-narrow', dataDir: server.dataDir,
            redis: { cluster: true, url: secure.url.replace(/\/\/duckspread:[^@]+@/, '//narrow:narrowpw@') },
            extraArgs: ['--redis-ca', `${secure.dir}/ca.pem`],
        });
        cleanup.push(narrow);
        await narrow.start({ waitReady: false });
        const { code } = await narrow.exited;
        const log = fs.readFileSync(narrow.log, 'utf8');
        assert.equal(code, 1, log);
        assert.match(log, /error start: .*refused CLUSTER SLOTS: NOPERM.*needs \+cluster\|slots and \+asking/, log);
    } finally {
        await teardown(secure);
    }
});
