/* backup.c: see backup.h. The mechanism (backup_take), restore, and the
 * server's backups: one at a time on a thread of their own, the schedule
 * (--backup-every, --backup-keep), and what the API lists. */
#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum { COPY_CHUNK = 4 << 20, RETRY_MS = 100, RECENT_MAX = 16 };

/* ---- names and records ------------------------------------------------------------ */

bool backup_name_ok(const char *name, size_t len)
{
    if (!name || len == 0 || len > BACKUP_NAME_MAX || name[0] == '.' || name[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static void utc_format(const char *fmt, char *out, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, n, fmt, &tm);
}

void backup_default_name(const char *prefix, char *out, size_t n)
{
    char t[32];
    utc_format("%Y%m%dT%H%M%SZ", t, sizeof t);
    snprintf(out, n, "%s-%s", prefix, t);
}

const char *backup_state_name(backup_state s)
{
    return s == BACKUP_RUNNING ? "running" : s == BACKUP_DONE ? "done" : "failed";
}

void backup_info_free(backup_info *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nmodels; i++)
        free(b->models[i]);
    free(b->models);
    free(b->seqs);
    b->models = NULL;
    b->seqs = NULL;
    b->nmodels = 0;
}

static void set_seqs(backup_info *b, char **models, const int64_t *seqs, size_t n)
{
    backup_info_free(b);
    b->models = xcalloc(n + 1, sizeof *b->models);
    b->seqs = xcalloc(n + 1, sizeof *b->seqs);
    for (size_t i = 0; i < n; i++) {
        b->models[i] = xstrdup(models[i]);
        b->seqs[i] = seqs[i];
    }
    b->nmodels = n;
}

void backup_info_copy(backup_info *dst, const backup_info *src)
{
    *dst = *src;
    dst->models = NULL;
    dst->seqs = NULL;
    dst->nmodels = 0;
    set_seqs(dst, src->models, src->seqs, src->nmodels);
}

/* ---- files ------------------------------------------------------------------------- */

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Copies the first limit bytes of from (all of it: -1) to a new file to,
 * fsync'd; *copied counts as it goes (under lock), cancel stops it. */
static int copy_file(const char *from, const char *to, int64_t limit, int64_t *copied,
                     pthread_mutex_t *lock, const atomic_bool *cancel, ds_error *err)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot open %s: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "cannot create %s: %s", to, strerror(errno));
        close(in);
        return rc;
    }
    char *buf = xmalloc(COPY_CHUNK);
    int64_t done = 0;
    int rc = 0;
    while (rc == 0 && (limit < 0 || done < limit)) {
        if (cancel && atomic_load(cancel)) {
            rc = ds_fail(err, DS_UNAVAILABLE, NULL, "stopped (the server is draining)");
            break;
        }
        size_t want = limit < 0 || limit - done > COPY_CHUNK ? COPY_CHUNK : (size_t)(limit - done);
        ssize_t n = pread(in, buf, want, done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (n == 0 && limit >= 0)) {
            rc = ds_fail(err, DS_INTERNAL, NULL, "cannot read %s at %" PRId64 ": %s", from, done,
                         n < 0 ? strerror(errno) : "the file is shorter than recorded");
            break;
        }
        if (n == 0)
            break;
        for (ssize_t w = 0; rc == 0 && w < n;) {
            ssize_t k = write(out, buf + w, (size_t)(n - w));
            if (k < 0 && errno != EINTR)
                rc = ds_fail(err, DS_INTERNAL, NULL, "cannot write %s: %s", to, strerror(errno));
            w += k > 0 ? k : 0;
        }
        done += n;
        if (lock)
            pthread_mutex_lock(lock);
        *copied = done;
        if (lock)
            pthread_mutex_unlock(lock);
    }
    if (rc == 0 && fsync(out) != 0)
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot fsync %s: %s", to, strerror(errno));
    free(buf);
    close(in);
    if (close(out) != 0 && rc == 0)
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot write %s: %s", to, strerror(errno));
    return rc;
}

static void remove_tmp(const char *tmp)
{
    char wal[sizeof((backup_info *)0)->file + 16];
    unlink(tmp);
    snprintf(wal, sizeof wal, "%s.wal", tmp);
    unlink(wal);
}

/* ---- taking one ----------------------------------------------------------------------- */

/* The persister's job: CHECKPOINT, then each model's seq and the size. */
typedef struct snap {
    bool refused; /* the CHECKPOINT was (a reader's transaction): try again */
    ds_error why;
    char **models;
    int64_t *seqs;
    size_t n;
    int64_t bytes;
} snap;

static int snap_job(ds_store *s, void *arg, ds_error *err)
{
    snap *sn = arg;
    if (store_checkpoint(s, &sn->why) != 0) {
        sn->refused = true;
        return ds_fail(err, DS_UNAVAILABLE, NULL, "%s", sn->why.message);
    }
    sn->refused = false;
    sn->n = store_model_names(s, &sn->models);
    sn->seqs = xcalloc(sn->n + 1, sizeof *sn->seqs);
    for (size_t i = 0; i < sn->n; i++)
        sn->seqs[i] = store_model_seq(s, sn->models[i]);
    sn->bytes = store_file_bytes(s);
    return sn->bytes < 0 ? ds_fail(err, DS_INTERNAL, NULL, "cannot stat the database file") : 0;
}

static void snap_free(snap *sn)
{
    for (size_t i = 0; i < sn->n; i++)
        free(sn->models[i]);
    free(sn->models);
    free(sn->seqs);
    memset(sn, 0, sizeof *sn);
}

/* Checkpoints under the hold, retrying while refused. */
static int checkpoint_hold(const backup_take_opts *o, snap *sn, ds_error *err)
{
    int64_t until = ds_now_ns() + o->checkpoint_wait_ms * 1000000;
    for (;;) {
        snap_free(sn);
        int rc = persist_run(o->persist, snap_job, sn, err);
        if (rc == 0 || !sn->refused)
            return rc;
        if (o->cancel && atomic_load(o->cancel))
            return ds_fail(err, DS_UNAVAILABLE, NULL, "stopped (the server is draining)");
        if (ds_now_ns() >= until)
            return ds_fail(err, DS_UNAVAILABLE, NULL,
                           "the database could not be checkpointed for %" PRId64
                           " ms (a reader held a transaction): %s",
                           o->checkpoint_wait_ms, sn->why.message);
        struct timespec t = {0, RETRY_MS * 1000000};
        nanosleep(&t, NULL);
    }
}

/* The copy's own seqs (from its ds_model) must be the recorded ones. */
static int same_seqs(const snap *sn, const store_backup_meta *m, ds_error *err)
{
    for (size_t i = 0; i < sn->n; i++) {
        bool found = false;
        for (size_t k = 0; k < m->nmodels && !found; k++) {
            if (strcmp(m->models[k], sn->models[i]) != 0)
                continue;
            found = true;
            if (m->seqs[k] != sn->seqs[i])
                return ds_fail(err, DS_INTERNAL, NULL,
                               "the copy of '%s' is at seq %" PRId64 ", the checkpoint at %" PRId64,
                               sn->models[i], m->seqs[k], sn->seqs[i]);
        }
        if (!found)
            return ds_fail(err, DS_INTERNAL, NULL, "the copy lacks model '%s'", sn->models[i]);
    }
    return 0;
}

static void seqs_text(const backup_info *b, char *out, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < b->nmodels && o < n; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%s=%" PRId64, i ? " " : "", b->models[i],
                              b->seqs[i]);
}

static void locked(pthread_mutex_t *lock, bool on)
{
    if (lock && on)
        pthread_mutex_lock(lock);
    else if (lock)
        pthread_mutex_unlock(lock);
}

/* DS_BACKUP_SLOW_MS=N (tests): the copy starts N ms after the checkpoint
 * (a stop cuts the wait short), so a test sees a backup running. */
static void slow_for_tests(const backup_take_opts *o)
{
    const char *v = getenv("DS_BACKUP_SLOW_MS");
    int64_t until = ds_now_ns() + (v ? strtoll(v, NULL, 10) : 0) * 1000000;
    while (ds_now_ns() < until && !(o->cancel && atomic_load(o->cancel))) {
        struct timespec t = {0, 10 * 1000000};
        nanosleep(&t, NULL);
    }
}

/* Copy, mark, rename: the steps after the checkpoint. */
static int copy_mark_rename(const backup_take_opts *o, const snap *sn, const char *tmp,
                            backup_info *info, pthread_mutex_t *lock, double t0, ds_error *err)
{
    int rc = copy_file(o->db_path, tmp, sn->bytes, &info->bytes, lock, o->cancel, err);
    persist_hold_checkpoints(o->persist, false); /* the copy is whole: checkpoint at will */
    if (rc)
        return rc;
    store_backup_meta m = {0};
    snprintf(m.name, sizeof m.name, "%s", o->name);
    snprintf(m.taken, sizeof m.taken, "%s", info->taken);
    snprintf(m.source, sizeof m.source, "%s", o->source ? o->source : "");
    m.ms = (int64_t)(ds_now_ms() - t0);
    rc = store_backup_mark(tmp, &m, err);
    if (rc == 0)
        rc = same_seqs(sn, &m, err);
    store_backup_meta_free(&m);
    if (rc == 0 && rename(tmp, info->file) != 0)
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc == 0 && fsync_dir(o->dir) != 0)
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot fsync %s: %s", o->dir, strerror(errno));
    return rc;
}

static int take_steps(const backup_take_opts *o, const char *tmp, backup_info *info,
                      pthread_mutex_t *lock, double t0, ds_error *err)
{
    if (mkdir(o->dir, 0750) != 0 && errno != EEXIST)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot create the backup directory %s: %s", o->dir,
                       strerror(errno));
    struct stat st;
    if (stat(info->file, &st) == 0)
        return ds_fail(err, DS_INVALID_VALUE, "name", "a backup named '%s' exists (%s)", o->name,
                       info->file);
    remove_tmp(tmp); /* a tmp file left by a crash */
    persist_hold_checkpoints(o->persist, true);
    snap sn = {0};
    int rc = checkpoint_hold(o, &sn, err);
    if (rc) {
        persist_hold_checkpoints(o->persist, false);
        snap_free(&sn);
        return rc;
    }
    locked(lock, true);
    info->bytes_total = sn.bytes;
    set_seqs(info, sn.models, sn.seqs, sn.n);
    locked(lock, false);
    char seqs[512];
    seqs_text(info, seqs, sizeof seqs);
    log_info("backup %s: checkpoint at %s; copying %.1f MB to %s", o->name, seqs,
             (double)sn.bytes / 1e6, info->file);
    slow_for_tests(o);
    rc = copy_mark_rename(o, &sn, tmp, info, lock, t0, err);
    snap_free(&sn);
    return rc;
}

int backup_take(const backup_take_opts *o, backup_info *info, pthread_mutex_t *lock, ds_error *err)
{
    double t0 = ds_now_ms();
    char tmp[sizeof info->file + 8];
    locked(lock, true);
    snprintf(info->name, sizeof info->name, "%s", o->name);
    snprintf(info->file, sizeof info->file, "%s/%s.duckdb", o->dir, o->name);
    info->state = BACKUP_RUNNING;
    info->error[0] = '\0';
    if (!info->taken[0])
        utc_format("%Y-%m-%dT%H:%M:%SZ", info->taken, sizeof info->taken);
    locked(lock, false);
    snprintf(tmp, sizeof tmp, "%s.tmp", info->file);
    log_info("backup %s: started", o->name);
    ds_error e;
    int rc = take_steps(o, tmp, info, lock, t0, &e);
    if (rc && rc != -DS_INVALID_VALUE)
        remove_tmp(tmp);
    locked(lock, true);
    info->ms = ds_now_ms() - t0;
    info->state = rc ? BACKUP_FAILED : BACKUP_DONE;
    if (rc)
        snprintf(info->error, sizeof info->error, "%s", e.message);
    locked(lock, false);
    char seqs[512];
    seqs_text(info, seqs, sizeof seqs);
    if (rc) {
        log_error("backup %s: failed after %.0f ms: %s", o->name, info->ms, e.message);
        if (err)
            *err = e;
    } else {
        log_info("backup %s: done: %s, %.1f MB, seqs %s, %.0f ms", o->name, info->file,
                 (double)info->bytes / 1e6, seqs, info->ms);
    }
    return rc;
}

/* ---- restore ---------------------------------------------------------------------- */

static int lock_dir(const char *data_dir, int *fd, ds_error *err)
{
    char path[BACKUP_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/duckspread.lock", data_dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (*fd < 0)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot open %s: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    int e = errno;
    close(*fd);
    *fd = -1;
    return e == EWOULDBLOCK
               ? ds_fail(err, DS_UNAVAILABLE, NULL,
                         "a duckspread server is serving %s (it holds %s); stop it "
                         "first",
                         data_dir, path)
               : ds_fail(err, DS_INTERNAL, NULL, "cannot lock %s: %s", path, strerror(e));
}

static int restore_copy(const char *from, const char *data_dir, ds_error *err)
{
    char db[BACKUP_PATH_MAX + 32], tmp[BACKUP_PATH_MAX + 48], wal[BACKUP_PATH_MAX + 48];
    snprintf(db, sizeof db, "%s/duckspread.db", data_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", db);
    snprintf(wal, sizeof wal, "%s.wal", db);
    unlink(tmp);
    int64_t copied = 0;
    int rc = copy_file(from, tmp, -1, &copied, NULL, NULL, err);
    if (rc == 0 && unlink(wal) != 0 && errno != ENOENT) /* the old file's log: not the backup's */
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot remove %s: %s", wal, strerror(errno));
    if (rc == 0 && rename(tmp, db) != 0)
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc == 0 && fsync_dir(data_dir) != 0)
        rc = ds_fail(err, DS_INTERNAL, NULL, "cannot fsync %s: %s", data_dir, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}

int backup_restore(const char *from, const char *data_dir, bool force, ds_error *err)
{
    if (strlen(data_dir) >= BACKUP_PATH_MAX)
        return ds_fail(err, DS_INVALID_VALUE, "data", "the data directory's path is too long");
    store_backup_meta m;
    int rc = store_backup_read(from, &m, err);
    if (rc)
        return rc;
    store_backup_meta_free(&m);
    if (mkdir(data_dir, 0750) != 0 && errno != EEXIST)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot create the data directory %s: %s", data_dir,
                       strerror(errno));
    int fd;
    if ((rc = lock_dir(data_dir, &fd, err)))
        return rc;
    char db[BACKUP_PATH_MAX + 32];
    snprintf(db, sizeof db, "%s/duckspread.db", data_dir);
    struct stat st;
    if (!force && stat(db, &st) == 0)
        rc = ds_fail(err, DS_INVALID_VALUE, "data",
                     "%s already holds a database (duckspread.db); --force replaces it", data_dir);
    if (rc == 0)
        rc = restore_copy(from, data_dir, err);
    close(fd);
    return rc;
}

/* ---- the server's backups -------------------------------------------------------------- */

struct ds_backups {
    backups_opts o;
    char dir[BACKUP_PATH_MAX], db_path[BACKUP_PATH_MAX], source[BACKUP_PATH_MAX];
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a backup ended; the scheduler's clock */
    backup_info cur;     /* the last one started (under lock) */
    bool running, joinable;
    pthread_t thread;               /* the running one's */
    atomic_bool cancel;             /* set by backups_stop */
    bool stopping;                  /* under lock */
    backup_info recent[RECENT_MAX]; /* ended in this process, newest first */
    size_t nrecent;
    pthread_t sched;
    bool sched_started;
    backups_stats stats;
};

static void *backup_main(void *arg)
{
    ds_thread_name("ds-backup-copy");
    ds_backups *b = arg;
    char name[BACKUP_NAME_MAX + 1];
    pthread_mutex_lock(&b->lock);
    snprintf(name, sizeof name, "%s", b->cur.name);
    pthread_mutex_unlock(&b->lock);
    backup_take_opts to = {.persist = b->o.persist,
                           .db_path = b->o.db_path,
                           .dir = b->dir,
                           .source = b->o.source,
                           .name = name,
                           .checkpoint_wait_ms = b->o.checkpoint_wait_ms,
                           .cancel = &b->cancel};
    int rc = backup_take(&to, &b->cur, &b->lock, NULL);
    pthread_mutex_lock(&b->lock);
    rc ? b->stats.failed++ : b->stats.ok++;
    b->stats.last_seconds = b->cur.ms / 1000;
    if (b->nrecent == RECENT_MAX)
        backup_info_free(&b->recent[--b->nrecent]);
    memmove(&b->recent[1], &b->recent[0], b->nrecent * sizeof b->recent[0]);
    backup_info_copy(&b->recent[0], &b->cur);
    b->nrecent++;
    b->running = false;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Joins the thread of the backup that ended (once: whoever takes it). */
static void join_ended(ds_backups *b, bool wait)
{
    pthread_mutex_lock(&b->lock);
    bool join = b->joinable && (wait || !b->running);
    pthread_t t = b->thread;
    if (join)
        b->joinable = false;
    pthread_mutex_unlock(&b->lock);
    if (join)
        pthread_join(t, NULL);
}

int backups_start(ds_backups *b, const char *name, backup_info *out, ds_error *err)
{
    char def[BACKUP_NAME_MAX + 1];
    if (!name) {
        backup_default_name("ds", def, sizeof def);
        name = def;
    }
    if (!backup_name_ok(name, strlen(name)))
        return ds_fail(err, DS_INVALID_VALUE, "name",
                       "a backup name is 1 to %d of A-Z a-z 0-9 . _ -, not starting with . or -",
                       BACKUP_NAME_MAX);
    join_ended(b, false);
    char file[sizeof b->cur.file];
    snprintf(file, sizeof file, "%s/%s.duckdb", b->dir, name);
    struct stat st;
    if (stat(file, &st) == 0)
        return ds_fail(err, DS_INVALID_VALUE, "name", "a backup named '%s' exists (%s)", name,
                       file);
    pthread_mutex_lock(&b->lock);
    int rc = 0;
    if (b->stopping)
        rc = ds_fail(err, DS_UNAVAILABLE, NULL, "the server is stopping: no new backup");
    else if (b->running)
        rc = ds_fail(err, DS_UNAVAILABLE, NULL,
                     "backup '%s' is running (one at a time); try again when it is done",
                     b->cur.name);
    if (rc == 0) {
        backup_info_free(&b->cur);
        memset(&b->cur, 0, sizeof b->cur);
        snprintf(b->cur.name, sizeof b->cur.name, "%s", name);
        snprintf(b->cur.file, sizeof b->cur.file, "%s", file);
        utc_format("%Y-%m-%dT%H:%M:%SZ", b->cur.taken, sizeof b->cur.taken);
        b->running = true;
        if (pthread_create(&b->thread, NULL, backup_main, b) != 0) {
            b->running = false;
            rc = ds_fail(err, DS_INTERNAL, NULL, "cannot start a backup thread");
        }
        b->joinable = rc == 0;
        if (rc == 0 && out)
            backup_info_copy(out, &b->cur);
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* One this process started (running or ended), copied; false when none. */
static bool known(ds_backups *b, const char *name, backup_info *out)
{
    bool found = false;
    pthread_mutex_lock(&b->lock);
    if (b->running && strcmp(b->cur.name, name) == 0) {
        backup_info_copy(out, &b->cur);
        found = true;
    }
    for (size_t i = 0; !found && i < b->nrecent; i++) {
        if (strcmp(b->recent[i].name, name) != 0)
            continue;
        backup_info_copy(out, &b->recent[i]);
        found = true;
    }
    pthread_mutex_unlock(&b->lock);
    return found;
}

/* A file of the directory, read back. */
static int from_file(const char *file, const char *name, backup_info *out, ds_error *err)
{
    store_backup_meta m;
    int rc = store_backup_read(file, &m, err);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    snprintf(out->file, sizeof out->file, "%s", file);
    out->state = BACKUP_DONE;
    struct stat st;
    out->bytes = out->bytes_total = stat(file, &st) == 0 ? (int64_t)st.st_size : 0;
    set_seqs(out, m.models, m.seqs, m.nmodels);
    snprintf(out->taken, sizeof out->taken, "%s", m.taken);
    out->ms = (double)m.ms;
    store_backup_meta_free(&m);
    return 0;
}

int backups_get(ds_backups *b, const char *name, backup_info *out, ds_error *err)
{
    memset(out, 0, sizeof *out);
    bool ok = backup_name_ok(name, strlen(name));
    char file[sizeof out->file];
    snprintf(file, sizeof file, "%s/%s.duckdb", b->dir, ok ? name : "");
    struct stat st;
    bool exists = ok && stat(file, &st) == 0;
    if (ok && known(b, name, out)) {
        if (out->state != BACKUP_DONE || exists) /* a done one whose file went: none */
            return 0;
        backup_info_free(out);
    }
    if (exists && from_file(file, name, out, err) == 0)
        return 0;
    return ds_fail(err, DS_NOT_FOUND, "backup", "no backup '%.*s'", ok ? BACKUP_NAME_MAX : 0,
                   ok ? name : "");
}

int backups_wait(ds_backups *b, const char *name, backup_info *out, ds_error *err)
{
    pthread_mutex_lock(&b->lock);
    while (b->running && strcmp(b->cur.name, name) == 0)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
    return backups_get(b, name, out, err);
}

static int newest_first(const void *x, const void *y)
{
    const backup_info *a = x, *c = y;
    int t = strcmp(c->taken, a->taken);
    return t ? t : strcmp(c->name, a->name);
}

/* The NAME of a file NAME.duckdb with a good name, into name; else false. */
static bool backup_file(const char *file, char *name, size_t n)
{
    size_t len = strlen(file);
    if (len <= 7 || strcmp(file + len - 7, ".duckdb") != 0 || len - 7 >= n)
        return false;
    snprintf(name, n, "%.*s", (int)(len - 7), file);
    return backup_name_ok(name, len - 7);
}

size_t backups_list(ds_backups *b, backup_info **out)
{
    size_t n = 0, cap = 16;
    backup_info *v = xcalloc(cap, sizeof *v);
    DIR *d = opendir(b->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char name[BACKUP_NAME_MAX + 1];
        ds_error err;
        if (!backup_file(e->d_name, name, sizeof name))
            continue;
        if (n == cap)
            v = xrealloc(v, (cap *= 2) * sizeof *v);
        if (backups_get(b, name, &v[n], &err) == 0)
            n++;
    }
    if (d)
        closedir(d);
    pthread_mutex_lock(&b->lock); /* the running one, and the failed ones */
    for (size_t i = 0; i <= b->nrecent; i++) {
        const backup_info *r = i == b->nrecent ? (b->running ? &b->cur : NULL) : &b->recent[i];
        if (!r || r->state == BACKUP_DONE)
            continue;
        if (n == cap)
            v = xrealloc(v, (cap *= 2) * sizeof *v);
        backup_info_copy(&v[n++], r);
    }
    pthread_mutex_unlock(&b->lock);
    qsort(v, n, sizeof *v, newest_first);
    *out = v;
    return n;
}

void backups_get_stats(ds_backups *b, backups_stats *s)
{
    pthread_mutex_lock(&b->lock);
    *s = b->stats;
    s->running = b->running;
    pthread_mutex_unlock(&b->lock);
}

/* ---- the schedule ------------------------------------------------------------------------- */

static int by_name(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Deletes the oldest auto-* backups beyond keep (their names hold their
 * time, so by name is by age); never a file of another name. */
static void prune(ds_backups *b)
{
    char **names = NULL;
    size_t n = 0;
    DIR *d = opendir(b->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char name[BACKUP_NAME_MAX + 1];
        if (!backup_file(e->d_name, name, sizeof name) || strncmp(name, "auto-", 5) != 0)
            continue;
        names = xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = xstrdup(e->d_name);
    }
    if (d)
        closedir(d);
    if (n)
        qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        char path[BACKUP_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", b->dir, names[i]);
        if (i + (size_t)b->o.keep < n) {
            if (unlink(path) == 0)
                log_info("backup: removed %s (--backup-keep %d)", path, b->o.keep);
            else
                log_warn("backup: cannot remove %s: %s", path, strerror(errno));
        }
        free(names[i]);
    }
    free(names);
    fsync_dir(b->dir);
}

/* Waits until deadline_ns or a stop; true when stopping. */
static bool sched_sleep(ds_backups *b, int64_t deadline_ns)
{
    pthread_mutex_lock(&b->lock);
    while (!b->stopping && ds_now_ns() < deadline_ns)
        ds_cond_wait_until(&b->cond, &b->lock, deadline_ns);
    bool stop = b->stopping;
    pthread_mutex_unlock(&b->lock);
    return stop;
}

static void *sched_main(void *arg)
{
    ds_thread_name("ds-backup");
    ds_backups *b = arg;
    int64_t next = ds_now_ns() + b->o.every_ms * 1000000;
    while (!sched_sleep(b, next)) {
        char name[BACKUP_NAME_MAX + 1];
        backup_default_name("auto", name, sizeof name);
        backup_info info;
        ds_error err;
        int rc = backups_start(b, name, &info, &err);
        if (rc) { /* another one runs, or this second's exists: a second later */
            log_info("backup: the scheduled one waits: %s", err.message);
            next = ds_now_ns() + INT64_C(1000000000);
            continue;
        }
        next = ds_now_ns() + b->o.every_ms * 1000000;
        backup_info_free(&info);
        if (backups_wait(b, name, &info, &err) == 0 && info.state == BACKUP_DONE)
            prune(b);
        backup_info_free(&info);
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int backups_new(const backups_opts *o, ds_backups **out, ds_error *err)
{
    ds_backups *b = xcalloc(1, sizeof *b);
    b->o = *o;
    if (b->o.checkpoint_wait_ms <= 0)
        b->o.checkpoint_wait_ms = 30000;
    if (o->dir[0] == '/' || !getcwd(b->dir, sizeof b->dir))
        snprintf(b->dir, sizeof b->dir, "%s", o->dir);
    else
        snprintf(b->dir + strlen(b->dir), sizeof b->dir - strlen(b->dir), "/%s", o->dir);
    b->o.dir = b->dir;
    snprintf(b->db_path, sizeof b->db_path, "%s", o->db_path);
    snprintf(b->source, sizeof b->source, "%s", o->source ? o->source : "");
    b->o.db_path = b->db_path;
    b->o.source = b->source;
    pthread_mutex_init(&b->lock, NULL);
    ds_cond_init(&b->cond);
    atomic_init(&b->cancel, false);
    if (b->o.every_ms > 0) {
        if (pthread_create(&b->sched, NULL, sched_main, b) != 0) {
            backups_free(b);
            return ds_fail(err, DS_INTERNAL, NULL, "cannot start the backup scheduler thread");
        }
        b->sched_started = true;
        log_info("backup: every %" PRId64 " s into %s, the newest %d auto-* kept",
                 b->o.every_ms / 1000, b->dir, b->o.keep);
    }
    *out = b;
    return 0;
}

void backups_stop(ds_backups *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    bool was = b->stopping;
    b->stopping = true;
    if (b->running)
        log_info("backup %s: stopping it (the server is draining)", b->cur.name);
    atomic_store(&b->cancel, true);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    if (was)
        return;
    if (b->sched_started)
        pthread_join(b->sched, NULL);
    b->sched_started = false;
    join_ended(b, true);
}

void backups_free(ds_backups *b)
{
    if (!b)
        return;
    backups_stop(b);
    backup_info_free(&b->cur);
    for (size_t i = 0; i < b->nrecent; i++)
        backup_info_free(&b->recent[i]);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}
