// The live planning grid served at / (docs/architecture.md, "The web grid").
// Plain DOM, no library and no build step. Values stay the strings the server
// wrote (parseExact below keeps every JSON number's text): the page never
// turns a value into a float. A grid subscription on one WebSocket keeps the
// cells live; a second WebSocket, the change feed at detail=none, says who
// made each seq (the grid's patches carry no user).
'use strict';

(() => {
    // ---- exact JSON: numbers keep their text --------------------------------------------------

    const NUM = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

    // JSON.parse, except that every number is returned as the string the
    // server wrote ("12.50" stays "12.50").
    function parseExact(text) {
        let i = 0;
        const n = text.length;
        const bad = () => {
            throw new SyntaxError(`bad JSON at ${i}`);
        };
        const ws = () => {
            while (i < n) {
                const c = text.charCodeAt(i);
                if (c === 32 || c === 10 || c === 13 || c === 9) i++;
                else break;
            }
        };
        const str = () => {
            const start = i + 1;
            for (let j = start; j < n; j++) {
                const c = text.charCodeAt(j);
                if (c === 34) {
                    i = j + 1;
                    return text.slice(start, j);
                }
                if (c === 92) break; /* an escape: the slow path */
            }
            let j = start;
            while (j < n && text.charCodeAt(j) !== 34) j += text.charCodeAt(j) === 92 ? 2 : 1;
            if (j >= n) bad();
            const s = JSON.parse(text.slice(i, j + 1));
            i = j + 1;
            return s;
        };
        const value = () => {
            ws();
            const c = text[i];
            if (c === '{') {
                i++;
                const o = {};
                ws();
                if (text[i] === '}') {
                    i++;
                    return o;
                }
                for (;;) {
                    ws();
                    if (text[i] !== '"') bad();
                    const k = str();
                    ws();
                    if (text[i++] !== ':') bad();
                    o[k] = value();
                    ws();
                    const d = text[i++];
                    if (d === '}') return o;
                    if (d !== ',') bad();
                }
            }
            if (c === '[') {
                i++;
                const a = [];
                ws();
                if (text[i] === ']') {
                    i++;
                    return a;
                }
                for (;;) {
                    a.push(value());
                    ws();
                    const d = text[i++];
                    if (d === ']') return a;
                    if (d !== ',') bad();
                }
            }
            if (c === '"') return str();
            if (text.startsWith('true', i)) {
                i += 4;
                return true;
            }
            if (text.startsWith('false', i)) {
                i += 5;
                return false;
            }
            if (text.startsWith('null', i)) {
                i += 4;
                return null;
            }
            NUM.lastIndex = i;
            const m = NUM.exec(text);
            if (!m) bad();
            i += m[0].length;
            return m[0];
        };
        const v = value();
        ws();
        if (i !== n) bad();
        return v;
    }

    // "-1234567.50" -> "-1,234,567.50": thousands separators by string
    // manipulation, the digits as the server wrote them.
    function fmtNum(s) {
        if (s === null || s === undefined) return '';
        s = String(s);
        let sign = '';
        if (s[0] === '-') {
            sign = '-';
            s = s.slice(1);
        }
        const dot = s.indexOf('.');
        const int = dot < 0 ? s : s.slice(0, dot);
        const frac = dot < 0 ? '' : s.slice(dot);
        let out = '';
        for (let k = int.length; k > 0; k -= 3) {
            const part = int.slice(Math.max(0, k - 3), k);
            out = out ? `${part},${out}` : part;
        }
        return sign + out + frac;
    }

    // What a planner typed -> {form, amount} (amount a decimal string the
    // API takes) or {error}. "1,250" is a value, "+25" a change, "10%" or
    // "-10%" a percent change; otherwise `form` (the Entry choice) says.
    function parseEntry(text, form, scale) {
        let t = text.trim().replace(/[,\s_']/g, '');
        if (t.endsWith('%')) {
            form = 'percent';
            t = t.slice(0, -1);
        } else if (t.startsWith('+')) {
            form = 'delta';
        }
        if (t.startsWith('+')) t = t.slice(1);
        const m = /^(-?)(\d*)(?:\.(\d*))?$/.exec(t);
        if (!m || (m[2] === '' && (m[3] === undefined || m[3] === ''))) {
            return { error: `“${text.trim()}” is not a number` };
        }
        const int = m[2].replace(/^0+(?=\d)/, '') || '0';
        const frac = (m[3] || '').replace(/0+$/, '');
        if (form !== 'percent' && frac.length > scale) {
            return { error: scale === 0 ? 'this measure takes whole numbers only'
                : `this measure takes at most ${scale} decimal places` };
        }
        const neg = m[1] === '-' && (int !== '0' || frac !== '');
        return { form, amount: (neg ? '-' : '') + int + (frac ? `.${frac}` : '') };
    }

    // What a refusal means to a planner (codes of docs/api.md, Errors).
    const REFUSALS = {
        held: 'Not changed: every cell this would spread to is held. Release a hold (h) and try again.',
        signs_cancel: 'Not changed: the cells beneath add up to about zero with mixed signs, so a proportional spread has no meaning. Choose equal (e) or repeat (r).',
        stale: 'Not changed: someone changed these cells a moment ago. The grid shows their numbers now; enter yours again if it still holds.',
        out_of_scope: 'Not changed: your key may not change this part of the plan.',
        forbidden: 'Not changed: this key can view the plan but not change it.',
        out_of_range: 'Not changed: that number is beyond what this measure can hold.',
        rate_limited: 'Not changed: too many changes at once. Wait a moment and enter it again.',
        invalid_value: 'Not changed: that is not a number this measure takes.',
        too_many_cells: 'Not changed: this would create more cells than the server allows in one change.',
        unavailable: 'Not changed: the server is not taking changes right now. Try again in a moment.',
        unauthenticated: 'Not changed: your key is no longer valid. Sign in again.',
        network: 'Not changed: the server could not be reached.',
    };

    // ---- small DOM helpers -------------------------------------------------------------------

    const $ = (id) => document.getElementById(id);
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const el = (tag, props = {}, ...kids) => {
        const e = document.createElement(tag);
        Object.assign(e, props);
        for (const k of kids) e.append(k);
        return e;
    };

    // ---- state -------------------------------------------------------------------------------

    const S = {
        key: sessionStorage.getItem('duckspread.key'),
        models: [],
        model: null, // GET /v1/models/{m}
        measure: null,
        scale: 0,
        rowDim: null,
        colDim: null,
        filters: {}, // dim -> member key (absent: the root)
        trees: new Map(), // dim -> {root, kids: Map(parent -> [member]), byKey: Map(key -> member)}
        open: { row: new Set(), col: new Set() },
        rows: [], // [{key, name, depth, leaf, kids}] as shown
        cols: [],
        values: [], // [r][c] strings
        seq: 0,
        mySeq: 0, // the seq of this page's last applied write
        cells: [], // [r][c] td elements
        active: { r: 0, c: 0 },
        editing: null, // {r, c, input}
        method: 'proportional',
        form: 'value',
        holds: new Map(), // JSON of the cell -> {cell, r?, c?, row?}
        readOnly: false,
        scoped: false,
        pending: new Map(), // r*ncols+c -> {seq|null, timer}
        ws: null,
        feed: null,
        feedSeq: null,
        subN: 0,
        connects: 0,
        sub: null, // {id, rows, cols}: the subscription the page shows or waits for
        myRequests: new Set(),
        seqUser: new Map(), // seq -> user (the change feed)
        recent: new Map(), // user -> last seen (ms)
        gen: 0, // bumps on sign-out: stale async work stops
    };
    window.duckspread = S; // for the browser tests and the curious

    // ---- HTTP --------------------------------------------------------------------------------

    async function api(method, path, body) {
        const headers = {};
        if (S.key) headers.Authorization = `Bearer ${S.key}`;
        if (body !== undefined) headers['Content-Type'] = 'application/json';
        let res;
        try {
            res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
        } catch (e) {
            const err = new Error('the server could not be reached');
            err.code = 'network';
            throw err;
        }
        const text = await res.text();
        let json = null;
        try {
            json = parseExact(text);
        } catch {
            /* not JSON */
        }
        if (!res.ok) {
            const e = json && json.error ? json.error : { code: 'http', message: `${res.status}` };
            const err = new Error(e.message);
            err.code = e.code;
            err.status = res.status;
            err.body = json;
            throw err;
        }
        return json;
    }

    const modelPath = () => `/v1/models/${encodeURIComponent(S.modelName)}`;

    // GETs asked ahead (at sign-in, from what the address names), each
    // taken once by the first read of that path.
    const ahead = new Map();

    function prefetch(path) {
        const p = api('GET', path);
        p.catch(() => {}); /* the reader sees the refusal; nobody may read it */
        ahead.set(path, p);
    }

    function get(path) {
        const p = ahead.get(path);
        ahead.delete(path);
        return p || api('GET', path);
    }

    // ---- member trees ------------------------------------------------------------------------

    function tree(dim) {
        let t = S.trees.get(dim);
        if (!t) {
            const d = S.model.dimensions.find((x) => x.name === dim);
            const root = { key: d.root, name: d.root, leaf: false, children: 1 };
            t = { root, kids: new Map(), byKey: new Map([[d.root, root]]) };
            S.trees.set(dim, t);
        }
        return t;
    }

    async function loadKids(dim, key) {
        const t = tree(dim);
        if (t.kids.has(key)) return t.kids.get(key);
        const q = key === t.root.key ? '' : `?parent=${encodeURIComponent(key)}`;
        const r = await get(`${modelPath()}/dimensions/${encodeURIComponent(dim)}/members${q}`);
        for (const m of r.members) t.byKey.set(m.key, m);
        t.kids.set(key, r.members);
        return r.members;
    }

    // The members shown on an axis: the root, then the children of every
    // open member under it (parents above / left of their children).
    function axis(dim, open) {
        const t = tree(dim);
        const out = [];
        const walk = (m, depth) => {
            const kids = t.kids.get(m.key);
            out.push({ key: m.key, name: m.name, depth, leaf: m.leaf, open: open.has(m.key) && !!kids });
            if (open.has(m.key) && kids) for (const k of kids) walk(k, depth + 1);
        };
        walk(t.root, 0);
        return out;
    }

    // ---- the grid subscription ---------------------------------------------------------------

    function subscribe() {
        const rows = axis(S.rowDim, S.open.row);
        const cols = axis(S.colDim, S.open.col);
        const old = S.sub;
        S.sub = { id: `g${++S.subN}`, rows, cols, measure: S.measure, filters: { ...S.filters } };
        if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return;
        if (old) S.ws.send(JSON.stringify({ op: 'unsubscribe', id: old.id }));
        sendSubscribe();
    }

    function sendSubscribe() {
        const s = S.sub;
        const grid = {
            rows: { dimension: S.rowDim, members: s.rows.map((m) => m.key) },
            cols: { dimension: S.colDim, members: s.cols.map((m) => m.key) },
            measure: s.measure,
        };
        if (Object.keys(s.filters).length) grid.filters = s.filters;
        s.t0 = performance.now();
        S.ws.send(JSON.stringify({ op: 'subscribe', id: s.id, grid }));
    }

    function onGridMessage(msg) {
        if (!S.sub || msg.id !== S.sub.id) return; /* an earlier layout's */
        if (msg.op === 'snapshot') {
            S.values = msg.values;
            S.seq = Number(msg.seq);
            S.shown = S.sub;
            queued.clear();
            const t = performance.now();
            render();
            S.renderMs = performance.now() - t;
            clearPending(true);
            performance.mark('duckspread:snapshot');
            S.snapshotMs = performance.now() - S.sub.t0;
        } else if (msg.op === 'patch') {
            const seq = Number(msg.seq);
            if (seq <= S.seq && S.shown === S.sub) return;
            for (const [r, c, v] of msg.cells) queued.set(`${r},${c}`, { r: Number(r), c: Number(c), v, seq });
            queuedSeq = Math.max(queuedSeq, seq);
            if (!frameAsked) {
                frameAsked = true;
                requestAnimationFrame(flush);
            }
        } else if (msg.op === 'error') {
            say(`The grid could not be shown: ${msg.error.message}`, true);
        }
    }

    // Patches are applied once per animation frame, however many arrive.
    const queued = new Map();
    let queuedSeq = 0;
    let frameAsked = false;
    const flashing = new Map(); // td -> until (ms)
    let sweepTimer = null;

    function flush() {
        frameAsked = false;
        if (S.shown !== S.sub) return;
        const now = performance.now();
        for (const { r, c, v, seq } of queued.values()) {
            if (!S.values[r]) continue;
            S.values[r][c] = v;
            const td = S.cells[r] && S.cells[r][c];
            if (!td) continue;
            if (!(S.editing && S.editing.r === r && S.editing.c === c) && !S.pending.has(r * S.cols.length + c)) {
                setText(td, fmtNum(v));
            }
            td.classList.add('flash');
            td.dataset.seq = seq;
            const who = S.seqUser.get(seq);
            const box = td.firstChild;
            if (box && box.dataset) {
                if (who && who !== 'you') box.dataset.who = who;
                else delete box.dataset.who;
            }
            flashing.set(td, now + 1200);
        }
        queued.clear();
        S.seq = Math.max(S.seq, queuedSeq);
        showSeq();
        clearPending(false);
        if (!sweepTimer && flashing.size) sweepTimer = setTimeout(sweep, 300);
    }

    function sweep() {
        sweepTimer = null;
        const now = performance.now();
        for (const [td, until] of flashing) {
            if (until <= now) {
                td.classList.remove('flash');
                if (td.firstChild && td.firstChild.dataset) delete td.firstChild.dataset.who;
                flashing.delete(td);
            }
        }
        if (flashing.size) sweepTimer = setTimeout(sweep, 300);
    }

    // ---- connections -------------------------------------------------------------------------

    let backoff = 200;
    let reconnectTimer = null;

    function setConn(state, text) {
        const c = $('conn');
        c.dataset.state = state;
        c.textContent = text || state;
    }

    function wsURL(query) {
        const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
        return `${proto}//${location.host}${modelPath()}/ws?${query}`;
    }

    // Opens the grid's socket (and the change feed's) with new tickets; a
    // later call supersedes an earlier one still on its way.
    async function connect() {
        const gen = S.gen;
        const mine = ++S.connects;
        clearTimeout(reconnectTimer);
        if (S.ws) {
            const old = S.ws;
            S.ws = null;
            old.close();
        }
        setConn(S.everLive ? 'reconnecting' : 'connecting');
        let ticket;
        let feedTicket;
        try {
            [ticket, feedTicket] = (await Promise.all([api('POST', '/v1/tickets'), api('POST', '/v1/tickets')])).map((t) => t.ticket);
        } catch (e) {
            if (gen !== S.gen || mine !== S.connects) return;
            /* at sign-in, start() says so */
            if (e.code === 'unauthenticated') return S.everLive ? signOut('Your key is no longer valid.') : undefined;
            return retry();
        }
        if (mine !== S.connects) return;
        if (gen !== S.gen) return;
        const ws = new WebSocket(wsURL(`ticket=${encodeURIComponent(ticket)}`));
        S.ws = ws;
        ws.onopen = () => {
            if (ws !== S.ws) return;
            backoff = 200;
            S.everLive = true;
            setConn('live');
            if (S.sub) {
                S.shown = null;
                sendSubscribe();
            }
        };
        ws.onmessage = (ev) => {
            if (ws !== S.ws) return;
            const t = performance.now();
            const msg = parseExact(ev.data);
            S.parseMs = performance.now() - t;
            onGridMessage(msg);
        };
        ws.onclose = () => {
            if (ws !== S.ws) return;
            S.ws = null;
            if (S.feed) S.feed.close();
            if (gen === S.gen) retry();
        };
        openFeed(feedTicket, gen);
    }

    function retry() {
        setConn('reconnecting', 'reconnecting…');
        clearTimeout(reconnectTimer);
        reconnectTimer = setTimeout(connect, backoff);
        backoff = Math.min(backoff * 2, 3000);
    }

    // The change feed (events at detail=none): who made each seq, and who
    // has been changing the plan. It resumes from the last seq it saw.
    function openFeed(ticket, gen) {
        if (S.feed) S.feed.close();
        const since = S.feedSeq !== null ? `&since=${S.feedSeq}` : '';
        const feed = new WebSocket(wsURL(`ticket=${encodeURIComponent(ticket)}&detail=none${since}`));
        let opened = false;
        S.feed = feed;
        feed.onopen = () => {
            opened = true;
        };
        feed.onmessage = (ev) => {
            if (gen !== S.gen) return;
            const e = parseExact(ev.data);
            if (e.seq === undefined) return;
            const seq = Number(e.seq);
            S.feedSeq = Math.max(S.feedSeq || 0, seq);
            const who = S.myRequests.has(e.request_id) ? 'you' : e.user;
            S.seqUser.set(seq, who);
            if (S.seqUser.size > 5000) S.seqUser.delete(S.seqUser.keys().next().value);
            if (who !== 'you') {
                S.recent.set(e.user, Date.now());
                showWho();
            }
            if (who !== 'you') {
                for (const td of flashing.keys()) {
                    if (Number(td.dataset.seq) === seq && td.firstChild && td.firstChild.dataset) td.firstChild.dataset.who = who;
                }
            }
        };
        feed.onclose = (ev) => {
            // refused at the handshake (410: `since` is no longer kept) or
            // closed as too slow (1008): it resumes from now
            if (!opened || ev.code === 1008) S.feedSeq = null;
            // closed while the grid's socket stays: open it again (a
            // reconnect of the grid's socket opens a new one itself)
            setTimeout(async () => {
                if (feed !== S.feed || gen !== S.gen || !S.ws || S.ws.readyState !== WebSocket.OPEN) return;
                try {
                    openFeed((await api('POST', '/v1/tickets')).ticket, gen);
                } catch {
                    /* the next reconnect tries again */
                }
            }, 1000);
        };
    }

    function showWho() {
        const cut = Date.now() - 10 * 60 * 1000;
        const names = [...S.recent].filter(([, t]) => t >= cut).map(([u]) => u).sort();
        const text = names.length ? `Also editing: ${names.join(', ')}` : '';
        // written only when it changes: new text in the header lays out the page
        if ($('who').textContent !== text) $('who').textContent = text;
    }

    // ---- rendering ---------------------------------------------------------------------------

    // A member as a header shows it: the root is the axis's total.
    function label(m) {
        return m.depth === 0 ? 'Total' : m.name;
    }

    // Rows are virtual: the tbody holds the rows in view and OVERSCAN more
    // on each side, between two spacer rows that keep the scroll height, so
    // a patch or a scroll touches a few hundred cells, never the whole grid
    // (with every row in the DOM, a 1,000-row grid fell to 15 frames/s at
    // 200 edits/s: each cell's new text relaid the whole table).
    const OVERSCAN = 10;
    let rowH = 27; /* measured after the first window */

    function render() {
        const s = S.shown;
        S.rows = s.rows;
        S.cols = s.cols;
        const table = $('grid');
        // asked before the table is replaced: a keyboard user keeps the focus
        const hadFocus = document.activeElement && table.contains(document.activeElement);
        const cols = s.cols;
        let h = `<thead><tr role="row" aria-rowindex="1"><th class="corner" role="columnheader" scope="col">${esc(S.rowDim)} \\ ${esc(S.colDim)}</th>`;
        cols.forEach((m, c) => {
            const exp = m.leaf ? '' : ` aria-expanded="${m.open}"`;
            const tog = m.leaf ? '' : `<span class="tog" aria-hidden="true">${m.open ? '▾' : '▸'}</span>`;
            h += `<th role="columnheader" scope="col" data-c="${c}"${exp} title="${esc(m.key)}">${tog}${esc(label(m))}</th>`;
        });
        h += '</tr></thead><tbody></tbody>';
        table.innerHTML = h;
        table.setAttribute('aria-rowcount', String(s.rows.length + 1));
        table.setAttribute('aria-colcount', String(cols.length + 1));
        table.setAttribute('aria-readonly', String(S.readOnly));
        S.colTotal = cols.map((m) => (m.leaf ? '' : ' ctotal'));
        let longest = 6;
        for (const row of S.values) for (const v of row) if (v !== null && v.length > longest - 2) longest = fmtNum(v).length;
        widen(Math.max(longest, S.vwChars || 0));
        S.win = { first: -1, last: -1 };
        flashing.clear();
        S.editing = null;
        S.active.r = Math.min(S.active.r, s.rows.length - 1);
        S.active.c = Math.min(S.active.c, cols.length - 1);
        renderWindow(true);
        focusActive(hadFocus);
        showSeq();
        showHolds();
        table.dataset.seq = String(S.seq);
        table.dataset.ready = '1';
    }

    // A cell's text sits in a box of fixed size with `contain: strict`, so
    // a new number lays out that box alone, not the table (at 200 edits/s
    // the table's layout was most of each frame). The boxes are as wide
    // as the longest number so far (`--vw`, in ch: the digits are tabular).
    function setText(td, text) {
        let v = td.firstChild;
        if (!v || v.nodeType !== 1 || v.className !== 'v') {
            td.textContent = '';
            v = document.createElement('span');
            v.className = 'v';
            td.append(v);
        }
        v.textContent = text;
        if (text.length > S.vwChars) widen(text.length);
    }

    function widen(chars) {
        S.vwChars = chars;
        $('grid').style.setProperty('--vw', `${chars + 4}ch`); /* room for a name */
    }

    function rowHTML(r) {
        const m = S.rows[r];
        const exp = m.leaf ? '' : ` aria-expanded="${m.open}"`;
        const held = S.holds.has(holdKey(rowCell(r))) ? ' held' : '';
        let h = `<tr role="row" data-r="${r}" aria-rowindex="${r + 2}" aria-level="${m.depth + 1}"${exp} class="${m.leaf ? 'leaf' : 'total'}${held}">`;
        const tog = m.leaf ? '' : `<span class="tog" aria-hidden="true">${m.open ? '▾' : '▸'}</span>`;
        h += `<th class="rh d${Math.min(m.depth, 7)}" role="rowheader" scope="row" title="${esc(m.key)}">${tog}${esc(label(m))}</th>`;
        const vr = S.values[r] || [];
        const n = S.cols.length;
        for (let c = 0; c < n; c++) {
            const p = S.pending.get(r * n + c);
            h += p ? `<td role="gridcell" class="${S.colTotal[c]} pending"><span class="v">${esc(p.text)}</span></td>`
                : `<td role="gridcell" class="${S.colTotal[c]}"><span class="v">${fmtNum(vr[c])}</span></td>`;
        }
        return `${h}</tr>`;
    }

    // Puts the rows in view (and OVERSCAN around) into the tbody; force:
    // even when the same rows are there (a new layout).
    function renderWindow(force = false) {
        if (S.editing && !force) return;
        const wrap = $('gridwrap');
        const table = $('grid');
        const n = S.rows.length;
        const head = table.tHead ? table.tHead.offsetHeight : 0;
        const top = Math.max(0, wrap.scrollTop - head);
        const first = Math.max(0, Math.floor(top / rowH) - OVERSCAN);
        const last = Math.min(n, Math.ceil((top + wrap.clientHeight) / rowH) + OVERSCAN);
        if (!force && first === S.win.first && last === S.win.last) return;
        const hadFocus = document.activeElement && table.tBodies[0].contains(document.activeElement);
        S.win = { first, last };
        const span = S.cols.length + 1;
        let h = `<tr class="spacer" aria-hidden="true"><td colspan="${span}"></td></tr>`;
        for (let r = first; r < last; r++) h += rowHTML(r);
        h += `<tr class="spacer" aria-hidden="true"><td colspan="${span}"></td></tr>`;
        const body = table.tBodies[0];
        body.innerHTML = h;
        const trs = body.rows;
        S.cells = new Array(n);
        S.trOf = new Array(n);
        for (let r = first; r < last; r++) {
            const tr = trs[r - first + 1];
            S.trOf[r] = tr;
            const row = new Array(S.cols.length);
            for (let c = 0; c < S.cols.length; c++) row[c] = tr.cells[c + 1];
            S.cells[r] = row;
        }
        if (last > first) {
            const measured = trs[1].getBoundingClientRect().height;
            if (measured > 0) rowH = measured;
        }
        const setSpacer = (tr, rows) => {
            tr.hidden = rows === 0;
            tr.cells[0].style.height = `${rows * rowH}px`;
        };
        setSpacer(trs[0], first);
        setSpacer(trs[trs.length - 1], n - last);
        for (const h2 of S.holds.values()) {
            const rc = cellIndex(h2.cell);
            if (rc && S.cells[rc.r]) S.cells[rc.r][rc.c].classList.add('held');
        }
        if (S.active.r >= first && S.active.r < last) focusActive(hadFocus, false);
    }

    function showSeq() {
        $('seq').textContent = `seq ${S.seq}`;
    }

    // ---- cell addresses ----------------------------------------------------------------------

    function baseCell() {
        const cell = {};
        for (const [d, k] of Object.entries(S.filters)) cell[d] = k;
        return cell;
    }

    function cellAt(r, c) {
        const cell = baseCell();
        const rm = S.rows[r];
        const cm = S.cols[c];
        if (rm.depth > 0) cell[S.rowDim] = rm.key;
        if (cm.depth > 0) cell[S.colDim] = cm.key;
        return cell;
    }

    function rowCell(r) {
        const cell = baseCell();
        if (S.rows[r] && S.rows[r].depth > 0) cell[S.rowDim] = S.rows[r].key;
        return cell;
    }

    const holdKey = (cell) => JSON.stringify(Object.keys(cell).sort().map((k) => [k, cell[k]]));

    function cellIndex(cell) {
        const filt = Object.keys(S.filters);
        for (const d of filt) if (cell[d] !== S.filters[d]) return null;
        const extra = Object.keys(cell).filter((d) => !filt.includes(d) && d !== S.rowDim && d !== S.colDim);
        if (extra.length) return null;
        const rk = cell[S.rowDim] ?? tree(S.rowDim).root.key;
        const ck = cell[S.colDim];
        if (ck === undefined) return null; /* a row hold */
        const r = S.rows.findIndex((m) => m.key === rk);
        const c = S.cols.findIndex((m) => m.key === ck);
        return r >= 0 && c >= 0 ? { r, c } : null;
    }

    // ---- focus and keyboard ------------------------------------------------------------------

    // r, c: a value cell; c = -1 a row header, r = -1 a column header.
    function elAt(r, c) {
        if (r === -1) return $('grid').tHead.rows[0].cells[c + 1];
        if (!S.trOf || !S.trOf[r]) return null; /* not in the window */
        if (c === -1) return S.trOf[r].cells[0];
        return S.cells[r][c];
    }

    // Gives the active cell the grid's one tab stop (and the focus, when
    // focus), bringing its row into the window first.
    function focusActive(focus = true, scroll = true) {
        const table = $('grid');
        const prev = table.querySelector('[tabindex="0"]');
        if (prev) prev.removeAttribute('tabindex');
        if (!S.rows.length) return;
        let e = elAt(S.active.r, S.active.c);
        if (!e && S.active.r >= 0) {
            const wrap = $('gridwrap');
            wrap.scrollTop = Math.max(0, S.active.r * rowH - wrap.clientHeight / 2);
            renderWindow(true);
            e = elAt(S.active.r, S.active.c);
        }
        if (!e) return;
        e.tabIndex = 0;
        if (focus) {
            e.focus({ preventScroll: true });
            if (scroll) e.scrollIntoView({ block: 'nearest', inline: 'nearest' });
        }
    }

    function move(dr, dc) {
        const r = Math.max(-1, Math.min(S.rows.length - 1, S.active.r + dr));
        const c = Math.max(-1, Math.min(S.cols.length - 1, S.active.c + dc));
        if (r === -1 && c === -1) return;
        S.active = { r, c };
        focusActive();
    }

    function onKey(ev) {
        if (S.editing) return; /* the input's own handler */
        const { r, c } = S.active;
        const k = ev.key;
        const onHeader = r === -1 || c === -1;
        if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
        let handled = true;
        switch (k) {
        case 'ArrowUp': move(-1, 0); break;
        case 'ArrowDown': move(1, 0); break;
        case 'ArrowLeft': move(0, -1); break;
        case 'ArrowRight': move(0, 1); break;
        case 'Home': S.active.c = 0; focusActive(); break;
        case 'End': S.active.c = S.cols.length - 1; focusActive(); break;
        case 'PageDown': move(20, 0); break;
        case 'PageUp': move(-20, 0); break;
        case 'Tab':
            // past the last column (or before the row headers) Tab leaves
            // the grid, so the keyboard is never trapped in it
            if (ev.shiftKey ? c === -1 : c === S.cols.length - 1) handled = false;
            else move(0, ev.shiftKey ? -1 : 1);
            break;
        case 'Enter':
        case 'F2':
            if (onHeader) toggleAt(r, c);
            else startEdit(null);
            break;
        case ' ':
            if (onHeader) toggleAt(r, c);
            else handled = false;
            break;
        case 'h': if (!onHeader) toggleHold(cellAt(r, c)); break;
        case 'H': if (r >= 0) toggleHold(rowCell(r)); break;
        case 'p': setMethod('proportional'); break;
        case 'e': setMethod('equal'); break;
        case 'r': setMethod('repeat'); break;
        case 'v': setForm('value'); break;
        case 'd': setForm('delta'); break;
        case 'c': setForm('percent'); break;
        default:
            if (!onHeader && /^[0-9.+\-%]$/.test(k)) startEdit(k);
            else handled = false;
        }
        if (handled) ev.preventDefault();
    }

    function setMethod(m) {
        S.method = m;
        $('method').value = m;
        say(`Spread: ${m}`);
    }

    function setForm(f) {
        S.form = f;
        $('form').value = f;
        say(`Entry: ${$('form').selectedOptions[0].textContent}`);
    }

    // ---- expand and collapse -----------------------------------------------------------------

    async function toggleAt(r, c) {
        const isRow = c === -1;
        const m = isRow ? S.rows[r] : S.cols[c];
        if (!m || m.leaf) return;
        const dim = isRow ? S.rowDim : S.colDim;
        const open = isRow ? S.open.row : S.open.col;
        if (open.has(m.key)) {
            open.delete(m.key);
        } else {
            try {
                await loadKids(dim, m.key);
            } catch (e) {
                return say(`Could not open ${m.key}: ${e.message}`, true);
            }
            open.add(m.key);
        }
        saveHash();
        subscribe();
    }

    // ---- holds -------------------------------------------------------------------------------

    function toggleHold(cell) {
        const k = holdKey(cell);
        if (S.holds.has(k)) S.holds.delete(k);
        else S.holds.set(k, { cell });
        paintHolds();
    }

    function paintHolds() {
        for (let r = S.win.first; r < S.win.last; r++) {
            for (const td of S.cells[r]) td.classList.remove('held');
            S.trOf[r].classList.toggle('held', S.holds.has(holdKey(rowCell(r))));
        }
        for (const h of S.holds.values()) {
            const rc = cellIndex(h.cell);
            if (rc && S.cells[rc.r]) S.cells[rc.r][rc.c].classList.add('held');
        }
        showHolds();
    }

    function showHolds() {
        const n = S.holds.size;
        $('holds').textContent = n ? `${n} held (kept by every spread until released)` : '';
        $('clearholds').hidden = !n;
    }

    // ---- editing -----------------------------------------------------------------------------

    function startEdit(initial) {
        const { r, c } = S.active;
        const td = S.cells[r] && S.cells[r][c];
        if (!td) return;
        hideBubble();
        if (S.readOnly) {
            showBubble(td, 'View only: this key can read the plan but not change it.');
            return;
        }
        const input = el('input', { type: 'text', inputMode: 'decimal', autocomplete: 'off' });
        input.setAttribute('aria-label', `New ${S.measure} for ${S.rows[r].key}, ${S.cols[c].key}`);
        input.value = initial === null ? fmtNum(S.values[r][c]) : initial;
        td.classList.add('editing');
        td.textContent = '';
        td.append(input);
        S.editing = { r, c, input };
        input.focus();
        if (initial === null) input.select();
        input.addEventListener('keydown', (ev) => {
            ev.stopPropagation(); /* the grid's keys are not the editor's */
            if (ev.key === 'Escape') {
                ev.preventDefault();
                endEdit(false);
            } else if (ev.key === 'Enter') {
                ev.preventDefault();
                endEdit(true, ev.shiftKey ? -1 : 1, 0);
            } else if (ev.key === 'Tab') {
                ev.preventDefault();
                endEdit(true, 0, ev.shiftKey ? -1 : 1);
            } else if (ev.altKey && /^[per]$/i.test(ev.key)) {
                ev.preventDefault();
                setMethod({ p: 'proportional', e: 'equal', r: 'repeat' }[ev.key.toLowerCase()]);
            }
        });
        input.addEventListener('blur', () => {
            if (S.editing && S.editing.input === input) endEdit(true, 0, 0, false);
        });
    }

    function endEdit(commit, dr = 0, dc = 0, refocus = true) {
        const ed = S.editing;
        if (!ed) return;
        S.editing = null;
        const td = S.cells[ed.r][ed.c];
        const text = ed.input.value;
        td.classList.remove('editing');
        setText(td, fmtNum(S.values[ed.r][ed.c]));
        const typed = text.trim() !== '' && text !== fmtNum(S.values[ed.r][ed.c]);
        if (commit && typed) write(ed.r, ed.c, text);
        if (refocus) move(dr, dc);
    }

    function newRequestId() {
        const b = crypto.getRandomValues(new Uint8Array(9));
        const id = `web-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
        S.myRequests.add(id);
        if (S.myRequests.size > 2000) S.myRequests.delete(S.myRequests.values().next().value);
        return id;
    }

    function holdsFor() {
        return [...S.holds.values()].map((h) => h.cell);
    }

    function describe(p) {
        if (p.form === 'percent') return `${p.amount}%`;
        if (p.form === 'delta') return `${p.amount[0] === '-' ? '' : '+'}${fmtNum(p.amount)}`;
        return fmtNum(p.amount);
    }

    async function write(r, c, text) {
        const p = parseEntry(text, S.form, S.scale);
        const td = S.cells[r][c];
        if (p.error) {
            showBubble(td, `Not changed: ${p.error}.`);
            return;
        }
        const body = { column: S.measure, cell: cellAt(r, c), [p.form]: p.amount, method: S.method, detail: 'none' };
        const holds = holdsFor();
        if (holds.length) body.holds = holds;
        // A value replaces what the planner saw: refused (stale) when the
        // cells changed after the grid's seq (or this page's own last
        // write), so nobody overwrites a change they have not seen. A
        // change or a percent composes with others' and is not checked.
        if (p.form === 'value') body.if_seq = Math.max(S.seq, S.mySeq);
        body.request_id = newRequestId();
        markPending([[r, c, describe(p)]]);
        const shown = S.shown;
        try {
            const a = await api('POST', `${modelPath()}/cells`, body);
            S.mySeq = Math.max(S.mySeq, Number(a.seq));
            settle([[r, c]], Number(a.seq), shown);
            say(`${S.rows[r].key} × ${S.cols[c].key}: ${describe(p)} applied (seq ${a.seq}, ${a.leaves_changed} cells)`);
        } catch (e) {
            refused([[r, c]], e, shown);
        }
    }

    function markPending(list) {
        const n = S.cols.length;
        for (const [r, c, text] of list) {
            const td = S.cells[r] && S.cells[r][c];
            if (td) {
                td.classList.add('pending');
                setText(td, text);
            }
            const k = r * n + c;
            const old = S.pending.get(k);
            if (old) clearTimeout(old.timer);
            S.pending.set(k, { seq: null, timer: null, text });
        }
    }

    // A write's answer: its cells show the grid's numbers once the grid
    // reached its seq (the patch may come before or after the answer).
    function settle(list, seq, shown) {
        if (shown !== S.shown) return;
        const n = S.cols.length;
        for (const [r, c] of list) {
            const p = S.pending.get(r * n + c);
            if (!p) continue;
            p.seq = seq;
            p.timer = setTimeout(() => unpend(r, c), 3000);
        }
        clearPending(false);
    }

    function unpend(r, c) {
        const k = r * S.cols.length + c;
        const p = S.pending.get(k);
        if (!p) return;
        clearTimeout(p.timer);
        S.pending.delete(k);
        const td = S.cells[r] && S.cells[r][c];
        if (!td) return;
        td.classList.remove('pending');
        if (!(S.editing && S.editing.r === r && S.editing.c === c)) setText(td, fmtNum(S.values[r][c]));
    }

    function clearPending(all) {
        const n = S.cols.length;
        for (const [k, p] of [...S.pending]) {
            if (all || (p.seq !== null && p.seq <= S.seq)) {
                clearTimeout(p.timer);
                S.pending.delete(k);
                const r = Math.floor(k / n);
                const c = k % n;
                const td = S.cells[r] && S.cells[r][c];
                if (td) {
                    td.classList.remove('pending');
                    if (!all) setText(td, fmtNum(S.values[r][c]));
                }
            }
        }
    }

    function refused(list, e, shown) {
        if (shown !== S.shown) return;
        for (const [r, c] of list) unpend(r, c);
        const [r0, c0] = list[0];
        const td = S.cells[r0] && S.cells[r0][c0];
        let text = REFUSALS[e.code] || `Not changed: ${e.message}`;
        if (e.code === 'invalid_value' || e.code === 'out_of_range') text += ` (${e.message})`;
        if (e.code === 'forbidden') setReadOnly(true);
        for (const [r, c] of list) if (S.cells[r]) S.cells[r][c].classList.add('refused');
        setTimeout(() => {
            for (const [r, c] of list) if (S.cells[r] && S.cells[r][c]) S.cells[r][c].classList.remove('refused');
        }, 4000);
        if (td) showBubble(td, text, e.code);
        say(text, true);
    }

    // ---- paste: a rectangle from a spreadsheet is one cells:batch ----------------------------

    async function onPaste(ev) {
        if (S.editing || S.active.r < 0 || S.active.c < 0) return;
        const text = ev.clipboardData.getData('text/plain');
        if (!text) return;
        ev.preventDefault();
        if (S.readOnly) return showBubble(S.cells[S.active.r][S.active.c], 'View only: this key can read the plan but not change it.');
        const lines = text.replace(/\r?\n$/, '').split(/\r?\n/).map((l) => l.split('\t'));
        const writes = [];
        const list = [];
        for (let i = 0; i < lines.length; i++) {
            for (let j = 0; j < lines[i].length; j++) {
                const r = S.active.r + i;
                const c = S.active.c + j;
                if (r >= S.rows.length || c >= S.cols.length || lines[i][j].trim() === '') continue;
                const p = parseEntry(lines[i][j], S.form, S.scale);
                if (p.error) return showBubble(S.cells[S.active.r][S.active.c], `Nothing pasted: row ${i + 1}, column ${j + 1}: ${p.error}.`);
                writes.push({ column: S.measure, cell: cellAt(r, c), [p.form]: p.amount, method: S.method });
                list.push([r, c, describe(p)]);
            }
        }
        if (!writes.length) return;
        const holds = holdsFor();
        if (holds.length) for (const w of writes) w.holds = holds;
        markPending(list);
        const shown = S.shown;
        try {
            const a = await api('POST', `${modelPath()}/cells:batch`, { writes, request_id: newRequestId(), detail: 'none' });
            S.mySeq = Math.max(S.mySeq, Number(a.seq));
            settle(list, Number(a.seq), shown);
            say(`Pasted ${writes.length} cells as one change (seq ${a.seq})`);
        } catch (e) {
            refused(list, e, shown);
        }
    }

    // ---- messages ----------------------------------------------------------------------------

    function say(text, bad = false) {
        const m = $('msg');
        m.textContent = text;
        m.classList.toggle('bad', bad);
    }

    function showBubble(td, text, code = '') {
        const b = $('bubble');
        const wrap = $('gridwrap');
        b.textContent = text;
        b.dataset.code = code;
        b.hidden = false;
        const tr = td.getBoundingClientRect();
        const wr = wrap.getBoundingClientRect();
        let left = tr.left - wr.left + wrap.scrollLeft;
        const top = tr.bottom - wr.top + wrap.scrollTop + 2;
        left = Math.max(0, Math.min(left, wrap.scrollLeft + wrap.clientWidth - b.offsetWidth - 4));
        b.style.left = `${left}px`;
        b.style.top = `${top}px`;
        clearTimeout(showBubble.timer);
        showBubble.timer = setTimeout(hideBubble, 8000);
    }

    function hideBubble() {
        $('bubble').hidden = true;
    }

    function setReadOnly(ro) {
        S.readOnly = ro;
        $('grid').setAttribute('aria-readonly', String(ro));
        const b = $('banner');
        b.hidden = !ro;
        b.textContent = ro ? 'View only: this key can read the plan and follow it live, but not change it.' : '';
    }

    // ---- filters: member pickers with search -------------------------------------------------

    async function allMembers(dim, cap = 5000) {
        const t = tree(dim);
        const out = [];
        const queue = [t.root.key];
        while (queue.length && out.length < cap) {
            const k = queue.shift();
            const kids = await loadKids(dim, k);
            for (const m of kids) {
                out.push(m);
                if (!m.leaf) queue.push(m.key);
            }
        }
        return out;
    }

    function renderFilters() {
        const box = $('filters');
        box.textContent = '';
        for (const d of S.model.dimensions) {
            if (d.name === S.rowDim || d.name === S.colDim) continue;
            const cur = S.filters[d.name];
            const wrap = el('span', { className: 'picker' });
            const btn = el('button', { type: 'button', className: 'pick' });
            const name = cur ? (tree(d.name).byKey.get(cur) || { name: cur }).name : 'All';
            btn.textContent = `${d.name}: ${name}`;
            // a disclosure: the panel it opens holds a search box and a
            // list of buttons (a listbox may not hold buttons)
            btn.setAttribute('aria-expanded', 'false');
            btn.dataset.dim = d.name;
            btn.addEventListener('click', () => openPicker(wrap, btn, d.name));
            wrap.append(btn);
            box.append(wrap);
        }
    }

    async function openPicker(wrap, btn, dim) {
        const old = document.querySelector('.picker-panel');
        if (old) {
            const same = old.parentNode === wrap;
            old.remove();
            btn.setAttribute('aria-expanded', 'false');
            if (same) return;
        }
        const panel = el('div', { className: 'picker-panel' });
        const search = el('input', { type: 'search', placeholder: `Search ${dim}…` });
        search.setAttribute('aria-label', `Search ${dim}`);
        const list = el('ul', {});
        list.setAttribute('aria-label', `${dim} members`);
        panel.append(search, list);
        wrap.append(panel);
        btn.setAttribute('aria-expanded', 'true');
        search.focus();
        let members = [];
        const choose = (key) => {
            if (key === null) delete S.filters[dim];
            else S.filters[dim] = key;
            panel.remove();
            btn.setAttribute('aria-expanded', 'false');
            renderFilters();
            saveHash();
            subscribe();
            focusActive();
        };
        const show = () => {
            const q = search.value.trim().toLowerCase();
            list.textContent = '';
            const all = el('button', { type: 'button', textContent: `All ${dim}` });
            all.addEventListener('click', () => choose(null));
            if (!q) list.append(el('li', {}, all));
            let n = 0;
            for (const m of members) {
                if (q && !m.key.toLowerCase().includes(q) && !m.name.toLowerCase().includes(q)) continue;
                if (++n > 200) break;
                const b = el('button', { type: 'button', textContent: m.name === m.key ? m.key : `${m.name} (${m.key})` });
                b.addEventListener('click', () => choose(m.key));
                list.append(el('li', {}, b));
            }
        };
        search.addEventListener('input', show);
        panel.addEventListener('keydown', (ev) => {
            if (ev.key === 'Escape') {
                panel.remove();
                btn.setAttribute('aria-expanded', 'false');
                btn.focus();
            } else if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
                const bs = [...list.querySelectorAll('button')];
                const i = bs.indexOf(document.activeElement);
                const j = ev.key === 'ArrowDown' ? Math.min(bs.length - 1, i + 1) : i - 1;
                (j < 0 ? search : bs[j]).focus();
                ev.preventDefault();
            }
        });
        show();
        try {
            members = await allMembers(dim);
            show();
        } catch (e) {
            say(`Could not list ${dim}: ${e.message}`, true);
        }
    }

    // ---- the page's address: model, measure, axes and filters --------------------------------

    function readHash() {
        const p = new URLSearchParams(location.hash.slice(1));
        const f = {};
        for (const [k, v] of p) if (k.startsWith('f.')) f[k.slice(2)] = v;
        return { m: p.get('m'), measure: p.get('measure'), rows: p.get('rows'), cols: p.get('cols'), f,
            ro: p.get('open.rows'), co: p.get('open.cols') };
    }

    function saveHash() {
        const p = new URLSearchParams();
        p.set('m', S.model.name);
        p.set('measure', S.measure);
        p.set('rows', S.rowDim);
        p.set('cols', S.colDim);
        for (const [d, k] of Object.entries(S.filters)) p.set(`f.${d}`, k);
        const ro = [...S.open.row].filter((k) => k !== tree(S.rowDim).root.key);
        const co = [...S.open.col].filter((k) => k !== tree(S.colDim).root.key);
        if (ro.length) p.set('open.rows', ro.join(','));
        if (co.length) p.set('open.cols', co.join(','));
        history.replaceState(null, '', `#${p}`);
    }

    // ---- choosing what to show ---------------------------------------------------------------

    function fillSelect(sel, items, cur) {
        sel.textContent = '';
        for (const it of items) sel.append(el('option', { value: it, textContent: it, selected: it === cur }));
    }

    async function openModel(name, h = {}) {
        S.modelName = name;
        S.model = await get(`/v1/models/${encodeURIComponent(name)}`);
        S.trees = new Map();
        S.holds.clear();
        const dims = S.model.dimensions.map((d) => d.name);
        const measures = S.model.measures.map((m) => m.name);
        S.measure = measures.includes(h.measure) ? h.measure : measures[0];
        S.rowDim = dims.includes(h.rows) ? h.rows : dims[0];
        S.colDim = dims.includes(h.cols) && h.cols !== S.rowDim ? h.cols
            : dims.includes('time') && S.rowDim !== 'time' ? 'time' : dims.find((d) => d !== S.rowDim);
        S.filters = {};
        for (const [d, k] of Object.entries(h.f || {})) if (dims.includes(d) && d !== S.rowDim && d !== S.colDim) S.filters[d] = k;
        S.scale = Number(S.model.measures.find((m) => m.name === S.measure).scale);
        if (S.feedSeq === null) S.feedSeq = Number(S.model.seq);
        fillSelect($('model'), S.models, S.model.name);
        fillSelect($('measure'), measures, S.measure);
        fillSelect($('rowdim'), dims, S.rowDim);
        fillSelect($('coldim'), dims, S.colDim);
        await openAxes(h.ro ? h.ro.split(',') : [], h.co ? h.co.split(',') : []);
        renderFilters();
        saveHash();
        probeRole(); /* while the grid subscribes */
    }

    async function openAxes(rowOpen = [], colOpen = []) {
        S.open.row = new Set([tree(S.rowDim).root.key]);
        S.open.col = new Set([tree(S.colDim).root.key]);
        await Promise.all([loadKids(S.rowDim, tree(S.rowDim).root.key), loadKids(S.colDim, tree(S.colDim).root.key)]);
        // an opened member's parent must be loaded first: open in tree order
        for (const [dim, keys, set] of [[S.rowDim, rowOpen, S.open.row], [S.colDim, colOpen, S.open.col]]) {
            let progress = true;
            const left = new Set(keys);
            while (left.size && progress) {
                progress = false;
                for (const k of [...left]) {
                    if (!tree(dim).byKey.has(k)) continue;
                    await loadKids(dim, k);
                    set.add(k);
                    left.delete(k);
                    progress = true;
                }
            }
        }
    }

    // Whether the key may write: a write with a value no measure takes is
    // refused 403 (viewer) before 422 (the value), and changes nothing.
    async function probeRole() {
        try {
            await api('POST', `${modelPath()}/cells`, { column: S.measure, cell: {}, value: 'not-a-number' });
        } catch (e) {
            setReadOnly(e.code === 'forbidden');
            return;
        }
        setReadOnly(false);
    }

    async function changeView(fn) {
        try {
            await fn();
            S.active = { r: 0, c: 0 };
            renderFilters();
            saveHash();
            subscribe();
        } catch (e) {
            say(e.message, true);
        }
    }

    // ---- signing in and out ------------------------------------------------------------------

    function signOut(why = '') {
        S.gen++;
        sessionStorage.removeItem('duckspread.key');
        S.key = null;
        if (S.ws) S.ws.close();
        if (S.feed) S.feed.close();
        S.ws = S.feed = null;
        S.sub = S.shown = null;
        S.feedSeq = null;
        clearTimeout(reconnectTimer);
        $('controls').hidden = true;
        $('signin').hidden = false;
        $('grid').innerHTML = '';
        setConn('offline');
        say(why, !!why);
        $('key').focus();
    }

    async function start() {
        const gen = ++S.gen;
        const h = readHash();
        ahead.clear();
        if (h.m) {
            // what the address names, asked at once and side by side
            S.modelName = h.m;
            const m = `/v1/models/${encodeURIComponent(h.m)}`;
            prefetch(m);
            for (const d of [h.rows, h.cols]) if (d) prefetch(`${m}/dimensions/${encodeURIComponent(d)}/members`);
            connect();
        }
        try {
            S.models = (await api('GET', '/v1/models')).models.map((m) => (typeof m === 'string' ? m : m.name));
        } catch (e) {
            if (e.code === 'unauthenticated' || e.status === 401) return signOut('That key was not accepted.');
            say(`The server answered: ${e.message}`, true);
            return;
        }
        if (gen !== S.gen) return;
        $('signin').hidden = true;
        $('controls').hidden = false;
        if (!S.models.length) return say('This server has no model yet (POST /v1/models, see /docs).', true);
        const name = S.models.includes(h.m) ? h.m : S.models.includes('sales') ? 'sales' : S.models[0];
        if (name !== h.m) {
            S.modelName = name;
            connect(); /* tickets and sockets while the model and its members load */
        }
        await openModel(name, h);
        subscribe();
    }

    function wire() {
        $('signin').addEventListener('submit', (ev) => {
            ev.preventDefault();
            S.key = $('key').value.trim() || '';
            sessionStorage.setItem('duckspread.key', S.key);
            $('key').value = '';
            start();
        });
        $('signout').addEventListener('click', () => signOut());
        $('model').addEventListener('change', () => changeView(async () => {
            S.modelName = $('model').value;
            S.feedSeq = null;
            S.sub = null;
            connect(); /* the new model's sockets */
            await openModel(S.modelName);
        }));
        $('measure').addEventListener('change', () => changeView(async () => {
            S.measure = $('measure').value;
            S.scale = Number(S.model.measures.find((m) => m.name === S.measure).scale);
            await probeRole();
        }));
        // A dimension chosen for one axis that the other shows swaps them.
        const axes = (which) => changeView(async () => {
            let r = $('rowdim').value;
            let c = $('coldim').value;
            if (r === c) {
                if (which === 'row') c = S.rowDim;
                else r = S.colDim;
            }
            S.rowDim = r;
            S.colDim = c;
            delete S.filters[r];
            delete S.filters[c];
            const dims = S.model.dimensions.map((d) => d.name);
            fillSelect($('rowdim'), dims, r);
            fillSelect($('coldim'), dims, c);
            await openAxes();
        });
        $('rowdim').addEventListener('change', () => axes('row'));
        $('coldim').addEventListener('change', () => axes('col'));
        $('method').addEventListener('change', () => setMethod($('method').value));
        $('form').addEventListener('change', () => setForm($('form').value));
        $('clearholds').addEventListener('click', () => {
            S.holds.clear();
            paintHolds();
        });
        let windowAsked = false;
        const askWindow = () => {
            if (windowAsked || !S.shown) return;
            windowAsked = true;
            requestAnimationFrame(() => {
                windowAsked = false;
                renderWindow();
            });
        };
        $('gridwrap').addEventListener('scroll', askWindow, { passive: true });
        window.addEventListener('resize', askWindow);
        const grid = $('grid');
        grid.addEventListener('keydown', onKey);
        grid.addEventListener('paste', onPaste);
        grid.addEventListener('mousedown', (ev) => {
            const cell = ev.target.closest('td, th');
            if (!cell || S.editing?.input === ev.target) return;
            const tr = cell.parentNode;
            const inHead = tr.parentNode.tagName === 'THEAD';
            if (!inHead && tr.dataset.r === undefined) return; /* a spacer */
            const r = inHead ? -1 : Number(tr.dataset.r);
            const c = cell.cellIndex - 1;
            if (r === -1 && c === -1) return;
            if (S.editing) endEdit(true, 0, 0, false);
            S.active = { r, c };
            focusActive();
            ev.preventDefault();
        });
        grid.addEventListener('click', (ev) => {
            const th = ev.target.closest('th[aria-expanded], tr[aria-expanded] th.rh');
            if (!th) return;
            const inHead = th.parentNode.parentNode.tagName === 'THEAD';
            if (inHead) toggleAt(-1, th.cellIndex - 1);
            else toggleAt(Number(th.parentNode.dataset.r), -1);
        });
        grid.addEventListener('dblclick', (ev) => {
            if (ev.target.closest('td')) startEdit(null);
        });
        document.addEventListener('keydown', (ev) => {
            if (ev.key === 'Escape') hideBubble();
        });
        window.addEventListener('hashchange', () => {
            if (S.model && readHash().m !== S.model.name) location.reload();
        });
    }

    wire();
    if (S.key !== null) start();
    else $('key').focus();
})();
