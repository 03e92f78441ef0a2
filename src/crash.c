/* crash.c: see crash.h. */
#include "crash.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

bool crash_armed(const char *name)
{
    const char *at = getenv("DS_CRASH_AT");
    return at && strcmp(at, name) == 0;
}

void crash_point(const char *name)
{
    if (!crash_armed(name))
        return;
    log_warn("crash point %s reached (DS_CRASH_AT): killing the process", name);
    raise(SIGKILL);
}
