// The page's performance: a grid of 1,000 rows x 12 months (plus the
// totals row and column) opens, and bench_load sends 200 edits/s while the
// page's frame time is measured (the intervals between animation frames,
// from performance.now() in the page); it must end showing exactly the
// server's values. The times are measured and printed against the issue's
// limits (`# browser: limit: ... ok|MISSED`, under a second to open, p95
// under 50 ms), not asserted: speed is a measurement, and a timed
// assertion fails on a busy machine.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Redis, Server, teardown, BIN } from '../blackbox/lib.mjs';
import { launch, openPage, shot, WAIT_MS } from './lib.mjs';

const ROWS = 1000;
const MONTHS = 12;
const RATE = 200;
const SECONDS = 6;
const LOAD = process.env.DS_BENCH_LOAD || path.join(path.dirname(BIN), 'bench', 'bench_load');

let redis;
let server;
let browser;

before(async () => {
    redis = await new Redis('perf').start();
    // no key: a loopback server without keys takes every request as an
    // admin. A small demo beside the model of the test (a server without
    // any model is not ready).
    server = new Server({ name: 'perf', redis, scale: '2000' });
    await server.start();
    const items = Array.from({ length: ROWS }, (_, i) => ({ key: `I-${String(i + 1).padStart(4, '0')}`, name: `Item ${i + 1}`, parent: 'All' }));
    const months = Array.from({ length: MONTHS }, (_, i) => ({ key: `2025-${String(i + 1).padStart(2, '0')}`, parent: '2025' }));
    const r = await server.post('/v1/models', {
        name: 'perf',
        dimensions: [
            { name: 'item', root: { key: 'All', name: 'All items' }, members: items },
            { name: 'time', root: { key: '2025', name: '2025' }, members: months },
        ],
        measures: [{ name: 'amount', scale: 2 }],
    });
    assert.equal(r.status, 201, r.text);
    browser = await launch();
});

after(async () => {
    if (browser) await browser.close();
    await teardown(server, redis);
});

function run(cmd, args) {
    return new Promise((resolve, reject) => {
        const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (err += d));
        p.on('error', reject);
        p.on('exit', (code) => resolve({ code, out, err }));
    });
}

const pct = (xs, p) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

test(`a ${ROWS} x ${MONTHS} grid opens and follows ${RATE} edits/s to the server's values (open and frame times measured)`, { timeout: 120000 }, async () => {
    const page = await openPage(browser, server.base, '', 'm=perf&measure=amount&rows=item&cols=time');
    const open = await page.evaluate(() => ({
        ms: performance.getEntriesByName('duckspread:snapshot')[0].startTime,
        loaded: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
        parse: window.duckspread.parseMs,
        render: window.duckspread.renderMs,
        rows: Number(document.getElementById('grid').getAttribute('aria-rowcount')) - 1,
        cols: document.querySelectorAll('#grid tbody tr[data-r] td').length /
            document.querySelectorAll('#grid tbody tr[data-r]').length,
    }));
    console.log(`# browser: ${open.rows} x ${open.cols} grid opened ${open.ms.toFixed(0)} ms after navigation start ` +
        `(the page loaded at ${open.loaded.toFixed(0)} ms; the snapshot parsed in ${open.parse.toFixed(0)} ms, rendered and laid out in ${open.render.toFixed(0)} ms)`);
    assert.equal(open.rows, ROWS + 1, 'every item and the total');
    assert.equal(open.cols, MONTHS + 1, 'every month and the total');
    // speed is reported against the limit, not asserted (a timed
    // assertion fails on a busy machine; the figures are the measurement)
    console.log(`# browser: limit: the grid opens in under 1000 ms: ${open.ms < 1000 ? 'ok' : 'MISSED'} (${open.ms.toFixed(0)} ms)`);

    await page.evaluate(() => {
        // long animation frames (over 50 ms): how much of each was the
        // page's script and how much style and layout
        window.longFrames = [];
        new PerformanceObserver((l) => {
            for (const e of l.getEntries()) {
                const script = e.scripts.reduce((a, x) => a + x.duration, 0);
                window.longFrames.push({ ms: e.duration, script, layout: e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0 });
            }
        }).observe({ type: 'long-animation-frame' });
        window.frameGaps = [];
        window.frameStop = false;
        let last = performance.now();
        const tick = (t) => {
            window.frameGaps.push(t - last);
            last = t;
            if (!window.frameStop) requestAnimationFrame(tick);
        };
        requestAnimationFrame(tick);
    });
    const load = await run(LOAD, ['--url', server.base, '--model', 'perf', '--column', 'amount', '--dims', 'item,time',
        '--rate', String(RATE), '--duration-s', String(SECONDS), '--warmup-s', '0', '--clients', '8', '--kind', 'value']);
    assert.equal(load.code, 0, `bench_load: ${load.err.slice(-800)}`);
    const line = load.out.trim().split('\n').pop();
    const eps = Number(/edits_per_s=([\d.]+)/.exec(line)[1]);
    const errors = Number(/errors=(\d+)/.exec(line)[1]);
    const { gaps, longFrames } = await page.evaluate(() => {
        window.frameStop = true;
        return { gaps: window.frameGaps.slice(1), longFrames: window.longFrames };
    });
    const p50 = pct(gaps, 50);
    const p95 = pct(gaps, 95);
    const max = Math.max(...gaps);
    console.log(`# browser: bench_load ${line}`);
    console.log(`# browser: frame time under load: frames=${gaps.length} p50_ms=${p50.toFixed(1)} p95_ms=${p95.toFixed(1)} max_ms=${max.toFixed(1)}`);
    const sum = (k) => longFrames.reduce((a, f) => a + f[k], 0).toFixed(0);
    console.log(`# browser: long animation frames (> 50 ms): ${longFrames.length}, ${sum('ms')} ms in all, of which script ${sum('script')} ms, style and layout ${sum('layout')} ms`);
    assert.equal(errors, 0, line);
    assert.ok(eps > 0 && gaps.length > 0, `the load ran (${eps} edits/s) and frames were measured (${gaps.length})`);
    console.log(`# browser: limit: frame time p95 under 50 ms at ${RATE} edits/s: ${p95 < 50 && eps >= RATE * 0.9 ? 'ok' : 'MISSED'} ` +
        `(p95 ${p95.toFixed(1)} ms at ${eps} edits/s)`);

    // the final values: the page catches up with the model's seq and shows
    // exactly what the server answers for the same grid
    const seq = (await server.get('/v1/models/perf')).body.seq;
    await page.waitForFunction((s) => window.duckspread.seq >= s, seq, { timeout: WAIT_MS });
    const layout = await page.evaluate(() => ({ rows: window.duckspread.rows.map((m) => m.key), cols: window.duckspread.cols.map((m) => m.key) }));
    const g = await server.post(`/v1/models/perf/grid?min_seq=${seq}`, {
        rows: { dimension: 'item', members: layout.rows }, cols: { dimension: 'time', members: layout.cols }, measure: 'amount',
    });
    assert.equal(g.status, 200, g.text);
    const raw = g.text.slice(g.text.indexOf('"values":')).match(/-?\d+\.\d+/g);
    const ncols = layout.cols.length;
    // the page's values: the server's text, every cell (rows are virtual:
    // the DOM holds those in view)
    const page1 = await page.evaluate(() => ({
        values: window.duckspread.values.flat(),
        dom: [...document.querySelectorAll('#grid tbody tr[data-r]')].map((tr) => [Number(tr.dataset.r), [...tr.cells].slice(1).map((td) => td.textContent)]),
    }));
    assert.equal(page1.values.length, raw.length);
    const wrong = page1.values.map((t, i) => [i, t, raw[i]]).filter(([, t, w]) => t !== w);
    assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} values differ from the server's grid`);
    const sep = (t) => t.replace(/^(-?)(\d+)/, (m, sign, int) => sign + int.replace(/\B(?=(\d{3})+(?!\d))/g, ','));
    assert.ok(page1.dom.length >= 20, `${page1.dom.length} rows in the DOM`);
    for (const [r, texts] of page1.dom) {
        assert.deepEqual(texts, raw.slice(r * ncols, (r + 1) * ncols).map(sep), `row ${layout.rows[r]} as shown`);
    }
    const want = raw;
    assert.notEqual(want[0], '0.00', 'the load changed the totals');
    await shot(page, 'perf-1000x12');
    assert.deepEqual(page.errors, []);
    await page.context().close();
});
