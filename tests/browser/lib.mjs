// Browser-test helpers: Debian's chromium driven by playwright-core, pages
// of the grid at / of a real server (tests/blackbox/lib.mjs starts it), and
// reads of what a page shows, from its DOM.
//
// Environment:
//   DS_CHROMIUM       the browser (default /usr/bin/chromium)
//   DS_SCREENSHOTS    where screenshots go (default build/browser)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { BIN, ROOT } from '../blackbox/lib.mjs';

export const CHROMIUM = process.env.DS_CHROMIUM || '/usr/bin/chromium';
export const SHOTS = process.env.DS_SCREENSHOTS || path.join(ROOT, 'build', 'browser');
// Waits for what a page shows: generous, the sanitizer-free build on a busy
// 2-core machine; the figures that matter are measured, not waited for.
export const WAIT_MS = 20000;

export async function launch() {
    fs.mkdirSync(SHOTS, { recursive: true });
    // --no-sandbox: the tests run as root in CI, where Chromium's sandbox
    // refuses to start.
    return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
}

// `duckspread keys create` on a server's data directory: the key.
export function createKey(dir, user, role, ...extra) {
    const r = spawnSync(BIN, ['keys', 'create', '--data', dir, '--user', user, '--role', role, ...extra], { encoding: 'utf8' });
    assert.equal(r.status, 0, `keys create ${user}: ${r.stderr}`);
    const lines = r.stdout.trimEnd().split('\n');
    return lines[lines.length - 1];
}

// A browser context for one user: the page at / signed in with `key`
// (through the sign-in form when viaForm, else the session storage the
// form fills), showing the view `hash` names, live. Page errors are kept
// in page.errors; the test checks there are none. before(page), when
// given, runs before the page is opened (routes). bypassCSP: scripts the
// test adds (axe) may run in the page.
export async function openPage(browser, base, key, hash,
    { viaForm = false, viewport = { width: 1280, height: 800 }, before = null, bypassCSP = false } = {}) {
    const context = await browser.newContext({ viewport, bypassCSP });
    const page = await context.newPage();
    if (before) await before(page);
    page.errors = [];
    page.on('pageerror', (e) => page.errors.push(e.message));
    page.on('console', (m) => {
        // refusals the page shows, and a server away (the restart test),
        // are not the page's errors
        if (m.type() === 'error' && !/status of (403|409|422|429)|net::ERR_CONNECTION_REFUSED/.test(m.text())) page.errors.push(m.text());
    });
    await context.addInitScript(readers);
    if (!viaForm) await context.addInitScript((k) => sessionStorage.setItem('duckspread.key', k), key);
    await page.goto(`${base}/#${hash}`);
    if (viaForm) {
        await page.fill('#key', key);
        await page.press('#key', 'Enter');
    }
    await waitLive(page);
    return page;
}

export async function waitLive(page, timeout = WAIT_MS) {
    await page.waitForFunction(() => document.getElementById('conn').dataset.state === 'live' &&
        document.getElementById('grid').dataset.ready === '1', null, { timeout });
}

// What the page shows in the cell of row `rk` and column `ck` (member
// keys), as text ("1,234"), or null when it shows no such cell.
export async function cellText(page, rk, ck) {
    return page.evaluate(([r, c]) => window.gridCellText(r, c), [rk, ck]);
}

// window.gridCellText in every page of a context (an init script: it
// survives reloads).
function readers() {
    window.gridCellText = (rk, ck) => {
        const grid = document.getElementById('grid');
        if (!grid || !grid.tBodies[0]) return null;
        const r = [...grid.tBodies[0].rows].findIndex((tr) => tr.cells[0].title === rk);
        const c = [...grid.tHead.rows[0].cells].findIndex((th) => th.title === ck);
        if (r < 0 || c < 0) return null;
        const td = grid.tBodies[0].rows[r].cells[c];
        // what a planner typed, not yet the grid's: marked
        return td.classList.contains('pending') ? `pending:${td.textContent}` : td.textContent;
    };
}

// Waits until every [row, col, text] is what the page shows; returns the
// milliseconds it took (the page is polled on every animation frame).
export async function waitCells(page, want, timeout = WAIT_MS) {
    const t0 = Date.now();
    try {
        await page.waitForFunction((w) => w.every(([r, c, t]) => window.gridCellText(r, c) === t), want, { timeout, polling: 'raf' });
    } catch (e) {
        const seen = await Promise.all(want.map(([r, c]) => cellText(page, r, c)));
        assert.fail(`the page did not show ${JSON.stringify(want)} within ${timeout} ms; it shows ${JSON.stringify(seen)}`);
    }
    return Date.now() - t0;
}

// The digits of a shown number, as a BigInt in minor units (scale places).
export function minor(text, scale = 0) {
    assert.match(text, /^-?\d{1,3}(,\d{3})*(\.\d+)?$/, `a number with thousands separators: ${text}`);
    const [i, f = ''] = text.replace(/,/g, '').split('.');
    assert.equal(f.length, scale, `${text} at scale ${scale}`);
    const neg = i.startsWith('-');
    const v = BigInt(i.replace('-', '') + f);
    return neg ? -v : v;
}

// A BigInt in minor units as the page shows it.
export function shown(v, scale = 0) {
    const neg = v < 0n;
    let s = (neg ? -v : v).toString().padStart(scale + 1, '0');
    const frac = scale ? `.${s.slice(-scale)}` : '';
    s = scale ? s.slice(0, -scale) : s;
    return (neg ? '-' : '') + s.replace(/\B(?=(\d{3})+(?!\d))/g, ',') + frac;
}

export async function shot(page, name, opts = {}) {
    const file = path.join(SHOTS, `${name}.png`);
    await page.screenshot({ path: file, ...opts });
    return file;
}

// Moves the page's active cell to (rk, ck) with the mouse.
export async function clickCell(page, rk, ck) {
    const pos = await page.evaluate(([r, c]) => {
        const grid = document.getElementById('grid');
        const ri = [...grid.tBodies[0].rows].findIndex((tr) => tr.cells[0].title === r);
        const ci = [...grid.tHead.rows[0].cells].findIndex((th) => th.title === c);
        return [ri, ci];
    }, [rk, ck]);
    assert.ok(pos[0] >= 0 && pos[1] >= 0, `the page shows row ${rk} and column ${ck}`);
    const td = page.locator('#grid tbody tr').nth(pos[0]).locator('td').nth(pos[1] - 1);
    await td.click();
    await page.waitForFunction(() => document.activeElement && document.activeElement.tagName === 'TD');
    return td;
}
