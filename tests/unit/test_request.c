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
    expect(body, REQ_UPDATE_CELL, DS_NOT_FOUND, "cell"); /* no trimming */
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
    ds_arena_free(&a);
    ds_arena_free(&b);
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
    tcase_add_test(tc, event_encoding);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
