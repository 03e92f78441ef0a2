// WebSocket and SSE subscribers receive every event in seq order, without
// gaps, during a burst of writes; each event matches the feed and the
// Event schema of web/openapi.json.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
    setup, teardown, modelSeq, feed, writeBody, rid, pool, readSSE, validateSchema, validateResponse, waitFor, MODEL,
} from './lib.mjs';

let env;
before(async () => {
    env = await setup('live');
});
after(async () => {
    await teardown(env?.server, env?.redis);
});

const WRITES = 400;
const CLIENTS = 8;

test(`WebSocket and SSE subscribers get every event of a burst (${WRITES} writes) in order`, { timeout: 90000 }, async () => {
    const { server } = env;
    const since = await modelSeq(server);

    // WebSocket
    const wsEvents = [];
    const wsErrors = [];
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/models/${MODEL}/ws?since=${since}`);
    ws.on('message', (data, isBinary) => {
        try {
            assert.equal(isBinary, false, 'text messages');
            const ev = JSON.parse(data.toString());
            validateSchema('Event', ev, 'WebSocket message');
            wsEvents.push(ev);
        } catch (e) {
            wsErrors.push(e);
        }
    });
    let wsClose = null;
    ws.on('close', (code, reason) => { wsClose = { code, reason: reason.toString() }; });
    ws.on('error', (e) => wsErrors.push(e));
    await new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
    });

    // SSE
    const sseEvents = [];
    const sseErrors = [];
    const ac = new AbortController();
    const res = await fetch(`${server.base}/v1/models/${MODEL}/events?since=${since}`, { signal: ac.signal, headers: { Accept: 'text/event-stream' } });
    assert.equal(res.status, 200);
    validateResponse('GET', `/v1/models/${MODEL}/events`, res.status, res.headers.get('content-type'), undefined, '');
    const sseDone = readSSE(res, (m) => {
        try {
            assert.equal(m.event, 'change', `SSE event type (${m.event}: ${m.data.slice(0, 200)})`);
            const ev = JSON.parse(m.data);
            validateSchema('Event', ev, 'SSE data');
            assert.equal(m.id, String(ev.seq), 'SSE id = seq');
            sseEvents.push(ev);
        } catch (e) {
            sseErrors.push(e);
        }
    }, ac.signal);

    // both streams answered 200: subscribed (and since= replays what they miss)
    const cells = [
        { product: 'P-0031', customer: 'C-0004', time: '2025-01' },
        { product: 'P-0032', customer: 'C-0004', time: '2025-01' },
        { product: 'S02-B2-F4', customer: 'C-0004', time: '2025-01' },
    ];
    const acks = await pool(WRITES, CLIENTS, async (i) => {
        const r = await server.post('/update_cell', writeBody(cells[i % cells.length], { delta: i % 2 ? 1 : -1 }, { request_id: rid(`live${i}`) }));
        assert.equal(r.status, 200, r.text);
        return r.body.seq;
    });
    const last = Math.max(...acks);
    assert.equal(last, since + WRITES);

    const progress = () => `ws ${wsEvents.length} (last ${wsEvents.at(-1)?.seq}), sse ${sseEvents.length} (last ${sseEvents.at(-1)?.seq}), want ${WRITES} up to ${last}; ws close ${JSON.stringify(wsClose)}`;
    await waitFor(() => wsEvents.at(-1)?.seq >= last && sseEvents.at(-1)?.seq >= last, progress, { intervalMs: 20 });
    ws.close();
    ac.abort();
    await sseDone;

    assert.deepEqual(wsErrors.map(String), []);
    assert.deepEqual(sseErrors.map(String), []);
    const expectSeqs = Array.from({ length: WRITES }, (_, i) => since + 1 + i);
    assert.deepEqual(wsEvents.map((e) => e.seq), expectSeqs, 'WebSocket: every seq once, in order');
    assert.deepEqual(sseEvents.map((e) => e.seq), expectSeqs, 'SSE: every seq once, in order');
    const evs = await feed(server, since, last);
    assert.deepEqual(wsEvents, evs, 'WebSocket events = the feed');
    assert.deepEqual(sseEvents, evs, 'SSE events = the feed');
});

test('SSE resumes with Last-Event-ID and WebSocket with since', async () => {
    const { server } = env;
    const seq = await modelSeq(server);
    assert.ok(seq >= 3);
    const ac = new AbortController();
    const res = await fetch(`${server.base}/v1/models/${MODEL}/events`, { signal: ac.signal, headers: { 'Last-Event-ID': String(seq - 2) } });
    assert.equal(res.status, 200);
    const got = [];
    const done = readSSE(res, (m) => {
        if (m.event === 'change') got.push(Number(m.id));
    }, ac.signal);
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/models/${MODEL}/ws?since=${seq - 2}`);
    const wsGot = [];
    ws.on('message', (d) => wsGot.push(JSON.parse(d.toString()).seq));
    await waitFor(() => got.length >= 2 && wsGot.length >= 2, () => `sse ${got}, ws ${wsGot}`, { intervalMs: 20 });
    ac.abort();
    ws.close();
    await done;
    assert.deepEqual(got, [seq - 1, seq]);
    assert.deepEqual(wsGot, [seq - 1, seq]);
});
