// Refusals the grid has words for, each provoked for certain: an edit
// outside a scoped key's part of the plan (out_of_scope), a number beyond
// what the measure holds (out_of_range), and a key at its limit
// (rate_limited: the server allows each key 16 requests and streams open
// at once, and the test holds all the page does not, so the 429 does not
// hang on the clock). Each time the page says why next to the cell, in
// words, and the cell shows again the value the server has.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Redis, Server, teardown, MODEL, memberChildren, readCell, modelSeq } from '../blackbox/lib.mjs';
import { launch, createKey, openPage, cellText, waitCells, shown, shot, clickCell, WAIT_MS } from './lib.mjs';

// Requests and streams one key may hold open at once (--key-open): above
// what a page opens at sign-in (six requests side by side, then its two
// sockets).
const KEY_OPEN = 16;

let redis;
let server;
let browser;
const K = {};
const T = {};

before(async () => {
    redis = await new Redis('refusals').start();
    server = new Server({ name: 'refusals', redis, extraArgs: ['--key-open', String(KEY_OPEN)] });
    K.admin = createKey(server.dataDir, 'admin', 'admin');
    K.alice = createKey(server.dataDir, 'alice', 'editor');
    K.dave = createKey(server.dataDir, 'dave', 'editor');
    server.headers = { Authorization: `Bearer ${K.admin}` };
    await server.start();
    // Brand X's supplier (the scope of a key), another supplier outside
    // it, and a product of Brand X
    const suppliers = (await memberChildren(server, 'product')).map((m) => m.key);
    for (const s of suppliers) {
        const bx = (await memberChildren(server, 'product', s)).find((b) => b.name === 'Brand X');
        if (bx) {
            T.supplier = s;
            T.brand = bx.key;
        }
    }
    assert.ok(T.brand, 'the demo has Brand X');
    T.other = suppliers.find((s) => s !== T.supplier);
    T.family = (await memberChildren(server, 'product', T.brand))[0].key;
    T.product = (await memberChildren(server, 'product', T.family))[0].key;
    K.scoped = createKey(server.dataDir, 'erin', 'editor', '--scope', `product=${T.supplier}`);
    T.month = '2025-03';
    T.view = `m=${MODEL}&measure=quantity&rows=product&cols=time` +
        `&open.rows=${T.supplier},${T.brand},${T.family}&open.cols=2025,2025-Q1`;
    browser = await launch();
});

after(async () => {
    if (browser) await browser.close();
    await teardown(server, redis);
});

// Types `text` into the cell (rk, ck) and waits for the page's refusal:
// its words next to that cell, and the cell showing the server's value.
async function refused(page, rk, ck, text, code, words) {
    const seq = await modelSeq(server);
    await clickCell(page, rk, ck);
    await page.keyboard.type(text);
    await page.keyboard.press('Enter');
    // the words and where they are, read at once when they show (they
    // hide after a while)
    const seen = await (await page.waitForFunction(([r, c]) => {
        const bubble = document.getElementById('bubble');
        if (bubble.hidden) return null;
        const grid = document.getElementById('grid');
        const tr = [...grid.tBodies[0].rows].find((x) => x.cells[0].title === r);
        const ci = [...grid.tHead.rows[0].cells].findIndex((th) => th.title === c);
        const box = (e) => {
            const x = e.getBoundingClientRect();
            return { left: x.left, right: x.right, top: x.top, bottom: x.bottom };
        };
        return { code: bubble.dataset.code, text: bubble.textContent, b: box(bubble), td: box(tr.cells[ci]) };
    }, [rk, ck], { timeout: WAIT_MS })).jsonValue();
    assert.equal(seen.code, code);
    assert.match(seen.text, words);
    // next to the cell: just below it, overlapping its columns
    const { b, td } = seen;
    assert.ok(Math.abs(b.top - td.bottom) <= 4 && b.left < td.right && b.right > td.left,
        `the words ${JSON.stringify(b)} are next to the cell ${JSON.stringify(td)}`);
    const value = await readCell(server, { product: rk, time: ck });
    await waitCells(page, [[rk, ck, shown(BigInt(value))]]);
    assert.equal(await modelSeq(server), seq, 'nothing was applied');
}

test('a scoped key editing outside its part of the plan is refused as out_of_scope, in words, and may edit inside it', async () => {
    const page = await openPage(browser, server.base, K.scoped, T.view);
    await refused(page, T.other, T.month, '777', 'out_of_scope', /may not change this part of the plan/);
    await shot(page, 'refused-out-of-scope');
    // inside its scope the same key's edit goes through
    const value = BigInt(await readCell(server, { product: T.product, time: T.month })) + 5n;
    await clickCell(page, T.product, T.month);
    await page.keyboard.type(String(value));
    await page.keyboard.press('Enter');
    await waitCells(page, [[T.product, T.month, shown(value)]]);
    assert.equal(String(await readCell(server, { product: T.product, time: T.month })), String(value));
    assert.deepEqual(page.errors, [], 'no script error in the page');
    await page.context().close();
});

test('a number beyond what the measure holds is refused as out_of_range, in words', async () => {
    const page = await openPage(browser, server.base, K.alice, T.view);
    await refused(page, T.product, T.month, '9'.repeat(20), 'out_of_range', /beyond what this measure can hold/);
    await shot(page, 'refused-out-of-range');
    assert.deepEqual(page.errors, [], 'no script error in the page');
    await page.context().close();
});

// An event stream held open with `key` from here: {status, close()}.
function holdStream(key) {
    return new Promise((resolve, reject) => {
        const req = http.get(`${server.base}/v1/models/${MODEL}/events`, { headers: { Authorization: `Bearer ${key}` } }, (res) => {
            res.resume();
            resolve({ status: res.statusCode, close: () => req.destroy() });
        });
        req.on('error', reject);
    });
}

test('a key at its limit of open requests is refused as rate_limited, in words', async () => {
    // the page's own requests counted (fetch), to know when it is quiet
    const page = await openPage(browser, server.base, K.dave, T.view, {
        before: (p) => p.addInitScript(() => {
            const f = window.fetch;
            window.inflight = 0;
            window.fetch = (...a) => {
                window.inflight++;
                return f(...a).finally(() => window.inflight--);
            };
        }),
    });
    // the page holds its two sockets (the grid's and the change feed's)
    // and nothing else: the test takes the rest of the key's 16, each
    // stream tried again while a request of the page still counts
    await page.waitForFunction(() => window.inflight === 0 && window.duckspread.feed && window.duckspread.feed.readyState === 1,
        null, { timeout: WAIT_MS });
    const streams = [];
    try {
        for (let tries = 0; streams.length < KEY_OPEN - 2; tries++) {
            assert.ok(tries < 1000, `the test could hold ${streams.length} streams of ${KEY_OPEN - 2}`);
            const s = await holdStream(K.dave);
            if (s.status === 200) streams.push(s);
            else assert.equal(s.status, 429);
        }
        const more = await holdStream(K.dave);
        streams.push(more);
        assert.equal(more.status, 429, 'the key is at its limit');
        await refused(page, T.product, T.month, '4321', 'rate_limited', /too many changes at once/);
        await shot(page, 'refused-rate-limited');
    } finally {
        for (const s of streams) s.close();
    }
    assert.deepEqual(page.errors, [], 'no script error in the page');
    await page.context().close();
});
