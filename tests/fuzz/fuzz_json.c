/* fuzz_json.c: libFuzzer target for json_parse (src/json.c) under small
 * limits. The input's first byte picks the limits; the rest is the
 * document. A document it accepts must be strict JSON that json-c agrees
 * with, and writing it back with the jw_* writer must give a document that
 * parses to the same tree (same kinds, keys, string bytes and number text).
 * A refusal must be too_large or malformed with target "body". A space
 * after the document changes neither (a number at the very end of the
 * input is complete). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_json: %s:%d: %s\n", __FILE__, __LINE__, #c);                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes v with the jw_* writer (what every response uses). */
static void write_val(json_w *w, const json_val *v)
{
    size_t n, i = 0, klen;
    const char *s, *key;
    bool exact;
    json_val *x;
    switch (json_kind_of(v)) {
    case JSON_NULL:
        jw_null(w);
        break;
    case JSON_BOOL:
        jw_bool(w, json_truth(v));
        break;
    case JSON_NUMBER:
        s = json_num(v, &n, &exact);
        jw_raw(w, s, n);
        break;
    case JSON_STRING:
        s = json_str(v, &n);
        jw_strn(w, s, n);
        break;
    case JSON_ARRAY:
        jw_arr(w);
        for (size_t k = 0; k < json_len(v); k++)
            write_val(w, json_at(v, k));
        jw_arr_end(w);
        break;
    case JSON_OBJECT:
        jw_obj(w);
        while (json_next(v, &i, &key, &klen, &x)) {
            jw_key(w, key);
            write_val(w, x);
        }
        jw_obj_end(w);
        break;
    }
}

static void same_tree(const json_val *a, const json_val *b)
{
    CHECK(json_kind_of(a) == json_kind_of(b));
    size_t na, nb, i = 0, j = 0, ka, kb;
    const char *sa, *sb;
    bool ea, eb;
    json_val *va, *vb;
    switch (json_kind_of(a)) {
    case JSON_NULL:
        break;
    case JSON_BOOL:
        CHECK(json_truth(a) == json_truth(b));
        break;
    case JSON_NUMBER:
        sa = json_num(a, &na, &ea);
        sb = json_num(b, &nb, &eb);
        CHECK(na == nb && memcmp(sa, sb, na) == 0 && ea == eb);
        break;
    case JSON_STRING:
        sa = json_str(a, &na);
        sb = json_str(b, &nb);
        CHECK(na == nb && memcmp(sa, sb, na) == 0);
        break;
    case JSON_ARRAY:
        CHECK(json_len(a) == json_len(b));
        for (size_t k = 0; k < json_len(a); k++)
            same_tree(json_at(a, k), json_at(b, k));
        break;
    case JSON_OBJECT:
        CHECK(json_len(a) == json_len(b));
        while (json_next(a, &i, &sa, &ka, &va)) {
            CHECK(json_next(b, &j, &sb, &kb, &vb));
            CHECK(ka == kb && memcmp(sa, sb, ka) == 0);
            CHECK(json_get(a, sa) == va); /* the last of duplicate keys */
            same_tree(va, vb);
        }
        CHECK(!json_next(b, &j, &sb, &kb, &vb));
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    json_limits lim;
    json_limits_default(&lim);
    lim.max_depth = 1 + (data[0] & 15);            /* 1 .. 16 */
    lim.max_string = (size_t)16 << (data[0] >> 6); /* 16 .. 128 */
    lim.max_bytes = (data[0] & 32) ? 64 : 4096;
    const char *doc = (const char *)data + 1;
    size_t len = size - 1;

    json_val *root = (json_val *)1;
    ds_error e;
    int rc = json_parse(doc, len, &lim, &root, &e);

    /* whitespace after the document changes nothing */
    char *spaced = malloc(len + 1);
    memcpy(spaced, doc, len);
    spaced[len] = ' ';
    json_limits lim1 = lim;
    lim1.max_bytes++;
    json_val *r1;
    ds_error e1;
    int rc1 = json_parse(spaced, len + 1, &lim1, &r1, &e1);
    if ((rc == 0) != (rc1 == 0))
        fprintf(stderr, "fuzz_json: '%.*s' %s, with a space after it %s\n", (int)len, doc,
                rc ? e.message : "parses", rc1 ? e1.message : "parses");
    CHECK((rc == 0) == (rc1 == 0));
    json_free(r1);
    free(spaced);

    if (rc) {
        CHECK(root == NULL);
        CHECK(rc == -DS_MALFORMED || rc == -DS_TOO_LARGE);
        CHECK(rc == -(int)e.code && strcmp(e.target, "body") == 0);
        CHECK(rc != -DS_TOO_LARGE || len > lim.max_bytes || len > lim.max_string);
        return 0;
    }
    CHECK(len <= lim.max_bytes); /* (root is NULL for the document null) */

    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 24);
    json_w w;
    jw_init(&w, &b);
    write_val(&w, root);
    CHECK(w.depth == 0 && !b.overflow);
    ds_buf_putc(&b, '\n'); /* ends a number at the top level */

    /* escapes may make strings longer; the depth is the same */
    json_limits big = lim;
    big.max_bytes = b.len;
    big.max_string = 6 * lim.max_string;
    json_val *again;
    rc = json_parse(b.data, b.len, &big, &again, &e);
    if (rc)
        fprintf(stderr, "fuzz_json: rewritten document refused: %s\n%s\n", e.message, b.data);
    CHECK(rc == 0);
    same_tree(root, again);
    json_free(again);
    ds_buf_free(&b);
    json_free(root);
    return 0;
}
