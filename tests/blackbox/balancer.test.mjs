// nginx (Debian's nginx-light) in front of a writer, its standby and a read
// replica, with scripts/nginx.conf.template as docs/more-processes.md
// describes it: writes through nginx reach the writer, reads a replica (with
// min_seq for read-your-writes); kill -9 of the writer under load: clients
// that retry with their request_id see a few 503s and then 200s from the
// standby, nothing acknowledged is lost or doubled, and the replica follows
// the new writer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import {
    ROOT, MODEL, Server, Redis, teardown, modelSeq, feed, rid, writeBody, waitFor, sleep,
    deltaStart, checkDeltaOracle, mkTmp, sparePort, makeClient,
} from './lib.mjs';

const LEASE_MS = 1000;
let redis, a, b, r, nginx, nginxDir, lb;

function nginxBin() {
    for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx']) if (fs.existsSync(p)) return p;
    assert.fail('nginx is not installed (scripts/deps.sh installs nginx-light)');
}

async function startNginx(port, writers, readers) {
    nginxDir = mkTmp('nginx');
    const conf = fs.readFileSync(path.join(ROOT, 'scripts', 'nginx.conf.template'), 'utf8')
        .replaceAll('@PREFIX@', nginxDir)
        .replaceAll('@LISTEN@', `127.0.0.1:${port}`)
        .replaceAll('@WRITERS@', writers.map((s) => `server 127.0.0.1:${s.port} max_fails=0;`).join('\n        '))
        .replaceAll('@READERS@', readers.map((s) => `server 127.0.0.1:${s.port};`).join('\n        '));
    const file = path.join(nginxDir, 'nginx.conf');
    fs.writeFileSync(file, conf);
    const check = spawnSync(nginxBin(), ['-t', '-q', '-p', nginxDir, '-c', file], { encoding: 'utf8' });
    assert.equal(check.status, 0, `nginx -t: ${check.stderr}`);
    nginx = spawn(nginxBin(), ['-p', nginxDir, '-c', file], { stdio: 'ignore' });
    lb = makeClient(`http://127.0.0.1:${port}`);
    await waitFor(async () => {
        try {
            return (await lb.get('/health', { timeout: 1000 })).status === 200;
        } catch {
            return false;
        }
    }, 'nginx answers');
}

before(async () => {
    redis = await new Redis('balancer').start();
    a = new Server({ name: 'lb-a', redis, extraArgs: ['--lease-ms', String(LEASE_MS)] });
    await a.start();
});

after(async () => {
    if (nginx && nginx.exitCode === null) nginx.kill('SIGKILL');
    await teardown(r, a, b, redis);
});

test('through nginx: writes to the writer, reads from the replica, a failover under load', async () => {
    const st = await deltaStart(a);
    const bk = await a.post('/v1/backups', { name: 'for-lb' });
    assert.equal(bk.status, 200, bk.text);
    b = new Server({
        name: 'lb-b', redis, demo: false, from: bk.body.backup.file,
        extraArgs: ['--standby', '--lease-ms', String(LEASE_MS)],
    });
    r = new Server({ name: 'lb-r', redis, command: 'replica', from: bk.body.backup.file });
    await Promise.all([b.start(), r.start()]);
    await startNginx(await sparePort(), [a, b], [r, a]);

    // read your writes through the balancer: the write's seq as min_seq
    const leaf = st.cells[0];
    const w = await lb.post('/update_cell', writeBody(leaf, { value: 4321 }, { request_id: rid('lb') }));
    assert.equal(w.status, 200, w.text);
    const q = `/v1/models/${MODEL}/cell?measure=quantity&product=${leaf.product}&customer=${leaf.customer}&time=${leaf.time}`;
    const read = await lb.get(`${q}&min_seq=${w.body.seq}`);
    assert.equal(read.status, 200, read.text);
    assert.equal(read.body.value, 4321);
    assert.ok(read.body.seq >= w.body.seq);
    const st2 = await deltaStart(a); // the oracle starts after that write

    // 8 clients through nginx, each write retried with its request_id on
    // any answer but 200; the writer is killed after the 80th acknowledgement
    const acked = new Map();
    const seen = {};
    let killed = false;
    const deadline = Date.now() + 120000;
    const client = async (c) => {
        for (let i = 0; i < 30; i++) {
            const id = `lb-${c}-${i}-${rid('k')}`;
            const target = i % 4 === 3 ? st2.total : st2.cells[(c + i) % st2.cells.length];
            const body = writeBody(target, { delta: 1 }, { request_id: id });
            for (;;) {
                assert.ok(Date.now() < deadline, `request ${id} not acknowledged before the deadline`);
                let status = 'error';
                try {
                    const res = await lb.post('/update_cell', body, { timeout: 5000 });
                    status = res.status;
                    if (res.status === 200) {
                        if (acked.has(id)) assert.equal(acked.get(id), res.body.seq, 'a retry gets the original seq');
                        acked.set(id, res.body.seq);
                    }
                } catch (e) {
                    if (e instanceof assert.AssertionError) throw e; /* a contract failure */
                }
                if (killed) seen[status] = (seen[status] || 0) + 1;
                if (status === 200) break;
                assert.ok([202, 503, 'error'].includes(status), `unexpected answer ${status}`);
                await sleep(50);
            }
            if (acked.size >= 80 && !killed) {
                killed = true;
                await a.kill9();
            }
        }
    };
    await Promise.all(Array.from({ length: 8 }, (_, c) => client(c)));
    assert.ok(killed);
    console.log(`# what clients saw through nginx after the kill: ${JSON.stringify(seen)}`);
    assert.equal((await b.get('/ready')).body.role, 'writer');
    await checkDeltaOracle(b, st2, acked, () => redis.xrange(`{${MODEL}}:response_duck`));

    // the replica followed the new writer; reads through nginx go on
    const end = await modelSeq(b);
    await waitFor(async () => (await modelSeq(r)) === end, 'the replica follows the new writer');
    assert.deepEqual(await feed(r, st2.seq0, end), await feed(b, st2.seq0, end));
    const after = await lb.get(`${q}&min_seq=${end}`);
    assert.equal(after.status, 200, after.text);
    assert.equal(after.body.value, await (async () => (await b.get(q)).body.value)());
});
