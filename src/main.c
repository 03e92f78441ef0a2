/* main.c: the duckspread command line. Each subcommand parses its own
 * options and has a --help that exits 0. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "decimal.h"
#include "demo.h"
#include "backup.h"
#include "server.h"
#include "store.h"

#define DS_VERSION "0.1.0"
#define DB_FILE    "duckspread.db"

static const char usage_main[] =
    "usage: duckspread <command> [options]\n"
    "\n"
    "duckspread is a real-time, multi-user planning spreadsheet server: hierarchical\n"
    "numbers that roll up into totals and spread down from them, exactly.\n"
    "\n"
    "commands:\n"
    "  serve     run the server: HTTP API, Redis queue, single writer, live feed\n"
    "  keys      create, list and revoke API keys (roles viewer, editor, admin)\n"
    "  replica   run a read replica of a writer, from a backup (its own port)\n"
    "  backup    take an online backup of a running server's database\n"
    "  restore   put a backup back as a data directory's database\n"
    "  demo      load the demo model 'sales' into a data directory and print totals\n"
    "  version   print the version\n"
    "  help      print this help\n"
    "\n"
    "Run 'duckspread <command> --help' for a command's options.\n";

static const char usage_demo[] =
    "usage: duckspread demo --data DIR [--scale N] [--seed S]\n"
    "\n"
    "Creates DIR if needed, opens DIR/" DB_FILE ", loads the demo model 'sales'\n"
    "(product x customer x time, quantity and net_amount) unless it is there, and\n"
    "prints a few totals.\n"
    "\n"
    "  --data DIR   data directory (required)\n"
    "  --scale N    about how many facts to generate (default 1000000, which\n"
    "               loads in about a second; 10000000 for the large benchmarks)\n"
    "  --seed S     generator seed (default 42)\n"
    "  --help       this help\n";

static const char usage_serve[] =
    "usage: duckspread serve --data DIR [--listen HOST:PORT] [--redis URL] [--demo]\n"
    "                        [options]\n"
    "\n"
    "Runs the server in one process: the HTTP API (and /docs), the writer that\n"
    "applies queued commands in memory (each model's engine) and answers, the\n"
    "persister that writes them to DIR/duckspread.db behind it, and the live\n"
    "change feed. Every write is first made durable in Redis (the request\n"
    "stream); after a crash the entries not yet in the database are applied\n"
    "again. The port opens once recovery (and the demo load) is done. SIGTERM\n"
    "drains: no new connections, what was applied is persisted and published,\n"
    "exit 0. One server per data directory (it holds DIR/duckspread.lock).\n"
    "\n"
    "  --data DIR          data directory (required; created if missing)\n"
    "  --listen HOST:PORT  address to serve on (default 127.0.0.1:8080); anything\n"
    "                      but loopback needs an API key (duckspread keys create)\n"
    "  --redis URL         redis://[user:password@]host[:port], rediss://... (TLS)\n"
    "                      or unix:///path; also REDIS_URL (keeps a password out of\n"
    "                      the process list). redis://h1:p1,h2:p2 names a primary\n"
    "                      and its replicas: the one whose ROLE is master is used,\n"
    "                      and the new one after a failover. Without either, a\n"
    "                      private redis-server is started on a unix socket under\n"
    "                      DIR/redis, restarted (with a backoff, logged) if it\n"
    "                      dies, and stopped with the server. At start an\n"
    "                      external Redis is checked: credentials, certificate,\n"
    "                      and the ACL for every command on every model's keys.\n"
    "  --redis-ca FILE     rediss://: the CA certificate(s) to trust for Redis (PEM\n"
    "                      file or hashed directory; default the system's); also\n"
    "                      DS_REDIS_CA\n"
    "  --redis-cert FILE   rediss://: client certificate (PEM) for a Redis with\n"
    "  --redis-key FILE    tls-auth-clients, and its unencrypted key; also\n"
    "                      DS_REDIS_CERT, DS_REDIS_KEY\n"
    "  --redis-server-name NAME\n"
    "                      the name Redis's certificate must carry, also sent as SNI\n"
    "                      (default: the URL's host); also DS_REDIS_SERVER_NAME\n"
    "  --redis-cluster     Redis Cluster: the URL names one or more of its nodes\n"
    "                      (redis://h1:p1,h2:p2 or rediss://...); each model's keys\n"
    "                      go to the node serving their slot, read from CLUSTER\n"
    "                      SLOTS, and MOVED and ASK are followed through a\n"
    "                      resharding or a failover; also DS_REDIS_CLUSTER=1\n"
    "  --redis-replicas N  apply and answer a write only once N of Redis's replicas\n"
    "                      have it (WAIT), so that a Redis failover keeps every\n"
    "                      answered write; while fewer confirm, writes wait and\n"
    "                      /ready is 503 (default 0: the primary's append-only file)\n"
    "  --redis-fsync MODE  appendfsync of the private redis-server: always (default)\n"
    "                      or everysec\n"
    "  --demo              load the demo model 'sales' if it is absent\n"
    "  --scale N           facts of the demo (default 1000000)\n"
    "  --api-key KEY       an extra admin key named 'api', besides DIR/keys; also\n"
    "                      DS_API_KEY. Keys go in Authorization: Bearer KEY (or\n"
    "                      X-API-Key). With no key at all the server serves\n"
    "                      loopback only, and every request is an admin.\n"
    "  --key-rate N        requests per second one API key may send (default 5000;\n"
    "                      0 = no limit; beyond, 429 rate_limited with Retry-After)\n"
    "  --key-burst N       requests a key may send at once above its rate (default:\n"
    "                      one second's worth)\n"
    "  --key-open N        requests and event streams one API key may hold open at\n"
    "                      once (default 1000; 0 = no limit; beyond, 429); a client\n"
    "                      that hangs up gives its place back within a second\n"
    "  --wait-ms N         how long a write waits for its outcome before answering\n"
    "                      202 queued (default 10000)\n"
    "  --batch N           commands per writer transaction (default 512)\n"
    "  --threads N         HTTP threads (default 8; reads of the database block one)\n"
    "  --body-max BYTES    largest request body (default 1048576; 413 too_large)\n"
    "  --json-depth N      deepest nesting of arrays and objects in a body (default\n"
    "                      32; 400 malformed)\n"
    "  --string-max BYTES  longest string or key in a body (default 65536; 413\n"
    "                      too_large)\n"
    "  --writes-max N      writes in one cells:batch request (default 1000; 422\n"
    "                      too_many_cells with count and limit)\n"
    "  --cells-max N       cells one spread may create (equal, repeat) and cells one\n"
    "                      grid may read (default 1000000; 422 too_many_cells)\n"
    "  --subscribers-max N SSE and WebSocket subscribers of one model (default\n"
    "                      10000; beyond, 429 rate_limited with Retry-After)\n"
    "  --request-timeout S a request's headers and body must arrive within S\n"
    "                      seconds of the connection opening or of the previous\n"
    "                      answer, else the connection is closed (default 30)\n"
    "  --idle-timeout S    a connection silent for S seconds is closed (default\n"
    "                      120; event streams send a ping every 15 s)\n"
    "  --web-dir DIR       where web/ and node_modules/ are, for /openapi.json and\n"
    "                      /docs (default: the source tree of this binary)\n"
    "  --ack WHEN          when a write is answered: logged (once the engine applied\n"
    "                      it and Redis has it on disk; the default with the private\n"
    "                      redis-server, or an external one found to run appendonly\n"
    "                      yes and appendfsync always) or persisted (after the\n"
    "                      DuckDB commit; the default otherwise, said in the log)\n"
    "  --persist-lag N     commands the database may trail the engine by before the\n"
    "                      writer stops reading new ones (default 50000)\n"
    "  --persist-lag-ms MS and for how long (default 10000: a checkpoint under\n"
    "                      load takes seconds); /ready and /metrics show the lag\n"
    "  --persist-interval-ms MS  with --ack logged, a DuckDB commit at most this\n"
    "                      often (default 50): each costs an fsync that Redis's\n"
    "                      log waits behind on the same disk; a view waiting for\n"
    "                      the database hurries it (0: commit as soon as possible)\n"
    "  --memory-mb N       memory the models may take (facts 60 to 100 bytes each,\n"
    "                      plus the cube of totals and the request ids); a model\n"
    "                      beyond it is refused at start with its size (default 0:\n"
    "                      no limit)\n"
    "  --request-id-days D how long a request_id is remembered, so that a retry\n"
    "                      gets the first answer (default 7; counted in the\n"
    "                      request stream's time)\n"
    "  --request-id-max N  and at most how many per model, the newest kept (default\n"
    "                      1000000, about 120 MB; 0: no limit); past either a\n"
    "                      retry is applied again. /metrics shows how many were\n"
    "                      forgotten early (duckspread_request_ids_evicted_total)\n"
    "  --db-memory-mb N    memory DuckDB may use for its cache and SQL reads before\n"
    "                      it spills to disk (default 2048)\n"
    "  --response-keep N   commands kept on each model's response stream in Redis\n"
    "                      (default 100000, about 800 bytes each for a leaf write):\n"
    "                      how far behind a replica may fall and catch up\n"
    "  --changes-max N     entries one write's \"changes\" lists at most (default\n"
    "                      1000; beyond, truncated: true)\n"
    "  --min-seq-wait-ms N how long a read waits for its min_seq, or for the\n"
    "                      database to catch up (SQL views), before 503 with\n"
    "                      Retry-After (default 10000)\n"
    "  --backup-dir DIR    where backups go (POST /v1/backups, duckspread backup,\n"
    "                      --backup-every): NAME.duckdb files (default DATA/backups,\n"
    "                      created at the first backup)\n"
    "  --backup-every T    take a backup named auto-YYYYMMDDTHHMMSSZ every T (90s,\n"
    "                      30m, 1h; default 0 = never); writes go on meanwhile\n"
    "  --backup-keep N     auto-* backups kept: after each, the oldest beyond N are\n"
    "                      deleted, never a backup of another name (default 24)\n"
    "  --standby           a standby writer: starts as a replica of the writer\n"
    "                      (from its own database, or --from BACKUP into an empty\n"
    "                      DIR; --redis is the writer's Redis), answers reads and\n"
    "                      refuses writes naming the writer, and when the writer's\n"
    "                      lease lapses (--lease-ms) takes it, claims the commands\n"
    "                      the writer read and did not finish, and carries on as\n"
    "                      the writer. A writer restarted while another holds its\n"
    "                      lease starts as that one's standby by itself.\n"
    "  --from BACKUP       with --standby: the backup an empty DIR starts from\n"
    "  --lease-ms MS       the writer's lease in Redis lasts MS without renewal\n"
    "                      (default 5000; renewed every third of it): a standby\n"
    "                      takes over within about MS of the writer's death\n"
    "  --bench-baseline    for benchmarks only: the original design's write path,\n"
    "                      one transaction per command and every view recomputed\n"
    "                      into a table after it (make bench-e2e compares)\n"
    "  --help              this help\n"
    "\n"
    "Environment: DS_LOG=debug for debug logs; DS_CRASH_AT=after_apply|\n"
    "before_commit|after_commit|after_publish|before_xack|mid_checkpoint|\n"
    "mid_persist kills the process there (tests). DS_BACKUP_SLOW_MS=N (tests):\n"
    "a backup waits N ms between its checkpoint and its copy.\n";

/* The source tree the binary was built in (its build/ directory's parent). */
static void default_web_dir(char *out, size_t n)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    snprintf(out, n, ".");
    if (len <= 0)
        return;
    exe[len] = '\0';
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            return;
        *slash = '\0';
    }
    snprintf(out, n, "%s", exe[0] ? exe : "/");
}

static bool parse_count(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* getopt values of the long-only serve options (above any character) */
enum {
    OPT_JSON_DEPTH = 256,
    OPT_STRING_MAX,
    OPT_WRITES_MAX,
    OPT_CELLS_MAX,
    OPT_SUBSCRIBERS_MAX,
    OPT_REQUEST_TIMEOUT,
    OPT_IDLE_TIMEOUT,
};

/* The request limits of serve: false when c is none of them, else *ok
 * says whether arg is in range. */
static bool serve_limit(server_opts *o, int c, const char *arg, bool *ok)
{
    long long v = 0;
    switch (c) {
    case OPT_JSON_DEPTH:
        *ok = parse_count(arg, 1, 1000, &v);
        o->json_depth = (int)v;
        return true;
    case OPT_STRING_MAX:
        *ok = parse_count(arg, 16, 1LL << 30, &v);
        o->json_string_max = (size_t)v;
        return true;
    case OPT_WRITES_MAX:
        *ok = parse_count(arg, 1, 1000000, &v);
        o->batch_writes_max = (int)v;
        return true;
    case OPT_CELLS_MAX:
        *ok = parse_count(arg, 1, 1000000000, &v);
        o->cells_max = v;
        return true;
    case OPT_SUBSCRIBERS_MAX:
        *ok = parse_count(arg, 1, 1000000, &v);
        o->subscribers_max = (int)v;
        return true;
    case OPT_REQUEST_TIMEOUT:
        *ok = parse_count(arg, 1, 3600, &v);
        o->request_timeout_s = (int)v;
        return true;
    case OPT_IDLE_TIMEOUT:
        *ok = parse_count(arg, 1, 86400, &v);
        o->idle_timeout_s = (int)v;
        return true;
    default:
        return false;
    }
}

/* getopt values of the Redis TLS options of serve */
enum {
    OPT_REDIS_CA = 512,
    OPT_REDIS_CERT,
    OPT_REDIS_KEY,
    OPT_REDIS_SERVER_NAME,
    OPT_ACK,
    OPT_PERSIST_LAG,
    OPT_PERSIST_LAG_MS,
    OPT_PERSIST_INTERVAL,
    OPT_MEMORY_MB,
    OPT_CHANGES_MAX,
    OPT_MIN_SEQ_WAIT,
    OPT_REQUEST_ID_DAYS,
    OPT_REQUEST_ID_MAX,
    OPT_DB_MEMORY,
    OPT_RESPONSE_KEEP,
    OPT_FROM,
    OPT_WRITER_URL,
    OPT_STANDBY,
    OPT_LEASE_MS,
    OPT_REDIS_REPLICAS,
    OPT_REDIS_CLUSTER
};

/* getopt values of the backup options of serve */
enum { OPT_BACKUP_DIR = 768, OPT_BACKUP_EVERY, OPT_BACKUP_KEEP };

/* A duration: N followed by s, m or h (90s, 30m, 1h); "0" is none. */
static bool parse_duration_ms(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    long long unit = *end == 's' ? 1000 : *end == 'm' ? 60000 : *end == 'h' ? 3600000 : 0;
    if (*s < '0' || *s > '9' || v < 0 || v > 10000000)
        return false;
    if (v == 0 && (!*end || unit)) {
        *out = 0;
        return !*end || !end[1];
    }
    if (!unit || end[1])
        return false;
    *out = v * unit;
    return true;
}

/* The backup options of serve: false when c is none of them. */
static bool serve_backup(server_opts *o, int c, const char *arg, bool *ok)
{
    long long v = 0;
    switch (c) {
    case OPT_BACKUP_DIR:
        o->backup_dir = arg;
        *ok = *arg != '\0';
        return true;
    case OPT_BACKUP_EVERY:
        *ok = parse_duration_ms(arg, &o->backup_every_ms);
        return true;
    case OPT_BACKUP_KEEP:
        *ok = parse_count(arg, 1, 1000000, &v);
        o->backup_keep = (int)v;
        return true;
    default:
        return false;
    }
}

/* The variable's value, or NULL when unset or empty. */
static const char *env_value(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static const char usage_replica[] =
    "usage: duckspread replica --data DIR --from BACKUP --redis URL\n"
    "                          [--listen HOST:PORT] [--writer-url URL] [options]\n"
    "\n"
    "Runs a read replica: it starts from a backup of the writer's data (duckspread\n"
    "backup), restored into DIR when DIR holds no database yet, then follows the\n"
    "writer: every command the writer applied is read from the writer's Redis\n"
    "(the response stream {model}:response_duck) and applied again, in seq order,\n"
    "through the same engine, and written into DIR/duckspread.db by its own\n"
    "persister. It serves every read the writer serves (cells, grids, members,\n"
    "views, the change feed, SSE, WebSocket and grid subscriptions) at its own\n"
    "seq; a read with min_seq waits until the replica has reached it. Writes\n"
    "are answered 503 unavailable, naming the writer. Restarted, it resumes\n"
    "from its own database. A replica further behind than the writer's\n"
    "--response-keep commands cannot catch up: /ready and reads of that model\n"
    "answer 503 saying so, and it needs a newer backup.\n"
    "\n"
    "  --data DIR          the replica's own data directory (required)\n"
    "  --from BACKUP       the backup file to start from (required when DIR holds\n"
    "                      no database; ignored otherwise)\n"
    "  --redis URL         the writer's Redis (required; also REDIS_URL): for a\n"
    "                      writer with its private redis-server,\n"
    "                      unix://WRITER_DIR/redis/redis.sock. Only read commands\n"
    "                      are sent (XREAD, XRANGE, XREVRANGE, GET).\n"
    "  --writer-url URL    where clients send writes, named in the 503 a write\n"
    "                      gets here (default: the writer's name in its lease)\n"
    "  --listen, --api-key, --threads, --key-*, --request-timeout, --idle-timeout,\n"
    "  --min-seq-wait-ms, --memory-mb, --db-memory-mb, --redis-ca, --redis-cert,\n"
    "  --redis-key, --redis-server-name, --redis-cluster, --web-dir: as for serve (duckspread\n"
    "                      serve --help); keys are the replica's own (DIR/keys)\n"
    "  --help              this help\n";

/* A replica's data directory: its own database when it has one (a restart
 * resumes from it), else the backup restored into it. */
static int replica_data(const char *dir, const char *from, const char *name)
{
    char db[4200];
    struct stat st;
    snprintf(db, sizeof db, "%s/" DB_FILE, dir);
    if (stat(db, &st) == 0) {
        if (from)
            fprintf(stderr,
                    "duckspread %s: %s holds a database: resuming from it (--from is used "
                    "only for a directory without one)\n",
                    name, dir);
        return 0;
    }
    if (!from) {
        fprintf(stderr,
                "duckspread %s: %s holds no database: give --from BACKUP (a file made by "
                "duckspread backup on the writer)\n",
                name, dir);
        return -1;
    }
    ds_error err;
    if (backup_restore(from, dir, false, &err) != 0) {
        fprintf(stderr, "duckspread %s: %s\n", name, err.message);
        return -1;
    }
    return 0;
}

static int cmd_serve(int argc, char **argv, bool replica)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"redis", required_argument, NULL, 'r'},
        {"redis-fsync", required_argument, NULL, 'f'},
        {"redis-ca", required_argument, NULL, OPT_REDIS_CA},
        {"redis-cert", required_argument, NULL, OPT_REDIS_CERT},
        {"redis-key", required_argument, NULL, OPT_REDIS_KEY},
        {"redis-server-name", required_argument, NULL, OPT_REDIS_SERVER_NAME},
        {"demo", no_argument, NULL, 'D'},
        {"scale", required_argument, NULL, 's'},
        {"api-key", required_argument, NULL, 'k'},
        {"key-rate", required_argument, NULL, 'R'},
        {"key-open", required_argument, NULL, 'O'},
        {"key-burst", required_argument, NULL, 'U'},
        {"wait-ms", required_argument, NULL, 'w'},
        {"batch", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {"body-max", required_argument, NULL, 'B'},
        {"json-depth", required_argument, NULL, OPT_JSON_DEPTH},
        {"string-max", required_argument, NULL, OPT_STRING_MAX},
        {"writes-max", required_argument, NULL, OPT_WRITES_MAX},
        {"cells-max", required_argument, NULL, OPT_CELLS_MAX},
        {"subscribers-max", required_argument, NULL, OPT_SUBSCRIBERS_MAX},
        {"request-timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"web-dir", required_argument, NULL, 'W'},
        {"bench-baseline", no_argument, NULL, 'X'},
        {"ack", required_argument, NULL, OPT_ACK},
        {"persist-lag", required_argument, NULL, OPT_PERSIST_LAG},
        {"persist-lag-ms", required_argument, NULL, OPT_PERSIST_LAG_MS},
        {"persist-interval-ms", required_argument, NULL, OPT_PERSIST_INTERVAL},
        {"memory-mb", required_argument, NULL, OPT_MEMORY_MB},
        {"changes-max", required_argument, NULL, OPT_CHANGES_MAX},
        {"min-seq-wait-ms", required_argument, NULL, OPT_MIN_SEQ_WAIT},
        {"request-id-days", required_argument, NULL, OPT_REQUEST_ID_DAYS},
        {"request-id-max", required_argument, NULL, OPT_REQUEST_ID_MAX},
        {"db-memory-mb", required_argument, NULL, OPT_DB_MEMORY},
        {"backup-dir", required_argument, NULL, OPT_BACKUP_DIR},
        {"backup-every", required_argument, NULL, OPT_BACKUP_EVERY},
        {"backup-keep", required_argument, NULL, OPT_BACKUP_KEEP},
        {"response-keep", required_argument, NULL, OPT_RESPONSE_KEEP},
        {"from", required_argument, NULL, OPT_FROM},
        {"writer-url", required_argument, NULL, OPT_WRITER_URL},
        {"standby", no_argument, NULL, OPT_STANDBY},
        {"lease-ms", required_argument, NULL, OPT_LEASE_MS},
        {"redis-replicas", required_argument, NULL, OPT_REDIS_REPLICAS},
        {"redis-cluster", no_argument, NULL, OPT_REDIS_CLUSTER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    server_opts o;
    server_opts_default(&o);
    o.redis_url = getenv("REDIS_URL") && *getenv("REDIS_URL") ? getenv("REDIS_URL") : NULL;
    o.redis_ca = env_value("DS_REDIS_CA");
    o.redis_cert = env_value("DS_REDIS_CERT");
    o.redis_key = env_value("DS_REDIS_KEY");
    o.redis_server_name = env_value("DS_REDIS_SERVER_NAME");
    o.redis_cluster = env_value("DS_REDIS_CLUSTER") && strcmp(env_value("DS_REDIS_CLUSTER"), "0");
    o.api_key = getenv("DS_API_KEY") && *getenv("DS_API_KEY") ? getenv("DS_API_KEY") : NULL;
    char web[4096];
    default_web_dir(web, sizeof web);
    o.web_dir = web;
    o.replica = replica;
    const char *from = NULL, *name = replica ? "replica" : "serve";
    const char *usage = replica ? usage_replica : usage_serve;
    int c;
    long long v;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'd':
            o.data_dir = optarg;
            break;
        case 'l':
            o.listen = optarg;
            break;
        case 'r':
            o.redis_url = optarg;
            break;
        case 'f':
            ok = !strcmp(optarg, "always") || !strcmp(optarg, "everysec");
            o.redis_fsync = optarg;
            break;
        case OPT_REDIS_CA:
            o.redis_ca = optarg;
            break;
        case OPT_REDIS_CERT:
            o.redis_cert = optarg;
            break;
        case OPT_REDIS_KEY:
            o.redis_key = optarg;
            break;
        case OPT_REDIS_SERVER_NAME:
            o.redis_server_name = optarg;
            break;
        case 'D':
            o.demo = true;
            break;
        case 's':
            ok = parse_count(optarg, 1, 100000000, &v);
            o.demo_facts = v;
            break;
        case 'k':
            o.api_key = optarg;
            break;
        case 'R':
            ok = parse_count(optarg, 0, 10000000, &v);
            o.key_rate = (double)v;
            break;
        case 'O':
            ok = parse_count(optarg, 0, 1000000, &v);
            o.key_open = (int)v;
            break;
        case 'U':
            ok = parse_count(optarg, 0, 10000000, &v);
            o.key_burst = (int)v;
            break;
        case 'w':
            ok = parse_count(optarg, 0, 600000, &v);
            o.wait_ms = (int)v;
            break;
        case 'b':
            ok = parse_count(optarg, 1, 1000, &v);
            o.batch_max = (int)v;
            break;
        case 't':
            ok = parse_count(optarg, 1, 64, &v);
            o.http_threads = (int)v;
            break;
        case 'B':
            ok = parse_count(optarg, 1024, 1LL << 30, &v);
            o.body_max = (size_t)v;
            break;
        case 'W':
            o.web_dir = optarg;
            break;
        case 'X':
            o.bench_baseline = true;
            break;
        case OPT_ACK:
            ok = !strcmp(optarg, "logged") || !strcmp(optarg, "persisted");
            o.ack = optarg;
            break;
        case OPT_PERSIST_LAG:
            ok = parse_count(optarg, 1, 100000000, &v);
            o.persist_lag_max = v;
            break;
        case OPT_PERSIST_LAG_MS:
            ok = parse_count(optarg, 1, 3600000, &v);
            o.persist_lag_ms = v;
            break;
        case OPT_PERSIST_INTERVAL:
            ok = parse_count(optarg, 0, 10000, &v);
            o.persist_interval_ms = v;
            break;
        case OPT_MEMORY_MB:
            ok = parse_count(optarg, 0, 1LL << 30, &v);
            o.memory_mb = (size_t)v;
            break;
        case OPT_CHANGES_MAX:
            ok = parse_count(optarg, 1, 1000000, &v);
            o.change_cap = (size_t)v;
            break;
        case OPT_MIN_SEQ_WAIT:
            ok = parse_count(optarg, 0, 600000, &v);
            o.min_seq_wait_ms = v;
            break;
        case OPT_REQUEST_ID_DAYS:
            ok = parse_count(optarg, 1, 3650, &v);
            o.request_id_days = v;
            break;
        case OPT_REQUEST_ID_MAX:
            ok = parse_count(optarg, 0, 1000000000, &v);
            o.request_id_max = (size_t)v;
            break;
        case OPT_DB_MEMORY:
            ok = parse_count(optarg, 64, 1LL << 24, &v);
            o.db_memory_mb = v;
            break;
        case OPT_RESPONSE_KEEP:
            ok = !replica && parse_count(optarg, 1000, 100000000, &v);
            o.response_keep = (long)v;
            break;
        case OPT_FROM:
            from = optarg;
            break;
        case OPT_STANDBY:
            ok = !replica;
            o.standby = true;
            break;
        case OPT_LEASE_MS:
            ok = parse_count(optarg, 300, 600000, &v);
            o.lease_ms = (int)v;
            break;
        case OPT_REDIS_REPLICAS:
            ok = parse_count(optarg, 0, 16, &v);
            o.redis_replicas = (int)v;
            break;
        case OPT_REDIS_CLUSTER:
            o.redis_cluster = true;
            break;
        case OPT_WRITER_URL:
            ok = replica && *optarg;
            o.writer_url = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            if (serve_limit(&o, c, optarg, &ok) || serve_backup(&o, c, optarg, &ok))
                break;
            fputs(usage, stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "duckspread %s: bad value '%s' (see --help)\n", name, optarg);
            return 2;
        }
    }
    if (!o.data_dir) {
        fprintf(stderr, "duckspread %s: --data DIR is required\n", name);
        return 2;
    }
    if (replica && (o.demo || o.bench_baseline || o.ack)) {
        fputs("duckspread replica: --demo, --bench-baseline and --ack are the writer's "
              "(duckspread serve)\n",
              stderr);
        return 2;
    }
    if (from && !replica && !o.standby) {
        fputs("duckspread serve: --from is for --standby (duckspread restore makes a data "
              "directory from a backup)\n",
              stderr);
        return 2;
    }
    if (o.standby && (o.demo || o.bench_baseline)) {
        fputs("duckspread serve: --standby starts from the writer's data (--from BACKUP), "
              "not --demo or --bench-baseline\n",
              stderr);
        return 2;
    }
    if ((replica || o.standby) && replica_data(o.data_dir, from, name) != 0)
        return 1;
    if (o.bench_baseline) {
        o.batch_max = 1; /* the original design had no batches */
        o.ack = "persisted";
    }
    return server_run(&o);
}

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0750) == 0 || errno == EEXIST)
        return 0;
    fprintf(stderr, "duckspread: cannot create data directory %s: %s\n", dir, strerror(errno));
    return -1;
}

static int print_total(ds_reader *r, const ds_model *m, const char *label, const char *dim,
                       const char *member, int measure)
{
    ds_cell cell;
    ds_error err;
    for (int k = 0; k < m->ndims; k++)
        cell.m[k] = m->dims[k].root;
    if (dim) {
        int k = model_find_dim(m, dim, strlen(dim));
        if (k < 0 || model_resolve_member(&m->dims[k], member, strlen(member), &cell.m[k], &err))
            return -1;
    }
    ds_i128 v;
    int64_t seq;
    if (store_read_cell(r, m, &cell, measure, &v, &seq, &err)) {
        fprintf(stderr, "duckspread: %s\n", err.message);
        return -1;
    }
    char buf[DEC_BUFSZ];
    dec_format(v, m->measures[measure].scale, buf);
    printf("  %-28s %-10s %20s   (seq %" PRId64 ")\n", label, m->measures[measure].name, buf, seq);
    return 0;
}

static int cmd_demo(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, NULL, 'd'},
                                         {"scale", required_argument, NULL, 'f'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *data = NULL;
    demo_opts d;
    demo_opts_default(&d);
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'f':
            d.facts = strtoll(optarg, &end, 10);
            if (!*optarg || *end || d.facts < 1 || d.facts > 100000000) {
                fprintf(stderr, "duckspread demo: --scale takes 1 to 100000000 (facts)\n");
                return 2;
            }
            break;
        case 's':
            d.seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end) {
                fprintf(stderr, "duckspread demo: --seed takes a whole number\n");
                return 2;
            }
            break;
        case 'h':
            fputs(usage_demo, stdout);
            return 0;
        default:
            fputs(usage_demo, stderr);
            return 2;
        }
    }
    if (!data) {
        fputs("duckspread demo: --data DIR is required\n", stderr);
        return 2;
    }
    if (make_dir(data))
        return 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data, DB_FILE);
    ds_store *s;
    ds_error err;
    if (store_open(path, NULL, &s, &err)) {
        fprintf(stderr, "duckspread: %s\n", err.message);
        return 1;
    }
    bool loaded;
    int64_t facts;
    double t0 = ds_now_ms();
    if (demo_load(s, &d, &loaded, &facts, &err)) {
        fprintf(stderr, "duckspread: loading the demo failed: %s\n", err.message);
        store_close(s);
        return 1;
    }
    if (loaded)
        printf("loaded the demo model '%s': %" PRId64 " facts in %.0f ms into %s\n", DEMO_MODEL,
               facts, ds_now_ms() - t0, path);
    else
        printf("the demo model '%s' is already in %s\n", DEMO_MODEL, path);
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    ds_reader *r = store_reader_new(s);
    if (!r || !m) {
        fprintf(stderr, "duckspread: cannot read the demo model in %s\n", path);
        store_reader_free(r);
        store_model_release(s, m);
        store_close(s);
        return 1;
    }
    int rc = 0;
    rc |= print_total(r, m, "all products, all time", NULL, NULL, 0);
    rc |= print_total(r, m, "all products, all time", NULL, NULL, 1);
    rc |= print_total(r, m, "Brand X", "product", "Brand X", 0);
    rc |= print_total(r, m, "Brand X", "product", "Brand X", 1);
    rc |= print_total(r, m, "2025", "time", "2025", 1);
    store_reader_free(r);
    store_model_release(s, m);
    store_close(s);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    ds_tune_malloc();
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("duckspread %s\n", DS_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "demo"))
        return cmd_demo(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1, false);
    if (!strcmp(cmd, "replica"))
        return cmd_serve(argc - 1, argv + 1, true);
    if (!strcmp(cmd, "keys"))
        return cli_keys(argc - 1, argv + 1);
    if (!strcmp(cmd, "backup"))
        return cli_backup(argc - 1, argv + 1);
    if (!strcmp(cmd, "restore"))
        return cli_restore(argc - 1, argv + 1);
    fprintf(stderr, "duckspread: unknown command '%s'\n\n%s", cmd, usage_main);
    return 2;
}
