/* redis_child.h: the private redis-server of `serve` without --redis. It
 * runs on a unix socket under DIR/redis with an append-only file, dies with
 * the server, and is supervised: a child that exits (a crash, an OOM kill,
 * a kill -9) is reaped and started again on the same socket, directory and
 * AOF after a backoff (REDIS_RESTART_MIN_MS, doubling up to
 * REDIS_RESTART_MAX_MS while restarts do not stay up REDIS_STABLE_S), and
 * every death and restart is logged. The buses reconnect by themselves, and
 * the writer recovers as after any Redis restart; /ready is false (its
 * PING fails) until Redis answers again.
 *
 * Every call is made from one thread, the one that lives as long as the
 * server (the main thread): the child's parent-death signal
 * (PR_SET_PDEATHSIG) fires when the thread that forked it ends. */
#ifndef DS_REDIS_CHILD_H
#define DS_REDIS_CHILD_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "error.h"

enum {
    REDIS_RESTART_MIN_MS = 100,
    REDIS_RESTART_MAX_MS = 5000,
    REDIS_STABLE_S = 10,        /* a child up this long resets the backoff */
    REDIS_SOCK_MAX = 107,       /* sun_path holds 108 bytes with the NUL */
    REDIS_START_WAIT_MS = 5000, /* the first start waits this long for PING */
};

typedef struct redis_child {
    char dir[4096];                /* DIR/redis: the AOF and redis.log */
    char sock[REDIS_SOCK_MAX + 1]; /* the unix socket */
    char url[REDIS_SOCK_MAX + 8];  /* unix://sock */
    const char *fsync;             /* appendfsync: always or everysec (borrowed) */
    int lock_fd;                   /* the data directory's lock, inherited by the child */
    int pid;                       /* 0: not running */
    int64_t started_ns;            /* when pid was started */
    int64_t restart_at_ns;         /* pid 0: when to start it again */
    int failures;                  /* restarts in a row that did not stay up */
    int restarts;                  /* since the server started */
} redis_child;

_Static_assert(sizeof(((redis_child *)0)->url) >= sizeof "unix://" + REDIS_SOCK_MAX,
               "the URL holds unix:// and the longest socket path");

/* Starts redis-server for data_dir (absolute) and waits until it answers
 * PING through a bus opened with bus (its url is set to c->url, which must
 * outlive it). fsync is borrowed. 0, or unavailable with the log's path. */
int redis_child_start(redis_child *c, const char *data_dir, const char *fsync, int lock_fd,
                      bus_opts *bus, ds_error *err);
/* Reaps the child when it has exited (true: it died just now; logged) and
 * starts it again once its backoff is over (logged). Call on SIGCHLD and
 * at least every few hundred ms. Does nothing after redis_child_stop(). */
bool redis_child_supervise(redis_child *c, int64_t now_ns);
/* Nanoseconds until redis_child_supervise() has a restart to make (at
 * most max_ns; max_ns when none is due). */
int64_t redis_child_due_ns(const redis_child *c, int64_t now_ns, int64_t max_ns);
/* SIGTERM (its AOF is complete), SIGKILL after 5 s; no restart after. */
void redis_child_stop(redis_child *c);

#endif
