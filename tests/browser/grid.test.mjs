// The live grid at / in Debian's chromium (playwright-core): two browser
// contexts as two users against the real server, edits of leaves and
// totals, holds, refusals, a viewer, the keyboard alone, a paste, and a
// server restart under an open page. Every figure checked is read from
// the page's DOM; the server's own answers are the reference. Screenshots
// go to build/browser/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis, Server, teardown, MODEL, memberChildren, readCell, modelSeq } from '../blackbox/lib.mjs';
import { launch, createKey, openPage, cellText, waitCells, minor, shown, shot, clickCell, WAIT_MS } from './lib.mjs';

let redis;
let server;
let browser;
const K = {};
const T = {}; // member keys of the demo found at start

before(async () => {
    redis = await new Redis('browser').start();
    server = new Server({ name: 'browser', redis });
    K.admin = createKey(server.dataDir, 'admin', 'admin');
    K.alice = createKey(server.dataDir, 'alice', 'editor');
    K.bob = createKey(server.dataDir, 'bob', 'editor');
    K.carol = createKey(server.dataDir, 'carol', 'viewer');
    server.headers = { Authorization: `Bearer ${K.admin}` };
    await server.start();
    // Brand X, its supplier, two of its families and their products; a
    // customer leaf.
    for (const s of await memberChildren(server, 'product')) {
        const bx = (await memberChildren(server, 'product', s.key)).find((b) => b.name === 'Brand X');
        if (bx) {
            T.supplier = s.key;
            T.brand = bx.key;
        }
    }
    assert.ok(T.brand, 'the demo has Brand X');
    T.families = (await memberChildren(server, 'product', T.brand)).map((m) => m.key);
    T.products = (await memberChildren(server, 'product', T.families[0])).map((m) => m.key);
    T.products2 = (await memberChildren(server, 'product', T.families[1])).map((m) => m.key);
    T.products3 = (await memberChildren(server, 'product', T.families[2])).map((m) => m.key);
    const region = (await memberChildren(server, 'customer'))[0].key;
    T.customer = (await memberChildren(server, 'customer', region))[0].key;
    T.month = '2025-03';
    T.view = `m=${MODEL}&measure=quantity&rows=product&cols=time` +
        `&open.rows=${T.supplier},${T.brand},${T.families[0]},${T.families[1]},${T.families[2]}&open.cols=2025,2025-Q1`;
    browser = await launch();
});

after(async () => {
    if (browser) await browser.close();
    await teardown(server, redis);
});

const pages = [];
async function open(key, hash = T.view, opts = {}) {
    const p = await openPage(browser, server.base, key, hash, opts);
    pages.push(p);
    return p;
}

async function closeAll() {
    for (const p of pages.splice(0)) {
        assert.deepEqual(p.errors, [], 'no script error in the page');
        await p.context().close();
    }
}

test('the page at / signs in, and shows every number exactly as the server wrote it', async () => {
    const view = `m=${MODEL}&measure=net_amount&rows=product&cols=time&open.rows=${T.supplier},${T.brand}&open.cols=2025`;
    const page = await open(K.alice, view, { viaForm: true });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('duckspread.key')), K.alice, 'the key is kept in the session storage');
    // The server's answer for the same grid, as text: its numbers by regex,
    // never through a float.
    const layout = await page.evaluate(() => ({ rows: window.duckspread.rows.map((m) => m.key), cols: window.duckspread.cols.map((m) => m.key) }));
    const r = await server.post(`/v1/models/${MODEL}/grid`, {
        rows: { dimension: 'product', members: layout.rows }, cols: { dimension: 'time', members: layout.cols }, measure: 'net_amount',
    });
    assert.equal(r.status, 200, r.text);
    const raw = r.text.slice(r.text.indexOf('"values":')).match(/-?\d+\.\d+/g);
    assert.equal(raw.length, layout.rows.length * layout.cols.length);
    const want = [];
    // thousands separators put into the server's text, by string
    const sep = (t) => t.replace(/^(-?)(\d+)/, (m, sign, int) => sign + int.replace(/\B(?=(\d{3})+(?!\d))/g, ','));
    layout.rows.forEach((rk, i) => layout.cols.forEach((ck, j) => want.push([rk, ck, sep(raw[i * layout.cols.length + j])])));
    // every cell, with the measure's two places and thousands separators
    await waitCells(page, want);
    const text = await cellText(page, T.brand, '2025');
    assert.match(text, /^\d{1,3}(,\d{3})+\.\d\d$/);
    assert.equal(await page.getAttribute('#grid', 'role'), 'treegrid');
    assert.equal(await page.locator('#grid tbody tr[aria-level="3"]').count() > 0, true, 'rows carry their tree level');
    await shot(page, 'signed-in');
    await closeAll();
});

test('a wrong key is refused at sign-in, and the page says so', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${server.base}/`);
    assert.equal(await page.getAttribute('#key', 'type'), 'password');
    await page.fill('#key', `dsk_${'0'.repeat(48)}`);
    await page.press('#key', 'Enter');
    await page.waitForFunction(() => /not accepted/.test(document.getElementById('msg').textContent), null, { timeout: WAIT_MS });
    assert.equal(await page.isVisible('#signin'), true, 'the sign-in form stays');
    assert.equal(await page.isVisible('#controls'), false);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('duckspread.key')), null, 'a refused key is not kept');
    await context.close();
});

test('a leaf typed by one user shows in the other browser, with its family, brand and supplier (the time measured)', async () => {
    const view = `${T.view}&f.customer=${T.customer}`;
    const alice = await open(K.alice, view);
    const bob = await open(K.bob, view);
    const [P, F, B, S] = [T.products[0], T.families[0], T.brand, T.supplier];
    const old = {};
    for (const k of [P, F, B, S]) old[k] = minor(await cellText(bob, k, T.month));
    const value = old[P] + 1234n;
    await clickCell(alice, P, T.month);
    await alice.keyboard.type(String(value));
    const t0 = Date.now();
    await alice.keyboard.press('Enter');
    const d = value - old[P];
    const ms = await waitCells(bob, [P, F, B, S].map((k) => [k, T.month, shown(old[k] + d)]));
    const total = Date.now() - t0;
    console.log(`# browser: leaf edit -> other browser shows leaf, family, brand, supplier: ${total} ms`);
    // the limit, reported rather than asserted (speed is measured;
    // a timed assertion fails on a busy machine)
    console.log(`# browser: limit: the other browser shows it within 1000 ms: ${total < 1000 ? 'ok' : 'MISSED'} (${total} ms)`);
    assert.ok(ms >= 0);
    // the writer's page, and the server, agree
    await waitCells(alice, [[P, T.month, shown(value)], [S, T.month, shown(old[S] + d)]]);
    assert.equal(String(await readCell(server, { product: P, customer: T.customer, time: T.month })), String(value));
    // who made it: the change feed's user
    await bob.waitForFunction(() => /alice/.test(document.getElementById('who').textContent), null, { timeout: WAIT_MS });
    await shot(bob, 'live-update');
    // the README's picture (docs/grid.png is a copy of this one)
    await shot(bob, 'readme-grid', { clip: { x: 0, y: 0, width: 1000, height: 420 } });
    await closeAll();
});

async function childrenOf(page, parent, kids, col) {
    const v = {};
    for (const k of kids) v[k] = minor(await cellText(page, k, col));
    v[parent] = minor(await cellText(page, parent, col));
    return v;
}

test("editing Brand X's total spreads proportionally; the other browser's families sum exactly to it", async () => {
    const alice = await open(K.alice);
    const bob = await open(K.bob);
    const B = T.brand;
    const before = await childrenOf(bob, B, T.families, T.month);
    const target = (before[B] * 3n) / 2n + 7n;
    await clickCell(alice, B, T.month);
    await alice.keyboard.type(String(target));
    await alice.keyboard.press('Enter');
    await waitCells(bob, [[B, T.month, shown(target)]]);
    // the patches of one seq come in one message: the families are there too
    const after = await childrenOf(bob, B, T.families, T.month);
    const sum = T.families.reduce((a, f) => a + after[f], 0n);
    assert.equal(sum, target, `families ${T.families.map((f) => shown(after[f])).join(' + ')} = ${shown(target)}`);
    for (const f of T.families) {
        // proportional: each family's share of the new total is its old
        // share, to rounding (within 0.1%)
        const exact = (before[f] * target) / before[B];
        const diff = after[f] > exact ? after[f] - exact : exact - after[f];
        assert.ok(diff * 1000n <= exact, `${f}: ${after[f]} vs ${exact} (proportional)`);
        assert.equal(String(await readCell(server, { product: f, time: T.month })), String(after[f]), `${f} as the server has it`);
    }
    await shot(bob, 'spread-proportional');
    await closeAll();
});

test('a held cell keeps its value when its brand is spread', async () => {
    const alice = await open(K.alice);
    const bob = await open(K.bob);
    const B = T.brand;
    const [F0] = T.families;
    await clickCell(alice, F0, T.month);
    await alice.keyboard.press('h'); // hold this cell
    assert.ok(await alice.locator('#grid td.held').count() === 1, 'the held cell is marked');
    const before = await childrenOf(bob, B, T.families, T.month);
    const target = before[B] + 999n;
    await clickCell(alice, B, T.month);
    await alice.keyboard.type(String(target));
    await alice.keyboard.press('Enter');
    await waitCells(bob, [[B, T.month, shown(target)]]);
    const after = await childrenOf(bob, B, T.families, T.month);
    assert.equal(after[F0], before[F0], 'the held family kept its value');
    assert.equal(T.families.reduce((a, f) => a + after[f], 0n), target, 'the families sum to the total');
    assert.ok(T.families.slice(1).some((f) => after[f] !== before[f]), 'the others took the change');
    await shot(alice, 'hold');
    await closeAll();
});

test('an equal spread onto children that are all zero', async () => {
    const alice = await open(K.alice);
    const bob = await open(K.bob);
    const F = T.families[1];
    const kids = T.products2;
    await clickCell(alice, F, T.month);
    await alice.keyboard.type('0');
    await alice.keyboard.press('Enter');
    await waitCells(bob, [[F, T.month, '0'], ...kids.map((k) => [k, T.month, '0'])]);
    // 100 for every leaf beneath (each product x each customer), equally
    // (the keyboard chooses "equal")
    let customers = 0;
    for (const region of await memberChildren(server, 'customer')) customers += (await memberChildren(server, 'customer', region.key)).length;
    const total = BigInt(100 * kids.length * customers);
    await clickCell(alice, F, T.month);
    await alice.keyboard.press('e');
    assert.equal(await alice.inputValue('#method'), 'equal');
    await alice.keyboard.type(String(total));
    await alice.keyboard.press('Enter');
    await waitCells(bob, [[F, T.month, shown(total)]]);
    const v = await childrenOf(bob, F, kids, T.month);
    assert.equal(kids.reduce((a, k) => a + v[k], 0n), total);
    for (const k of kids) assert.equal(v[k], BigInt(100 * customers), `${k}: an equal share`);
    await shot(bob, 'spread-equal');
    await closeAll();
});

test('a refused spread says why next to the cell, and the cell shows its value again', async () => {
    const alice = await open(K.alice);
    const F = T.families[0];
    // hold every product row of the family: nothing beneath is left to spread to
    for (const p of T.products) {
        await clickCell(alice, p, T.month);
        await alice.keyboard.press('Shift+H');
    }
    assert.equal(await alice.locator('#grid tr.held').count(), T.products.length, 'the held rows are marked');
    const before = await cellText(alice, F, T.month);
    const seq = await modelSeq(server);
    await clickCell(alice, F, T.month);
    await alice.keyboard.type('777');
    await alice.keyboard.press('Enter');
    await alice.waitForSelector('#bubble:not([hidden])', { timeout: WAIT_MS });
    const bubble = await alice.textContent('#bubble');
    assert.match(bubble, /held/i);
    assert.equal(await alice.getAttribute('#bubble', 'data-code'), 'held');
    await waitCells(alice, [[F, T.month, before]]);
    assert.equal(await modelSeq(server), seq, 'nothing was applied');
    await shot(alice, 'refused-held');
    // released, the same edit goes through
    await alice.click('#clearholds');
    await clickCell(alice, F, T.month);
    await alice.keyboard.type('777');
    await alice.keyboard.press('Enter');
    await waitCells(alice, [[F, T.month, '777']]);
    await closeAll();
});

test('a proportional spread over values whose signs cancel is refused in words; equal then goes through', async () => {
    const alice = await open(K.alice);
    const F = T.families[2];
    const kids = T.products3;
    // the family's products at +100 and -100 (and 0): a total of zero
    const amounts = kids.map((_, i) => (i === 0 ? 100 : i === 1 ? -100 : 0));
    for (let i = 0; i < kids.length; i++) {
        const r = await server.post(`/v1/models/${MODEL}/cells`, { column: 'quantity', cell: { product: kids[i], time: T.month }, value: amounts[i] });
        assert.equal(r.status, 200, r.text);
    }
    await waitCells(alice, [[F, T.month, '0'], [kids[0], T.month, '100'], [kids[1], T.month, '-100']]);
    await clickCell(alice, F, T.month);
    await alice.keyboard.type('60');
    await alice.keyboard.press('Enter');
    await alice.waitForSelector('#bubble:not([hidden])', { timeout: WAIT_MS });
    assert.equal(await alice.getAttribute('#bubble', 'data-code'), 'signs_cancel');
    assert.match(await alice.textContent('#bubble'), /mixed signs/);
    await waitCells(alice, [[F, T.month, '0']]);
    await clickCell(alice, F, T.month);
    await alice.keyboard.press('e');
    await alice.keyboard.type('60');
    await alice.keyboard.press('Enter');
    await waitCells(alice, [[F, T.month, '60']]);
    let sum = 0n;
    for (const k of kids) sum += minor(await cellText(alice, k, T.month));
    assert.equal(sum, 60n);
    await shot(alice, 'refused-signs-cancel');
    await closeAll();
});

test('a value typed over a change the page has not seen yet is refused as stale, and the page then shows that change', async () => {
    // alice's page gets the grid's messages through a gate the test holds
    // shut (a slow network), so bob's change reaches it late
    const gate = { shut: false, held: [] };
    const alice = await open(K.alice, T.view, {
        before: (page) => page.routeWebSocket(/\/ws\?/, (ws) => {
            const srv = ws.connectToServer();
            srv.onMessage((m) => (gate.shut ? gate.held.push(() => ws.send(m)) : ws.send(m)));
            ws.onMessage((m) => srv.send(m));
        }),
    });
    const P = T.products[1];
    const before = minor(await cellText(alice, P, T.month));
    gate.shut = true;
    const r = await server.post(`/v1/models/${MODEL}/cells`, { column: 'quantity', cell: { product: P, time: T.month }, delta: 3 },
        { headers: { Authorization: `Bearer ${K.bob}` } });
    assert.equal(r.status, 200, r.text);
    assert.equal(await cellText(alice, P, T.month), shown(before), 'alice has not seen it');
    await clickCell(alice, P, T.month);
    await alice.keyboard.type('500');
    await alice.keyboard.press('Enter');
    await alice.waitForSelector('#bubble:not([hidden])', { timeout: WAIT_MS });
    assert.equal(await alice.getAttribute('#bubble', 'data-code'), 'stale');
    assert.match(await alice.textContent('#bubble'), /someone changed/i);
    await waitCells(alice, [[P, T.month, shown(before)]]);
    assert.equal(String(await readCell(server, { product: P, time: T.month })), String(before + 3n), "bob's change stands");
    gate.shut = false;
    for (const send of gate.held.splice(0)) send();
    await waitCells(alice, [[P, T.month, shown(before + 3n)]]);
    await shot(alice, 'refused-stale');
    await closeAll();
});

test('a viewer key sees the grid live but cannot edit, and the page says so', async () => {
    const carol = await open(K.carol);
    await carol.waitForSelector('#banner:not([hidden])', { timeout: WAIT_MS });
    assert.match(await carol.textContent('#banner'), /view only/i);
    assert.equal(await carol.getAttribute('#grid', 'aria-readonly'), 'true');
    const seq = await modelSeq(server);
    const before = await cellText(carol, T.brand, T.month);
    await clickCell(carol, T.brand, T.month);
    await carol.keyboard.type('5');
    await carol.waitForSelector('#bubble:not([hidden])', { timeout: WAIT_MS });
    assert.match(await carol.textContent('#bubble'), /view only/i);
    assert.equal(await carol.locator('#grid input').count(), 0, 'no editor opened');
    assert.equal(await cellText(carol, T.brand, T.month), before);
    assert.equal(await modelSeq(server), seq, 'nothing was written');
    // and follows others' edits
    const target = minor(before) + 11n;
    const r = await server.post(`/v1/models/${MODEL}/cells`, { column: 'quantity', cell: { product: T.brand, time: T.month }, value: String(target) });
    assert.equal(r.status, 200, r.text);
    await waitCells(carol, [[T.brand, T.month, shown(target)]]);
    await shot(carol, 'viewer');
    await closeAll();
});

test('keyboard only: to a total and a percent change', async () => {
    const bob = await open(K.bob);
    // Tab from the top of the page into the grid
    for (let i = 0; i < 40; i++) {
        if (await bob.evaluate(() => document.activeElement && document.activeElement.closest('#grid') !== null)) break;
        await bob.keyboard.press('Tab');
    }
    assert.ok(await bob.evaluate(() => document.activeElement.closest('#grid') !== null), 'Tab reaches the grid');
    const pos = await bob.evaluate(([rk, ck]) => ({
        r: window.duckspread.rows.findIndex((m) => m.key === rk),
        c: window.duckspread.cols.findIndex((m) => m.key === ck),
        at: window.duckspread.active,
    }), [T.brand, T.month]);
    for (let i = pos.at.r; i < pos.r; i++) await bob.keyboard.press('ArrowDown');
    for (let i = pos.at.c; i < pos.c; i++) await bob.keyboard.press('ArrowRight');
    const old = minor(await cellText(bob, T.brand, T.month));
    assert.equal(await bob.evaluate(() => document.activeElement.textContent), shown(old), 'the arrows reached the Brand X cell');
    await bob.keyboard.type('-10%');
    await bob.keyboard.press('Enter');
    // 90% of the old value, rounded half away from zero at scale 0
    const want = (old * 90n + 50n) / 100n;
    await waitCells(bob, [[T.brand, T.month, shown(want)]]);
    assert.equal(String(await readCell(server, { product: T.brand, time: T.month })), String(want));
    assert.equal(await bob.evaluate(() => document.activeElement.tagName), 'TD', 'focus stays in the grid (one row down)');
    await shot(bob, 'keyboard-percent');
    await closeAll();
});

test('a pasted rectangle is one cells:batch', async () => {
    const alice = await open(K.alice, `${T.view}&f.customer=${T.customer}`);
    const [p0, p1] = T.products;
    const seq = await modelSeq(server);
    await clickCell(alice, p0, '2025-01');
    await alice.evaluate(() => {
        const dt = new DataTransfer();
        dt.setData('text/plain', '1,001\t1002\r\n1003\t1004\r\n');
        document.activeElement.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
    });
    await waitCells(alice, [[p0, '2025-01', '1,001'], [p0, '2025-02', '1,002'], [p1, '2025-01', '1,003'], [p1, '2025-02', '1,004']]);
    assert.equal(await modelSeq(server), seq + 1, 'one command, one seq');
    await closeAll();
});

test('the page reconnects after the server restarts, without reloading, and goes on live', async () => {
    const bob = await open(K.bob);
    await bob.evaluate(() => {
        window.notReloaded = true;
    });
    await server.restart();
    await bob.waitForFunction(() => window.notReloaded === true && document.getElementById('conn').dataset.state === 'live' &&
        window.duckspread.everLive, null, { timeout: WAIT_MS });
    const old = minor(await cellText(bob, T.brand, T.month));
    const r = await server.post(`/v1/models/${MODEL}/cells`, { column: 'quantity', cell: { product: T.brand, time: T.month }, delta: 5 });
    assert.equal(r.status, 200, r.text);
    await waitCells(bob, [[T.brand, T.month, shown(old + 5n)]]);
    assert.equal(await bob.evaluate(() => window.notReloaded), true, 'the same page, not a reload');
    await shot(bob, 'reconnected');
    await closeAll();
});

test('rows and columns open and close through their trees; a filter is chosen by search', async () => {
    const page = await open(K.alice, `m=${MODEL}&measure=quantity&rows=product&cols=time`);
    const rowKeys = () => page.evaluate(() => [...document.querySelectorAll('#grid tbody th.rh')].map((th) => th.title));
    const colKeys = () => page.evaluate(() => [...document.querySelectorAll('#grid thead th[title]')].map((th) => th.title));
    assert.deepEqual(await rowKeys(), ['All', ...(await memberChildren(server, 'product')).map((m) => m.key)]);
    // a row by the mouse
    await page.click(`#grid tbody th.rh[title="${T.supplier}"]`);
    const brands = (await memberChildren(server, 'product', T.supplier)).map((m) => m.key);
    await page.waitForFunction((b) => b.every((k) => document.querySelector(`#grid tbody th.rh[title="${k}"]`)), brands, { timeout: WAIT_MS });
    assert.equal(await page.getAttribute(`#grid tbody tr:has(th.rh[title="${T.supplier}"])`, 'aria-expanded'), 'true');
    // a column by the keyboard: up from the first cell to its header, Enter
    await clickCell(page, 'All', '2025');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('#grid thead th[title="2025-Q4"]'), null, { timeout: WAIT_MS });
    const cols = await colKeys();
    assert.deepEqual(cols.slice(cols.indexOf('2025'), cols.indexOf('2025') + 5), ['2025', '2025-Q1', '2025-Q2', '2025-Q3', '2025-Q4']);
    // the new cells are the server's
    const q2 = await readCell(server, { product: T.supplier, time: '2025-Q2' });
    await waitCells(page, [[T.supplier, '2025-Q2', shown(BigInt(q2))]]);
    // and closed again (Space on the header)
    await page.keyboard.press(' ');
    await page.waitForFunction(() => !document.querySelector('#grid thead th[title="2025-Q1"]'), null, { timeout: WAIT_MS });
    // a filter: the customer picker, searched by key
    await page.click('#filters button[data-dim="customer"]');
    await page.fill('.picker-panel input', T.customer);
    await page.click(`.picker-panel li button:text-is("${(await customerName(T.customer))} (${T.customer})")`);
    await page.waitForFunction((c) => document.querySelector('#filters button[data-dim="customer"]').textContent.includes(c), await customerName(T.customer), { timeout: WAIT_MS });
    assert.match(await page.evaluate(() => location.hash), new RegExp(`f\\.customer=${T.customer}`), 'the view is in the address');
    const v = await readCell(server, { product: T.supplier, customer: T.customer, time: '2025' });
    await waitCells(page, [[T.supplier, '2025', shown(BigInt(v))]]);
    await shot(page, 'open-and-filter');
    // rows by customer: the product axis becomes a filter, the customer
    // filter goes (an axis is never filtered)
    await page.selectOption('#rowdim', 'customer');
    const regions = (await memberChildren(server, 'customer')).map((m) => m.key);
    await page.waitForFunction((keys) => keys.every((k) => document.querySelector(`#grid tbody th.rh[title="${k}"]`)), regions, { timeout: WAIT_MS });
    assert.equal(await page.locator('#filters button[data-dim="product"]').count(), 1);
    assert.equal(await page.locator('#filters button[data-dim="customer"]').count(), 0);
    const north = await readCell(server, { customer: regions[0], time: '2025' });
    await waitCells(page, [[regions[0], '2025', shown(BigInt(north))]]);
    // and choosing the columns' dimension for the rows swaps them
    await page.selectOption('#rowdim', 'time');
    await page.waitForFunction(() => document.getElementById('coldim').value === 'customer', null, { timeout: WAIT_MS });
    await page.waitForFunction(() => document.querySelector('#grid tbody th.rh[title="2025"]'), null, { timeout: WAIT_MS });
    await closeAll();
});

async function customerName(key) {
    for (const region of await memberChildren(server, 'customer')) {
        const m = (await memberChildren(server, 'customer', region.key)).find((x) => x.key === key);
        if (m) return m.name;
    }
    return key;
}

test('a narrow window: the grid scrolls inside the page, the page does not', async () => {
    const page = await open(K.alice, T.view, { viewport: { width: 420, height: 800 } });
    const w = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(w[0] <= w[1] + 1, `page width ${w[0]} within the window ${w[1]}`);
    assert.ok(await page.evaluate(() => document.getElementById('gridwrap').scrollWidth > document.getElementById('gridwrap').clientWidth));
    await shot(page, 'narrow');
    await closeAll();
});
