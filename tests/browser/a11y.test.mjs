// An accessibility audit of the grid page with axe-core (npm, MPL-2.0,
// used by this test only): the sign-in form, and the signed-in grid at
// 1280x800 and in a narrow window, with a total being edited and a
// refusal shown; and every stop of Tab shows its focus. A violation of impact serious or critical fails the
// test; the others are printed as "# browser: a11y: ..." lines.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Redis, Server, teardown, MODEL, ROOT, memberChildren } from '../blackbox/lib.mjs';
import { launch, createKey, openPage, clickCell, WAIT_MS } from './lib.mjs';

const AXE = path.join(ROOT, 'node_modules', 'axe-core', 'axe.min.js');

let redis;
let server;
let browser;
const K = {};
let view;
let supplier;

before(async () => {
    redis = await new Redis('a11y').start();
    server = new Server({ name: 'a11y', redis });
    K.admin = createKey(server.dataDir, 'admin', 'admin');
    K.alice = createKey(server.dataDir, 'alice', 'editor');
    server.headers = { Authorization: `Bearer ${K.admin}` };
    await server.start();
    supplier = (await memberChildren(server, 'product'))[0].key;
    view = `m=${MODEL}&measure=quantity&rows=product&cols=time&open.rows=${supplier}&open.cols=2025`;
    browser = await launch();
});

after(async () => {
    if (browser) await browser.close();
    await teardown(server, redis);
});

// axe on what the page shows now: the serious and critical violations (as
// text); the rest printed.
async function audit(page, what) {
    await page.addScriptTag({ path: AXE });
    const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    const bad = [];
    for (const v of r.violations) {
        const line = `${what}: ${v.impact} ${v.id} (${v.help}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join(', ')}` +
            `${v.nodes.length > 5 ? ` and ${v.nodes.length - 5} more` : ''}`;
        if (v.impact === 'serious' || v.impact === 'critical') bad.push(line);
        else console.log(`# browser: a11y: ${line}`);
    }
    return bad;
}

test('axe finds nothing serious on the sign-in form', async () => {
    // bypassCSP: the page allows only its own scripts; axe is added by the test
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, bypassCSP: true });
    const page = await context.newPage();
    await page.goto(`${server.base}/`);
    await page.waitForFunction(() => document.activeElement === document.getElementById('key'), null, { timeout: WAIT_MS });
    const bad = await audit(page, 'sign-in');
    await context.close();
    assert.deepEqual(bad, []);
});

for (const [name, viewport] of [['1280x800', { width: 1280, height: 800 }], ['400x800', { width: 400, height: 800 }]]) {
    test(`axe finds nothing serious on the signed-in grid at ${name}, editing a cell and with a refusal shown`, async () => {
        const page = await openPage(browser, server.base, K.alice, view, { viewport, bypassCSP: true });
        const bad = await audit(page, `grid ${name}`);
        // focus visible: every stop of Tab from the top of the page to the
        // grid draws an outline
        let reached = false;
        for (let i = 0; i < 20 && !reached; i++) {
            await page.keyboard.press('Tab');
            const f = await page.evaluate(() => {
                const e = document.activeElement;
                const st = getComputedStyle(e);
                return { what: e.id || e.tagName, ring: st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) > 0, inGrid: !!e.closest('#grid') };
            });
            if (!f.ring) bad.push(`grid ${name}: no visible focus on ${f.what}`);
            reached = f.inGrid;
        }
        assert.ok(reached, 'Tab reaches the grid');
        // a cell being edited
        await clickCell(page, supplier, '2025-Q1');
        await page.keyboard.press('Enter');
        await page.waitForSelector('#grid td input', { timeout: WAIT_MS });
        bad.push(...await audit(page, `grid ${name}, editing`));
        // a refusal next to the cell
        await page.keyboard.press('Control+a');
        await page.keyboard.type('abc');
        await page.keyboard.press('Enter');
        await page.waitForSelector('#bubble:not([hidden])', { timeout: WAIT_MS });
        bad.push(...await audit(page, `grid ${name}, refusal`));
        // a filter's picker open
        await page.click('#filters button[data-dim="customer"]');
        await page.waitForSelector('.picker-panel li button', { timeout: WAIT_MS });
        bad.push(...await audit(page, `grid ${name}, picker`));
        assert.deepEqual(page.errors, [], 'no script error in the page');
        await page.context().close();
        assert.deepEqual(bad, []);
    });
}
