/* demo.h: the demo model `sales`, deterministic from a seed and sized by a
 * number of facts:
 *   product:  supplier > brand > family > product (one brand is "Brand X";
 *             family names repeat across brands, so keys matter)
 *   customer: region > customer
 *   time:     year > quarter > month ("2025", "2025-Q1", "2025-03")
 *   measures: quantity (scale 0), net_amount (scale 2)
 * and the view sales_summary_by_product_family in the database file. */
#ifndef DS_DEMO_H
#define DS_DEMO_H

#include <stdint.h>

#include "error.h"
#include "model.h"
#include "store.h"

#define DEMO_MODEL         "sales"
#define DEMO_VIEW          "sales_summary_by_product_family"
#define DEMO_DEFAULT_FACTS 1000000

typedef struct demo_opts {
    uint64_t seed;
    int64_t facts; /* about this many facts */
} demo_opts;

void demo_opts_default(demo_opts *o);

/* The catalog of the demo model (members, measures), caller frees with
 * model_free(). */
ds_model *demo_model(const demo_opts *o);

/* Creates and loads the demo model and its view into the store unless a
 * model named "sales" exists. *loaded says whether it did; *facts how many
 * facts it wrote. */
int demo_load(ds_store *s, const demo_opts *o, bool *loaded, int64_t *facts, ds_error *err);

#endif
