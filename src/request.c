/* request.c: see request.h. */
#include "request.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "decimal.h"

/* ---- shape (400) --------------------------------------------------------- */

enum { T_STR = 1, T_NUM = 2, T_OBJ = 4, T_ARR = 8, T_BOOL = 16 };

typedef struct field {
    const char *name;
    unsigned types;
    bool required;
} field;

static const field write_fields[] = {
    {"column", T_STR, true},           {"cell", T_OBJ, true},
    {"value", T_NUM | T_STR, false},   {"delta", T_NUM | T_STR, false},
    {"percent", T_NUM | T_STR, false}, {"method", T_STR, false},
    {"holds", T_ARR, false},           {NULL, 0, false}};
static const field common_fields[] = {{"request_id", T_STR, false},
                                      {"if_seq", T_NUM, false},
                                      {"wait", T_BOOL, false},
                                      {"detail", T_STR, false},
                                      {NULL, 0, false}};
static const field table_field[] = {{"table", T_STR, true}, {NULL, 0, false}};
static const field table_optional[] = {{"table", T_STR, false}, {NULL, 0, false}};
static const field batch_fields[] = {{"writes", T_ARR, true}, {NULL, 0, false}};
static const field member_fields[] = {{"op", T_STR, true},      {"key", T_STR, false},
                                      {"member", T_STR, false}, {"name", T_STR, false},
                                      {"parent", T_STR, false}, {"facts_to", T_STR, false},
                                      {"force", T_BOOL, false}, {NULL, 0, false}};
static const field canon_fields[] = {{"table", T_STR, true},   {"writes", T_ARR, false},
                                     {"member", T_OBJ, false}, {"if_seq", T_NUM, false},
                                     {"batch", T_BOOL, false}, {NULL, 0, false}};
static const field canon_member_fields[] = {
    {"op", T_STR, true},        {"dimension", T_STR, true}, {"key", T_STR, false},
    {"member", T_STR, false},   {"name", T_STR, false},     {"parent", T_STR, false},
    {"facts_to", T_STR, false}, {"force", T_BOOL, false},   {NULL, 0, false}};

static unsigned type_bit(const json_val *v)
{
    switch (json_kind_of(v)) {
    case JSON_STRING:
        return T_STR;
    case JSON_NUMBER:
        return T_NUM;
    case JSON_OBJECT:
        return T_OBJ;
    case JSON_ARRAY:
        return T_ARR;
    case JSON_BOOL:
        return T_BOOL;
    default:
        return 0;
    }
}

static const char *type_words(unsigned t)
{
    switch (t) {
    case T_STR:
        return "a string";
    case T_NUM:
        return "a number";
    case T_OBJ:
        return "an object";
    case T_ARR:
        return "an array";
    case T_BOOL:
        return "true or false";
    default:
        return "a number or a decimal string";
    }
}

static const field *find_field(const field *const *sets, const char *key)
{
    for (size_t s = 0; sets[s]; s++)
        for (const field *f = sets[s]; f->name; f++)
            if (strcmp(f->name, key) == 0)
                return f;
    return NULL;
}

/* Known fields with the right types, required ones present. where prefixes
 * field names in messages ("writes[2].") */
static int check_fields(const json_val *obj, const field *const *sets, const char *where,
                        ds_error *err)
{
    if (json_kind_of(obj) != JSON_OBJECT)
        return ds_fail(err, DS_MALFORMED, where[0] ? where : "body", "%s must be a JSON object",
                       where[0] ? where : "the body");
    size_t it = 0, klen;
    const char *key;
    json_val *v;
    while (json_next(obj, &it, &key, &klen, &v)) {
        const field *f = strlen(key) == klen ? find_field(sets, key) : NULL;
        if (!f)
            return ds_fail(err, DS_MALFORMED, key, "unknown field '%s%.*s'", where,
                           (int)(klen > 100 ? 100 : klen), key);
        if (!(type_bit(v) & f->types))
            return ds_fail(err, DS_MALFORMED, f->name, "'%s%s' must be %s, not %s", where, f->name,
                           type_words(f->types), json_kind_name(json_kind_of(v)));
    }
    for (size_t s = 0; sets[s]; s++)
        for (const field *f = sets[s]; f->name; f++)
            if (f->required && !json_get(obj, f->name))
                return ds_fail(err, DS_MALFORMED, f->name, "'%s%s' is required", where, f->name);
    return 0;
}

int request_only_fields(const json_val *obj, const char *const *names, const char *where,
                        ds_error *err)
{
    if (json_kind_of(obj) != JSON_OBJECT)
        return ds_fail(err, DS_MALFORMED, where[0] ? where : "body", "%s must be a JSON object",
                       where[0] ? where : "the body");
    size_t it = 0, klen;
    const char *key;
    json_val *v;
    while (json_next(obj, &it, &key, &klen, &v)) {
        bool known = false;
        for (size_t i = 0; names[i] && !known; i++)
            known = strlen(names[i]) == klen && memcmp(names[i], key, klen) == 0;
        if (!known)
            return ds_fail(err, DS_MALFORMED, key, "unknown field '%s%.*s'", where,
                           (int)(klen > 100 ? 100 : klen), key);
    }
    return 0;
}

/* An object whose values are all strings (a cell or a hold). */
static int check_members_obj(const json_val *obj, const char *where, ds_error *err)
{
    if (json_kind_of(obj) != JSON_OBJECT)
        return ds_fail(err, DS_MALFORMED, where, "'%s' must be an object", where);
    size_t it = 0, klen;
    const char *key;
    json_val *v;
    while (json_next(obj, &it, &key, &klen, &v))
        if (json_kind_of(v) != JSON_STRING)
            return ds_fail(err, DS_MALFORMED, where, "'%s.%.*s' must be a member key or name",
                           where, (int)(klen > 100 ? 100 : klen), key);
    return 0;
}

static int check_write(const json_val *w, const char *where, const field *const *sets,
                       ds_error *err)
{
    int rc = check_fields(w, sets, where, err);
    if (rc || (rc = check_members_obj(json_get(w, "cell"), "cell", err)))
        return rc;
    int amounts = !!json_get(w, "value") + !!json_get(w, "delta") + !!json_get(w, "percent");
    if (amounts != 1)
        return ds_fail(err, DS_MALFORMED, "value",
                       "%sgive exactly one of 'value', 'delta' and 'percent'", where);
    json_val *holds = json_get(w, "holds");
    if (holds && json_len(holds) > REQ_MAX_HOLDS)
        return ds_fail(err, DS_MALFORMED, "holds", "at most %d holds", REQ_MAX_HOLDS);
    for (size_t i = 0; holds && i < json_len(holds); i++)
        if ((rc = check_members_obj(json_at(holds, i), "holds", err)))
            return rc;
    return 0;
}

int request_check(const json_val *body, req_kind kind, ds_error *err)
{
    const field *sets[4] = {NULL};
    int rc;
    switch (kind) {
    case REQ_UPDATE_CELL:
    case REQ_CELL:
        sets[0] = write_fields;
        sets[1] = common_fields;
        sets[2] = kind == REQ_UPDATE_CELL ? table_field : table_optional;
        return check_write(body, "", sets, err);
    case REQ_BATCH: {
        sets[0] = batch_fields;
        sets[1] = common_fields;
        sets[2] = table_optional;
        if ((rc = check_fields(body, sets, "", err)))
            return rc;
        json_val *ws = json_get(body, "writes");
        if (json_len(ws) < 1) /* how many at most is the server's limit (--writes-max) */
            return ds_fail(err, DS_MALFORMED, "writes", "'writes' holds at least one write");
        const field *wsets[] = {write_fields, NULL};
        for (size_t i = 0; i < json_len(ws); i++) {
            char where[32];
            snprintf(where, sizeof where, "writes[%zu].", i);
            if ((rc = check_write(json_at(ws, i), where, wsets, err)))
                return rc;
        }
        return 0;
    }
    case REQ_MEMBER:
        sets[0] = member_fields;
        sets[1] = common_fields;
        return check_fields(body, sets, "", err);
    case REQ_CANONICAL: {
        sets[0] = canon_fields;
        if ((rc = check_fields(body, sets, "", err)))
            return rc;
        json_val *ws = json_get(body, "writes"), *mo = json_get(body, "member");
        if (!ws == !mo)
            return ds_fail(err, DS_MALFORMED, "writes", "a command has writes or a member op");
        if (ws && json_len(ws) < 1)
            return ds_fail(err, DS_MALFORMED, "writes", "'writes' holds at least one write");
        const field *wsets[] = {write_fields, NULL}, *msets[] = {canon_member_fields, NULL};
        for (size_t i = 0; ws && i < json_len(ws); i++)
            if ((rc = check_write(json_at(ws, i), "", wsets, err)))
                return rc;
        return mo ? check_fields(mo, msets, "member.", err) : 0;
    }
    }
    return ds_fail(err, DS_INTERNAL, NULL, "unknown request kind");
}

const char *request_table(const json_val *body, size_t *len)
{
    json_val *t = json_get(body, "table");
    if (!t || json_kind_of(t) != JSON_STRING) {
        *len = 0;
        return NULL;
    }
    return json_str(t, len);
}

void request_note(req_errors *f, const ds_error *e)
{
    bool worse = f->have && f->e.code != DS_NOT_FOUND && e->code == DS_NOT_FOUND;
    if (!f->have || worse) {
        f->e = *e;
        f->have = true;
    }
}

int request_table_name(const char *name, size_t len, ds_error *err)
{
    return model_check_text(name, len, DS_IDENT_MAX, "table name", "table", err);
}

/* ---- names (404, 422 ambiguous) --------------------------------------- */

int request_member(const ds_model *m, int dim, const char *text, size_t len, int32_t *id,
                   ds_error *err)
{
    int rc = model_check_text(text, len, DS_IDENT_MAX, "member key or name", "cell", err);
    return rc ? rc : model_resolve_member(&m->dims[dim], text, len, id, err);
}

int request_dim(const ds_model *m, const char *name, size_t len, ds_error *err)
{
    int rc = model_check_text(name, len, DS_IDENT_MAX, "dimension name", "dimension", err);
    if (rc)
        return rc;
    int k = model_find_dim(m, name, len);
    if (k < 0)
        return ds_fail(err, DS_NOT_FOUND, "dimension", "table '%s' has no dimension '%.*s'",
                       m->name, (int)(len > 100 ? 100 : len), name);
    return k;
}

int request_measure(const ds_model *m, const char *name, size_t len, ds_error *err)
{
    int rc = model_check_text(name, len, DS_IDENT_MAX, "column name", "column", err);
    if (rc)
        return rc;
    int k = model_find_measure(m, name, len);
    if (k < 0)
        return ds_fail(err, DS_NOT_FOUND, "column", "table '%s' has no column '%.*s'", m->name,
                       (int)(len > 100 ? 100 : len), name);
    return k;
}

static int dim_of(const ds_model *m, const char *name, size_t len, ds_error *err)
{
    int k = request_dim(m, name, len, err);
    return k < 0 ? -1 : k;
}

/* A cell object (or a hold when hold is true: -1 for dimensions left out). */
static void resolve_members(const ds_model *m, const json_val *obj, bool hold, int32_t *out,
                            req_errors *fe)
{
    for (int k = 0; k < m->ndims; k++)
        out[k] = hold ? -1 : m->dims[k].root;
    size_t it = 0, klen, vlen;
    const char *key;
    json_val *v;
    while (json_next(obj, &it, &key, &klen, &v)) {
        ds_error e;
        int k = dim_of(m, key, klen, &e);
        if (k < 0) {
            request_note(fe, &e);
            continue;
        }
        const char *text = json_str(v, &vlen);
        if (request_member(m, k, text, vlen, &out[k], &e))
            request_note(fe, &e);
    }
}

/* ---- values (422) ----------------------------------------------------------- */

static int parse_amount(const json_val *v, int scale, ds_i128 limit, const char *what, ds_i128 *out,
                        ds_error *err)
{
    size_t len;
    bool exact = true;
    const char *text;
    dec_syntax syn;
    if (json_kind_of(v) == JSON_NUMBER) {
        text = json_num(v, &len, &exact);
        syn = DEC_JSON;
    } else {
        text = json_str(v, &len);
        syn = DEC_STRING;
    }
    if (!exact)
        return ds_fail(err, DS_OUT_OF_RANGE, what,
                       "'%s' is an integer beyond 64 bits; send such numbers as decimal "
                       "strings",
                       what);
    switch (dec_parse(text, len, syn, scale, limit, out)) {
    case DEC_OK:
        return 0;
    case DEC_EPLACES:
        return ds_fail(err, DS_INVALID_VALUE, what, "'%s' has more decimal places than %d", what,
                       scale);
    case DEC_ERANGE:
        return ds_fail(err, DS_OUT_OF_RANGE, what, "'%s' is out of range", what);
    default:
        return ds_fail(err, DS_INVALID_VALUE, what,
                       "'%s' must be a number or a decimal string like \"-12.50\"", what);
    }
}

static int parse_method(const json_val *v, spread_method *m, ds_error *err)
{
    *m = SPREAD_PROPORTIONAL;
    if (!v)
        return 0;
    size_t len;
    const char *s = json_str(v, &len);
    static const spread_method all[] = {SPREAD_PROPORTIONAL, SPREAD_EQUAL, SPREAD_REPEAT};
    for (size_t i = 0; i < DS_ARRAY_LEN(all); i++)
        if (strlen(spread_method_name(all[i])) == len &&
            memcmp(spread_method_name(all[i]), s, len) == 0) {
            *m = all[i];
            return 0;
        }
    return ds_fail(err, DS_INVALID_VALUE, "method",
                   "'method' is proportional, equal or repeat, not '%.*s'",
                   (int)(len > 40 ? 40 : len), s);
}

static bool all_leaves(const ds_model *m, const ds_cell *c)
{
    for (int k = 0; k < m->ndims; k++)
        if (!model_is_leaf(&m->dims[k], c->m[k]))
            return false;
    return true;
}

static int write_values(const json_val *jw, const ds_model *m, ds_write *w, ds_error *err)
{
    json_val *v;
    int scale = m->measures[w->measure].scale;
    ds_i128 lim = all_leaves(m, &w->cell) ? (ds_i128)DEC_LEAF_MAX : dec_pow10(36);
    int rc;
    if ((v = json_get(jw, "value"))) {
        w->form = SPREAD_SET;
        rc = parse_amount(v, scale, lim, "value", &w->amount, err);
    } else if ((v = json_get(jw, "delta"))) {
        w->form = SPREAD_DELTA;
        rc = parse_amount(v, scale, lim, "delta", &w->amount, err);
    } else {
        w->form = SPREAD_PERCENT;
        w->pct_scale = SPREAD_PCT_MAX_SCALE;
        rc = parse_amount(json_get(jw, "percent"), SPREAD_PCT_MAX_SCALE, dec_pow10(18), "percent",
                          &w->amount, err);
    }
    return rc ? rc : parse_method(json_get(jw, "method"), &w->method, err);
}

static int resolve_write(const json_val *jw, const ds_model *m, ds_arena *a, ds_write *w,
                         req_errors *names)
{
    memset(w, 0, sizeof *w);
    size_t len;
    const char *col = json_str(json_get(jw, "column"), &len);
    ds_error e;
    w->measure = request_measure(m, col, len, &e);
    if (w->measure < 0) {
        w->measure = -1;
        request_note(names, &e);
    }
    resolve_members(m, json_get(jw, "cell"), false, w->cell.m, names);
    json_val *holds = json_get(jw, "holds");
    w->nholds = holds ? (int)json_len(holds) : 0;
    ds_hold *h = ds_arena_alloc(a, sizeof *h * (size_t)(w->nholds ? w->nholds : 1));
    for (int i = 0; i < w->nholds; i++)
        resolve_members(m, json_at(holds, (size_t)i), true, h[i].m, names);
    w->holds = h;
    return names->have ? -1 : 0;
}

static int common_values(const json_val *body, req_decoded *out, ds_arena *a, ds_error *err)
{
    out->if_seq = -1;
    out->wait = true;
    out->detail = DETAIL_LEAVES;
    json_val *v;
    if ((v = json_get(body, "wait")))
        out->wait = json_truth(v);
    if ((v = json_get(body, "detail"))) {
        size_t len;
        const char *t = json_str(v, &len);
        int rc = request_detail(t, len, &out->detail, err);
        if (rc)
            return rc;
    }
    if ((v = json_get(body, "if_seq"))) {
        ds_i128 s;
        size_t len;
        bool exact;
        const char *t = json_num(v, &len, &exact);
        if (!exact || dec_parse(t, len, DEC_JSON, 0, (ds_i128)1 << 62, &s) != DEC_OK || s < 0)
            return ds_fail(err, DS_INVALID_VALUE, "if_seq", "'if_seq' must be a whole number >= 0");
        out->if_seq = (int64_t)s;
    }
    if ((v = json_get(body, "request_id"))) {
        size_t len;
        const char *id = json_str(v, &len);
        int rc = model_check_text(id, len, REQ_ID_MAX, "request_id", "request_id", err);
        if (rc)
            return rc;
        out->request_id = ds_arena_strndup(a, id, len);
    }
    return 0;
}

/* ---- canonical form --------------------------------------------------------- */

static void put_members(json_w *w, const ds_model *m, const int32_t *ids, bool hold)
{
    jw_obj(w);
    for (int k = 0; k < m->ndims; k++) {
        if (hold ? ids[k] < 0 : ids[k] == m->dims[k].root)
            continue;
        jw_key(w, m->dims[k].name);
        jw_str(w, m->dims[k].members[ids[k]].key);
    }
    jw_obj_end(w);
}

static void put_write_canon(json_w *w, const ds_model *m, const ds_write *x)
{
    static const char *const forms[] = {"value", "delta", "percent"};
    jw_obj(w);
    jw_key(w, "column");
    jw_str(w, m->measures[x->measure].name);
    jw_key(w, "cell");
    put_members(w, m, x->cell.m, false);
    jw_key(w, forms[x->form]);
    char buf[DEC_BUFSZ];
    dec_format(x->amount, x->form == SPREAD_PERCENT ? x->pct_scale : m->measures[x->measure].scale,
               buf);
    jw_str(w, buf);
    jw_key(w, "method");
    jw_str(w, spread_method_name(x->method));
    if (x->nholds) {
        jw_key(w, "holds");
        jw_arr(w);
        for (int i = 0; i < x->nholds; i++)
            put_members(w, m, x->holds[i].m, true);
        jw_arr_end(w);
    }
    jw_obj_end(w);
}

static const char *const op_names[] = {"add", "rename", "move", "delete"};

static void put_member_canon(json_w *w, const ds_model *m, const ds_member_op *op,
                             const char *new_key)
{
    const ds_dim *d = &m->dims[op->dim];
    jw_obj(w);
    jw_key(w, "op");
    jw_str(w, op_names[op->kind]);
    jw_key(w, "dimension");
    jw_str(w, d->name);
    if (op->kind == MEMBER_ADD) {
        jw_key(w, "key");
        jw_str(w, new_key);
    } else {
        jw_key(w, "member");
        jw_str(w, d->members[op->member].key);
    }
    if (op->name) {
        jw_key(w, "name");
        jw_str(w, op->name);
    }
    if (op->kind == MEMBER_ADD || op->kind == MEMBER_MOVE) {
        jw_key(w, "parent");
        jw_str(w, d->members[op->parent].key);
    }
    if (op->facts_to != -1) {
        jw_key(w, "facts_to");
        jw_str(w, op->facts_to == -2 ? new_key : d->members[op->facts_to].key);
    }
    if (op->force) {
        jw_key(w, "force");
        jw_bool(w, true);
    }
    jw_obj_end(w);
}

static void finish_canonical(const ds_model *m, req_decoded *out, ds_arena *a)
{
    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 30);
    json_w w;
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "table");
    jw_str(&w, m->name);
    if (out->cmd.kind == COMMAND_WRITE) {
        jw_key(&w, "writes");
        jw_arr(&w);
        for (size_t i = 0; i < out->cmd.nwrites; i++)
            put_write_canon(&w, m, &out->cmd.writes[i]);
        jw_arr_end(&w);
    } else {
        jw_key(&w, "member");
        put_member_canon(&w, m, &out->member, out->member.key);
    }
    if (out->if_seq >= 0) {
        jw_key(&w, "if_seq");
        jw_int(&w, out->if_seq);
    }
    if (out->cmd.batch) {
        jw_key(&w, "batch");
        jw_bool(&w, true);
    }
    jw_obj_end(&w);
    out->canonical = ds_arena_strndup(a, b.data, b.len);
    out->canonical_len = b.len;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(b.data, b.len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(out->hash + 2 * i, 3, "%02x", md[i]);
    ds_buf_free(&b);
}

/* ---- member operations ----------------------------------------------------- */

static int member_ref(const ds_model *m, int dim, const json_val *body, const char *name,
                      bool required, int32_t *id, req_errors *fe)
{
    json_val *v = json_get(body, name);
    ds_error e;
    if (!v) {
        if (required) {
            ds_fail(&e, DS_MALFORMED, name, "'%s' is required for this op", name);
            request_note(fe, &e);
        }
        return 0;
    }
    size_t len;
    const char *s = json_str(v, &len);
    if (request_member(m, dim, s, len, id, &e)) {
        request_note(fe, &e);
        return -1;
    }
    return 0;
}

static int resolve_member_op(const json_val *mb, const ds_model *m, const char *path_dim,
                             ds_arena *a, req_decoded *out, ds_error *err)
{
    ds_member_op *op = &out->member;
    memset(op, 0, sizeof *op);
    op->member = op->parent = op->facts_to = -1;
    size_t len;
    const char *s = json_str(json_get(mb, "op"), &len);
    op->kind = (member_op_kind)-1;
    for (size_t i = 0; i < DS_ARRAY_LEN(op_names); i++)
        if (strlen(op_names[i]) == len && memcmp(op_names[i], s, len) == 0)
            op->kind = (member_op_kind)i;
    const char *dname = path_dim;
    size_t dlen = path_dim ? strlen(path_dim) : 0;
    if (!dname)
        dname = json_str(json_get(mb, "dimension"), &dlen);
    op->dim = request_dim(m, dname, dlen, err);
    if (op->dim < 0)
        return op->dim; /* 422: no name; 404: no such dimension */
    if ((int)op->kind < 0)
        return ds_fail(err, DS_INVALID_VALUE, "op", "'op' is add, rename, move or delete");
    req_errors fe = {0};
    const ds_dim *d = &m->dims[op->dim];
    json_val *v;
    op->parent = d->root;
    if (op->kind == MEMBER_ADD) {
        member_ref(m, op->dim, mb, "parent", false, &op->parent, &fe);
        if (!(v = json_get(mb, "key"))) {
            ds_error e;
            ds_fail(&e, DS_MALFORMED, "key", "'key' is required to add a member");
            request_note(&fe, &e);
        } else {
            const char *k = json_str(v, &len);
            op->key = ds_arena_strndup(a, k, len);
            ds_error e; /* empty, too long, a control character (NUL too) */
            if (model_check_name(k, len, "key", &e))
                request_note(&fe, &e);
        }
    } else {
        member_ref(m, op->dim, mb, "member", true, &op->member, &fe);
        if (op->kind == MEMBER_MOVE)
            member_ref(m, op->dim, mb, "parent", true, &op->parent, &fe);
    }
    if ((v = json_get(mb, "facts_to"))) {
        const char *f = json_str(v, &len);
        if (op->kind == MEMBER_ADD && op->key && strlen(op->key) == len &&
            memcmp(op->key, f, len) == 0)
            op->facts_to = -2;
        else
            member_ref(m, op->dim, mb, "facts_to", false, &op->facts_to, &fe);
    }
    if ((v = json_get(mb, "name"))) {
        const char *n = json_str(v, &len);
        op->name = ds_arena_strndup(a, n, len);
        ds_error e; /* a NUL byte would cut the stored name short */
        if (model_check_name(n, len, "name", &e))
            request_note(&fe, &e);
    } else if (op->kind == MEMBER_RENAME) {
        ds_error e;
        ds_fail(&e, DS_MALFORMED, "name", "'name' is required to rename a member");
        request_note(&fe, &e);
    }
    op->force = (v = json_get(mb, "force")) && json_truth(v);
    if (fe.have) {
        if (err)
            *err = fe.e;
        return -(int)fe.e.code;
    }
    out->cmd.kind = COMMAND_MEMBER;
    out->cmd.member = *op;
    return 0;
}

static int resolve(const json_val *body, req_kind kind, const ds_model *m, const char *path_dim,
                   ds_arena *arena, req_decoded *out, bool canonical, ds_error *err)
{
    memset(out, 0, sizeof *out);
    int rc = common_values(body, out, arena, err);
    if (rc)
        return rc;
    if (kind == REQ_MEMBER || (kind == REQ_CANONICAL && json_get(body, "member"))) {
        const json_val *mb = kind == REQ_MEMBER ? body : json_get(body, "member");
        rc = resolve_member_op(mb, m, kind == REQ_MEMBER ? path_dim : NULL, arena, out, err);
    } else {
        const json_val *ws =
            kind == REQ_BATCH || kind == REQ_CANONICAL ? json_get(body, "writes") : NULL;
        size_t n = ws ? json_len(ws) : 1;
        ds_write *w = ds_arena_alloc(arena, sizeof *w * n);
        req_errors names = {0};
        for (size_t i = 0; i < n; i++)
            resolve_write(ws ? json_at(ws, i) : body, m, arena, &w[i], &names);
        for (size_t i = 0; !names.have && i < n; i++) {
            ds_error e;
            if (write_values(ws ? json_at(ws, i) : body, m, &w[i], &e))
                request_note(&names, &e);
        }
        if (names.have) {
            if (err)
                *err = names.e;
            return -(int)names.e.code;
        }
        out->cmd.kind = COMMAND_WRITE;
        out->cmd.writes = w;
        out->cmd.nwrites = n;
        const json_val *bv = kind == REQ_CANONICAL ? json_get(body, "batch") : NULL;
        out->cmd.batch = kind == REQ_BATCH || (bv && json_truth(bv));
    }
    if (rc)
        return rc;
    out->cmd.request_id = out->request_id;
    out->cmd.if_seq = out->if_seq;
    if (canonical)
        finish_canonical(m, out, arena);
    return 0;
}

int request_resolve(const json_val *body, req_kind kind, const ds_model *m, const char *path_dim,
                    ds_arena *arena, req_decoded *out, ds_error *err)
{
    return resolve(body, kind, m, path_dim, arena, out, true, err);
}

int request_resolve_canonical(const json_val *body, const ds_model *m, ds_arena *arena,
                              req_decoded *out, ds_error *err)
{
    return resolve(body, REQ_CANONICAL, m, NULL, arena, out, false, err);
}

/* ---- encoding ------------------------------------------------------------- */

void request_put_member(json_w *w, const ds_model *m, const ds_member_op *op)
{
    put_member_canon(w, m, op, op->key);
}

void request_put_cell(json_w *w, const ds_model *m, const ds_cell *c)
{
    put_members(w, m, c->m, false);
}

static void put_change(json_w *w, const ds_model *m, const ds_change *c)
{
    int scale = m->measures[c->measure].scale;
    jw_obj(w);
    jw_key(w, "cell");
    request_put_cell(w, m, &c->cell);
    jw_key(w, "column");
    jw_str(w, m->measures[c->measure].name);
    jw_key(w, "old");
    jw_dec(w, c->old_value, scale);
    jw_key(w, "new");
    jw_dec(w, c->new_value, scale);
    jw_obj_end(w);
}

static void put_set(json_w *w, const ds_model *m, const ds_changeset *cs)
{
    jw_key(w, "target");
    put_change(w, m, &cs->target);
    jw_key(w, "method");
    jw_str(w, spread_method_name(cs->method));
    jw_key(w, "leaves_changed");
    jw_int(w, cs->leaves_changed);
    jw_key(w, "changes");
    jw_arr(w);
    for (size_t i = 0; i < cs->nchanges; i++)
        put_change(w, m, &cs->changes[i]);
    jw_arr_end(w);
    jw_key(w, "truncated");
    jw_bool(w, cs->truncated);
}

static const char *const detail_names[] = {"leaves", "totals", "none"};

int request_detail(const char *s, size_t len, req_detail *out, ds_error *err)
{
    for (size_t i = 0; i < DS_ARRAY_LEN(detail_names); i++)
        if (strlen(detail_names[i]) == len && memcmp(detail_names[i], s, len) == 0) {
            *out = (req_detail)i;
            return 0;
        }
    return ds_fail(err, DS_INVALID_VALUE, "detail",
                   "'detail' is leaves, totals or none, not '%.*s'", (int)(len > 40 ? 40 : len), s);
}

/* The lists of a change set at a detail: leaves (cut where the engine cut
 * them), or the totals then the leaves not among them, cap in all. */
static void put_set_at(json_w *w, const ds_model *m, const ds_changeset *cs, req_detail detail,
                       size_t cap)
{
    jw_key(w, "target");
    put_change(w, m, &cs->target);
    jw_key(w, "method");
    jw_str(w, spread_method_name(cs->method));
    jw_key(w, "leaves_changed");
    jw_int(w, cs->leaves_changed);
    if (detail == DETAIL_NONE)
        return;
    bool truncated = cs->leaves_truncated;
    jw_key(w, "changes");
    jw_arr(w);
    size_t listed = 0;
    if (detail == DETAIL_TOTALS) {
        for (size_t i = 0; i < cs->nchanges && listed < cap; i++, listed++)
            put_change(w, m, &cs->changes[i]);
        truncated |= cs->truncated || listed < cs->nchanges;
    }
    for (size_t i = 0; i < cs->nleaves; i++) {
        if (detail == DETAIL_TOTALS && cs->in_totals[i])
            continue;
        if (listed == cap) {
            truncated = true;
            break;
        }
        put_change(w, m, &cs->leaves[i]);
        listed++;
    }
    jw_arr_end(w);
    jw_key(w, "truncated");
    jw_bool(w, truncated);
}

void request_put_event_at(json_w *w, const ds_model *m, const ds_command *cmd, const ds_outcome *o,
                          const char *request_id, const char *user, req_detail detail, size_t cap,
                          const char *member, size_t member_len)
{
    char ts[40];
    request_format_ts(o->ts_us, ts, sizeof ts);
    jw_key(w, "seq");
    jw_int(w, o->seq);
    jw_key(w, "request_id");
    if (request_id)
        jw_str(w, request_id);
    else
        jw_null(w);
    jw_key(w, "user");
    jw_str(w, user ? user : "");
    jw_key(w, "ts");
    jw_str(w, ts);
    jw_key(w, "kind");
    if (cmd->kind == COMMAND_MEMBER) {
        jw_str(w, "member");
        if (member) {
            jw_key(w, "member");
            jw_raw(w, member, member_len);
        }
        return;
    }
    jw_str(w, cmd->batch ? "batch" : "write");
    if (!cmd->batch) {
        put_set_at(w, m, &o->sets[0], detail, cap);
        return;
    }
    jw_key(w, "writes");
    jw_arr(w);
    for (size_t i = 0; i < o->nsets; i++) {
        jw_obj(w);
        put_set_at(w, m, &o->sets[i], detail, cap);
        jw_obj_end(w);
    }
    jw_arr_end(w);
}

void request_format_ts(int64_t us, char *buf, size_t n)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t o = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + o, n - o, ".%06dZ", (int)(us % 1000000));
}

void request_put_event(json_w *w, const ds_model *m, const ds_command *cmd, const ds_outcome *o,
                       const char *request_id, const char *user)
{
    char ts[40];
    request_format_ts(o->ts_us, ts, sizeof ts);
    jw_key(w, "seq");
    jw_int(w, o->seq);
    jw_key(w, "request_id");
    if (request_id)
        jw_str(w, request_id);
    else
        jw_null(w);
    jw_key(w, "user");
    jw_str(w, user ? user : "");
    jw_key(w, "ts");
    jw_str(w, ts);
    if (cmd->kind == COMMAND_MEMBER) {
        jw_key(w, "kind");
        jw_str(w, "member");
        return;
    }
    jw_key(w, "kind");
    jw_str(w, cmd->batch ? "batch" : "write");
    if (!cmd->batch) {
        put_set(w, m, &o->sets[0]);
        return;
    }
    jw_key(w, "writes");
    jw_arr(w);
    for (size_t i = 0; i < o->nsets; i++) {
        jw_obj(w);
        put_set(w, m, &o->sets[i]);
        jw_obj_end(w);
    }
    jw_arr_end(w);
}

void request_put_error(json_w *w, const ds_error *e)
{
    jw_obj(w);
    jw_key(w, "error");
    jw_obj(w);
    jw_key(w, "code");
    jw_str(w, ds_code_name(e->code));
    jw_key(w, "message");
    jw_str(w, e->message);
    if (e->target[0]) {
        jw_key(w, "target");
        jw_str(w, e->target);
    }
    if (e->has_seq) {
        jw_key(w, "seq");
        jw_int(w, e->seq);
    }
    if (e->has_count) {
        jw_key(w, "count");
        jw_int(w, e->count);
        jw_key(w, "limit");
        jw_int(w, e->limit);
    }
    if (e->ncandidates) {
        jw_key(w, "candidates");
        jw_arr(w);
        const char *c = e->candidates;
        for (int i = 0; i < e->ncandidates; i++) {
            jw_str(w, c);
            c += strlen(c) + 1;
        }
        jw_arr_end(w);
    }
    jw_obj_end(w);
    jw_obj_end(w);
}

/* ---- scopes ------------------------------------------------------------ */

int request_scope(const ds_model *m, const ds_command *cmd, const char *dim, const char *member,
                  ds_error *err)
{
    if (!dim || !dim[0] || cmd->kind != COMMAND_WRITE)
        return 0;
    int k = model_find_dim(m, dim, strlen(dim));
    int32_t s = -1;
    ds_error ignored;
    if (k >= 0 && model_resolve_member(&m->dims[k], member, strlen(member), &s, &ignored) != 0)
        s = -1;
    if (s < 0)
        return ds_fail(err, DS_OUT_OF_SCOPE, "cell",
                       "this key may write only inside %s=%s, which is not in model '%s'", dim,
                       member, m->name);
    const ds_dim *d = &m->dims[k];
    for (size_t i = 0; i < cmd->nwrites; i++) {
        int32_t c = cmd->writes[i].cell.m[k];
        if (c == d->root)
            return ds_fail(err, DS_OUT_OF_SCOPE, "cell",
                           "this key may write only inside %s=%s; a cell that leaves out "
                           "dimension '%s' spreads outside it",
                           dim, member, dim);
        if (d->pos[c] < d->pos[s] || d->pos[c] >= d->end[s])
            return ds_fail(err, DS_OUT_OF_SCOPE, "cell",
                           "this key may write only inside %s=%s; %s=%s %s", dim, member, dim,
                           d->members[c].key,
                           d->pos[s] >= d->pos[c] && d->pos[s] < d->end[c]
                               ? "is above it: the spread would reach outside the scope"
                               : "is outside it");
    }
    return 0;
}

/* ---- model definitions ------------------------------------------------- */

static const char *const def_model[] = {"name", "dimensions", "measures", NULL},
                         *def_dim[] = {"name", "root", "members", NULL},
                         *def_root[] = {"key", "name", NULL},
                         *def_member[] = {"key", "name", "parent", NULL},
                         *def_measure[] = {"name", "scale", NULL};

/* 400 unless obj's field is a string (or absent and not required). */
static int str_field(const json_val *obj, const char *fname, bool required, const char *where,
                     ds_error *err)
{
    json_val *v = json_get(obj, fname);
    if (!v && !required)
        return 0;
    if (!v)
        return ds_fail(err, DS_MALFORMED, fname, "'%s%s' is required", where, fname);
    if (json_kind_of(v) != JSON_STRING)
        return ds_fail(err, DS_MALFORMED, fname, "'%s%s' must be a string, not %s", where, fname,
                       json_kind_name(json_kind_of(v)));
    return 0;
}

/* 400 unless v is absent or an array whose elements are objects of the
 * fields `names` only. */
static int objects(const json_val *v, const char *fname, const char *const *names,
                   const char *where, ds_error *err)
{
    if (!v)
        return 0;
    if (json_kind_of(v) != JSON_ARRAY)
        return ds_fail(err, DS_MALFORMED, fname, "'%s' must be an array", fname);
    for (size_t i = 0; i < json_len(v); i++) {
        int rc = request_only_fields(json_at(v, i), names, where, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int def_dim_shape(const json_val *d, ds_error *err)
{
    const char *w = "dimensions[].";
    json_val *root = json_get(d, "root"), *mem = json_get(d, "members");
    int rc = str_field(d, "name", true, w, err);
    if (rc == 0 && root)
        rc = request_only_fields(root, def_root, "dimensions[].root.", err);
    if (rc == 0 && root && (rc = str_field(root, "key", false, "dimensions[].root.", err)) == 0)
        rc = str_field(root, "name", false, "dimensions[].root.", err);
    if (rc == 0)
        rc = objects(mem, "members", def_member, "members[].", err);
    for (size_t i = 0; rc == 0 && mem && i < json_len(mem); i++) {
        json_val *x = json_at(mem, i);
        if ((rc = str_field(x, "key", true, "members[].", err)) == 0 &&
            (rc = str_field(x, "name", false, "members[].", err)) == 0)
            rc = str_field(x, "parent", false, "members[].", err);
    }
    return rc;
}

/* The 400s of a definition, all before any name is judged. */
static int def_shape(const json_val *body, ds_error *err)
{
    int rc = request_only_fields(body, def_model, "", err);
    json_val *dims = json_get(body, "dimensions"), *meas = json_get(body, "measures");
    if (rc == 0 && (json_kind_of(dims) != JSON_ARRAY || json_kind_of(meas) != JSON_ARRAY ||
                    json_kind_of(json_get(body, "name")) != JSON_STRING))
        return ds_fail(err, DS_MALFORMED, "body",
                       "a model needs 'name' (a string), 'dimensions' and 'measures' (arrays)");
    if (rc == 0)
        rc = objects(dims, "dimensions", def_dim, "dimensions[].", err);
    for (size_t k = 0; rc == 0 && k < json_len(dims); k++)
        rc = def_dim_shape(json_at(dims, k), err);
    if (rc == 0)
        rc = objects(meas, "measures", def_measure, "measures[].", err);
    for (size_t k = 0; rc == 0 && k < json_len(meas); k++) {
        json_val *x = json_at(meas, k), *sc = json_get(x, "scale");
        if ((rc = str_field(x, "name", true, "measures[].", err)) == 0 && sc &&
            json_kind_of(sc) != JSON_NUMBER)
            rc = ds_fail(err, DS_MALFORMED, "scale", "'measures[].scale' must be a number");
    }
    return rc;
}

/* A string field checked as a name, whole (422 with target). */
static int def_name(const json_val *obj, const char *fname, const char *what, const char *target,
                    const char **s, ds_error *err)
{
    size_t len;
    *s = json_str(json_get(obj, fname), &len);
    return model_check_text(*s, len, DS_IDENT_MAX, what, target, err);
}

static int def_members(ds_dim *dim, const json_val *mem, ds_error *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && mem && i < json_len(mem); i++) {
        json_val *x = json_at(mem, i);
        const char *key = NULL, *name = NULL, *par = NULL;
        if ((rc = def_name(x, "key", "member key", "key", &key, err)) ||
            (json_get(x, "name") && (rc = def_name(x, "name", "member name", "name", &name, err))))
            break;
        if (!json_get(x, "name"))
            name = key;
        model_dim_index(dim);
        int32_t parent = dim->root;
        if (json_get(x, "parent")) {
            if ((rc = def_name(x, "parent", "parent key", "cell", &par, err)))
                break;
            parent = model_find_key(dim, par, strlen(par));
            if (parent < 0)
                rc = ds_fail(err, DS_NOT_FOUND, "cell",
                             "parent '%.100s' is not listed before its children", par);
        }
        if (rc == 0 && model_find_key(dim, key, strlen(key)) >= 0)
            rc = ds_fail(err, DS_INVALID_VALUE, "key", "member key '%.100s' is listed twice", key);
        if (rc == 0 && (rc = model_add_member(dim, parent, key, name, (int32_t)i, err)) > 0)
            rc = 0;
    }
    model_dim_index(dim);
    return rc;
}

static int def_dims(ds_model *m, const json_val *dims, ds_error *err)
{
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < json_len(dims); k++) {
        json_val *d = json_at(dims, k), *root = json_get(d, "root");
        const char *name = NULL, *rkey = "All", *rname = NULL;
        if ((rc = def_name(d, "name", "dimension name", "dimension", &name, err)) ||
            (root && json_get(root, "key") &&
             (rc = def_name(root, "key", "root key", "key", &rkey, err))) ||
            (root && json_get(root, "name") &&
             (rc = def_name(root, "name", "root name", "name", &rname, err))))
            break;
        if ((rc = model_add_dim(m, (int32_t)k, name, rkey, rname ? rname : rkey, err)) >= 0)
            rc = def_members(&m->dims[m->ndims - 1], json_get(d, "members"), err);
    }
    return rc;
}

int request_model(const json_val *body, ds_model **out, ds_error *err)
{
    *out = NULL;
    const char *name = NULL;
    int rc = def_shape(body, err);
    if (rc || (rc = def_name(body, "name", "table name", "table", &name, err)))
        return rc;
    ds_model *m = model_new(0, name);
    json_val *meas = json_get(body, "measures");
    rc = def_dims(m, json_get(body, "dimensions"), err);
    for (size_t k = 0; rc == 0 && k < json_len(meas); k++) {
        json_val *x = json_at(meas, k), *sc = json_get(x, "scale");
        const char *mn = NULL;
        ds_i128 scale = 0;
        size_t sl;
        bool exact;
        const char *t = sc ? json_num(sc, &sl, &exact) : NULL;
        if ((rc = def_name(x, "name", "measure name", "measure", &mn, err)))
            break;
        if (t && dec_parse(t, sl, DEC_JSON, 0, 18, &scale) != DEC_OK)
            rc = ds_fail(err, DS_INVALID_VALUE, "scale", "'scale' is 0 to 18");
        if (rc == 0 && (rc = model_add_measure(m, (int32_t)k, mn, (int)scale, err)) > 0)
            rc = 0;
    }
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

bool request_key(char *buf, const char *model, const char *user, const char *rid)
{
    user = user ? user : "";
    rid = rid ? rid : "";
    size_t lm = strlen(model), lu = strlen(user), lr = strlen(rid);
    buf[0] = '\0';
    if (lm > DS_IDENT_MAX || lu > DS_IDENT_MAX || lr > REQ_ID_MAX)
        return false;
    memcpy(buf, model, lm);
    buf[lm] = '\n';
    memcpy(buf + lm + 1, user, lu);
    buf[lm + 1 + lu] = '\n';
    memcpy(buf + lm + lu + 2, rid, lr);
    buf[lm + lu + 2 + lr] = '\0';
    return true;
}

/* ---- grids ------------------------------------------------------------- */

/* The 400s of an axis {"dimension": d, "members": [...]}. */
static int axis_shape(const json_val *axis, const char *what, ds_error *err)
{
    static const char *const axis_fields[] = {"dimension", "members", NULL};
    char where[16];
    snprintf(where, sizeof where, "%s.", what);
    if (axis && json_kind_of(axis) == JSON_OBJECT &&
        request_only_fields(axis, axis_fields, where, err))
        return -DS_MALFORMED;
    json_val *d = json_get(axis, "dimension"), *mem = json_get(axis, "members");
    if (json_kind_of(d) != JSON_STRING || json_kind_of(mem) != JSON_ARRAY || json_len(mem) == 0 ||
        json_len(mem) > 10000)
        return ds_fail(err, DS_MALFORMED, what, "'%s' needs 'dimension' and 1 to 10000 'members'",
                       what);
    for (size_t i = 0; i < json_len(mem); i++)
        if (json_kind_of(json_at(mem, i)) != JSON_STRING)
            return ds_fail(err, DS_MALFORMED, what, "members are keys or names (strings)");
    return 0;
}

/* An axis's dimension index and member ids (*ids caller-freed). */
static int grid_axis(const ds_model *m, const json_val *axis, int *dim, int32_t **ids, size_t *n,
                     ds_error *err)
{
    json_val *mem = json_get(axis, "members");
    size_t len;
    const char *dn = json_str(json_get(axis, "dimension"), &len);
    if ((*dim = request_dim(m, dn, len, err)) < 0)
        return *dim;
    *n = json_len(mem);
    *ids = xmalloc_array(*n, sizeof **ids);
    for (size_t i = 0; i < *n; i++) {
        const char *s = json_str(json_at(mem, i), &len);
        int rc = request_member(m, *dim, s, len, &(*ids)[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

void request_put_grid(json_w *w, const ds_model *m, const ds_grid_spec *g, const ds_i128 *v,
                      int64_t seq)
{
    jw_obj(w);
    jw_key(w, "rows");
    jw_arr(w);
    for (size_t i = 0; i < g->nrows; i++)
        jw_str(w, m->dims[g->row_dim].members[g->rows[i]].key);
    jw_arr_end(w);
    jw_key(w, "cols");
    jw_arr(w);
    for (size_t j = 0; j < g->ncols; j++)
        jw_str(w, m->dims[g->col_dim].members[g->cols[j]].key);
    jw_arr_end(w);
    jw_key(w, "measure");
    jw_str(w, m->measures[g->measure].name);
    jw_key(w, "values");
    jw_arr(w);
    for (size_t i = 0; i < g->nrows; i++) {
        jw_arr(w);
        for (size_t j = 0; j < g->ncols; j++)
            jw_dec(w, v[i * g->ncols + j], m->measures[g->measure].scale);
        jw_arr_end(w);
    }
    jw_arr_end(w);
    jw_key(w, "seq");
    jw_int(w, seq);
    jw_obj_end(w);
}

/* The 400s of a grid, all before any name is judged. */
int request_grid_shape(const json_val *root, ds_error *err)
{
    static const char *const grid_fields[] = {"measure", "rows", "cols", "filters", NULL};
    if (request_only_fields(root, grid_fields, "", err))
        return -DS_MALFORMED;
    json_val *mv = json_get(root, "measure"), *f = json_get(root, "filters");
    if (json_kind_of(mv) != JSON_STRING)
        return ds_fail(err, DS_MALFORMED, "measure", "'measure' is required");
    if (f && json_kind_of(f) != JSON_OBJECT)
        return ds_fail(err, DS_MALFORMED, "filters", "'filters' is an object");
    size_t it = 0, klen;
    const char *key;
    json_val *v;
    while (f && json_next(f, &it, &key, &klen, &v))
        if (json_kind_of(v) != JSON_STRING)
            return ds_fail(err, DS_MALFORMED, "filters", "filters name members (strings)");
    int rc = axis_shape(json_get(root, "rows"), "rows", err);
    return rc ? rc : axis_shape(json_get(root, "cols"), "cols", err);
}

int request_grid(const ds_model *m, const json_val *root, ds_grid_spec *g, int32_t **rows,
                 int32_t **cols, ds_error *err)
{
    int rc = request_grid_shape(root, err);
    if (rc == 0)
        rc = grid_axis(m, json_get(root, "rows"), &g->row_dim, rows, &g->nrows, err);
    if (rc == 0)
        rc = grid_axis(m, json_get(root, "cols"), &g->col_dim, cols, &g->ncols, err);
    if (rc == 0 && g->row_dim == g->col_dim)
        rc = ds_fail(err, DS_INVALID_VALUE, "cols",
                     "rows and cols are both of dimension '%s': a grid crosses two",
                     m->dims[g->row_dim].name);
    if (rc)
        return rc;
    size_t len;
    const char *mn = json_str(json_get(root, "measure"), &len);
    if ((g->measure = request_measure(m, mn, len, err)) < 0)
        return g->measure;
    for (int k = 0; k < m->ndims; k++)
        g->fixed.m[k] = m->dims[k].root;
    size_t it = 0, klen;
    const char *key;
    json_val *v, *f = json_get(root, "filters");
    while (f && json_next(f, &it, &key, &klen, &v)) {
        int d = request_dim(m, key, klen, err);
        if (d < 0)
            return d;
        if (d == g->row_dim || d == g->col_dim)
            return ds_fail(err, DS_INVALID_VALUE, "filters",
                           "'filters' names dimension '%s', which is on the %s: a grid shows each "
                           "of their members, not one",
                           m->dims[d].name, d == g->row_dim ? "rows" : "columns");
        const char *s = json_str(v, &len);
        if ((rc = request_member(m, d, s, len, &g->fixed.m[d], err)))
            return rc;
    }
    g->rows = *rows;
    g->cols = *cols;
    return 0;
}
