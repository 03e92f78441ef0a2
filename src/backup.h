/* backup.h: online, consistent backups of the database file, and restore.
 *
 * How a backup is consistent while writes go on: the persister owns the
 * database's write connection and every checkpoint (DuckDB's automatic
 * one is off). A backup asks the persister, between two groups (a job,
 * persist_run), to CHECKPOINT, and records each model's persisted seq and
 * the file's size; before that job it sets a checkpoint hold
 * (persist_hold_checkpoints), so the persister runs no CHECKPOINT of its
 * own until the copy is done. Between checkpoints DuckDB writes the main
 * file only into blocks that were free at the last checkpoint (blocks
 * freed since are reused only after the next one) and its header only at
 * a checkpoint; so while the persister goes on committing groups (to the
 * write-ahead log and free blocks), the file's bytes up to the recorded
 * size are the database as it was at that checkpoint. tests/unit/
 * test_backup.c checks this against the engine under load, with
 * checkpoints forced after every group.
 *
 * Off the persister's thread, the bytes are copied to DIR/NAME.duckdb.tmp
 * (progress: bytes of bytes_total), fsync'd, and the hold is released.
 * The copy is then opened with a DuckDB instance of its own (no
 * write-ahead log: the state at the checkpoint), its ds_meta gets the rows
 * that make it a backup (name, time taken, source directory; each model's
 * seq is in ds_model), and its seqs are compared with the recorded ones
 * (a difference fails the backup). Then it is renamed to DIR/NAME.duckdb
 * and the directory fsync'd. A failed or stopped backup leaves no file.
 *
 * A CHECKPOINT is refused while a reader holds a transaction: the backup
 * tries again every 100 ms, for up to checkpoint_wait_ms (30 s), then
 * fails saying so. */
#ifndef DS_BACKUP_H
#define DS_BACKUP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "persist.h"

/* A name is 1 to BACKUP_NAME_MAX of [A-Za-z0-9._-], not starting with
 * '.' or '-'; the file is NAME.duckdb in the backup directory. */
enum { BACKUP_NAME_MAX = 100, BACKUP_PATH_MAX = 4096 };
bool backup_name_ok(const char *name, size_t len);
/* "<prefix>-YYYYMMDDTHHMMSSZ" at now (UTC). */
void backup_default_name(const char *prefix, char *out, size_t n);

typedef enum backup_state { BACKUP_RUNNING = 0, BACKUP_DONE, BACKUP_FAILED } backup_state;
const char *backup_state_name(backup_state s);

/* One backup as the API shows it. models and seqs are malloc'd (by name):
 * backup_info_free(); backup_info_copy() makes a deep copy. */
typedef struct backup_info {
    char name[BACKUP_NAME_MAX + 1];
    char file[BACKUP_PATH_MAX + BACKUP_NAME_MAX + 16]; /* absolute */
    backup_state state;
    int64_t bytes, bytes_total; /* copied so far, of the database file's */
    size_t nmodels;
    char **models;
    int64_t *seqs;
    char taken[40]; /* ISO 8601 UTC, when it started */
    double ms;      /* how long it took (so far) */
    char error[512];
} backup_info;
void backup_info_free(backup_info *b);
void backup_info_copy(backup_info *dst, const backup_info *src);

typedef struct backup_take_opts {
    ds_persist *persist;        /* whose thread checkpoints */
    const char *db_path;        /* the database file it writes */
    const char *dir;            /* the backup directory (absolute; created) */
    const char *source;         /* the data directory, recorded in the backup */
    const char *name;           /* checked by the caller (backup_name_ok) */
    int64_t checkpoint_wait_ms; /* how long to retry a refused CHECKPOINT (30000) */
    const atomic_bool *cancel;  /* set: stop (the tmp file is removed); may be NULL */
} backup_take_opts;

/* Takes one backup (above) on the calling thread. info (name, file, taken,
 * bytes_total, seqs, bytes as they come) is updated under lock (may be
 * NULL) for those who watch; on return its state is done or failed (with
 * error, also in err and in the log). 0, or -DS_INVALID_VALUE (target
 * "name") when NAME.duckdb exists, -DS_UNAVAILABLE when cancelled or the
 * checkpoint stayed refused, -DS_INTERNAL for a file or database error. */
int backup_take(const backup_take_opts *o, backup_info *info, pthread_mutex_t *lock, ds_error *err);

/* Restores a backup into a data directory: checks that from is a
 * duckspread backup (read-only), that no server holds
 * data_dir/duckspread.lock (taken, with flock, for the copy), and that
 * data_dir holds no duckspread.db unless force; copies it to
 * data_dir/duckspread.db.tmp, fsyncs, renames it to duckspread.db
 * (removing an old duckspread.db.wal), fsyncs the directory. The data
 * directory is created when missing. 0 on success; prints nothing. */
int backup_restore(const char *from, const char *data_dir, bool force, ds_error *err);

/* ---- the server's backups: one at a time, on their own thread ------------------ */

typedef struct ds_backups ds_backups;

typedef struct backups_opts {
    ds_persist *persist;
    const char *db_path;
    const char *dir;    /* the backup directory (made absolute here) */
    const char *source; /* the data directory */
    int64_t every_ms;   /* a backup named auto-<time> this often (0: none) */
    int keep;           /* auto-* backups kept (the oldest beyond go) */
    int64_t checkpoint_wait_ms;
} backups_opts;

/* Starts the scheduler (with every_ms). Caller frees with backups_free(). */
int backups_new(const backups_opts *o, ds_backups **out, ds_error *err);
/* Stops the running backup (its tmp file removed, the hold released) and
 * the scheduler; later starts are refused (503). backups_free stops too. */
void backups_stop(ds_backups *b);
void backups_free(ds_backups *b);

/* Starts a backup named name (NULL: ds-<time>) on its own thread: *out is
 * its first state (running). 422 invalid_value (target "name") for a name
 * that is none or exists, 503 unavailable while another one runs (the
 * message names it) or the server stops. */
int backups_start(ds_backups *b, const char *name, backup_info *out, ds_error *err);
/* Waits until the backup named name is no longer running; *out is its
 * state then (as backups_get). */
int backups_wait(ds_backups *b, const char *name, backup_info *out, ds_error *err);
/* The running backup, one this process took, or a file of the directory:
 * 404 not_found (target "backup") when there is none of that name. */
int backups_get(ds_backups *b, const char *name, backup_info *out, ds_error *err);
/* The directory's backups, newest first, with the running one and those
 * that failed in this process. Free each, then the array. */
size_t backups_list(ds_backups *b, backup_info **out);

typedef struct backups_stats {
    int64_t ok, failed;
    double last_seconds; /* the last one's duration (0: none yet) */
    bool running;
} backups_stats;
void backups_get_stats(ds_backups *b, backups_stats *s);

#endif
