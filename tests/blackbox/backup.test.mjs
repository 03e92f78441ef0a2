// Backups (POST/GET /v1/backups, duckspread backup and restore) against
// the real binary and real redis-servers.
//
// - A backup taken through the route while clients write is the writer's
//   database at the backup's seq: the writer's facts at that seq are
//   recomputed from its final file (the first change after the seq in the
//   leaf log l_1 gives the value then) and compared with every fact of the
//   backup file; the backup restored into a new directory with the CLI
//   serves the same seq, and writes go on at seq + 1. The CLI's
//   `backup --data DIR` line, wait=false and polling.
// - Errors: a name that is none or exists (422), a non-admin key (403), an
//   unknown backup (404), unknown fields (400), a second backup while one
//   runs (503 with Retry-After); SIGTERM while one runs leaves no file.
// - --backup-every 1s --backup-keep 2 keeps exactly two auto-* files (and
//   never removes another name).
// - restore refuses a directory that has a database, a file that is no
//   backup, and a directory a server holds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, DBQUERY, Server, setup, teardown, mkTmp, waitFor, metricValue, MODEL } from './lib.mjs';

const ADMIN = 'bb-admin-key-0123456789';
const auth = { Authorization: `Bearer ${ADMIN}` };

function cli(args, env = {}) {
    return spawnSync(BIN, args, { encoding: 'utf8', timeout: 120000, env: { ...process.env, ...env } });
}

// The CLI, without blocking the event loop (the server answers meanwhile).
function cliAsync(args, env = {}) {
    return new Promise((resolve) => {
        const p = spawn(BIN, args, { env: { ...process.env, ...env } });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => (stdout += d));
        p.stderr.on('data', (d) => (stderr += d));
        p.on('exit', (status) => resolve({ status, stdout, stderr }));
    });
}

function query(file, sql, ...params) {
    const r = spawnSync(DBQUERY, [file, sql, ...params.map(String)], { encoding: 'utf8', maxBuffer: 1 << 28 });
    assert.equal(r.status, 0, `dbquery ${sql}: ${r.stderr}`);
    return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

// Every fact (cell x measure, minor units) of a file as it was at seq
// `at`: the current value, or the old value of the first change after.
// The leaf log's old value of a fact created by a write is 0, as for a
// fact that was 0: zeros are left out on both sides.
const FACTS_AT = `
WITH f AS (SELECT d0, d1, d2, 0 AS measure_id, CAST(m0 AS BIGINT) AS v FROM f_1
           UNION ALL SELECT d0, d1, d2, 1, CAST(m1 * 100 AS BIGINT) FROM f_1),
     a AS (SELECT d0, d1, d2, measure_id, old_value AS old FROM l_1 WHERE seq > CAST($1 AS BIGINT)
           QUALIFY row_number() OVER (PARTITION BY d0, d1, d2, measure_id ORDER BY seq) = 1)
SELECT f.d0, f.d1, f.d2, f.measure_id, CASE WHEN a.d0 IS NULL THEN f.v ELSE a.old END AS v
FROM f LEFT JOIN a ON f.d0 = a.d0 AND f.d1 = a.d1 AND f.d2 = a.d2 AND f.measure_id = a.measure_id`;

function factsAt(file, seq) {
    const m = new Map();
    for (const r of query(file, FACTS_AT, seq)) if (r.v !== null && r.v !== '0') m.set(`${r.d0},${r.d1},${r.d2},${r.measure_id}`, r.v);
    return m;
}

// Clients writing leaf cells until stop(); resolves with the count of 200s.
function load(server, clients = 4) {
    let stop = false;
    let ok = 0;
    const one = async (c) => {
        for (let i = 0; !stop; i++) {
            const p = String(1 + ((i * 7 + c * 13) % 40)).padStart(4, '0');
            const cu = String(1 + ((i + c) % 10)).padStart(4, '0');
            const t = String(1 + (i % 12)).padStart(2, '0');
            const r = await server.post(`/v1/models/${MODEL}/cells`, {
                column: i % 3 ? 'quantity' : 'net_amount',
                cell: { product: `P-${p}`, customer: `C-${cu}`, time: `2025-${t}` },
                ...(i % 2 ? { delta: 1 } : { value: (i * 31) % 1000 }),
            });
            if (r.status === 200) ok++;
        }
    };
    const done = Promise.all(Array.from({ length: clients }, (_, c) => one(c)));
    return { stop: async () => ((stop = true), await done, ok), count: () => ok };
}

let redis;
let server;

before(async () => {
    ({ redis, server } = await setup('backup', { serverOpts: { extraArgs: ['--api-key', ADMIN], headers: auth } }));
});

after(async () => {
    await teardown(server, redis);
});

test('a backup under load is the database at its seq; restored, it serves that seq and goes on', async () => {
    const w = load(server);
    await waitFor(() => w.count() >= 50, 'writes before the backup');
    const r = await server.post('/v1/backups', { name: 'under-load' }, { timeout: 120000 });
    assert.equal(r.status, 200, r.text);
    const b = r.body.backup;
    assert.equal(b.state, 'done', r.text);
    assert.equal(b.name, 'under-load');
    assert.equal(b.file, path.join(server.dataDir, 'backups', 'under-load.duckdb'));
    assert.equal(b.bytes, b.bytes_total);
    assert.ok(b.seqs.sales > 0, r.text);
    // wait=false, then polled
    const s = await server.post('/v1/backups', { name: 'polled', wait: false });
    assert.equal(s.status, 202, s.text);
    assert.equal(s.body.backup.state, 'running');
    const polled = await waitFor(async () => {
        const g = await server.get('/v1/backups/polled');
        assert.equal(g.status, 200, g.text);
        return g.body.backup.state !== 'running' && g.body.backup;
    }, 'the polled backup to end');
    assert.equal(polled.state, 'done', JSON.stringify(polled));
    assert.ok(polled.seqs.sales >= b.seqs.sales);
    // the command line, by the data directory
    const c = await cliAsync(['backup', '--data', server.dataDir, '--name', 'cli-1'], { DS_API_KEY: ADMIN });
    assert.equal(c.status, 0, c.stderr);
    const m = c.stdout.match(/^backup cli-1: (\/\S+\.duckdb), [0-9]+\.[0-9] MB, seqs sales=([0-9]+), [0-9]+\.[0-9] s\n$/);
    assert.ok(m, `the CLI's line: ${JSON.stringify(c.stdout)}`);
    assert.ok(fs.existsSync(m[1]));
    const written = await w.stop();
    assert.ok(written > 50);
    const list = await server.get('/v1/backups');
    assert.deepEqual(list.body.backups.map((x) => x.name).sort(), ['cli-1', 'polled', 'under-load']);
    const metrics = await server.get('/metrics');
    assert.equal(metricValue(metrics.text, 'duckspread_backups_total\\{result="ok"\\}'), 3);
    assert.equal(metricValue(metrics.text, 'duckspread_backup_running'), 0);
    const last = (await server.get(`/v1/models/${MODEL}`)).body.seq;
    assert.ok(last > b.seqs.sales, 'writes went on after the backup');
    const stopped = await server.stop();
    assert.equal(stopped.code, 0);
    assert.ok(!fs.existsSync(path.join(server.dataDir, 'duckspread.url')), 'the url file is gone at the drain');

    // the backup file is the writer at the backup's seq, fact for fact
    const writerDb = path.join(server.dataDir, 'duckspread.db');
    const want = factsAt(writerDb, b.seqs.sales);
    const got = factsAt(b.file, Number.MAX_SAFE_INTEGER);
    assert.ok(want.size > 1000);
    assert.deepEqual(got, want, 'the backup differs from the writer at its seq');
    const changedAfter = query(writerDb, 'SELECT count(*) AS n FROM l_1 WHERE seq > CAST($1 AS BIGINT)', b.seqs.sales)[0].n;
    assert.ok(Number(changedAfter) > 0, 'the comparison saw changes after the backup');

    // restore into a new directory; serve it with a private Redis
    const dir = mkTmp('restored');
    const rr = cli(['restore', '--from', b.file, '--data', dir]);
    assert.equal(rr.status, 0, rr.stderr);
    assert.match(rr.stdout, new RegExp(`^backup under-load, taken \\S+ from \\S+; seqs sales=${b.seqs.sales}\\n`));
    const restored = new Server({ name: 'restored', redis: null, dataDir: dir, demo: false });
    try {
        await restored.start();
        const info = await restored.get(`/v1/models/${MODEL}`);
        assert.equal(info.body.seq, b.seqs.sales);
        const cell = { product: 'P-0001', customer: 'C-0001', time: '2025-01' };
        const wr = await restored.post(`/v1/models/${MODEL}/cells`, { column: 'quantity', cell, delta: 1 });
        assert.equal(wr.status, 200, wr.text);
        assert.equal(wr.body.seq, b.seqs.sales + 1);
        // restore refuses the directory a server holds, and one with a database
        const held = cli(['restore', '--from', b.file, '--data', dir, '--force']);
        assert.equal(held.status, 1);
        assert.match(held.stderr, /a duckspread server is serving/);
    } finally {
        await restored.stop();
    }
    const again = cli(['restore', '--from', b.file, '--data', dir]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already holds a database/);
    const notBackup = cli(['restore', '--from', writerDb, '--data', mkTmp('nb')]);
    assert.equal(notBackup.status, 1);
    assert.match(notBackup.stderr, /not a backup/);
    const notDb = cli(['restore', '--from', path.join(server.dataDir, 'duckspread.lock'), '--data', mkTmp('nd')]);
    assert.equal(notDb.status, 1);
    await server.start();
});

test('refusals: names, roles, unknown, one at a time; SIGTERM stops a running backup', async () => {
    const bad = await server.post('/v1/backups', { name: '../etc' });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.target, 'name');
    for (const name of ['.hidden', '-x', '', 'a'.repeat(101), 'a b']) {
        const r = await server.post('/v1/backups', { name });
        assert.equal(r.status, 422, `${JSON.stringify(name)}: ${r.text}`);
    }
    const first = await server.post('/v1/backups', { name: 'taken' });
    assert.equal(first.status, 200, first.text);
    const dup = await server.post('/v1/backups', { name: 'taken' });
    assert.equal(dup.status, 422);
    assert.match(dup.body.error.message, /'taken' exists/);
    const unknown = await server.post('/v1/backups', { name: 'x', when: 'now' });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.target, 'when');
    const notBool = await server.post('/v1/backups', { wait: 'no' });
    assert.equal(notBool.status, 400);
    assert.equal(notBool.body.error.target, 'wait');
    const nf = await server.get('/v1/backups/nope');
    assert.equal(nf.status, 404);
    assert.equal(nf.body.error.target, 'backup');
    const param = await server.get('/v1/backups?x=1');
    assert.equal(param.status, 400);
    // a viewer and an editor are refused
    for (const role of ['viewer', 'editor']) {
        const k = cli(['keys', 'create', '--data', server.dataDir, '--user', `u-${role}`, '--role', role]);
        assert.equal(k.status, 0, k.stderr);
        const key = k.stdout.trim().split('\n').pop();
        const h = { headers: { Authorization: `Bearer ${key}` } };
        const r = await waitFor(async () => {
            const x = await server.http.request('POST', '/v1/backups', { name: 'no' }, h);
            return x.status !== 401 && x;
        }, 'the new key to be loaded');
        assert.equal(r.status, 403, r.text);
        assert.equal((await server.http.request('GET', '/v1/backups', undefined, h)).status, 403);
    }
    // one at a time: a slow one (the copy waits) and a second request
    await server.stop();
    await server.start({ env: { DS_BACKUP_SLOW_MS: '60000' } });
    const slow = await server.post('/v1/backups', { name: 'slow', wait: false });
    assert.equal(slow.status, 202, slow.text);
    const second = await server.post('/v1/backups', { name: 'second' });
    assert.equal(second.status, 503, second.text);
    assert.equal(second.headers.get('retry-after'), '1');
    assert.match(second.body.error.message, /'slow' is running/);
    const running = await server.get('/v1/backups');
    assert.ok(running.body.backups.some((x) => x.name === 'slow' && x.state === 'running'));
    const m = await server.get('/metrics');
    assert.equal(metricValue(m.text, 'duckspread_backup_running'), 1);
    // SIGTERM stops it: no file, no tmp file, a clean exit
    const t0 = Date.now();
    const stopped = await server.stop();
    assert.equal(stopped.code, 0);
    assert.ok(Date.now() - t0 < 30000);
    const files = fs.readdirSync(path.join(server.dataDir, 'backups'));
    assert.ok(!files.some((f) => f.startsWith('slow')), files.join(' '));
    assert.match(fs.readFileSync(server.log, 'utf8'), /backup slow: failed after [0-9]+ ms: stopped/);
    await server.start();
});

test('--backup-every 1s --backup-keep 2 keeps exactly two auto backups', async () => {
    const s = new Server({ name: 'every', redis: null, extraArgs: ['--backup-every', '1s', '--backup-keep', '2', '--api-key', ADMIN], headers: auth });
    try {
        await s.start();
        const dir = path.join(s.dataDir, 'backups');
        const mine = await s.post('/v1/backups', { name: 'mine' });
        assert.equal(mine.status, 200, mine.text);
        const autos = () => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^auto-\d{8}T\d{6}Z\.duckdb$/.test(f)) : []);
        const done = () => (fs.readFileSync(s.log, 'utf8').match(/backup auto-\S+: done/g) || []).length;
        await waitFor(() => done() >= 4 && autos().length === 2, () => `4 auto backups, 2 kept: ${done()} done, files ${autos().join(' ')}`);
        assert.ok(fs.existsSync(path.join(dir, 'mine.duckdb')), 'a backup of another name stays');
        assert.match(fs.readFileSync(s.log, 'utf8'), /removed \S+auto-\S+\.duckdb \(--backup-keep 2\)/);
    } finally {
        await s.dispose();
    }
});

test('restore needs --from and --data; backup needs a server', () => {
    const r = cli(['restore', '--from', '/nonexistent.duckdb']);
    assert.equal(r.status, 2);
    const b = cli(['backup', '--data', mkTmp('noserver')]);
    assert.equal(b.status, 1);
    assert.match(b.stderr, /no server address/);
});
