/* redis_fixture.c: see redis_fixture.h. */
#include "redis_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool answers(const char *sock)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(sock);
    if (n >= sizeof a.sun_path)
        return false;
    memcpy(a.sun_path, sock, n + 1);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (ok) {
        char buf[16] = {0};
        ok = write(fd, "PING\r\n", 6) == 6 && read(fd, buf, sizeof buf - 1) > 0 &&
             strncmp(buf, "+PONG", 5) == 0;
    }
    if (fd >= 0)
        close(fd);
    return ok;
}

static bool spawn(redis_fixture *f)
{
    f->pid = fork();
    if (f->pid == 0) {
        int null = open("/dev/null", 1);
        dup2(null, 1);
        dup2(null, 2);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", f->sock, "--dir",
               f->dir, "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        if (answers(f->sock))
            return true;
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    return false;
}

bool redis_fixture_start(redis_fixture *f)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(f->dir, sizeof f->dir, "%s/ds-redis-XXXXXX", tmp);
    if (!mkdtemp(f->dir))
        return false;
    snprintf(f->sock, sizeof f->sock, "%s/redis.sock", f->dir);
    snprintf(f->url, sizeof f->url, "unix://%s", f->sock);
    return spawn(f);
}

void redis_fixture_stop(redis_fixture *f, bool graceful)
{
    if (f->pid > 0) {
        kill(f->pid, graceful ? SIGTERM : SIGKILL);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
    }
}

bool redis_fixture_restart(redis_fixture *f)
{
    unlink(f->sock);
    return spawn(f);
}

void redis_fixture_free(redis_fixture *f)
{
    redis_fixture_stop(f, false);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
}
