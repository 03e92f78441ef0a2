// Redis security end to end: a throwaway CA and certificates made with
// openssl; a redis-server that speaks only TLS (--port 0 --tls-port P,
// --tls-auth-clients yes) with an ACL file whose duckspread user has exactly
// the rules README.md gives. The real binary, through rediss:// with that
// user and password, does writes and reads their events back (over HTTP and
// from the response stream), keeps working across a Redis restart, and fails
// at start, with one clear log line, on a wrong password, an untrusted CA, a
// certificate for another host name, a missing client certificate and each
// kind of missing ACL permission (a command, a command inside the scripts, a
// key) without changing anything in Redis.
//
// Runs with the black-box suite (tests/blackbox.sh) and alone with
// `make redis-security-test`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Server, BIN, ROOT, LOG_DIR, MODEL, mkTmp, sparePort, sleep, writeBody, rid } from './lib.mjs';

// What README.md (An external Redis) tells operators to give duckspread.
const RULES =
    'resetchannels ~*:request_duck ~*:response_duck ~*:lease ~*:epoch -@all ' +
    '+ping +xadd +xgroup|create +xreadgroup +xrevrange +xack +xpending +xtrim ' +
    '+get +set +incr +pexpire +evalsha +eval';

const PASS = crypto.randomBytes(12).toString('hex');
const ADMIN = crypto.randomBytes(12).toString('hex');
const CELL = { product: 'P-0011', customer: 'C-0003', time: '2025-04' };

let dir; // certificates, ACL file, redis data
const redises = [];
let main; // the server that runs (and owns the data directory)

// ---------------------------------------------------------------------------
// certificates

function openssl(...args) {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

function makeCA(name, cn) {
    openssl('req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${cn}`);
}

function makeCert(name, cn, ext) {
    openssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext.join('\n') + '\n');
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
        '-days', '2', '-out', `${name}.crt`, '-extfile', `${name}.ext`);
}

const file = (name) => path.join(dir, name);

// ---------------------------------------------------------------------------
// a TLS-only redis-server

class TlsRedis {
    constructor(name, cert) {
        this.name = name;
        this.cert = cert;
        this.dir = path.join(dir, name);
        fs.mkdirSync(this.dir);
        this.log = path.join(LOG_DIR, `redis-${name}-${process.pid}-${Date.now()}.log`);
        this.port = null;
        this.proc = null;
    }

    async start() {
        if (this.port === null) this.port = await sparePort();
        const args = ['--port', '0', '--tls-port', String(this.port), '--bind', '127.0.0.1',
            '--tls-cert-file', file(`${this.cert}.crt`), '--tls-key-file', file(`${this.cert}.key`),
            '--tls-ca-cert-file', file('ca.crt'), '--tls-auth-clients', 'yes',
            '--aclfile', file('users.acl'), '--save', '', '--appendonly', 'yes',
            '--appendfsync', 'always', '--dir', this.dir, '--logfile', this.log];
        fs.mkdirSync(LOG_DIR, { recursive: true });
        this.proc = spawn('redis-server', args, { stdio: 'ignore' });
        redises.push(this);
        const t0 = Date.now();
        while (this.cli('PING') !== 'PONG') {
            if (this.proc.exitCode !== null) throw new Error(`redis-server exited (is it built with TLS?); see ${this.log}`);
            if (Date.now() - t0 > 10000) throw new Error(`redis-server did not answer over TLS; see ${this.log}`);
            await sleep(50);
        }
        return this;
    }

    // redis-cli over TLS as the admin (default) user; stdout trimmed
    cli(...args) {
        const r = spawnSync('redis-cli', ['--tls', '--cacert', file('ca.crt'), '--cert', file('client.crt'),
            '--key', file('client.key'), '-h', '127.0.0.1', '-p', String(this.port), '--user', 'default',
            '--pass', ADMIN, '--no-auth-warning', ...args], { encoding: 'utf8', timeout: 5000 });
        return (r.stdout || '').trim();
    }

    async stop() {
        const p = this.proc;
        if (!p || p.exitCode !== null || p.signalCode !== null) return;
        const gone = new Promise((resolve) => p.once('exit', resolve));
        p.kill('SIGTERM');
        await gone;
    }
}

function killAll() {
    for (const r of redises) {
        if (r.proc && r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL');
    }
}
process.on('exit', killAll);

// ---------------------------------------------------------------------------

let tls; // the Redis with a certificate for localhost and 127.0.0.1
let other; // the same CA, a certificate for other.example

const url = (user, pass, port, host = 'localhost') => `rediss://${user}:${pass}@${host}:${port}`;
const tlsArgs = (ca = 'ca.crt') => ['--redis-ca', file(ca), '--redis-cert', file('client.crt'), '--redis-key', file('client.key')];

before(async () => {
    dir = mkTmp('redis-tls');
    makeCA('ca', 'duckspread test CA');
    makeCA('rogue', 'someone else');
    makeCert('server', 'localhost', ['subjectAltName=DNS:localhost,IP:127.0.0.1', 'extendedKeyUsage=serverAuth']);
    makeCert('other', 'other.example', ['subjectAltName=DNS:other.example', 'extendedKeyUsage=serverAuth']);
    makeCert('client', 'duckspread', ['extendedKeyUsage=clientAuth']);
    const all = RULES.split(' ');
    const without = (...drop) => all.filter((r) => !drop.includes(r)).join(' ');
    fs.writeFileSync(file('users.acl'), [
        `user default on >${ADMIN} ~* &* +@all`,
        `user duckspread on >${PASS} ${RULES}`,
        `user no-xreadgroup on >${PASS} ${without('+xreadgroup')}`,
        `user no-xtrim on >${PASS} ${without('+xtrim')}`,
        `user no-epoch on >${PASS} ${without('~*:epoch')}`,
        '',
    ].join('\n'));
    tls = await new TlsRedis('tls', 'server').start();
    other = await new TlsRedis('other', 'other').start();
});

after(async () => {
    if (main) await main.dispose().catch(() => {});
    for (const r of redises) await r.stop().catch(() => {});
});

test('README gives the ACL rules this test grants', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    assert.ok(readme.includes(RULES), `README.md lacks the rules: ${RULES}`);
    const help = spawnSync(BIN, ['serve', '--help'], { encoding: 'utf8' });
    for (const opt of ['--redis-ca FILE', '--redis-cert FILE', '--redis-key FILE', '--redis-server-name NAME', 'rediss://'])
        assert.ok(help.stdout.includes(opt), `serve --help lacks ${opt}`);
});

async function write(server, delta) {
    const id = rid('tls');
    const r = await server.post('/update_cell', writeBody(CELL, { delta }, { request_id: id }));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.status, 'applied');
    return { id, seq: r.body.seq };
}

// the newest event on the response stream, read over TLS as the admin
async function lastPublished(wantSeq) {
    const t0 = Date.now();
    let out;
    while (Date.now() - t0 < 10000) {
        out = tls.cli('XREVRANGE', `{${MODEL}}:response_duck`, '+', '-', 'COUNT', '1');
        const lines = out.split('\n');
        if (Number(lines[lines.indexOf('seq') + 1]) >= wantSeq) return out;
        await sleep(50);
    }
    assert.fail(`seq ${wantSeq} never reached the response stream; last: ${out}`);
}

test('rediss:// with user, password and client certificate: writes, events, a Redis restart', { timeout: 120000 }, async () => {
    main = new Server({
        name: 'redis-tls', redis: { url: url('duckspread', PASS, tls.port) }, scale: 2000,
        env: { DS_REDIS_CA: file('ca.crt'), DS_REDIS_CERT: file('client.crt'), DS_REDIS_KEY: file('client.key') },
    });
    await main.start();
    const log = fs.readFileSync(main.log, 'utf8');
    assert.match(log, new RegExp(`redis: rediss://duckspread:\\*\\*\\*@localhost:${tls.port} \\(TLS, certificate checked\\); the ACL allows duckspread's commands on the keys of 1 model`));

    const a = await write(main, 5);
    const feed = await main.get(`/v1/models/${MODEL}/changes?since=${a.seq - 1}`);
    assert.equal(feed.status, 200, feed.text);
    assert.equal(feed.body.updates[0].request_id, a.id);
    assert.ok((await lastPublished(a.seq)).includes(a.id), 'the event on the response stream');

    // Redis restarts (its AOF keeps the streams): every connection, idle
    // or blocked in XREADGROUP, notices and reconnects over TLS
    await tls.stop();
    await tls.start();
    await main.waitReady(20000);
    const b = await write(main, 1);
    assert.equal(b.seq, a.seq + 1);

    // pipelined XADDs and batches over TLS
    const ids = new Set();
    await Promise.all(Array.from({ length: 8 }, async () => {
        for (let i = 0; i < 5; i++) ids.add((await write(main, 1)).id);
    }));
    assert.equal(ids.size, 40);
    await lastPublished(b.seq + 40);

    const stopped = await main.stop();
    assert.equal(stopped.code, 0, `exit after SIGTERM; log ${main.log}`);
    assert.ok(!serverLines(main.log).includes(PASS), 'the password is in the log');
});

// What the server wrote (not the harness's "==== start" lines, which hold
// the command line).
const serverLines = (log) => fs.readFileSync(log, 'utf8').split('\n').filter((l) => !l.startsWith('==== ')).join('\n');

// Starts serve on the (stopped) main server's data directory, which holds
// the model; expects a quick exit 1 with one error line saying `says`.
async function failsAtStart(name, redisUrl, args, says) {
    assert.ok(main && !main.alive(), 'the main server must be stopped first');
    const s = new Server({ name: `tls-${name}`, redis: { url: redisUrl }, dataDir: main.dataDir, demo: false, extraArgs: args });
    const t0 = Date.now();
    await s.start({ waitReady: false });
    const { code } = await s.exited;
    const ms = Date.now() - t0;
    const log = serverLines(s.log);
    const errors = log.split('\n').filter((l) => /^\S+ error /.test(l));
    assert.equal(code, 1, `exit code; log:\n${log}`);
    assert.equal(errors.length, 1, `one error line; log:\n${log}`);
    assert.ok(errors[0].includes(says), `the error line says "${says}":\n${errors[0]}`);
    assert.ok(!log.includes(PASS) && !log.includes('wrong-' + PASS), 'a password is in the log');
    assert.ok(ms < 8000, `failed after ${ms} ms (retried a refusal?)`);
    console.log(`# ${name} (${ms} ms): ${errors[0]}`);
}

test('each refusal fails the start with its cause, and changes nothing', { timeout: 120000 }, async () => {
    const req = `{${MODEL}}:request_duck`, resp = `{${MODEL}}:response_duck`;
    // stream lengths, the group (last delivered id, pending) and consumer names
    const state = () => {
        const consumers = tls.cli('XINFO', 'CONSUMERS', req, 'writers').split('\n');
        const names = consumers.filter((_, i) => consumers[i - 1] === 'name');
        return [tls.cli('XLEN', req), tls.cli('XLEN', resp), tls.cli('XINFO', 'GROUPS', req), names];
    };
    const before = state();

    await failsAtStart('wrong-password', url('duckspread', 'wrong-' + PASS, tls.port), tlsArgs(),
        `Redis at localhost:${tls.port} refused the credentials of user duckspread: WRONGPASS`);
    await failsAtStart('untrusted-ca', url('duckspread', PASS, tls.port), tlsArgs('rogue.crt'),
        `the TLS certificate of Redis at localhost:${tls.port} failed verification: it is not signed by a trusted CA`);
    await failsAtStart('other-host', url('duckspread', PASS, other.port), tlsArgs(),
        `the TLS certificate of Redis at localhost:${other.port} is for another host name (hostname mismatch: it does not name 'localhost')`);
    await failsAtStart('other-ip', url('duckspread', PASS, other.port, '127.0.0.1'), tlsArgs(),
        "(hostname mismatch: it does not name '127.0.0.1')");
    await failsAtStart('server-name', url('duckspread', PASS, tls.port), [...tlsArgs(), '--redis-server-name', 'other.example'],
        "(hostname mismatch: it does not name 'other.example')");
    await failsAtStart('no-client-cert', url('duckspread', PASS, tls.port), ['--redis-ca', file('ca.crt')],
        `Redis at localhost:${tls.port} refused the TLS`);
    await failsAtStart('acl-command', url('no-xreadgroup', PASS, tls.port), tlsArgs(),
        `Redis user 'no-xreadgroup' may not run XREADGROUP on ${req} (NOPERM`);
    await failsAtStart('acl-script-command', url('no-xtrim', PASS, tls.port), tlsArgs(),
        `Redis user 'no-xtrim' may not run XTRIM ${req} inside duckspread's scripts`);
    await failsAtStart('acl-key', url('no-epoch', PASS, tls.port), tlsArgs(),
        `Redis user 'no-epoch' may not run EVALSHA on {${MODEL}}:epoch (NOPERM`);

    const afterwards = state();
    assert.deepEqual(afterwards, before);
    assert.ok(!afterwards[3].includes('duckspread-probe'));
    assert.ok(afterwards[2].includes('last-delivered-id'), afterwards[2]);
});
