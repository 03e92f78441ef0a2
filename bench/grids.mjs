// bench/grids.mjs: the grids of the grid-subscriber figure (bench/e2e.sh),
// read from a running server over the demo model: N distinct 20 x 12 grids
// of quantity, one JSON object per line (the body of POST .../grid), for
// bench_wssub --grids. Each grid's rows are the product total "All" and 19
// product leaves (grid g starts at leaf g * stride, so the grids differ and
// spread over the leaves); its columns are the time total "All", the years
// and the first quarters. The cell (All, All) is the grand total, which
// every leaf write changes: each grid gets a patch for every command,
// which is what bench_wssub --contiguous checks.
// Usage: node bench/grids.mjs URL N > FILE   (setup only; no timing here)
const [url, nArg] = process.argv.slice(2);
const n = Number(nArg);
if (!url || !(n >= 1)) {
    console.error('usage: node bench/grids.mjs URL N');
    process.exit(2);
}
const ROWS = 20;
const COLS = 12;

async function members(dim, parent) {
    const q = parent === undefined ? '' : `?parent=${encodeURIComponent(parent)}`;
    const r = await fetch(`${url}/v1/models/sales/dimensions/${dim}/members${q}`);
    if (r.status !== 200) throw new Error(`GET members of ${dim} ${parent ?? ''}: ${r.status}`);
    return (await r.json()).members;
}

// The leaves under parent (the root when undefined), in the server's order.
async function leaves(dim, parent) {
    const out = [];
    for (const m of await members(dim, parent)) {
        if (m.leaf) out.push(m.key);
        else out.push(...(await leaves(dim, m.key)));
    }
    return out;
}

const products = await leaves('product');
const years = (await members('time')).map((m) => m.key);
const quarters = [];
for (const y of years) quarters.push(...(await members('time', y)).map((m) => m.key));
const cols = ['All', ...years, ...quarters].slice(0, COLS);
const per = ROWS - 1;
if (products.length < per || cols.length < COLS) {
    console.error(`grids.mjs: the model is too small (${products.length} products)`);
    process.exit(1);
}
const stride = n > 1 ? Math.max(1, Math.floor((products.length - per) / (n - 1))) : 1;
const seen = new Set();
for (let g = 0; g < n; g++) {
    const start = (g * stride) % (products.length - per + 1);
    const rows = ['All', ...products.slice(start, start + per)];
    const grid = {
        rows: { dimension: 'product', members: rows },
        cols: { dimension: 'time', members: cols },
        measure: 'quantity',
    };
    const line = JSON.stringify(grid);
    if (seen.has(line)) {
        console.error(`grids.mjs: only ${g} distinct grids fit ${products.length} products`);
        process.exit(1);
    }
    seen.add(line);
    console.log(line);
}
