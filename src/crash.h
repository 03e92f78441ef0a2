/* crash.h: named crash points for the recovery tests. With DS_CRASH_AT=NAME
 * in the environment, crash_point("NAME") logs one line and kills the
 * process with SIGKILL, as a power cut would; without it, it does nothing.
 * The names are in docs/architecture.md (recovery). */
#ifndef DS_CRASH_H
#define DS_CRASH_H

#include <stdbool.h>

void crash_point(const char *name);
/* Whether DS_CRASH_AT names this point (to arrange what must precede it). */
bool crash_armed(const char *name);

#endif
