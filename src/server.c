/* server.c: see server.h. Start order: the private redis-server (unless
 * one is given; redis_child.c), the store (and the demo), the writer (which
 * recovers), and only then the HTTP port. The main thread then supervises
 * the private redis-server until SIGTERM or SIGINT, which drain in
 * reverse. */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "demo.h"
#include "grids.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "models.h"
#include "writer.h"
#include "ws_grids.h"

void server_opts_default(server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:8080";
    o->redis_fsync = "always";
    o->demo_facts = DEMO_DEFAULT_FACTS;
    o->wait_ms = 10000;
    o->batch_max = 512;
    o->http_threads = 8; /* a read blocks one while DuckDB answers it */
    o->body_max = 1 << 20;
    o->json_depth = 32;
    o->json_string_max = 64 * 1024;
    o->batch_writes_max = 1000;
    o->cells_max = 1000000;
    o->subscribers_max = 10000;
    o->request_timeout_s = 30;
    o->idle_timeout_s = 120;
    o->max_timeout_s = 60;
    o->lease_ms = 5000;
    o->key_rate = 5000;
    o->key_burst = 0;
    o->key_open = 1000;
    o->persist_lag_max = 50000;
    o->persist_lag_ms = 10000;
    o->persist_interval_ms = 50;
    o->change_cap = 1000;
    o->min_seq_wait_ms = 10000;
    o->request_id_days = 7;
    o->request_id_max = 1000000;
    o->db_memory_mb = 2048;
    o->response_keep = 100000;
    o->backup_keep = 24;
}

/* ---- the run --------------------------------------------------------------------------- */

static int open_data(ds_server *srv, ds_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/duckspread.db", srv->o.data_dir);
    ds_store_opts so;
    store_opts_default(&so);
    so.checkpoint_threshold = "1000GB"; /* never at a commit: the persister
                                           checkpoints between its groups */
    char mem[32];
    snprintf(mem, sizeof mem, "%" PRId64 "MB", srv->o.db_memory_mb);
    so.memory_limit = mem;
    int rc = store_open(path, &so, &srv->store, err);
    if (rc || !srv->o.demo)
        return rc;
    demo_opts d;
    demo_opts_default(&d);
    d.facts = srv->o.demo_facts;
    bool loaded;
    int64_t n;
    double t0 = ds_now_ms();
    rc = demo_load(srv->store, &d, &loaded, &n, err);
    if (rc == 0 && loaded)
        rc = store_checkpoint(srv->store, err);
    if (rc == 0 && loaded)
        log_info("demo: loaded model 'sales' with %lld facts in %.0f ms", (long long)n,
                 ds_now_ms() - t0);
    return rc;
}

/* ---- the models in memory ----------------------------------------------------------- */

static int load_fact(void *ctx, int64_t rowid, const int32_t *members, const int64_t *values,
                     const int64_t *stamps, uint64_t has, ds_error *err)
{
    (void)rowid;
    return engine_load_fact(ctx, members, values, stamps, has, err);
}

typedef struct loading {
    char **names;
    ds_engine **engines;
    size_t n;
} loading;

static void load_request(void *ctx, const char *model, const char *user, const char *rid,
                         const char *hash, int64_t seq, int code, int64_t ts_ms)
{
    loading *ld = ctx;
    for (size_t i = 0; i < ld->n; i++)
        if (strcmp(ld->names[i], model) == 0)
            engine_load_request(ld->engines[i], user, rid, hash, seq, code, ts_ms);
}

/* Facts load in row order: fact i is row i. */
int server_load_models(ds_server *srv, ds_error *err)
{
    loading ld = {0};
    ld.n = store_model_names(srv->store, &ld.names);
    ld.engines = xcalloc(ld.n + 1, sizeof *ld.engines);
    int rc = 0;
    double t0 = ds_now_ms();
    for (size_t i = 0; rc == 0 && i < ld.n; i++) {
        const ds_model *m = store_model_acquire(srv->store, ld.names[i], strlen(ld.names[i]));
        ld.engines[i] = engine_new(m, store_model_seq(srv->store, ld.names[i]), &srv->engine_opts);
        store_model_release(srv->store, m);
        rc = store_facts_each(srv->store, ld.names[i], load_fact, ld.engines[i], err);
    }
    if (rc == 0)
        rc = store_requests_load(srv->store, load_request, &ld, err);
    for (size_t i = 0; rc == 0 && i < ld.n; i++)
        rc = engine_load_done(ld.engines[i], err);
    for (size_t i = 0; i < ld.n; i++) {
        if (rc == 0) {
            engine_stats st;
            engine_get_stats(ld.engines[i], &st);
            log_info("engine: '%s' at seq %" PRId64 ": %" PRIu64 " facts, %zu MiB in memory%s",
                     ld.names[i], st.seq, st.live_facts, st.bytes >> 20,
                     st.cube_bytes ? "" : " (no cube of totals: over its budget)");
            models_add(srv->models, ld.names[i], ld.engines[i], st.seq);
        } else {
            engine_free(ld.engines[i]);
        }
        free(ld.names[i]);
    }
    if (rc == 0 && ld.n)
        log_info("engine: %zu model%s in memory in %.0f ms", ld.n, ld.n == 1 ? "" : "s",
                 ds_now_ms() - t0);
    free(ld.names);
    free(ld.engines);
    return rc;
}

/* --ack: logged (answer once the engine applied an entry Redis made
 * durable) needs a Redis that fsyncs its append-only file before it
 * answers; the private one does (unless --redis-fsync everysec). Else
 * persisted (answer after the DuckDB COMMIT), said in the log. */
static int choose_ack(ds_server *srv, ds_error *err)
{
    const char *ack = srv->o.ack;
    if (ack && strcmp(ack, "persisted") == 0) {
        srv->o.ack_persisted = true;
    } else if (ack && strcmp(ack, "logged") == 0) {
        srv->o.ack_persisted = false;
    } else if (ack) {
        return ds_fail(err, DS_INVALID_VALUE, "ack", "--ack is logged or persisted, not '%s'", ack);
    } else if (!srv->o.redis_url) {
        srv->o.ack_persisted = strcmp(srv->o.redis_fsync, "always") != 0;
        if (srv->o.ack_persisted)
            log_warn("ack: the private redis-server fsyncs every second (--redis-fsync %s): "
                     "answering writes after the DuckDB commit (--ack persisted)",
                     srv->o.redis_fsync);
    } else {
        ds_bus *b;
        char why[256];
        bool durable = false;
        int rc = bus_open(&srv->bus, &b, err);
        if (rc == 0) {
            durable = bus_durable(b, why, sizeof why);
            bus_close(b);
        }
        srv->o.ack_persisted = !durable;
        if (!durable)
            log_warn("ack: %s: answering writes after the DuckDB commit (--ack persisted); "
                     "say --ack logged to answer once Redis has them",
                     rc ? "Redis could not be asked" : why);
    }
    log_info("ack: writes are answered %s",
             srv->o.ack_persisted ? "after the DuckDB commit (persisted)"
                                  : "once applied and durable in Redis's log (logged)");
    return 0;
}

/* An external Redis is checked before anything uses it: reachable, its
 * certificate, the credentials, and (with_models) the ACL on the keys of
 * every model. A refusal fails the start at once; an unreachable Redis is
 * tried for up to 10 s. */
static int check_redis(ds_server *srv, bool with_models, ds_error *err)
{
    ds_bus *b;
    int rc = bus_open(&srv->bus, &b, err);
    if (rc)
        return rc;
    char **names = NULL;
    size_t n = with_models ? store_model_names(srv->store, &names) : 0;
    for (int i = 0; i < 100; i++) {
        rc = bus_check_access(b, (const char *const *)names, (int)n, err);
        if (rc != -DS_UNAVAILABLE)
            break;
        struct timespec t = {0, 100 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    if (rc == 0 && with_models) {
        char where[700];
        bus_describe(b, where, sizeof where);
        log_info("redis: %s; the ACL allows duckspread's commands on the keys of %zu model%s",
                 where, n, n == 1 ? "" : "s");
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    bus_close(b);
    return rc;
}

/* One server per data directory: a second one would share the database
 * file and the private Redis's append-only file. The lock goes with the
 * process, however it ends. */
static int lock_data_dir(ds_server *srv, ds_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/duckspread.lock", srv->o.data_dir);
    srv->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (srv->lock_fd < 0)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot open %s: %s", path, strerror(errno));
    /* a kill -9'd server's redis-server holds it until it has shut down */
    int rc = -1;
    for (int i = 0; i < 100 && (rc = flock(srv->lock_fd, LOCK_EX | LOCK_NB)) < 0; i++) {
        if (errno != EWOULDBLOCK)
            break;
        if (i == 0)
            log_info("start: %s is locked; waiting up to 10 s for the other duckspread (or "
                     "its redis-server) to exit",
                     path);
        struct timespec t = {0, 100 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    if (rc < 0) {
        int e = errno;
        close(srv->lock_fd);
        srv->lock_fd = -1;
        return ds_fail(err, DS_INTERNAL, NULL,
                       e == EWOULDBLOCK
                           ? "another duckspread is serving %s (it holds %s); stop it first"
                           : "cannot lock %s (%s)",
                       srv->o.data_dir, e == EWOULDBLOCK ? path : strerror(e));
    }
    return 0;
}

/* ---- backups and DIR/duckspread.url ------------------------------------------------------ */

static int start_backups(ds_server *srv, ds_error *err)
{
    char dir[4200], db[4200];
    if (srv->o.backup_dir)
        snprintf(dir, sizeof dir, "%s", srv->o.backup_dir);
    else
        snprintf(dir, sizeof dir, "%s/backups", srv->data_dir);
    snprintf(db, sizeof db, "%s/duckspread.db", srv->data_dir);
    backups_opts bo = {.persist = writer_persister(srv->writer),
                       .db_path = db,
                       .dir = dir,
                       .source = srv->data_dir,
                       .every_ms = srv->o.backup_every_ms,
                       .keep = srv->o.backup_keep};
    return backups_new(&bo, &srv->backups, err);
}

static void url_file(const ds_server *srv, char *path, size_t n)
{
    snprintf(path, n, "%s/duckspread.url", srv->data_dir);
}

/* DIR/duckspread.url: where this server answers (for `duckspread backup
 * --data DIR`), written once the port is open, removed at the drain. */
static void write_url_file(const ds_server *srv)
{
    char path[4200], tmp[4300];
    url_file(srv, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const char *listen = srv->o.listen;
    bool any = strncmp(listen, "0.0.0.0:", 8) == 0;
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "http://%s%s\n", any ? "127.0.0.1" : "", any ? listen + 7 : listen) < 0 ||
        fclose(f) != 0 || rename(tmp, path) != 0)
        log_warn("start: cannot write %s: %s", path, strerror(errno));
}

static void remove_url_file(const ds_server *srv)
{
    char path[4200];
    url_file(srv, path, sizeof path);
    unlink(path);
}

static int start_all(ds_server *srv, ds_error *err)
{
    int rc = 0;
    if (mkdir(srv->o.data_dir, 0750) < 0 && errno != EEXIST)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot create the data directory %s: %s",
                       srv->o.data_dir, strerror(errno));
    char abs[PATH_MAX];
    if (!realpath(srv->o.data_dir, abs) || strlen(abs) >= sizeof srv->data_dir)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot resolve the data directory %s: %s",
                       srv->o.data_dir, strerror(errno));
    snprintf(srv->data_dir, sizeof srv->data_dir, "%s", abs);
    srv->o.data_dir = srv->data_dir;
    if ((rc = lock_data_dir(srv, err)))
        return rc;
    keyring_opts ko = {.dir = srv->data_dir,
                       .api_key = srv->o.api_key,
                       .rate = srv->o.key_rate,
                       .burst = srv->o.key_burst,
                       .max_open = srv->o.key_open};
    if ((rc = keyring_open(&ko, &srv->keys, err)))
        return rc;
    log_info("keys: %zu active in %s/keys", keyring_count(srv->keys), srv->data_dir);
    if (!srv->o.redis_url && (srv->o.replica || srv->o.standby))
        return ds_fail(err, DS_INVALID_VALUE, "redis",
                       "a replica or standby follows the writer's Redis: give --redis URL (or "
                       "REDIS_URL); "
                       "a writer with its private redis-server listens on "
                       "unix://WRITER_DIR/redis/redis.sock");
    if (!srv->o.redis_url)
        rc = redis_child_start(&srv->redis, srv->data_dir, srv->o.redis_fsync, srv->lock_fd,
                               &srv->bus, err);
    else {
        snprintf(srv->redis_url, sizeof srv->redis_url, "%s", srv->o.redis_url);
        srv->bus.url = srv->redis_url;
        rc = check_redis(srv, false, err);
    }
    if (rc == 0)
        rc = open_data(srv, err);
    /* a replica only reads the writer's streams: no ACL for writing asked,
       and it answers no write */
    if (rc == 0 && srv->o.redis_url && !srv->o.replica)
        rc = check_redis(srv, true, err);
    if (rc == 0 && !srv->o.replica)
        rc = choose_ack(srv, err);
    engine_opts_default(&srv->engine_opts);
    srv->engine_opts.change_cap = srv->o.change_cap;
    srv->engine_opts.create_cap = srv->o.cells_max;
    srv->engine_opts.memory_budget = srv->o.memory_mb << 20;
    srv->engine_opts.retention_ms = srv->o.request_id_days * 24 * 3600 * 1000;
    srv->engine_opts.ledger_max = srv->o.request_id_max;
    srv->models = models_new();
    if (rc == 0)
        rc = server_load_models(srv, err);
    if (rc)
        return rc;
    live_opts lo;
    live_opts_default(&lo);
    lo.max_subscribers = srv->o.subscribers_max;
    srv->live = live_new(&lo);
    srv->grids = grids_new(ws_grids_send, srv);
    ws_grids_attach(srv);
    metrics_init(&srv->metrics);
    log_info(srv->o.replica ? "replica: following the writer's response streams"
                            : "writer: recovering");
    if ((rc = writer_start(srv, &srv->writer, err)))
        return rc;
    if ((rc = start_backups(srv, err)))
        return rc;
    if ((rc = http_start(srv, &srv->http, err)))
        return rc;
    write_url_file(srv);
    log_info("http: serving on http://%s (docs at /docs)", srv->o.listen);
    return 0;
}

static void stop_all(ds_server *srv)
{
    remove_url_file(srv);
    backups_stop(srv->backups); /* a running one stops, its hold released */
    http_quiesce(srv->http);
    writer_stop(srv->writer); /* finishes the batch in flight */
    live_stop(srv->live);     /* wakes every waiter, closes WebSockets */
    struct timespec t = {0, 200 * 1000 * 1000};
    nanosleep(&t, NULL);  /* lets woken requests answer */
    http_stop(srv->http); /* no request runs after this */
    backups_free(srv->backups);
    srv->backups = NULL;
    writer_free(srv->writer);
    srv->writer = NULL;
    live_free(srv->live);
    srv->live = NULL;
    grids_free(srv->grids);
    models_free(srv->models);
    store_close(srv->store);
    keyring_free(srv->keys);
    redis_child_stop(&srv->redis);
    if (srv->lock_fd >= 0)
        close(srv->lock_fd);
}

/* Supervises the private redis-server (on SIGCHLD, and every 200 ms for
 * its backoff) until SIGTERM or SIGINT, which it returns. Runs on the main
 * thread, which forked the child (see redis_child.h); the drain after it
 * never restarts Redis. */
static int wait_for_stop(ds_server *srv, const sigset_t *set)
{
    bool supervised = !srv->o.redis_url;
    for (;;) {
        int64_t wait_ns = 200 * 1000 * 1000;
        if (supervised)
            wait_ns = redis_child_due_ns(&srv->redis, ds_now_ns(), wait_ns);
        struct timespec t = {0, (long)wait_ns};
        int sig = sigtimedwait(set, NULL, &t);
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        if (supervised && redis_child_supervise(&srv->redis, ds_now_ns()))
            srv->redis_up = 0;
    }
}

int server_run(const server_opts *o)
{
    ds_server srv;
    memset(&srv, 0, sizeof srv);
    srv.lock_fd = -1;
    srv.o = *o;
    bus_opts_default(&srv.bus);
    srv.bus.tls_ca = o->redis_ca;
    srv.bus.tls_cert = o->redis_cert;
    srv.bus.tls_key = o->redis_key;
    srv.bus.tls_name = o->redis_server_name;
    srv.bus.cluster = o->redis_cluster;
    /* every thread inherits this mask: only the wait below sees the signals */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD); /* the private redis-server exited */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    ds_error err;
    if (start_all(&srv, &err)) {
        log_error("start: %s", err.message);
        if (srv.http)
            http_stop(srv.http);
        backups_free(srv.backups);
        writer_free(srv.writer);
        live_free(srv.live);
        grids_free(srv.grids);
        models_free(srv.models);
        store_close(srv.store);
        keyring_free(srv.keys);
        redis_child_stop(&srv.redis);
        if (srv.lock_fd >= 0)
            close(srv.lock_fd);
        return 1;
    }
    int sig = wait_for_stop(&srv, &set);
    log_info("%s: draining (no new connections; finishing the batch in flight)",
             sig == SIGTERM ? "SIGTERM" : "SIGINT");
    stop_all(&srv);
    log_info("stopped");
    return 0;
}
