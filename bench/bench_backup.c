/* bench_backup: an online backup of the demo's database file (10M facts
 * by default) two ways, each the median of RUNS (3):
 *   backup checkpoint+copy 10M: ms=.. mb=..
 *     what the server does (backup_take): a CHECKPOINT on the persister's
 *     thread under the checkpoint hold, the file copied up to its size,
 *     fsync'd, opened on its own and marked in ds_meta, renamed;
 *   backup copy-from-database 10M: ms=.. mb=..
 *     the alternative: ATTACH a new file and COPY FROM DATABASE into it on
 *     a reader connection (one snapshot, the persister not held).
 * mb: the backup file's size. Usage: bench_backup [FACTS [RUNS]]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "bench_lib.h"
#include "persist.h"

static const char *prog = "bench_backup";

static double file_mb(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size / 1e6 : 0;
}

static double checkpoint_copy(ds_persist *p, const char *dir, int run, double *mb)
{
    char db[64], bdir[64], name[32], file[128];
    snprintf(db, sizeof db, "%s/bench.db", dir);
    snprintf(bdir, sizeof bdir, "%s/backups", dir);
    snprintf(name, sizeof name, "cp-%d", run);
    backup_take_opts o = {.persist = p,
                          .db_path = db,
                          .dir = bdir,
                          .source = dir,
                          .name = name,
                          .checkpoint_wait_ms = 30000};
    backup_info info = {0};
    ds_error e;
    double t0 = ds_now_ms();
    if (backup_take(&o, &info, NULL, &e))
        bench_die(prog, "backup", &e);
    double ms = ds_now_ms() - t0;
    snprintf(file, sizeof file, "%s/%s.duckdb", bdir, name);
    *mb = file_mb(file);
    unlink(file);
    backup_info_free(&info);
    return ms;
}

static double copy_database(ds_reader *r, const char *dir, int run, double *mb)
{
    char file[128], wal[160];
    snprintf(file, sizeof file, "%s/backups/copy-%d.duckdb", dir, run);
    ds_error e;
    double t0 = ds_now_ms();
    if (store_copy_database(r, file, &e))
        bench_die(prog, "copy from database", &e);
    double ms = ds_now_ms() - t0;
    *mb = file_mb(file);
    unlink(file);
    snprintf(wal, sizeof wal, "%s.wal", file);
    unlink(wal);
    return ms;
}

static const char *label(int64_t facts, char *buf, size_t n)
{
    if (facts >= 1000000 && facts % 1000000 == 0)
        snprintf(buf, n, "%lldM", (long long)(facts / 1000000));
    else
        snprintf(buf, n, "%lld", (long long)facts);
    return buf;
}

int main(int argc, char **argv)
{
    int64_t facts = argc > 1 ? strtoll(argv[1], NULL, 10) : 10000000;
    int runs = argc > 2 ? atoi(argv[2]) : 3;
    if (facts < 1 || runs < 1 || runs > 99) {
        fprintf(stderr, "usage: bench_backup [FACTS [RUNS]]\n");
        return 2;
    }
    ds_tune_malloc();
    char dir[32], size[32];
    double t0 = ds_now_ms();
    ds_store *s = bench_demo(prog, dir, facts);
    ds_error e;
    if (store_checkpoint(s, &e))
        bench_die(prog, "checkpoint", &e);
    fprintf(stderr, "%s: the demo at %lld facts in %.0f ms (%.0f MB)\n", prog, (long long)facts,
            ds_now_ms() - t0, (double)store_file_bytes(s) / 1e6);
    ds_persist *p;
    if (persist_start(s, NULL, NULL, NULL, &p, &e))
        bench_die(prog, "persister", &e);
    ds_reader *r = store_reader_new(s);
    char bdir[64];
    snprintf(bdir, sizeof bdir, "%s/backups", dir);
    mkdir(bdir, 0750);
    double cp[100], cp_mb = 0, db[100], db_mb = 0;
    for (int i = 0; i < runs; i++) { /* alternating, so neither has the warmer cache */
        cp[i] = checkpoint_copy(p, dir, i, &cp_mb);
        db[i] = copy_database(r, dir, i, &db_mb);
        fprintf(stderr, "%s: run %d: checkpoint+copy %.0f ms, copy-from-database %.0f ms\n", prog,
                i + 1, cp[i], db[i]);
    }
    label(facts, size, sizeof size);
    printf("backup checkpoint+copy %s: ms=%.0f mb=%.1f (median of %d)\n", size,
           bench_median(cp, runs), cp_mb, runs);
    printf("backup copy-from-database %s: ms=%.0f mb=%.1f (median of %d)\n", size,
           bench_median(db, runs), db_mb, runs);
    fflush(stdout);
    store_reader_free(r);
    persist_stop(p, 1000);
    persist_free(p);
    bench_demo_remove(prog, s, dir);
    return 0;
}
