/* Unit tests for json.c: strict parsing with limits, exact number text,
 * and the writer (escaping, exact decimals, round trips). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static int parse(const char *s, json_val **root, ds_error *e)
{
    json_limits l;
    json_limits_default(&l);
    l.max_depth = 8;
    l.max_string = 64;
    l.max_bytes = 4096;
    return json_parse(s, strlen(s), &l, root, e);
}

START_TEST(rejects_what_rfc8259_rejects)
{
    static const char *const bad[] = {
        "{\"v\": NaN}",
        "{\"v\": Infinity}",
        "{\"v\": -Infinity}",
        "{'v': 1}",
        "{\"v\": 'x'}",
        "{\"v\": \"a\tb\"}",
        "{\"v\": \"\\ud800\"}",
        "{\"v\": \"\\udc00x\"}",
        "{\"v\": 01}",
        "{\"v\": 1.}",
        "{\"v\": .5}",
        "{\"v\": +1}",
        "{\"v\": 1e}",
        "{\"v\": [1,2,]}",
        "{\"v\": 1,}",
        "{\"v\": 1} x",
        "{\"v\": 1}{}",
        "{\"v\": \"\\x41\"}",
        "{\"v\": TRUE}",
        "{\"v\": nul}",
        "{\"v\": \"\xff\"}",
        "{\"v\": \"\xc0\xaf\"}",
        "{\"v\": \"abc",
        "{\"v\":",
        "",
        "   ",
        "{\"v\" 1}",
        "[[[[[[[[[1]]]]]]]]]",
        "{\"v\": \"\\u12\"}",
        "{\"v\": 1 /* c */}",
        "// c\n{}",
        "{\"v\": \"\xed\xa0\x80\"}",
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(bad); i++) {
        json_val *root = (json_val *)1;
        ds_error e;
        int rc = parse(bad[i], &root, &e);
        ck_assert_msg(rc == -DS_MALFORMED, "accepted or wrong code for: %s (%d)", bad[i], rc);
        ck_assert_ptr_null(root);
        ck_assert_str_eq(e.target, "body");
        ck_assert_ptr_nonnull(strstr(e.message, "byte"));
    }
}
END_TEST

START_TEST(limits)
{
    json_val *root;
    ds_error e;
    char big[5000];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = 0;
    ck_assert_int_eq(parse(big, &root, &e), -DS_TOO_LARGE);
    char longstr[200];
    snprintf(longstr, sizeof longstr, "{\"v\": \"%0100d\"}", 7);
    ck_assert_int_eq(parse(longstr, &root, &e), -DS_TOO_LARGE);
    ck_assert_int_eq(parse("[[[[[[[[1]]]]]]]]", &root, &e), 0); /* 8 levels: fine */
    json_free(root);
}
END_TEST

/* RFC 8259 allows any value at the top; one at the very end of the input
 * is complete (json-c alone waits for the byte after a number). */
START_TEST(scalars_at_the_end)
{
    static const struct {
        const char *doc;
        json_kind kind;
    } ok[] = {{"1", JSON_NUMBER},     {"-0", JSON_NUMBER},   {"1e5", JSON_NUMBER},
              {"12.50", JSON_NUMBER}, {"true", JSON_BOOL},   {"false", JSON_BOOL},
              {"null", JSON_NULL},    {"\"x\"", JSON_STRING}};
    for (size_t i = 0; i < DS_ARRAY_LEN(ok); i++) {
        json_val *root;
        ds_error e;
        ck_assert_msg(parse(ok[i].doc, &root, &e) == 0, "%s: %s", ok[i].doc, e.message);
        ck_assert_int_eq(json_kind_of(root), ok[i].kind);
        json_free(root);
    }
    json_val *root;
    ds_error e;
    ck_assert_int_eq(parse("1 2", &root, &e), -DS_MALFORMED);
    ck_assert_int_eq(parse("{\"a\": 1", &root, &e), -DS_MALFORMED);
    ck_assert_ptr_nonnull(strstr(e.message, "truncated"));
}
END_TEST

START_TEST(numbers_keep_their_text)
{
    json_val *root;
    ds_error e;
    ck_assert_int_eq(parse("{\"a\": 12.50, \"b\": 12, \"c\": -0.0, \"d\": 1.5e3, "
                           "\"e\": 99999999999999999999, \"f\": -99999999999999999999, "
                           "\"g\": 9007199254740993.000001}",
                           &root, &e),
                     0);
    struct {
        const char *key, *text;
        bool exact;
    } want[] = {{"a", "12.50", true},
                {"b", "12", true},
                {"c", "-0.0", true},
                {"d", "1.5e3", true},
                {"e", NULL, false},
                {"f", NULL, false},
                {"g", "9007199254740993.000001", true}};
    for (size_t i = 0; i < DS_ARRAY_LEN(want); i++) {
        json_val *v = json_get(root, want[i].key);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(json_kind_of(v), JSON_NUMBER);
        size_t n;
        bool exact;
        const char *t = json_num(v, &n, &exact);
        ck_assert_msg(exact == want[i].exact, "%s", want[i].key);
        if (want[i].text)
            ck_assert_str_eq(t, want[i].text);
    }
    json_free(root);
}
END_TEST

START_TEST(objects_arrays_strings)
{
    json_val *root;
    ds_error e;
    ck_assert_int_eq(parse("{\"z\": 1, \"a\": [true, null, \"x\\u0000y\"], \"z\": 2, "
                           "\"s\": \"\\u00e9\\ud83d\\ude00\"}",
                           &root, &e),
                     0);
    /* duplicate keys: the last wins */
    size_t n;
    bool exact;
    ck_assert_str_eq(json_num(json_get(root, "z"), &n, &exact), "2");
    json_val *a = json_get(root, "a");
    ck_assert_int_eq(json_kind_of(a), JSON_ARRAY);
    ck_assert_uint_eq(json_len(a), 3);
    ck_assert(json_truth(json_at(a, 0)));
    ck_assert_int_eq(json_kind_of(json_at(a, 1)), JSON_NULL);
    const char *s = json_str(json_at(a, 2), &n);
    ck_assert_uint_eq(n, 3); /* the NUL is kept */
    ck_assert(memcmp(s, "x\0y", 3) == 0);
    s = json_str(json_get(root, "s"), &n);
    ck_assert_str_eq(s, "\xc3\xa9\xf0\x9f\x98\x80");
    /* iteration in document order */
    size_t it = 0, count = 0;
    const char *key;
    size_t klen;
    json_val *v;
    const char *order[] = {"z", "a", "s"};
    while (json_next(root, &it, &key, &klen, &v))
        ck_assert_str_eq(key, order[count++]);
    ck_assert_uint_eq(count, 3);
    ck_assert_ptr_null(json_get(root, "missing"));
    ck_assert_ptr_null(json_get(a, "z"));
    json_free(root);
}
END_TEST

START_TEST(keys_never_hold_a_control_character)
{
    /* at the start, in the middle and at the end of a key, escaped and raw
       (DEL and the C1 range as UTF-8), at the top and nested */
    static const char *const bad[] = {
        "{\"\\u0000a\": 1}",
        "{\"a\\u0000b\": 1}",
        "{\"ab\\u0000\": 1}",
        "{\"a\\u0001\": 1}",
        "{\"a\\u001f\": 1}",
        "{\"a\\n\": 1}",
        "{\"a\\t\": 1}",
        "{\"a\\b\" : 1}",
        "{\"a\\u007f\": 1}",
        "{\"a\\u0085\": 1}",
        "{\"a\\u009F\": 1}",
        "{\"a\x7f\": 1}",
        "{\"a\xc2\x80\": 1}",
        "{\"a\xc2\x9f\"\n:1}",
        "{\"x\": {\"c\\u0000\": 1}}",
        "{\"x\": [{\"\\u0000\": 1}]}",
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(bad); i++) {
        json_val *root = (json_val *)1;
        ds_error e;
        ck_assert_msg(parse(bad[i], &root, &e) == -DS_MALFORMED, "accepted: %s", bad[i]);
        ck_assert_ptr_null(root);
        ck_assert_str_eq(e.target, "body");
        ck_assert_msg(strstr(e.message, "control character"), "%s", e.message);
    }
    /* the characters around the range, and every control character in a
       value (a value keeps its bytes: its reader judges them) */
    static const char *const good[] = {
        "{\"a\\u0020\": 1}",
        "{\"a\\u00a0\": 1}",
        "{\"a\xc2\xa0\": 1}",
        "{\"a/\\/\\\\\\\"\": 1}",
        "{\"a\": \"\\u0000\"}",
        "{\"a\": \"\x7f\"}",
        "{\"a\": [\"\\n\", \"\xc2\x85\"]}",
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(good); i++) {
        json_val *root;
        ds_error e;
        ck_assert_msg(parse(good[i], &root, &e) == 0, "refused: %s: %s", good[i], e.message);
        json_free(root);
    }
    /* a key's length is its whole length */
    json_val *root;
    ds_error e;
    ck_assert_int_eq(parse("{\"product\\u00e9zz\": \"P\\u0000-1\"}", &root, &e), 0);
    size_t it = 0, klen, vlen;
    const char *key;
    json_val *v;
    ck_assert(json_next(root, &it, &key, &klen, &v));
    ck_assert_uint_eq(klen, 11);
    ck_assert(memcmp(json_str(v, &vlen), "P\0-1", 4) == 0);
    ck_assert_uint_eq(vlen, 4);
    json_free(root);
}
END_TEST

START_TEST(writer_round_trips)
{
    ds_buf b;
    ds_buf_init(&b, 1 << 20);
    json_w w;
    jw_init(&w, &b);
    jw_obj(&w);
    jw_key(&w, "s");
    jw_str(&w, "quote\" back\\ nl\n tab\t ctl\x01 \xc3\xa9");
    jw_key(&w, "d");
    jw_dec(&w, -1250, 2);
    jw_key(&w, "i");
    jw_int(&w, -42);
    jw_key(&w, "a");
    jw_arr(&w);
    jw_bool(&w, true);
    jw_null(&w);
    jw_obj(&w);
    jw_obj_end(&w);
    jw_arr(&w);
    jw_arr_end(&w);
    jw_dec(&w, 5, 0);
    jw_arr_end(&w);
    jw_key(&w, "r");
    jw_raw(&w, "{\"x\":1}", 7);
    jw_obj_end(&w);
    ck_assert_str_eq(b.data, "{\"s\":\"quote\\\" back\\\\ nl\\n tab\\t ctl\\u0001 \xc3\xa9\","
                             "\"d\":-12.50,\"i\":-42,\"a\":[true,null,{},[],5],\"r\":{\"x\":1}}");
    json_val *root;
    ds_error e;
    ck_assert_int_eq(json_parse(b.data, b.len, NULL, &root, &e), 0);
    size_t n;
    bool exact;
    ck_assert_str_eq(json_num(json_get(root, "d"), &n, &exact), "-12.50");
    ck_assert_str_eq(json_str(json_get(root, "s"), &n),
                     "quote\" back\\ nl\n tab\t ctl\x01 \xc3\xa9");
    json_free(root);
    ds_buf_free(&b);
}
END_TEST

/* A ds_buf grows as text is added a character, a format or a block at a
 * time, and stops at its cap: it holds the longest run of whole pieces
 * that fits, says it overflowed, and stays NUL-terminated (putc and printf
 * take a fast path when there is room; the slow one must agree). */
START_TEST(buffers_grow_and_stop_at_their_cap)
{
    static const size_t caps[] = {0, 1, 5, 510, 511, 512, 513, 1023, 1024, 1025, 5000};
    for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
        for (int how = 0; how < 3; how++) {
            ds_buf b;
            ds_buf_init(&b, caps[ci]);
            char want[8192];
            size_t wlen = 0;
            bool over = false;
            for (int i = 0; i < 700; i++) {
                char piece[32];
                int n;
                if (how == 0) {
                    piece[0] = (char)('a' + i % 26);
                    n = 1;
                    ds_buf_putc(&b, piece[0]);
                } else if (how == 1) {
                    n = snprintf(piece, sizeof piece, "<%d:%s>", i, i % 3 ? "x" : "");
                    ds_buf_printf(&b, "<%d:%s>", i, i % 3 ? "x" : "");
                } else {
                    n = snprintf(piece, sizeof piece, "%.*s", 1 + i % 13, "abcdefghijklm");
                    ds_buf_append(&b, piece, (size_t)n);
                }
                if (!over && wlen + (size_t)n <= caps[ci]) {
                    memcpy(want + wlen, piece, (size_t)n);
                    wlen += (size_t)n;
                } else {
                    over = true;
                }
            }
            ck_assert_msg(b.len == wlen && memcmp(b.data, want, wlen) == 0,
                          "cap %zu, way %d: %zu bytes, want %zu", caps[ci], how, b.len, wlen);
            ck_assert_int_eq(b.data[b.len], 0);
            ck_assert(b.overflow == over);
            ds_buf_free(&b);
        }
    }
}
END_TEST

/* Bytes that are not UTF-8 (an identifier a client sent, echoed in a
 * message; a message cut inside a character) are written as U+FFFD, so
 * every answer stays valid JSON text; valid sequences pass unchanged. */
START_TEST(writer_replaces_invalid_utf8)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a\xff", "\"a\xef\xbf\xbd\""},
        {"\xc3", "\"\xef\xbf\xbd\""},                                 /* cut short */
        {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\""},                 /* overlong */
        {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""}, /* surrogate */
        {"\xe2\x82\xac\xf0\x9f\x98\x80 ok", "\"\xe2\x82\xac\xf0\x9f\x98\x80 ok\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ds_buf b;
        ds_buf_init(&b, 1 << 10);
        json_w w;
        jw_init(&w, &b);
        jw_str(&w, cases[i].in);
        ck_assert_str_eq(b.data, cases[i].out);
        json_val *root;
        ds_error e;
        ck_assert_int_eq(json_parse(b.data, b.len, NULL, &root, &e), 0);
        json_free(root);
        ds_buf_free(&b);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("json");
    tcase_add_test(tc, rejects_what_rfc8259_rejects);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, scalars_at_the_end);
    tcase_add_test(tc, numbers_keep_their_text);
    tcase_add_test(tc, objects_arrays_strings);
    tcase_add_test(tc, keys_never_hold_a_control_character);
    tcase_add_test(tc, writer_round_trips);
    tcase_add_test(tc, buffers_grow_and_stop_at_their_cap);
    tcase_add_test(tc, writer_replaces_invalid_utf8);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
