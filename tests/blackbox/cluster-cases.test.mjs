// The six cases of cases.test.mjs (the write path, the change feed, both
// Redis streams, the DuckDB file), through a local Redis Cluster of three
// primaries and three replicas (scripts/redis-cluster.sh, serve
// --redis-cluster) instead of one redis-server.
import { after } from 'node:test';
import { Cluster, useCluster, teardown } from './lib.mjs';

const cluster = await new Cluster('cases').start();
after(async () => teardown(cluster));
useCluster(cluster);
await import('./cases.test.mjs');
