/* redis_fixture.h: a real redis-server for tests, on a unix socket in a
 * temporary directory, started and stopped by the test itself. */
#ifndef DS_REDIS_FIXTURE_H
#define DS_REDIS_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct redis_fixture {
    char dir[256];
    char sock[300];
    char url[320];
    pid_t pid;
} redis_fixture;

/* Starts redis-server (no persistence) and waits until it answers. */
bool redis_fixture_start(redis_fixture *f);
/* Stops it (SIGKILL when graceful is false) and keeps the directory. */
void redis_fixture_stop(redis_fixture *f, bool graceful);
/* Starts it again on the same socket. */
bool redis_fixture_restart(redis_fixture *f);
/* Stops it and removes the directory. */
void redis_fixture_free(redis_fixture *f);

#endif
