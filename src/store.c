/* store.c: the DuckDB database: connection, SQL helpers, the update
 * functions the persister's UPDATEs read, schema, catalog load, model
 * snapshots, checkpoints. See store.h and store_internal.h. */
#include "store_internal.h"

#include <sys/stat.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* ---- SQL helpers ------------------------------------------------------- */

int store__exec(duckdb_connection con, const char *sql, ds_error *err)
{
    duckdb_result res;
    if (duckdb_query(con, sql, &res) == DuckDBError) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(&res));
        duckdb_destroy_result(&res);
        return rc;
    }
    duckdb_destroy_result(&res);
    return 0;
}

int store__prepare(duckdb_connection con, const char *sql, duckdb_prepared_statement *out,
                   ds_error *err)
{
    if (duckdb_prepare(con, sql, out) == DuckDBError) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_prepare_error(*out));
        duckdb_destroy_prepare(out);
        *out = NULL;
        return rc;
    }
    return 0;
}

int store__run(duckdb_prepared_statement st, duckdb_result *res, ds_error *err)
{
    duckdb_result local;
    duckdb_result *r = res ? res : &local;
    memset(r, 0, sizeof *r);
    if (!st)
        return ds_fail(err, DS_INTERNAL, NULL, "database: no prepared statement");
    if (duckdb_execute_prepared(st, r) == DuckDBError) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(r));
        duckdb_destroy_result(r);
        return rc;
    }
    if (!res)
        duckdb_destroy_result(&local);
    return 0;
}

void store__ident(ds_buf *b, const char *name)
{
    ds_buf_putc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            ds_buf_putc(b, '"');
        ds_buf_putc(b, *p);
    }
    ds_buf_putc(b, '"');
}

void store__table(ds_buf *b, char prefix, int32_t model_id)
{
    char name[32];
    snprintf(name, sizeof name, "%c_%" PRId32, prefix, model_id);
    store__ident(b, name);
}

void store__column(ds_buf *b, char prefix, int32_t id)
{
    char name[32];
    snprintf(name, sizeof name, "%c%" PRId32, prefix, id);
    store__ident(b, name);
}

static void column_ref(ds_buf *b, const char *alias, char prefix, int32_t id)
{
    if (alias) {
        store__ident(b, alias);
        ds_buf_putc(b, '.');
    }
    store__column(b, prefix, id);
}

void store__arg(sql_args *a, int64_t v)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 16;
        a->v = xrealloc(a->v, (size_t)a->cap * sizeof *a->v);
    }
    a->v[a->n++] = v;
}

void store__args_free(sql_args *a)
{
    free(a->v);
    memset(a, 0, sizeof *a);
}

void store__in_subtree(ds_buf *sql, sql_args *a, const ds_model *m, int dim, int32_t x,
                       const char *alias)
{
    const ds_dim *d = &m->dims[dim];
    ds_buf_putc(sql, '(');
    column_ref(sql, alias, 'd', d->id);
    ds_buf_puts(sql, " BETWEEN ? AND ?");
    store__arg(a, d->id_min[x]);
    store__arg(a, d->id_max[x]);
    if (!model_ids_contiguous(d, x)) {
        ds_buf_puts(sql, " AND ");
        column_ref(sql, alias, 'd', d->id);
        ds_buf_puts(sql, " IN (SELECT member_id FROM ds_closure WHERE model_id = ? AND "
                         "dim_id = ? AND ancestor_id = ?)");
        store__arg(a, m->id);
        store__arg(a, d->id);
        store__arg(a, x);
    }
    ds_buf_putc(sql, ')');
}

void store__region(ds_buf *sql, sql_args *a, const ds_model *m, const ds_cell *cell,
                   const char *alias)
{
    for (int k = 0; k < m->ndims; k++) {
        if (cell->m[k] == m->dims[k].root)
            continue;
        ds_buf_puts(sql, " AND ");
        store__in_subtree(sql, a, m, k, cell->m[k], alias);
    }
}

int store__bind_args(duckdb_prepared_statement st, const sql_args *a, int first, ds_error *err)
{
    for (int i = 0; i < a->n; i++)
        if (duckdb_bind_int64(st, (idx_t)(first + i), a->v[i]) == DuckDBError)
            return ds_fail(err, DS_INTERNAL, NULL, "database: cannot bind parameter %d", first + i);
    return 0;
}

duckdb_hugeint store__hugeint(ds_i128 v)
{
    duckdb_hugeint h;
    h.lower = (uint64_t)(ds_u128)v;
    h.upper = (int64_t)(v >> 64);
    return h;
}

ds_i128 store__from_hugeint(duckdb_hugeint h)
{
    return (ds_i128)(((ds_u128)(uint64_t)h.upper << 64) | (ds_u128)h.lower);
}

void store__rows_init(row_iter *it, duckdb_result *res)
{
    it->res = res;
    it->chunk = NULL;
    it->n = it->i = 0;
}

bool store__rows_next(row_iter *it)
{
    if (it->chunk && ++it->i < it->n)
        return true;
    for (;;) {
        if (it->chunk)
            duckdb_destroy_data_chunk(&it->chunk);
        it->chunk = duckdb_fetch_chunk(*it->res);
        if (!it->chunk)
            return false;
        it->n = duckdb_data_chunk_get_size(it->chunk);
        it->i = 0;
        if (it->n > 0)
            return true;
    }
}

void store__rows_done(row_iter *it)
{
    if (it->chunk)
        duckdb_destroy_data_chunk(&it->chunk);
}

idx_t store__chunk_next(row_iter *it)
{
    for (;;) {
        if (it->chunk)
            duckdb_destroy_data_chunk(&it->chunk);
        it->chunk = duckdb_fetch_chunk(*it->res);
        if (!it->chunk)
            return 0;
        it->n = duckdb_data_chunk_get_size(it->chunk);
        it->i = 0;
        if (it->n > 0)
            return it->n;
    }
}

void *store__chunk_data(const row_iter *it, idx_t col)
{
    return duckdb_vector_get_data(duckdb_data_chunk_get_vector(it->chunk, col));
}

uint64_t *store__chunk_valid(const row_iter *it, idx_t col)
{
    return duckdb_vector_get_validity(duckdb_data_chunk_get_vector(it->chunk, col));
}

static duckdb_vector vec(const row_iter *it, idx_t col)
{
    return duckdb_data_chunk_get_vector(it->chunk, col);
}

bool store__rows_null(const row_iter *it, idx_t col)
{
    uint64_t *valid = duckdb_vector_get_validity(vec(it, col));
    return valid && !duckdb_validity_row_is_valid(valid, it->i);
}

int32_t store__rows_i32(const row_iter *it, idx_t col)
{
    return ((int32_t *)duckdb_vector_get_data(vec(it, col)))[it->i];
}

int64_t store__rows_i64(const row_iter *it, idx_t col)
{
    return ((int64_t *)duckdb_vector_get_data(vec(it, col)))[it->i];
}

ds_i128 store__rows_i128(const row_iter *it, idx_t col)
{
    return store__from_hugeint(((duckdb_hugeint *)duckdb_vector_get_data(vec(it, col)))[it->i]);
}

const char *store__rows_str(const row_iter *it, idx_t col, uint32_t *len)
{
    duckdb_string_t *s = &((duckdb_string_t *)duckdb_vector_get_data(vec(it, col)))[it->i];
    *len = duckdb_string_t_length(*s);
    return duckdb_string_t_data(s);
}

int store__scalar_i128(duckdb_result *res, ds_i128 *out, ds_error *err)
{
    duckdb_logical_type t = duckdb_column_logical_type(res, 0);
    duckdb_type id = duckdb_get_type_id(t);
    duckdb_type phys = id == DUCKDB_TYPE_DECIMAL ? duckdb_decimal_internal_type(t) : id;
    duckdb_destroy_logical_type(&t);
    row_iter it;
    store__rows_init(&it, res);
    *out = 0;
    if (!store__rows_next(&it))
        return 0;
    int rc = 0;
    if (!store__rows_null(&it, 0)) {
        if (phys == DUCKDB_TYPE_HUGEINT)
            *out = store__rows_i128(&it, 0);
        else if (phys == DUCKDB_TYPE_BIGINT)
            *out = store__rows_i64(&it, 0);
        else if (phys == DUCKDB_TYPE_INTEGER)
            *out = store__rows_i32(&it, 0);
        else
            rc = ds_fail(err, DS_INTERNAL, NULL, "database: unexpected result type %d", (int)phys);
    }
    store__rows_done(&it);
    return rc;
}

/* ---- ledger bodies ----------------------------------------------------------
 * The stored answer of every request (an event of ~6 KB for a demo leaf
 * write) is kept zstd-compressed: a tenth of the bytes through the
 * write-ahead log and the checkpoints, which measured a third more edits
 * per second end to end. */

char *store__pack_body(ds_store *s, const char *body, size_t len, size_t *out_len)
{
    if (!s->zctx && !(s->zctx = ZSTD_createCCtx())) /* one context: ZSTD_compress makes one */
        return NULL;                                /* per call (a large zeroed allocation) */
    size_t cap = ZSTD_compressBound(len);
    char *z = xmalloc(cap);
    size_t n = ZSTD_compressCCtx(s->zctx, z, cap, body, len, 1);
    if (ZSTD_isError(n)) { /* cannot happen with a bound-sized buffer */
        free(z);
        return NULL;
    }
    *out_len = n;
    return z;
}

char *store__unpack_body(const char *z, size_t len, size_t *out_len)
{
    if (len && z[0] == '{') { /* a command kept as it is */
        *out_len = len;
        return xstrndup(z, len);
    }
    unsigned long long n = ZSTD_getFrameContentSize(z, len);
    if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN || n > ((size_t)1 << 30))
        return NULL;
    char *body = xmalloc((size_t)n + 1);
    size_t got = ZSTD_decompress(body, (size_t)n, z, len);
    if (ZSTD_isError(got) || got != n) {
        free(body);
        return NULL;
    }
    body[n] = 0;
    *out_len = (size_t)n;
    return body;
}

/* body, zbody (columns col and col + 1 of a ds_request row): the body as a
 * malloc'd string, or NULL when the stored bytes are damaged. */
char *store__row_body(const row_iter *it, idx_t col, size_t *len)
{
    uint32_t l;
    if (!store__rows_null(it, col + 1)) {
        const char *z = store__rows_str(it, col + 1, &l);
        return store__unpack_body(z, l, len);
    }
    const char *b = store__rows_null(it, col) ? "" : store__rows_str(it, col, &l);
    if (!b[0])
        l = 0;
    *len = l;
    return xstrndup(b, l);
}

/* ---- the update functions ------------------------------------------------
 * UPDATE ... SET m = ds_rowval_<scale>(rowid) WHERE ds_rowhas(rowid): the
 * writer computes new values in C and DuckDB writes them in one pass. */

static bool rowmap_get(const rowmap *rm, int64_t rowid, int64_t *v)
{
    if (rm->dense) {
        uint64_t i = (uint64_t)(rowid - rm->base);
        if (rowid < rm->base || i >= rm->span || !rm->has[i])
            return false;
        *v = rm->vals[i];
        return true;
    }
    if (!rm->cap)
        return false;
    size_t i = (size_t)ds_mix64((uint64_t)rowid) & (rm->cap - 1);
    while (rm->keys[i] != -1) {
        if (rm->keys[i] == rowid) {
            *v = rm->hvals[i];
            return true;
        }
        i = (i + 1) & (rm->cap - 1);
    }
    return false;
}

void store__rowmap_set(rowmap *rm, const int64_t *rowids, const int64_t *vals, size_t n)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        if (rowids[i] < lo)
            lo = rowids[i];
        if (rowids[i] > hi)
            hi = rowids[i];
    }
    store__rowmap_free(rm);
    if (n == 0)
        return;
    uint64_t span = (uint64_t)(hi - lo) + 1;
    if (span <= 4 * (uint64_t)n + 4096) {
        rm->dense = true;
        rm->base = lo;
        rm->span = (size_t)span;
        rm->vals = xmalloc_array(rm->span, sizeof *rm->vals);
        rm->has = xcalloc(rm->span, 1);
        for (size_t i = 0; i < n; i++) {
            rm->vals[rowids[i] - lo] = vals[i];
            rm->has[rowids[i] - lo] = 1;
        }
        return;
    }
    rm->cap = 16;
    while (rm->cap < 2 * n)
        rm->cap *= 2;
    rm->keys = xmalloc_array(rm->cap, sizeof *rm->keys);
    rm->hvals = xmalloc_array(rm->cap, sizeof *rm->hvals);
    for (size_t i = 0; i < rm->cap; i++)
        rm->keys[i] = -1;
    for (size_t i = 0; i < n; i++) {
        size_t j = (size_t)ds_mix64((uint64_t)rowids[i]) & (rm->cap - 1);
        while (rm->keys[j] != -1 && rm->keys[j] != rowids[i])
            j = (j + 1) & (rm->cap - 1);
        rm->keys[j] = rowids[i];
        rm->hvals[j] = vals[i];
    }
}

static void fn_rowval(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out)
{
    const rowmap *rm = duckdb_scalar_function_get_extra_info(info);
    idx_t n = duckdb_data_chunk_get_size(in);
    const int64_t *rid = duckdb_vector_get_data(duckdb_data_chunk_get_vector(in, 0));
    int64_t *o = duckdb_vector_get_data(out);
    for (idx_t i = 0; i < n; i++)
        if (!rowmap_get(rm, rid[i], &o[i]))
            o[i] = 0; /* never reached: rows are filtered by ds_rowhas */
}

static void fn_rowhas(duckdb_function_info info, duckdb_data_chunk in, duckdb_vector out)
{
    const rowmap *rm = duckdb_scalar_function_get_extra_info(info);
    idx_t n = duckdb_data_chunk_get_size(in);
    const int64_t *rid = duckdb_vector_get_data(duckdb_data_chunk_get_vector(in, 0));
    bool *o = duckdb_vector_get_data(out);
    int64_t v;
    for (idx_t i = 0; i < n; i++)
        o[i] = rowmap_get(rm, rid[i], &v);
}

static int register_fn(ds_store *s, const char *name, duckdb_logical_type arg,
                       duckdb_logical_type ret, duckdb_scalar_function_t fn, rowmap *map,
                       ds_error *err)
{
    duckdb_scalar_function f = duckdb_create_scalar_function();
    duckdb_scalar_function_set_name(f, name);
    duckdb_scalar_function_add_parameter(f, arg);
    duckdb_scalar_function_set_return_type(f, ret);
    duckdb_scalar_function_set_function(f, fn);
    duckdb_scalar_function_set_extra_info(f, map, NULL);
    duckdb_scalar_function_set_volatile(f);
    duckdb_state st = duckdb_register_scalar_function(s->con, f);
    duckdb_destroy_scalar_function(&f);
    if (st == DuckDBError)
        return ds_fail(err, DS_INTERNAL, NULL, "database: cannot register %s", name);
    return 0;
}

/* ds_rowhas(rowid) -> BOOLEAN and per scale ds_rowval_<s>(rowid) ->
 * DECIMAL(18, s) over s->rows; ds_rowstamp(rowid) -> BIGINT over
 * s->stamps. */
static int register_functions(ds_store *s, ds_error *err)
{
    duckdb_logical_type b = duckdb_create_logical_type(DUCKDB_TYPE_BOOLEAN);
    duckdb_logical_type i = duckdb_create_logical_type(DUCKDB_TYPE_BIGINT);
    int rc = register_fn(s, "ds_rowhas", i, b, fn_rowhas, &s->rows, err);
    if (rc == 0)
        rc = register_fn(s, "ds_rowstamp", i, i, fn_rowval, &s->stamps, err);
    for (int scale = 0; rc == 0 && scale <= 18; scale++) {
        char name[32];
        duckdb_logical_type t = duckdb_create_decimal_type(18, (uint8_t)scale);
        snprintf(name, sizeof name, "ds_rowval_%d", scale);
        rc = register_fn(s, name, i, t, fn_rowval, &s->rows, err);
        duckdb_destroy_logical_type(&t);
    }
    duckdb_destroy_logical_type(&b);
    duckdb_destroy_logical_type(&i);
    return rc;
}

/* ---- schema and catalog ------------------------------------------------- */

static const char *const schema_sql[] = {
    "CREATE TABLE IF NOT EXISTS ds_meta(key VARCHAR, value VARCHAR)",
    "CREATE TABLE IF NOT EXISTS ds_model(model_id INTEGER, name VARCHAR, seq BIGINT, "
    "created TIMESTAMPTZ, struct_seq BIGINT)",
    "CREATE TABLE IF NOT EXISTS ds_dimension(model_id INTEGER, dim_id INTEGER, "
    "ordinal INTEGER, name VARCHAR, next_member_id INTEGER)",
    "CREATE TABLE IF NOT EXISTS ds_measure(model_id INTEGER, measure_id INTEGER, "
    "ordinal INTEGER, name VARCHAR, scale INTEGER)",
    "CREATE TABLE IF NOT EXISTS ds_member(model_id INTEGER, dim_id INTEGER, "
    "member_id INTEGER, parent_id INTEGER, ordinal INTEGER, key VARCHAR, name VARCHAR, "
    "struct_seq BIGINT)",
    "CREATE TABLE IF NOT EXISTS ds_closure(model_id INTEGER, dim_id INTEGER, "
    "ancestor_id INTEGER, member_id INTEGER, distance INTEGER)",
    "CREATE TABLE IF NOT EXISTS ds_view(model_id INTEGER, name VARCHAR)",
    "CREATE TABLE IF NOT EXISTS ds_command(model_id INTEGER, seq BIGINT, part INTEGER, "
    "ts TIMESTAMP, user_name VARCHAR, request_id VARCHAR, kind VARCHAR, "
    "measure_id INTEGER, target VARCHAR, method VARCHAR, form VARCHAR, amount VARCHAR, "
    "old_value HUGEINT, new_value HUGEINT, leaves_changed BIGINT, detail VARCHAR)",
    "CREATE TABLE IF NOT EXISTS ds_request(model_id INTEGER, user_name VARCHAR, "
    "request_id VARCHAR, body_hash VARCHAR, seq BIGINT, code INTEGER, body VARCHAR, "
    "ts TIMESTAMP, zbody BLOB)",
    /* files written before bodies were compressed, before commands were kept */
    "ALTER TABLE ds_request ADD COLUMN IF NOT EXISTS zbody BLOB",
    "ALTER TABLE ds_request ADD COLUMN IF NOT EXISTS zcmd BLOB",
    "INSERT INTO ds_meta SELECT 'schema_version', '1' WHERE NOT EXISTS "
    "(SELECT 1 FROM ds_meta WHERE key = 'schema_version')",
};

static int query_rows(duckdb_connection con, const char *sql, duckdb_result *res, ds_error *err)
{
    if (duckdb_query(con, sql, res) == DuckDBError) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "database: %s", duckdb_result_error(res));
        duckdb_destroy_result(res);
        return rc;
    }
    return 0;
}

static ds_model *find_loaded(ds_model **ms, size_t n, int32_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ms[i]->id == id)
            return ms[i];
    return NULL;
}

void store__add_slot(ds_store *s, ds_model *m, int64_t seq)
{
    model_slot *slot = xcalloc(1, sizeof *slot);
    m->refs = 1;
    slot->model = m;
    slot->seq = seq;
    pthread_mutex_lock(&s->lock);
    s->slots = xrealloc(s->slots, (s->nslots + 1) * sizeof *s->slots);
    s->slots[s->nslots++] = slot;
    pthread_mutex_unlock(&s->lock);
}

static int load_dims_measures(ds_store *s, ds_model **ms, size_t n, ds_error *err)
{
    duckdb_result res;
    row_iter it;
    int rc = query_rows(s->con,
                        "SELECT model_id, dim_id, name, next_member_id FROM ds_dimension "
                        "ORDER BY model_id, ordinal",
                        &res, err);
    if (rc)
        return rc;
    store__rows_init(&it, &res);
    while (rc == 0 && store__rows_next(&it)) {
        ds_model *m = find_loaded(ms, n, store__rows_i32(&it, 0));
        uint32_t len;
        const char *name = store__rows_str(&it, 2, &len);
        if (m && m->ndims < DS_MAX_DIMS) {
            ds_dim *d = &m->dims[m->ndims++];
            memset(d, 0, sizeof *d);
            d->id = store__rows_i32(&it, 1);
            d->name = xstrndup(name, len);
            model_reserve_ids(d, store__rows_i32(&it, 3));
        }
    }
    store__rows_done(&it);
    duckdb_destroy_result(&res);
    if (rc || (rc = query_rows(s->con,
                               "SELECT model_id, measure_id, name, scale FROM ds_measure "
                               "ORDER BY model_id, ordinal",
                               &res, err)))
        return rc;
    store__rows_init(&it, &res);
    while (store__rows_next(&it)) {
        ds_model *m = find_loaded(ms, n, store__rows_i32(&it, 0));
        uint32_t len;
        const char *name = store__rows_str(&it, 2, &len);
        if (m && m->nmeasures < DS_MAX_MEASURES)
            m->measures[m->nmeasures++] = (ds_measure){.id = store__rows_i32(&it, 1),
                                                       .name = xstrndup(name, len),
                                                       .scale = store__rows_i32(&it, 3)};
    }
    store__rows_done(&it);
    duckdb_destroy_result(&res);
    return 0;
}

static ds_dim *dim_by_id(ds_model *m, int32_t id)
{
    for (int i = 0; i < m->ndims; i++)
        if (m->dims[i].id == id)
            return &m->dims[i];
    return NULL;
}

static int load_members(ds_store *s, ds_model **ms, size_t n, ds_error *err)
{
    duckdb_result res;
    int rc = query_rows(s->con,
                        "SELECT model_id, dim_id, member_id, parent_id, ordinal, key, name, "
                        "struct_seq FROM ds_member ORDER BY model_id, dim_id, member_id",
                        &res, err);
    if (rc)
        return rc;
    row_iter it;
    store__rows_init(&it, &res);
    while (store__rows_next(&it)) {
        ds_model *m = find_loaded(ms, n, store__rows_i32(&it, 0));
        ds_dim *d = m ? dim_by_id(m, store__rows_i32(&it, 1)) : NULL;
        if (!d)
            continue;
        uint32_t klen, nlen;
        const char *k = store__rows_str(&it, 5, &klen);
        char *key = xstrndup(k, klen);
        const char *nm = store__rows_str(&it, 6, &nlen);
        char *name = xstrndup(nm, nlen);
        int32_t parent = store__rows_null(&it, 3) ? -1 : store__rows_i32(&it, 3);
        model_put_member(d, store__rows_i32(&it, 2), parent, key, name, store__rows_i32(&it, 4),
                         store__rows_i64(&it, 7));
        free(key);
        free(name);
    }
    store__rows_done(&it);
    duckdb_destroy_result(&res);
    return 0;
}

static int load_catalog(ds_store *s, ds_error *err)
{
    duckdb_result res;
    int rc =
        query_rows(s->con, "SELECT model_id, name, seq, struct_seq FROM ds_model ORDER BY model_id",
                   &res, err);
    if (rc)
        return rc;
    ds_model **ms = NULL;
    int64_t *seqs = NULL;
    size_t n = 0;
    row_iter it;
    store__rows_init(&it, &res);
    while (store__rows_next(&it)) {
        uint32_t len;
        const char *name = store__rows_str(&it, 1, &len);
        char *nm = xstrndup(name, len);
        ms = xrealloc(ms, (n + 1) * sizeof *ms);
        seqs = xrealloc(seqs, (n + 1) * sizeof *seqs);
        ms[n] = model_new(store__rows_i32(&it, 0), nm);
        ms[n]->struct_seq = store__rows_i64(&it, 3);
        seqs[n++] = store__rows_i64(&it, 2);
        free(nm);
    }
    store__rows_done(&it);
    duckdb_destroy_result(&res);
    rc = load_dims_measures(s, ms, n, err);
    if (!rc)
        rc = load_members(s, ms, n, err);
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < ms[i]->ndims; k++)
            model_dim_index(&ms[i]->dims[k]);
        if (rc)
            model_free(ms[i]);
        else
            store__add_slot(s, ms[i], seqs[i]);
    }
    free(ms);
    free(seqs);
    return rc;
}

void store_opts_default(ds_store_opts *o)
{
    memset(o, 0, sizeof *o);
    o->leaf_log = true;
}

int store_open(const char *path, const ds_store_opts *opts, ds_store **out, ds_error *err)
{
    ds_store *s = xcalloc(1, sizeof *s);
    s->path = xstrdup(path);
    if (opts)
        s->opts = *opts;
    else
        store_opts_default(&s->opts);
    pthread_mutex_init(&s->lock, NULL);
    duckdb_config cfg;
    char *open_err = NULL, threads[16];
    duckdb_create_config(&cfg);
    if (s->opts.threads > 0) {
        snprintf(threads, sizeof threads, "%d", s->opts.threads);
        duckdb_set_config(cfg, "threads", threads);
    }
    if (s->opts.memory_limit)
        duckdb_set_config(cfg, "memory_limit", s->opts.memory_limit);
    if (s->opts.checkpoint_threshold)
        duckdb_set_config(cfg, "checkpoint_threshold", s->opts.checkpoint_threshold);

    duckdb_state st = duckdb_open_ext(path, &s->db, cfg, &open_err);
    duckdb_destroy_config(&cfg);
    if (st == DuckDBError) {
        int rc = ds_fail(err, DS_INTERNAL, NULL, "cannot open database %s: %s", path,
                         open_err ? open_err : "unknown error");
        duckdb_free(open_err);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return rc;
    }
    int rc = duckdb_connect(s->db, &s->con) == DuckDBError
                 ? ds_fail(err, DS_INTERNAL, NULL, "cannot connect to database %s", path)
                 : 0;
    for (size_t i = 0; rc == 0 && i < DS_ARRAY_LEN(schema_sql); i++)
        rc = store__exec(s->con, schema_sql[i], err);
    if (rc == 0)
        rc = register_functions(s, err);
    if (rc == 0)
        rc = load_catalog(s, err);
    if (rc) {
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store__rowmap_free(rowmap *rm)
{
    free(rm->vals);
    free(rm->has);
    free(rm->keys);
    free(rm->hvals);
    memset(rm, 0, sizeof *rm);
}

static void slot_free(model_slot *slot)
{
    if (slot->model && --slot->model->refs == 0)
        model_free(slot->model);
    free(slot);
}

void store_close(ds_store *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nslots; i++)
        slot_free(s->slots[i]);
    free(s->slots);
    duckdb_destroy_prepare(&s->seq_update);
    ZSTD_freeCCtx(s->zctx);
    if (s->con)
        duckdb_disconnect(&s->con);
    duckdb_close(&s->db);
    store__rowmap_free(&s->rows);
    store__rowmap_free(&s->stamps);
    pthread_mutex_destroy(&s->lock);
    free(s->path);
    free(s);
}

int64_t store_wal_bytes(ds_store *s)
{
    char wal[4096];
    struct stat st;
    if (snprintf(wal, sizeof wal, "%s.wal", s->path) >= (int)sizeof wal || stat(wal, &st) != 0)
        return 0;
    return (int64_t)st.st_size;
}

int store_checkpoint(ds_store *s, ds_error *err)
{
    return store__exec(s->con, "CHECKPOINT", err);
}

model_slot *store__slot(ds_store *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->nslots; i++) {
        const ds_model *m = s->slots[i]->model;
        if (strlen(m->name) == len && memcmp(m->name, name, len) == 0)
            return s->slots[i];
    }
    return NULL;
}

void store__set_model(ds_store *s, model_slot *slot, ds_model *m)
{
    pthread_mutex_lock(&s->lock);
    ds_model *old = slot->model;
    m->refs = 1;
    slot->model = m;
    if (--old->refs == 0)
        model_free(old);
    pthread_mutex_unlock(&s->lock);
}

const ds_model *store_model_acquire(ds_store *s, const char *name, size_t len)
{
    const ds_model *found = NULL;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nslots; i++) {
        ds_model *m = s->slots[i]->model;
        if (strlen(m->name) == len && memcmp(m->name, name, len) == 0) {
            m->refs++;
            found = m;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

void store_model_release(ds_store *s, const ds_model *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&s->lock);
    ds_model *mm = (ds_model *)m;
    if (--mm->refs == 0)
        model_free(mm);
    pthread_mutex_unlock(&s->lock);
}

size_t store_model_names(ds_store *s, char ***names)
{
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    *names = xmalloc_array(s->nslots + 1, sizeof **names);
    for (size_t i = 0; i < s->nslots; i++)
        (*names)[n++] = xstrdup(s->slots[i]->model->name);
    pthread_mutex_unlock(&s->lock);
    return n;
}

int64_t store_model_seq(ds_store *s, const char *name)
{
    int64_t seq = -1;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->nslots; i++)
        if (strcmp(s->slots[i]->model->name, name) == 0)
            seq = s->slots[i]->seq;
    pthread_mutex_unlock(&s->lock);
    return seq;
}
