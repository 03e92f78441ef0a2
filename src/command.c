/* command.c: see command.h. */
#include "command.h"

#include <stdlib.h>
#include <string.h>

void outcome_clear(ds_outcome *o)
{
    for (size_t i = 0; i < o->nsets; i++) {
        free(o->sets[i].changes);
        free(o->sets[i].leaves);
        free(o->sets[i].in_totals);
    }
    free(o->sets);
    memset(o, 0, sizeof *o);
}
