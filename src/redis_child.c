/* redis_child.c: see redis_child.h. */
#include "redis_child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

/* Forks and execs redis-server on c->sock and c->dir; sets c->pid. */
static int spawn(redis_child *c, ds_error *err)
{
    unlink(c->sock); /* a dead child's socket file */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot fork redis-server: %s", strerror(errno));
    if (pid == 0) {
        sigset_t none; /* the server blocks SIGTERM for sigwait; Redis must see it */
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* dies with the server, even a kill -9'd one: an orphan would share
         * the append-only file with the next server's redis-server */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        /* Redis holds the data directory's lock too: after a kill -9 of the
         * server no new server starts until this redis-server has exited */
        if (c->lock_fd >= 0)
            fcntl(c->lock_fd, F_SETFD, 0);
        char log[4200];
        snprintf(log, sizeof log, "%s/redis.log", c->dir);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", c->sock,
               "--unixsocketperm", "700", "--dir", c->dir, "--appendonly", "yes", "--appendfsync",
               c->fsync, "--save", "", "--logfile", log, (char *)NULL);
        _exit(127);
    }
    c->pid = pid;
    c->started_ns = ds_now_ns();
    return 0;
}

/* The socket's path: DIR/redis/redis.sock, or a fresh directory under /tmp
 * when that is longer than a unix socket path may be. */
static int socket_path(redis_child *c, ds_error *err)
{
    char sock[sizeof c->dir + 16];
    snprintf(sock, sizeof sock, "%s/redis.sock", c->dir);
    if (strlen(sock) > REDIS_SOCK_MAX) {
        char tmp[] = "/tmp/duckspread-redis-XXXXXX";
        if (!mkdtemp(tmp))
            return ds_fail(err, DS_INTERNAL, NULL, "cannot create a socket directory");
        snprintf(sock, sizeof sock, "%s/redis.sock", tmp);
    }
    size_t n = strlen(sock);
    if (n > REDIS_SOCK_MAX) /* (the /tmp one is short: never) */
        return ds_fail(err, DS_INTERNAL, NULL, "the socket path %s is too long", sock);
    memcpy(c->sock, sock, n + 1);
    snprintf(c->url, sizeof c->url, "unix://%s", c->sock);
    return 0;
}

int redis_child_start(redis_child *c, const char *data_dir, const char *fsync, int lock_fd,
                      bus_opts *bus, ds_error *err)
{
    memset(c, 0, sizeof *c);
    c->fsync = fsync;
    c->lock_fd = lock_fd;
    if ((size_t)snprintf(c->dir, sizeof c->dir, "%s/redis", data_dir) >= sizeof c->dir)
        return ds_fail(err, DS_INTERNAL, NULL, "the data directory's path is too long");
    if (mkdir(c->dir, 0700) < 0 && errno != EEXIST)
        return ds_fail(err, DS_INTERNAL, NULL, "cannot create %s: %s", c->dir, strerror(errno));
    int rc = socket_path(c, err);
    if (rc == 0)
        rc = spawn(c, err);
    if (rc)
        return rc;
    bus->url = c->url;
    ds_bus *b;
    if (bus_open(bus, &b, err))
        return -DS_INTERNAL;
    rc = -1;
    for (int waited = 0; waited < REDIS_START_WAIT_MS && rc; waited += 25) {
        sleep_ms(25);
        rc = bus_ping(b, NULL);
        if (rc && waitpid(c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = 0;
            break;
        }
    }
    bus_close(b);
    if (rc)
        return ds_fail(err, DS_UNAVAILABLE, "redis",
                       "the private redis-server did not start (is the redis-server package "
                       "installed? see %s/redis.log)",
                       c->dir);
    log_info("redis: started a private redis-server (pid %d) on %s (appendfsync %s)", c->pid,
             c->sock, fsync);
    return 0;
}

/* "killed by signal 9", "exited with status 1" */
static void describe_exit(int status, char *out, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(out, cap, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(out, cap, "exited with status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Reaps an exited child and schedules its restart; true when it had died. */
static bool reap(redis_child *c, int64_t now_ns)
{
    int status = 0;
    if (c->pid <= 0 || waitpid(c->pid, &status, WNOHANG) != c->pid)
        return false;
    if (now_ns - c->started_ns >= (int64_t)REDIS_STABLE_S * 1000000000)
        c->failures = 0;
    int64_t delay_ms = REDIS_RESTART_MIN_MS;
    for (int i = 0; i < c->failures && delay_ms < REDIS_RESTART_MAX_MS; i++)
        delay_ms *= 2;
    if (delay_ms > REDIS_RESTART_MAX_MS)
        delay_ms = REDIS_RESTART_MAX_MS;
    c->failures++;
    char how[64];
    describe_exit(status, how, sizeof how);
    log_warn("redis: the private redis-server (pid %d) %s after %.1f s; restarting it in %lld ms "
             "(writes answer 503 unavailable meanwhile; see %s/redis.log)",
             c->pid, how, (double)(now_ns - c->started_ns) / 1e9, (long long)delay_ms, c->dir);
    c->pid = 0;
    c->restart_at_ns = now_ns + delay_ms * 1000000;
    return true;
}

bool redis_child_supervise(redis_child *c, int64_t now_ns)
{
    if (c->pid < 0) /* stopped */
        return false;
    bool died = reap(c, now_ns);
    if (c->pid == 0 && now_ns >= c->restart_at_ns) {
        ds_error err;
        if (spawn(c, &err)) {
            log_error("redis: %s; trying again in %d ms", err.message, REDIS_RESTART_MAX_MS);
            c->restart_at_ns = now_ns + (int64_t)REDIS_RESTART_MAX_MS * 1000000;
        } else {
            c->restarts++;
            log_info("redis: restarted the private redis-server (pid %d; restart %d) on %s with "
                     "its append-only file in %s",
                     c->pid, c->restarts, c->sock, c->dir);
        }
    }
    return died;
}

int64_t redis_child_due_ns(const redis_child *c, int64_t now_ns, int64_t max_ns)
{
    if (c->pid != 0)
        return max_ns;
    int64_t d = c->restart_at_ns - now_ns;
    return d < 0 ? 0 : d < max_ns ? d : max_ns;
}

void redis_child_stop(redis_child *c)
{
    int pid = c->pid;
    c->pid = -1; /* no restart from here on */
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}
