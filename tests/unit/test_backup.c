/* Backups against a real DuckDB file under load (backup.h): an engine and
 * the persister commit random commands in groups, with a checkpoint after
 * every group (unless held), while backups are taken one after another on
 * another thread, each copying the file while groups go on committing.
 * Every backup, opened on its own, must be exactly the engine as it was
 * right after the command at the backup's seq (the checksum kept per seq
 * while submitting): the test of the claim that the file's bytes up to
 * its size at a checkpoint stay that checkpoint's database while the
 * checkpoint is held. Then restore: a backup put back as a data
 * directory's database reopens equal; a directory that has one is refused
 * without force, a file that is no backup always; a stopped backup leaves
 * no file. */
#include <check.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "demo.h"
#include "engine_fixture.h"
#include "persist.h"

enum { MAX_SEQ = 200000, MAX_BACKUPS = 64 };

/* The store as serve opens it: DuckDB's automatic checkpoint off. */
static ds_store *open_served(int64_t facts, uint64_t seed)
{
    store_close(fx_open_demo(facts, seed));
    char path[300];
    snprintf(path, sizeof path, "%s/t.db", fx_dir);
    ds_store_opts so;
    store_opts_default(&so);
    so.checkpoint_threshold = "1000GB";
    ds_store *s;
    ds_error e;
    ck_assert_msg(store_open(path, &so, &s, &e) == 0, "%s", e.message);
    return s;
}

typedef struct taker {
    ds_persist *p;
    char db[300], dir[300];
    atomic_bool stop;
    atomic_int n; /* backups taken (the main thread watches) */
    atomic_int failed;
    char names[MAX_BACKUPS][32];
    int64_t seqs[MAX_BACKUPS];
    int64_t bytes_total[MAX_BACKUPS];
} taker;

static void *take_backups(void *arg)
{
    taker *t = arg;
    while (!atomic_load(&t->stop) && atomic_load(&t->n) < MAX_BACKUPS) {
        char name[32];
        snprintf(name, sizeof name, "b%d", t->n);
        backup_take_opts o = {.persist = t->p,
                              .db_path = t->db,
                              .dir = t->dir,
                              .source = fx_dir,
                              .name = name,
                              .checkpoint_wait_ms = 30000};
        backup_info info = {0};
        ds_error err;
        if (backup_take(&o, &info, NULL, &err) != 0 || info.nmodels != 1) {
            fprintf(stderr, "backup %s failed: %s\n", name, err.message);
            atomic_fetch_add(&t->failed, 1);
            backup_info_free(&info);
            break;
        }
        int k = atomic_load(&t->n);
        snprintf(t->names[k], sizeof t->names[k], "%s", name);
        t->seqs[k] = info.seqs[0];
        t->bytes_total[k] = info.bytes_total;
        atomic_store(&t->n, k + 1);
        backup_info_free(&info);
    }
    return NULL;
}

/* One random command applied to e and queued for the persister. */
static void submit_random(ds_engine *e, ds_persist *p, fx_rng *r, ds_buf *body, int i,
                          uint64_t *sum_at)
{
    const ds_model *m = engine_model_acquire(e);
    req_kind kind;
    const char *dim;
    ds_arena a = {0};
    req_decoded d;
    do
        fx_random_body(body, m, r, engine_seq(e), &kind, &dim);
    while (!fx_resolve(body->data, body->len, kind, m, dim, &a, &d));
    engine_model_release(e, m);
    char rid[32];
    snprintf(rid, sizeof rid, "r%d", i);
    engine_input ei = {.cmd = d.canonical,
                       .cmd_len = d.canonical_len,
                       .user = "u",
                       .rid = rid,
                       .hash = d.hash,
                       .ts_ms = 1000 + i};
    engine_result res;
    ds_error err;
    ck_assert(engine_submit(e, &ei, &res, &err) == 0);
    if (res.status == ENGINE_APPLIED) {
        ck_assert_int_lt(res.seq, MAX_SEQ);
        sum_at[res.seq] = engine_checksum(e);
    }
    if (res.status == ENGINE_APPLIED || res.status == ENGINE_REFUSED)
        persist_submit(p, persist_item_from(DEMO_MODEL, &ei, &res, "{}", 2));
    engine_result_clear(&res);
    ds_arena_free(&a);
}

static uint64_t file_sum(const char *path)
{
    ds_store *s;
    ds_error e;
    ck_assert_msg(store_open(path, NULL, &s, &e) == 0, "%s: %s", path, e.message);
    uint64_t h = fx_store_sum(s);
    store_close(s);
    return h;
}

START_TEST(backups_under_load_equal_the_engine_at_their_seq)
{
    uint64_t seed = 900 + (uint64_t)_i;
    ds_store *s = open_served(3000, seed);
    engine_opts eo;
    engine_opts_default(&eo);
    eo.create_cap = 3000;
    ds_engine *e = fx_engine_from(s, &eo);
    uint64_t *sum_at = xcalloc(MAX_SEQ, sizeof *sum_at);
    sum_at[0] = engine_checksum(e);
    persist_opts po;
    persist_opts_default(&po);
    po.checkpoint_bytes = 1; /* a checkpoint after every group, unless held */
    po.interval_ms = 2;
    po.idle_checkpoint_ms = 20;
    taker *t = xcalloc(1, sizeof *t);
    ds_error err;
    ck_assert(persist_start(s, &po, NULL, NULL, &t->p, &err) == 0);
    snprintf(t->db, sizeof t->db, "%s/t.db", fx_dir);
    snprintf(t->dir, sizeof t->dir, "%s/backups", fx_dir);
    setenv("DS_BACKUP_SLOW_MS", "100", 1); /* groups commit between checkpoint and copy */
    pthread_t th;
    ck_assert(pthread_create(&th, NULL, take_backups, t) == 0);
    fx_rng r = {seed};
    ds_buf body;
    ds_buf_init(&body, 1 << 20);
    /* Until four backups are taken, commands go on meanwhile, twenty at a
       time, each twenty a group the persister commits: the load the copies
       are made under. No clock: a slow build takes longer, never fewer
       backups (under valgrind, which runs one thread at a time, a loop
       that never paused starved the backups and a time cap cut them short). */
    int i = 0;
    while (atomic_load(&t->n) < 4 && engine_seq(e) < MAX_SEQ - 30 && atomic_load(&t->failed) == 0) {
        for (int k = 0; k < 20; k++, i++)
            submit_random(e, t->p, &r, &body, i, sum_at);
        persist_wait_lag(t->p, 0, 0, 10000);
        sched_yield();
    }
    atomic_store(&t->stop, true);
    pthread_join(th, NULL);
    unsetenv("DS_BACKUP_SLOW_MS");
    ck_assert(persist_wait_lag(t->p, 0, 0, 60000));
    persist_stats ps;
    persist_get_stats(t->p, &ps);
    persist_stop(t->p, 1000);
    persist_free(t->p);
    int distinct = 0;
    int taken = atomic_load(&t->n);
    for (int k = 0; k < taken; k++) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s.duckdb", t->dir, t->names[k]);
        ck_assert_msg(t->seqs[k] >= 0 && t->seqs[k] <= engine_seq(e), "backup %d seq", k);
        ck_assert_msg(file_sum(path) == sum_at[t->seqs[k]],
                      "backup %s (seq %lld, %lld bytes) differs from the engine at that seq",
                      t->names[k], (long long)t->seqs[k], (long long)t->bytes_total[k]);
        distinct += k == 0 || t->seqs[k] != t->seqs[k - 1];
    }
    fprintf(stderr,
            "backup (seed %llu): %d commands to seq %lld, %lld groups, %lld checkpoints, %d "
            "backups at %d distinct seqs\n",
            (unsigned long long)seed, i, (long long)engine_seq(e), (long long)ps.groups,
            (long long)ps.checkpoints, taken, distinct);
    ck_assert_int_eq(atomic_load(&t->failed), 0);
    ck_assert_int_ge(distinct, 3);
    ck_assert_int_ge(ps.checkpoints, 1); /* and the persister checkpointed between them */
    ck_assert_uint_eq(fx_store_sum(s), engine_checksum(e));
    ds_buf_free(&body);
    free(sum_at);
    free(t);
    engine_free(e);
    store_close(s);
    fx_remove_dir();
}
END_TEST

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

START_TEST(restore_puts_a_backup_back)
{
    ds_store *s = open_served(2000, 5);
    ds_engine *e = fx_engine_from(s, NULL);
    ds_persist *p;
    ds_error err;
    ck_assert(fx_apply(s, e,
                       "{\"column\":\"quantity\",\"cell\":{\"product\":\"P-0001\","
                       "\"customer\":\"C-0001\",\"time\":\"2025-01\"},\"delta\":7}",
                       REQ_CELL, NULL, NULL, &err) == 0);
    ck_assert(persist_start(s, NULL, NULL, NULL, &p, &err) == 0); /* after: it owns s */
    char db[300], dir[300], file[400], data[300], other[400];
    snprintf(db, sizeof db, "%s/t.db", fx_dir);
    snprintf(dir, sizeof dir, "%s/backups", fx_dir);
    backup_take_opts o = {.persist = p, .db_path = db, .dir = dir, .name = "one"};
    backup_info info = {0};
    ck_assert_msg(backup_take(&o, &info, NULL, &err) == 0, "%s", err.message);
    ck_assert_str_eq(backup_state_name(info.state), "done");
    ck_assert_int_eq(info.seqs[0], 1);
    ck_assert_int_eq(info.bytes, info.bytes_total);
    backup_info_free(&info);
    /* the same name again: 422, and the file stays */
    ck_assert_int_eq(backup_take(&o, &info, NULL, &err), -DS_INVALID_VALUE);
    ck_assert_str_eq(err.target, "name");
    backup_info_free(&info);
    /* stopped: no file, no tmp file */
    atomic_bool cancel = true;
    backup_take_opts oc = o;
    oc.name = "stopped";
    oc.cancel = &cancel;
    ck_assert_int_eq(backup_take(&oc, &info, NULL, &err), -DS_UNAVAILABLE);
    ck_assert_str_eq(backup_state_name(info.state), "failed");
    backup_info_free(&info);
    snprintf(file, sizeof file, "%s/stopped.duckdb", dir);
    ck_assert(!exists(file));
    snprintf(other, sizeof other, "%s/stopped.duckdb.tmp", dir);
    ck_assert(!exists(other));
    /* restore into a new directory: the file reopens equal */
    snprintf(file, sizeof file, "%s/one.duckdb", dir);
    snprintf(data, sizeof data, "%s/restored", fx_dir);
    ck_assert_msg(backup_restore(file, data, false, &err) == 0, "%s", err.message);
    snprintf(other, sizeof other, "%s/duckspread.db", data);
    ck_assert_uint_eq(file_sum(other), engine_checksum(e));
    /* again: refused without force, done with it */
    ck_assert_int_eq(backup_restore(file, data, false, &err), -DS_INVALID_VALUE);
    ck_assert_int_eq(backup_restore(file, data, true, &err), 0);
    /* a database that is no backup, and a file that is no database */
    ck_assert_int_eq(backup_restore(db, data, true, &err), -DS_INVALID_VALUE);
    snprintf(other, sizeof other, "%s/duckspread.lock", data);
    ck_assert_int_eq(backup_restore(other, data, true, &err), -DS_INVALID_VALUE);
    persist_stop(p, 1000);
    persist_free(p);
    engine_free(e);
    store_close(s);
    fx_remove_dir();
}
END_TEST

START_TEST(names)
{
    ck_assert(backup_name_ok("ds-20260101T000000Z", 19));
    ck_assert(backup_name_ok("a.b_c-D9", 8));
    ck_assert(!backup_name_ok("", 0));
    ck_assert(!backup_name_ok(".hidden", 7));
    ck_assert(!backup_name_ok("-x", 2));
    ck_assert(!backup_name_ok("a/b", 3));
    ck_assert(!backup_name_ok("a b", 3));
    ck_assert(!backup_name_ok("a\0b", 3));
    char longest[BACKUP_NAME_MAX + 2];
    memset(longest, 'x', sizeof longest);
    ck_assert(backup_name_ok(longest, BACKUP_NAME_MAX));
    ck_assert(!backup_name_ok(longest, BACKUP_NAME_MAX + 1));
    char def[64];
    backup_default_name("auto", def, sizeof def);
    ck_assert_int_eq(strlen(def), strlen("auto-20260101T000000Z"));
    ck_assert(backup_name_ok(def, strlen(def)));
}
END_TEST

static Suite *backup_suite(void)
{
    Suite *s = suite_create("backup");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, names);
    tcase_add_loop_test(tc, backups_under_load_equal_the_engine_at_their_seq, 0, 2);
    tcase_add_test(tc, restore_puts_a_backup_back);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(backup_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
