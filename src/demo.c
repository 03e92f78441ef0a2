/* demo.c: see demo.h. Everything derives from the seed through ds_mix64,
 * so the same seed and size give the same model and facts everywhere. */
#include "demo.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const family_names[] = {"Shoes", "Shirts", "Hats", "Bags"};
static const char *const region_names[] = {"North", "South", "East", "West"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
enum { BRANDS_PER_SUPPLIER = 3, FIRST_YEAR = 2024, YEARS = 3, MONTHS = YEARS * 12 };

/* Shape from the number of facts: half the cells of
 * products x customers x months hold a fact. */
typedef struct shape {
    int suppliers, families_per_brand, products_per_family, customers;
} shape;

static int64_t isqrt(int64_t v)
{
    int64_t r = 0;
    while ((r + 1) * (r + 1) <= v)
        r++;
    return r;
}

static shape demo_shape(int64_t facts)
{
    shape sh;
    int64_t pc = facts * 2 / MONTHS; /* products x customers */
    int64_t products = 2 * isqrt(pc < 16 ? 16 : pc);
    sh.families_per_brand = (int)DS_ARRAY_LEN(family_names);
    int per_supplier = BRANDS_PER_SUPPLIER * sh.families_per_brand;
    sh.suppliers = (int)(products / (8 * per_supplier));
    if (sh.suppliers < 2)
        sh.suppliers = 2;
    sh.products_per_family = (int)(products / (sh.suppliers * per_supplier));
    if (sh.products_per_family < 2)
        sh.products_per_family = 2;
    products = (int64_t)sh.suppliers * per_supplier * sh.products_per_family;
    sh.customers = (int)((pc + products - 1) / products);
    if (sh.customers < 4)
        sh.customers = 4;
    return sh;
}

void demo_opts_default(demo_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 42;
    o->facts = DEMO_DEFAULT_FACTS;
}

static int32_t add(ds_dim *d, int32_t parent, const char *key, const char *name)
{
    int id = model_add_member(d, parent, key, name, d->nmembers, NULL);
    if (id < 0)
        abort(); /* the demo's own names are always valid */
    return id;
}

static void build_products(ds_dim *d, const shape *sh)
{
    char key[64], name[64];
    int product = 0, brand = 0;
    for (int s = 1; s <= sh->suppliers; s++) {
        snprintf(key, sizeof key, "S%02d", s);
        snprintf(name, sizeof name, "Supplier %02d", s);
        int32_t sup = add(d, d->root, key, name);
        for (int b = 1; b <= BRANDS_PER_SUPPLIER; b++) {
            brand++;
            snprintf(key, sizeof key, "S%02d-B%d", s, b);
            if (brand == 2)
                snprintf(name, sizeof name, "Brand X");
            else
                snprintf(name, sizeof name, "Brand %02d", brand);
            int32_t br = add(d, sup, key, name);
            for (int f = 1; f <= sh->families_per_brand; f++) {
                snprintf(key, sizeof key, "S%02d-B%d-F%d", s, b, f);
                int32_t fam = add(d, br, key, family_names[f - 1]);
                for (int p = 0; p < sh->products_per_family; p++) {
                    product++;
                    snprintf(key, sizeof key, "P-%04d", product);
                    snprintf(name, sizeof name, "Product %04d", product);
                    add(d, fam, key, name);
                }
            }
        }
    }
}

static void build_customers(ds_dim *d, const shape *sh)
{
    char key[64], name[64];
    int32_t regions[4];
    for (int r = 0; r < 4; r++) {
        snprintf(key, sizeof key, "R-%s", region_names[r]);
        regions[r] = add(d, d->root, key, region_names[r]);
    }
    for (int c = 1; c <= sh->customers; c++) {
        snprintf(key, sizeof key, "C-%04d", c);
        snprintf(name, sizeof name, "Customer %04d", c);
        add(d, regions[(c - 1) % 4], key, name);
    }
}

static void build_time(ds_dim *d)
{
    char key[64], name[64];
    for (int y = FIRST_YEAR; y < FIRST_YEAR + YEARS; y++) {
        snprintf(key, sizeof key, "%d", y);
        int32_t year = add(d, d->root, key, key);
        for (int q = 1; q <= 4; q++) {
            snprintf(key, sizeof key, "%d-Q%d", y, q);
            snprintf(name, sizeof name, "Q%d %d", q, y);
            int32_t quarter = add(d, year, key, name);
            for (int m = 3 * q - 2; m <= 3 * q; m++) {
                snprintf(key, sizeof key, "%d-%02d", y, m);
                snprintf(name, sizeof name, "%s %d", month_names[m - 1], y);
                add(d, quarter, key, name);
            }
        }
    }
}

ds_model *demo_model(const demo_opts *o)
{
    shape sh = demo_shape(o->facts);
    ds_model *m = model_new(0, DEMO_MODEL);
    model_add_dim(m, 0, "product", "All", "All products", NULL);
    model_add_dim(m, 1, "customer", "All", "All customers", NULL);
    model_add_dim(m, 2, "time", "All", "All time", NULL);
    build_products(&m->dims[0], &sh);
    build_customers(&m->dims[1], &sh);
    build_time(&m->dims[2]);
    for (int k = 0; k < 3; k++)
        model_dim_index(&m->dims[k]);
    model_add_measure(m, 0, "quantity", 0, NULL);
    model_add_measure(m, 1, "net_amount", 2, NULL);
    return m;
}

/* Loads about o->facts facts: each cell is drawn with the probability that
 * gives that count; quantities 1..100, prices per product. */
static int load_facts(ds_store *s, const ds_model *m, const demo_opts *o, int64_t *count,
                      ds_error *err)
{
    int32_t *products, *customers, *months;
    size_t np = model_leaves(&m->dims[0], m->dims[0].root, &products);
    size_t nc = model_leaves(&m->dims[1], m->dims[1].root, &customers);
    size_t nt = model_leaves(&m->dims[2], m->dims[2].root, &months);
    uint64_t cells = (uint64_t)np * nc * nt;
    uint64_t threshold = cells <= (uint64_t)o->facts
                             ? UINT64_MAX
                             : (uint64_t)((ds_u128)o->facts * UINT64_MAX / cells);
    ds_loader *l;
    int rc = store_load_begin(s, DEMO_MODEL, &l, err);
    *count = 0;
    for (size_t p = 0; rc == 0 && p < np; p++) {
        int64_t price = 199 + (int64_t)(ds_mix64(o->seed ^ 0x5eedULL ^ (uint64_t)p) % 9800);
        for (size_t c = 0; rc == 0 && c < nc; c++) {
            for (size_t t = 0; rc == 0 && t < nt; t++) {
                uint64_t h = ds_mix64(o->seed * 0x9e3779b97f4a7c15ULL ^
                                      ((uint64_t)p << 40 | (uint64_t)c << 12 | t));
                if (h > threshold)
                    continue;
                int32_t cell[3] = {products[p], customers[c], months[t]};
                int64_t qty = 1 + (int64_t)(ds_mix64(h) % 100);
                int64_t values[2] = {qty, qty * price};
                rc = store_load_add(l, cell, values, NULL, err);
                (*count)++;
            }
        }
    }
    int rc2 = store_load_end(l, rc == 0, rc ? NULL : err);
    free(products);
    free(customers);
    free(months);
    return rc ? rc : rc2;
}

/* The view: display names and keys of supplier, brand and family, the month
 * key, both measures, at three grouping sets. grouping_id is GROUPING() of
 * (supplier_key, brand_key, family_key, month): 0 for family rows, 2 for
 * brand rows, 6 for supplier rows. */
static void view_sql(const ds_model *m, char *buf, size_t n)
{
    snprintf(
        buf, n,
        "SELECT s.name AS supplier, b.name AS brand, fm.name AS family, "
        "s.key AS supplier_key, b.key AS brand_key, fm.key AS family_key, "
        "mo.key AS month, "
        "COALESCE(SUM(f.\"m0\"), 0) AS quantity, COALESCE(SUM(f.\"m1\"), 0) AS net_amount, "
        "GROUPING(s.key, b.key, fm.key, mo.key) AS grouping_id "
        "FROM \"f_%1$d\" f "
        "JOIN ds_member p ON p.model_id = %1$d AND p.dim_id = 0 AND p.member_id = f.\"d0\" "
        "JOIN ds_member fm ON fm.model_id = %1$d AND fm.dim_id = 0 "
        "AND fm.member_id = p.parent_id "
        "JOIN ds_member b ON b.model_id = %1$d AND b.dim_id = 0 AND b.member_id = fm.parent_id "
        "JOIN ds_member s ON s.model_id = %1$d AND s.dim_id = 0 AND s.member_id = b.parent_id "
        "JOIN ds_member mo ON mo.model_id = %1$d AND mo.dim_id = 2 "
        "AND mo.member_id = f.\"d2\" "
        "GROUP BY GROUPING SETS ((s.key, s.name, b.key, b.name, fm.key, fm.name, mo.key), "
        "(s.key, s.name, b.key, b.name, mo.key), (s.key, s.name, mo.key))",
        (int)m->id);
}

int demo_load(ds_store *s, const demo_opts *o, bool *loaded, int64_t *facts, ds_error *err)
{
    *loaded = false;
    *facts = 0;
    if (store_model_seq(s, DEMO_MODEL) >= 0)
        return 0;
    ds_model *def = demo_model(o);
    int rc = store_model_create(s, def, err);
    model_free(def);
    if (rc)
        return rc;
    const ds_model *m = store_model_acquire(s, DEMO_MODEL, strlen(DEMO_MODEL));
    rc = load_facts(s, m, o, facts, err);
    char sql[2048];
    view_sql(m, sql, sizeof sql);
    if (rc == 0)
        rc = store_view_create(s, DEMO_MODEL, DEMO_VIEW, sql, err);
    store_model_release(s, m);
    if (rc) {
        store_model_drop(s, DEMO_MODEL, NULL);
        return rc;
    }
    *loaded = true;
    return 0;
}
