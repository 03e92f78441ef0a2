/* Unit tests for request.c: body checks (400), name resolution (404 and
 * 422 in the API's order of checks, docs/api.md), exact values, the canonical
 * form round trip, and event encoding. Pure: no database. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "demo.h"
#include "request.h"

static ds_model *M;

static void setup(void)
{
    demo_opts o = {.seed = 3, .facts = 5000};
    M = demo_model(&o);
}

static void teardown(void)
{
    model_free(M);
}

/* Decodes body as kind; returns the rc; *out valid on success. */
static int decode(const char *body, req_kind kind, const char *dim, ds_arena *a, req_decoded *out,
                  ds_error *e)
{
    json_val *root;
    int rc = json_parse(body, strlen(body), NULL, &root, e);
    if (rc)
        return rc;
    rc = request_check(root, kind, e);
    if (rc == 0)
        rc = request_resolve(root, kind, M, dim, a, out, e);
    json_free(root);
    return rc;
}

static void expect(const char *body, req_kind kind, ds_code code, const char *target)
{
    ds_arena a = {0};
    req_decoded d;
    ds_error e;
    int rc = decode(body, kind, "product", &a, &d, &e);
    ck_assert_msg(rc == -(int)code, "%s: got %d (%s) want %s", body, rc, rc ? e.message : "",
                  ds_code_name(code));
    if (target)
        ck_assert_msg(strcmp(e.target, target) == 0, "%s: target %s want %s", body, e.target,
                      target);
    ds_arena_free(&a);
}

START_TEST(update_cell_decodes)
{
    ds_arena a = {0};
    req_decoded d;
    ds_error e;
    const char *body = "{\"table\": \"sales\", \"column\": \"net_amount\", "
                       "\"cell\": {\"product\": \"Brand X\", \"time\": \"2025-03\"}, "
                       "\"value\": 500.5, \"method\": \"equal\", "
                       "\"holds\": [{\"product\": \"P-0007\"}], \"request_id\": \"r-1\", "
                       "\"if_seq\": 12, \"wait\": false}";
    ck_assert_msg(decode(body, REQ_UPDATE_CELL, NULL, &a, &d, &e) == 0, "%s", e.message);
    ck_assert_int_eq(d.cmd.kind, COMMAND_WRITE);
    ck_assert_uint_eq(d.cmd.nwrites, 1);
    const ds_write *w = &d.cmd.writes[0];
    ck_assert_int_eq(w->measure, 1);
    ck_assert(w->amount == 50050);
    ck_assert_int_eq(w->form, SPREAD_SET);
    ck_assert_int_eq(w->method, SPREAD_EQUAL);
    ck_assert_str_eq(M->dims[0].members[w->cell.m[0]].key, "S01-B2");
    ck_assert_str_eq(M->dims[2].members[w->cell.m[2]].key, "2025-03");
    ck_assert_int_eq(w->cell.m[1], M->dims[1].root);
    ck_assert_int_eq(w->nholds, 1);
    ck_assert_int_eq(w->holds[0].m[1], -1);
    ck_assert_str_eq(d.request_id, "r-1");
    ck_assert_int_eq(d.if_seq, 12);
    ck_assert(!d.wait);
    ck_assert_str_eq(d.canonical,
                     "{\"table\":\"sales\",\"writes\":[{\"column\":\"net_amount\",\"cell\":"
                     "{\"product\":\"S01-B2\",\"time\":\"2025-03\"},\"value\":\"500.50\","
                     "\"method\":\"equal\",\"holds\":[{\"product\":\"P-0007\"}]}],\"if_seq\":12}");
    ck_assert_uint_eq(strlen(d.hash), 64);
    /* the canonical form decodes to the same command and hash */
    req_decoded c;
    ck_assert(decode(d.canonical, REQ_CANONICAL, NULL, &a, &c, &e) == 0);
    ck_assert_str_eq(c.canonical, d.canonical);
    ck_assert_str_eq(c.hash, d.hash);
    ck_assert(memcmp(&c.cmd.writes[0].cell, &w->cell, sizeof w->cell) == 0);
    /* the same request with another request_id hashes the same */
    req_decoded d2;
    const char *body2 = "{\"table\": \"sales\", \"column\": \"net_amount\", "
                        "\"cell\": {\"time\": \"2025-03\", \"product\": \"S01-B2\"}, "
                        "\"value\": \"500.50\", \"method\": \"equal\", "
                        "\"holds\": [{\"product\": \"Product 0007\"}], \"if_seq\": 12}";
    ck_assert(decode(body2, REQ_UPDATE_CELL, NULL, &a, &d2, &e) == 0);
    ck_assert_str_eq(d2.hash, d.hash);
    ds_arena_free(&a);
}
END_TEST

START_TEST(shape_errors_are_400)
{
    expect("[1]", REQ_UPDATE_CELL, DS_MALFORMED, "body");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,\"colour\":1}",
           REQ_UPDATE_CELL, DS_MALFORMED, "colour");
    expect("{\"table\":\"sales\",\"column\":7,\"cell\":{},\"value\":1}", REQ_UPDATE_CELL,
           DS_MALFORMED, "column");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,\"delta\":2}",
           REQ_UPDATE_CELL, DS_MALFORMED, "value");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{}}", REQ_UPDATE_CELL,
           DS_MALFORMED, "value");
    expect("{\"column\":\"quantity\",\"cell\":{},\"value\":1}", REQ_UPDATE_CELL, DS_MALFORMED,
           "table");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{\"product\":3},\"value\":1}",
           REQ_UPDATE_CELL, DS_MALFORMED, "cell");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":true}",
           REQ_UPDATE_CELL, DS_MALFORMED, "value");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,\"wait\":1}",
           REQ_UPDATE_CELL, DS_MALFORMED, "wait");
    expect("{\"writes\":[]}", REQ_BATCH, DS_MALFORMED, "writes");
    expect("{\"writes\":[{\"column\":\"quantity\",\"cell\":{},\"value\":1,\"table\":\"x\"}]}",
           REQ_BATCH, DS_MALFORMED, "table");
}
END_TEST

START_TEST(names_are_404_then_422)
{
    const char *fmt = "{\"table\":\"sales\",\"column\":\"%s\",\"cell\":{%s},\"value\":%s}";
    char body[512];
    snprintf(body, sizeof body, fmt, "qty", "\"product\":\"P-0001\"", "1");
    expect(body, REQ_UPDATE_CELL, DS_NOT_FOUND, "column");
    snprintf(body, sizeof body, fmt, "quantity", "\"colour\":\"red\"", "1");
    expect(body, REQ_UPDATE_CELL, DS_NOT_FOUND, "dimension");
    snprintf(body, sizeof body, fmt, "quantity", "\"product\":\"P-9999\"", "1");
    expect(body, REQ_UPDATE_CELL, DS_NOT_FOUND, "cell");
    snprintf(body, sizeof body, fmt, "quantity", "\"product\":\"p-0001\"", "1");
    expect(body, REQ_UPDATE_CELL, DS_NOT_FOUND, "cell"); /* case sensitive */
    snprintf(body, sizeof body, fmt, "quantity", "\"product\":\"P-0001 \"", "1");
    expect(body, REQ_UPDATE_CELL, DS_INVALID_VALUE, "cell"); /* not trimmed: no name at all */
    /* "Shoes" names one family per brand: ambiguous, with the keys */
    ds_arena a = {0};
    req_decoded d;
    ds_error e;
    snprintf(body, sizeof body, fmt, "quantity", "\"product\":\"Shoes\"", "1");
    ck_assert_int_eq(decode(body, REQ_UPDATE_CELL, NULL, &a, &d, &e), -DS_AMBIGUOUS_MEMBER);
    ck_assert_int_ge(e.ncandidates, 6);
    ck_assert_ptr_nonnull(strstr(e.candidates, "-F1"));
    /* a 404 anywhere beats an earlier 422 */
    snprintf(body, sizeof body, fmt, "quantity", "\"product\":\"Shoes\",\"time\":\"1999\"", "1.5");
    ck_assert_int_eq(decode(body, REQ_UPDATE_CELL, NULL, &a, &d, &e), -DS_NOT_FOUND);
    ds_arena_free(&a);
}
END_TEST

START_TEST(values_are_exact_or_422)
{
    const char *fmt = "{\"table\":\"sales\",\"column\":\"%s\",\"cell\":{%s},\"value\":%s}";
    const char *leaf = "\"product\":\"P-0001\",\"customer\":\"C-0001\",\"time\":\"2025-01\"";
    char body[512];
    struct {
        const char *col, *v;
        ds_code code;
    } cases[] = {
        {"quantity", "1.5", DS_INVALID_VALUE},
        {"net_amount", "1.005", DS_INVALID_VALUE},
        {"net_amount", "\"1.005\"", DS_INVALID_VALUE},
        {"quantity", "\"NaN\"", DS_INVALID_VALUE},
        {"quantity", "\"1e3\"", DS_INVALID_VALUE},
        {"quantity", "\" 12\"", DS_INVALID_VALUE},
        {"quantity", "1e400", DS_OUT_OF_RANGE},
        {"quantity", "1000000000000000000", DS_OUT_OF_RANGE},
        {"quantity", "99999999999999999999", DS_OUT_OF_RANGE},
        {"net_amount", "10000000000000000.00", DS_OUT_OF_RANGE},
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(cases); i++) {
        snprintf(body, sizeof body, fmt, cases[i].col, leaf, cases[i].v);
        expect(body, REQ_UPDATE_CELL, cases[i].code, NULL);
    }
    ds_arena a = {0};
    req_decoded d;
    ds_error e;
    snprintf(body, sizeof body, fmt, "net_amount", leaf, "-0");
    ck_assert(decode(body, REQ_UPDATE_CELL, NULL, &a, &d, &e) == 0);
    ck_assert(d.cmd.writes[0].amount == 0);
    snprintf(body, sizeof body, fmt, "net_amount", leaf, "1.5e3");
    ck_assert(decode(body, REQ_UPDATE_CELL, NULL, &a, &d, &e) == 0);
    ck_assert(d.cmd.writes[0].amount == 150000);
    /* a consolidated target may exceed a leaf's range */
    snprintf(body, sizeof body, fmt, "quantity", "", "\"100000000000000000000\"");
    ck_assert_msg(decode(body, REQ_UPDATE_CELL, NULL, &a, &d, &e) == 0, "%s", e.message);
    ck_assert(d.cmd.writes[0].amount == dec_pow10(20));
    /* percent keeps its places */
    const char *pct = "{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"percent\":-2.5}";
    ck_assert(decode(pct, REQ_UPDATE_CELL, NULL, &a, &d, &e) == 0);
    ck_assert_int_eq(d.cmd.writes[0].form, SPREAD_PERCENT);
    ck_assert(d.cmd.writes[0].amount == -25 * dec_pow10(SPREAD_PCT_MAX_SCALE - 1));
    ck_assert_int_eq(d.cmd.writes[0].pct_scale, SPREAD_PCT_MAX_SCALE);
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,\"method\":"
           "\"fair\"}",
           REQ_UPDATE_CELL, DS_INVALID_VALUE, "method");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,\"if_seq\":-1}",
           REQ_UPDATE_CELL, DS_INVALID_VALUE, "if_seq");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,\"if_seq\":1.5}",
           REQ_UPDATE_CELL, DS_INVALID_VALUE, "if_seq");
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,"
           "\"request_id\":\"\"}",
           REQ_UPDATE_CELL, DS_INVALID_VALUE, "request_id");
    ds_arena_free(&a);
}
END_TEST

START_TEST(member_ops_decode)
{
    ds_arena a = {0};
    req_decoded d, c;
    ds_error e;
    ck_assert(decode("{\"op\":\"add\",\"key\":\"P-NEW\",\"parent\":\"P-0003\","
                     "\"facts_to\":\"P-NEW\",\"name\":\"New\"}",
                     REQ_MEMBER, "product", &a, &d, &e) == 0);
    ck_assert_int_eq(d.cmd.kind, COMMAND_MEMBER);
    ck_assert_int_eq(d.cmd.member.kind, MEMBER_ADD);
    ck_assert_int_eq(d.cmd.member.facts_to, -2);
    ck_assert_str_eq(d.cmd.member.key, "P-NEW");
    ck_assert(decode(d.canonical, REQ_CANONICAL, NULL, &a, &c, &e) == 0);
    ck_assert_str_eq(c.canonical, d.canonical);
    ck_assert(decode("{\"op\":\"move\",\"member\":\"P-0003\",\"parent\":\"S01-B1-F2\"}", REQ_MEMBER,
                     "product", &a, &d, &e) == 0);
    ck_assert_int_eq(d.cmd.member.kind, MEMBER_MOVE);
    expect("{\"op\":\"fly\",\"member\":\"P-0003\"}", REQ_MEMBER, DS_INVALID_VALUE, "op");
    expect("{\"op\":\"delete\",\"member\":\"P-9999\"}", REQ_MEMBER, DS_NOT_FOUND, "cell");
    expect("{\"op\":\"rename\",\"member\":\"P-0001\"}", REQ_MEMBER, DS_MALFORMED, "name");
    ds_arena b = {0};
    ck_assert_int_eq(
        decode("{\"op\":\"delete\",\"member\":\"P-0001\"}", REQ_MEMBER, "colour", &b, &d, &e),
        -DS_NOT_FOUND);
    ck_assert_str_eq(e.target, "dimension");
    /* a dimension that is no name, from the path or the canonical form: 422
       with its own code (the one fuzz_request found returned as a 404) */
    ck_assert_int_eq(
        decode("{\"op\":\"delete\",\"member\":\"P-0001\"}", REQ_MEMBER, "pro\x7f", &b, &d, &e),
        -DS_INVALID_VALUE);
    ck_assert_str_eq(e.target, "dimension");
    ck_assert_int_eq(decode("{\"table\":\"sales\",\"member\":{\"op\":\"delete\",\"dimension\":"
                            "\"prod\\u007fuct\",\"member\":\"P-0001\"}}",
                            REQ_CANONICAL, NULL, &b, &d, &e),
                     -DS_INVALID_VALUE);
    ck_assert_str_eq(e.target, "dimension");
    /* a canonical command with no write is malformed, as a batch with none
       is (fuzz_request found it decoded to a command of zero writes) */
    ck_assert_int_eq(decode("{\"table\":\"sales\",\"writes\":[]}", REQ_CANONICAL, NULL, &b, &d, &e),
                     -DS_MALFORMED);
    ck_assert_str_eq(e.target, "writes");
    ds_arena_free(&a);
    ds_arena_free(&b);
}
END_TEST

/* A JSON string of text (any bytes) into out. */
static void jstr(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        else
            out[o++] = (char)c;
    }
    out[o++] = '"';
    out[o] = '\0';
}

START_TEST(names_are_checked_whole)
{
    /* each name of a write, with a NUL or another control character at its
       start, middle and end: 422 naming what it names, never the prefix */
    static const struct {
        const char *fmt, *target, *base;
    } fields[] = {
        {"{\"table\":\"sales\",\"column\":%s,\"cell\":{},\"value\":1}", "column", "quantity"},
        {"{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{\"product\":%s},\"value\":1}",
         "cell", "P-0001"},
        {"{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{\"product\":\"S01\"},\"value\":1,"
         "\"holds\":[{\"product\":%s}]}",
         "cell", "P-0001"},
        {"{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,\"request_id\":%s}",
         "request_id", "r-1"},
        {"{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,\"method\":%s}",
         "method", "equal"},
    };
    static const char ctl[] = {'\0', '\x01', '\x1f', '\x7f'};
    for (size_t f = 0; f < DS_ARRAY_LEN(fields); f++)
        for (size_t c = 0; c < sizeof ctl; c++)
            for (int at = 0; at < 3; at++) {
                char name[64], js[256], body[512];
                size_t bl = strlen(fields[f].base), pos = at == 0 ? 0 : at == 1 ? 2 : bl;
                memcpy(name, fields[f].base, pos);
                name[pos] = ctl[c];
                memcpy(name + pos + 1, fields[f].base + pos, bl - pos);
                jstr(js, sizeof js, name, bl + 1);
                snprintf(body, sizeof body, fields[f].fmt, js);
                expect(body, REQ_UPDATE_CELL, DS_INVALID_VALUE, fields[f].target);
            }
    /* a dimension as a key: malformed at parse (json-c would cut it) */
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{\"product\\u0000x\":\"P-0001\"},"
           "\"value\":1}",
           REQ_UPDATE_CELL, DS_MALFORMED, "body");
    /* at the limit: a name (404); one byte past: 422; look-alikes: 422 */
    char n[300], body[800];
    memset(n, 'n', 257);
    snprintf(body, sizeof body,
             "{\"table\":\"sales\",\"column\":\"%.256s\",\"cell\":{},\"value\":1}", n);
    expect(body, REQ_UPDATE_CELL, DS_NOT_FOUND, "column");
    snprintf(body, sizeof body,
             "{\"table\":\"sales\",\"column\":\"%.257s\",\"cell\":{},\"value\":1}", n);
    expect(body, REQ_UPDATE_CELL, DS_INVALID_VALUE, "column");
    snprintf(
        body, sizeof body,
        "{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{\"%.257s\":\"x\"},\"value\":1}", n);
    expect(body, REQ_UPDATE_CELL, DS_INVALID_VALUE, "dimension");
    snprintf(body, sizeof body,
             "{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,"
             "\"request_id\":\"%.128s\"}",
             n);
    ds_arena a = {0};
    req_decoded d;
    ds_error e;
    ck_assert_msg(decode(body, REQ_UPDATE_CELL, NULL, &a, &d, &e) == 0, "%s", e.message);
    ck_assert_uint_eq(strlen(d.request_id), 128);
    snprintf(body, sizeof body,
             "{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{},\"value\":1,"
             "\"request_id\":\"%.129s\"}",
             n);
    expect(body, REQ_UPDATE_CELL, DS_INVALID_VALUE, "request_id");
    static const char *const alike[] = {
        "P-0001 ",       " P-0001",       "P-0001\\u00a0",        "P-0001\\u200b", "\\u202eP-0001",
        "P-\\u00ad0001", "P-0001\\ufeff", "\\u2066P-0001\\u2069", "P-0001\\u0085"};
    for (size_t i = 0; i < DS_ARRAY_LEN(alike); i++) {
        snprintf(body, sizeof body,
                 "{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{\"product\":\"%s\"},"
                 "\"value\":1}",
                 alike[i]);
        expect(body, REQ_UPDATE_CELL, DS_INVALID_VALUE, "cell");
    }
    /* distinct spellings that are all visible are names (not found here) */
    expect("{\"table\":\"sales\",\"column\":\"quantity\",\"cell\":{\"product\":\"Brand e\\u0301\"},"
           "\"value\":1}",
           REQ_UPDATE_CELL, DS_NOT_FOUND, "cell");
    ck_assert_int_eq(model_check_name("a\xe2\x80\x8d"
                                      "b c",
                                      7, "name", &e),
                     0);                                                  /* ZWJ, inner space */
    ck_assert_int_eq(model_check_name("\xef\xbd\x93", 3, "name", &e), 0); /* full-width s */
    ds_arena_free(&a);
}
END_TEST

/* A model definition (POST /v1/models) into *out; returns the rc. */
static int define(const char *json, ds_model **out, ds_error *e)
{
    json_val *root;
    int rc = json_parse(json, strlen(json), NULL, &root, e);
    if (rc == 0)
        rc = request_model(root, out, e);
    json_free(root);
    return rc;
}

START_TEST(model_definitions_are_whole)
{
    ds_model *m = NULL;
    ds_error e;
    ck_assert_msg(define("{\"name\":\"plan\",\"dimensions\":[{\"name\":\"d\",\"root\":{\"key\":"
                         "\"T\",\"name\":\"Total\"},\"members\":[{\"key\":\"A1\",\"name\":\"One\"},"
                         "{\"key\":\"A2\",\"parent\":\"A1\"}]}],\"measures\":[{\"name\":\"m\","
                         "\"scale\":2}]}",
                         &m, &e) == 0,
                  "%s", e.message);
    ck_assert_str_eq(m->name, "plan");
    ck_assert_int_eq(m->dims[0].nmembers, 3);
    ck_assert_str_eq(m->dims[0].members[m->dims[0].root].name, "Total");
    ck_assert_int_eq(model_find_key(&m->dims[0], "A2", 2), 2);
    ck_assert_int_eq(m->dims[0].members[2].parent, 1);
    ck_assert_int_eq(m->measures[0].scale, 2);
    model_free(m);
    static const struct {
        const char *json;
        ds_code code;
        const char *target;
    } bad[] = {
        /* A1 and A1\u0000x are not two members keyed A1 */
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"d\",\"members\":[{\"key\":\"A1\"},{\"key\":"
         "\"A1\\u0000x\"}]}],\"measures\":[]}",
         DS_INVALID_VALUE, "key"},
        {"{\"name\":\"p\\u0000\",\"dimensions\":[],\"measures\":[]}", DS_INVALID_VALUE, "table"},
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"\\u0000d\"}],\"measures\":[]}",
         DS_INVALID_VALUE, "dimension"},
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"d\",\"root\":{\"key\":\"A\\u0001\"}}],"
         "\"measures\":[]}",
         DS_INVALID_VALUE, "key"},
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"d\",\"root\":{\"name\":\"All\\u007f\"}}],"
         "\"measures\":[]}",
         DS_INVALID_VALUE, "name"},
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"d\",\"members\":[{\"key\":\"A\",\"name\":"
         "\"a\\u0000\"}]}],\"measures\":[]}",
         DS_INVALID_VALUE, "name"},
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"d\",\"members\":[{\"key\":\"A\"},{\"key\":"
         "\"B\",\"parent\":\"A\\u0000\"}]}],\"measures\":[]}",
         DS_INVALID_VALUE, "cell"},
        {"{\"name\":\"p\",\"dimensions\":[],\"measures\":[{\"name\":\"m\\u0000m\"}]}",
         DS_INVALID_VALUE, "measure"},
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"d\",\"members\":[{\"key\":\"B\",\"parent\":"
         "\"A\"}]}],\"measures\":[]}",
         DS_NOT_FOUND, "cell"},
        /* the shape's 400s come first, whatever the names */
        {"{\"name\":\"p\\u0000\",\"dimensions\":[{\"name\":\"d\",\"members\":[{\"key\":1}]}],"
         "\"measures\":[]}",
         DS_MALFORMED, "key"},
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"d\",\"root\":{\"key\":5}}],\"measures\":[]}",
         DS_MALFORMED, "key"},
        {"{\"name\":\"p\",\"dimensions\":[{\"name\":\"d\",\"members\":[{\"key\":\"A\",\"name\":2}]}"
         "]"
         ",\"measures\":[]}",
         DS_MALFORMED, "name"},
        {"{\"name\":\"p\",\"dimensions\":[],\"measures\":[{\"name\":\"m\",\"scale\":\"2\"}]}",
         DS_MALFORMED, "scale"},
        {"{\"name\":\"p\",\"dimensions\":{},\"measures\":[]}", DS_MALFORMED, "body"},
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(bad); i++) {
        m = NULL;
        int rc = define(bad[i].json, &m, &e);
        ck_assert_msg(rc == -(int)bad[i].code && strcmp(e.target, bad[i].target) == 0,
                      "%s: got %d %s (%s)", bad[i].json, rc, e.target, e.message);
        ck_assert_ptr_null(m);
    }
    char big[700];
    snprintf(big, sizeof big, "{\"name\":\"%0257d\",\"dimensions\":[],\"measures\":[]}", 0);
    ck_assert_int_eq(define(big, &m, &e), -DS_INVALID_VALUE);
    ck_assert_str_eq(e.target, "table");
}
END_TEST

START_TEST(event_encoding)
{
    ds_change ch[2];
    ds_cell c;
    for (int k = 0; k < M->ndims; k++)
        c.m[k] = M->dims[k].root;
    c.m[0] = model_find_key(&M->dims[0], "S01-B2", 6);
    ch[0] = (ds_change){.cell = c, .measure = 1, .old_value = 90000, .new_value = 50050};
    ch[1] = ch[0];
    ch[1].cell.m[2] = model_find_key(&M->dims[2], "2025-03", 7);
    ds_changeset set = {.target = ch[0],
                        .method = SPREAD_PROPORTIONAL,
                        .leaves_changed = 3,
                        .nchanges = 2,
                        .changes = ch,
                        .truncated = true};
    ds_outcome o = {.seq = 41, .ts_us = 1767225600123456LL, .nsets = 1, .sets = &set};
    ds_command cmd = {.kind = COMMAND_WRITE, .nwrites = 1};
    ds_buf b;
    ds_buf_init(&b, 1 << 20);
    json_w w;
    jw_init(&w, &b);
    jw_obj(&w);
    request_put_event(&w, M, &cmd, &o, "r\"1", "ann");
    jw_obj_end(&w);
    ck_assert_str_eq(b.data,
                     "{\"seq\":41,\"request_id\":\"r\\\"1\",\"user\":\"ann\","
                     "\"ts\":\"2026-01-01T00:00:00.123456Z\",\"kind\":\"write\","
                     "\"target\":{\"cell\":{\"product\":\"S01-B2\"},\"column\":\"net_amount\","
                     "\"old\":900.00,\"new\":500.50},\"method\":\"proportional\","
                     "\"leaves_changed\":3,\"changes\":[{\"cell\":{\"product\":\"S01-B2\"},"
                     "\"column\":\"net_amount\",\"old\":900.00,\"new\":500.50},{\"cell\":"
                     "{\"product\":\"S01-B2\",\"time\":\"2025-03\"},\"column\":\"net_amount\","
                     "\"old\":900.00,\"new\":500.50}],\"truncated\":true}");
    ds_buf_reset(&b);
    jw_init(&w, &b);
    ds_error e;
    ds_fail(&e, DS_AMBIGUOUS_MEMBER, "cell", "two");
    ds_error_add_candidate(&e, "a");
    ds_error_add_candidate(&e, "b");
    request_put_error(&w, &e);
    ck_assert_str_eq(b.data, "{\"error\":{\"code\":\"ambiguous_member\",\"message\":\"two\","
                             "\"target\":\"cell\",\"candidates\":[\"a\",\"b\"]}}");
    ds_buf_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("request");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, update_cell_decodes);
    tcase_add_test(tc, shape_errors_are_400);
    tcase_add_test(tc, names_are_404_then_422);
    tcase_add_test(tc, values_are_exact_or_422);
    tcase_add_test(tc, member_ops_decode);
    tcase_add_test(tc, names_are_checked_whole);
    tcase_add_test(tc, model_definitions_are_whole);
    tcase_add_test(tc, event_encoding);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
