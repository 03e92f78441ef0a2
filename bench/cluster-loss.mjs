// bench/cluster-loss.mjs RUNS: what a Redis Cluster failover loses without
// --redis-replicas when the writer dies with the primary of its model's
// slot (run by bench/cluster.sh, part loss). Each run: an emptied local
// cluster, a fresh writer over a 20,000-fact demo, 8 clients sending delta
// writes with request_ids (each retried until a 200); after the 100th
// acknowledgement kill -9 of the writer and of the primary, the replica
// promoted, the old primary back as its replica, the writer restarted;
// 60 more acknowledgements, then the clients stop. An acknowledged
// request whose request_id is not in the change feed is lost. Prints a
// line per run and the summary line "cluster loss runs=N without-wait: ...".
// A loss is named when the restarted writer's log says "Redis lost" and its
// /ready has redis_lost.
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import {
    ROOT, Server, Cluster, deltaStart, deltaWriters, feed, modelSeq, metricValue, waitUntil, MODEL,
} from '../tests/blackbox/lib.mjs';

const runs = Number(process.argv[2] || 10);

// redis-cluster.sh kill-primary (--lag-ms): onKilled() runs when it prints
// "killed"; resolves with its output once the replica took over.
function killPrimary(lagMs, onKilled) {
    return new Promise((resolve, reject) => {
        const p = spawn(path.join(ROOT, 'scripts', 'redis-cluster.sh'), ['kill-primary', cluster.dir,
            ...(lagMs ? ['--lag-ms', String(lagMs)] : []), '--key', `{${MODEL}}:request_duck`]);
        let out = '', called = null;
        p.stdout.on('data', (d) => {
            out += d;
            if (!called && /killed \d+/.test(out)) called = onKilled();
        });
        p.on('exit', async (code) => {
            await called;
            code === 0 ? resolve(out) : reject(new Error(`kill-primary: exit ${code}: ${out}`));
        });
    });
}
// LAG_MS > 0: the primary's replicas stopped that long before the kill
// (redis-cluster.sh kill-primary --lag-ms), so that the promoted one lacks
// the last writes: the loss the check must see, and the server must name
const lag = Number(process.env.CLUSTER_LOSS_LAG_MS || 0);
const cluster = await new Cluster('loss').start();
const per = [];
let acked = 0, lost = 0, doubled = 0, named = 0;
try {
    for (let run = 1; run <= runs; run++) {
        for (const p of cluster.primaries()) execFileSync('redis-cli', ['-p', String(p), 'FLUSHALL']);
        const server = new Server({ name: `loss-${run}`, redis: cluster });
        await server.start();
        const st = await deltaStart(server);
        let phase = null;
        const w = deltaWriters(server, st, {
            clients: 8, per: Infinity, deadlineMs: 180000, tag: `loss${run}`,
            onAck: (n) => {
                if (n >= 100 && !phase) {
                    phase = (async () => {
                        // the writer killed as soon as the script says the primary is
                        const out = await killPrimary(lag, () => server.kill9());
                        cluster.script('restart-node', /killed (\d+)/.exec(out)[1]);
                        await server.start();
                    })();
                }
            },
        });
        await waitUntil(() => phase !== null, 120000, () => 'the 100th acknowledgement');
        await phase;
        const after = w.acked.size;
        await waitUntil(() => w.acked.size >= after + 60, 120000, () => '60 acknowledgements after the restart');
        w.stop();
        await w.done;
        const evs = await feed(server, st.seq0, await modelSeq(server));
        const applied = new Map();
        for (const e of evs) applied.set(e.request_id, (applied.get(e.request_id) || 0) + 1);
        const missing = [...w.acked.keys()].filter((id) => !applied.has(id)).length;
        const twice = [...applied.values()].filter((n) => n > 1).length;
        const m = await server.get('/metrics');
        const lostEvents = metricValue(m.text, 'duckspread_redis_lost_events_total') || 0;
        const lostEntries = metricValue(m.text, 'duckspread_redis_lost_entries_total') || 0;
        const log = fs.readFileSync(server.log, 'utf8');
        const ready = await server.get('/ready');
        const saidLost = /Redis lost/.test(log.split('==== start #2')[1] || '') && 'redis_lost' in ready.body;
        console.log(`run ${run}: acked=${w.acked.size} lost=${missing} applied_twice=${twice} ` +
            `lost_events_republished=${lostEvents} lost_entries_found=${lostEntries} loss_named=${saidLost}`);
        per.push(missing);
        acked += w.acked.size;
        lost += missing;
        doubled += twice;
        named += saidLost ? 1 : 0;
        await server.dispose();
    }
} finally {
    await cluster.dispose();
}
console.log(`cluster loss runs=${runs} without-wait lag_ms=${lag}: acked=${acked} lost=${lost} ` +
    `(per run: ${per.join(',')}) applied_twice=${doubled} runs_with_the_loss_named=${named} (log and /ready)`);
