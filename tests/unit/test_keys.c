/* Unit tests for keys.c (the key file, the keyring's checks, rate and open
 * limits, reloads and revocation) and request_scope() (a scoped editor's
 * writes). Files live in a temporary directory. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "demo.h"
#include "keys.h"
#include "request.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ds-keys-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void make_key(const char *user, key_role role, const char *model, const char *sdim,
                     const char *smember, char *secret, char *id)
{
    ds_key k;
    memset(&k, 0, sizeof k);
    snprintf(k.user, sizeof k.user, "%s", user);
    k.role = role;
    snprintf(k.model, sizeof k.model, "%s", model ? model : "");
    snprintf(k.scope_dim, sizeof k.scope_dim, "%s", sdim ? sdim : "");
    snprintf(k.scope_member, sizeof k.scope_member, "%s", smember ? smember : "");
    ds_error e;
    ck_assert_int_eq(keys_create(dir, &k, secret, 96, id, &e), 0);
}

START_TEST(file_round_trip_keeps_only_hashes)
{
    char s1[96], s2[96], id1[KEY_ID_LEN + 1], id2[KEY_ID_LEN + 1];
    make_key("alice", ROLE_EDITOR, "sales", "product", "Brand X", s1, id1);
    make_key("bob", ROLE_VIEWER, NULL, NULL, NULL, s2, id2);
    ck_assert_int_eq(strncmp(s1, "dsk_", 4), 0);
    ck_assert_uint_eq(strlen(s1), 4 + 48); /* 192 random bits */
    ck_assert_str_ne(s1, s2);
    ds_keyfile kf;
    ds_error e;
    ck_assert_int_eq(keys_read(dir, &kf, &e), 0);
    ck_assert_uint_eq(kf.n, 2);
    ck_assert_str_eq(kf.keys[0].user, "alice");
    ck_assert_str_eq(kf.keys[0].scope_member, "Brand X"); /* the space survives the encoding */
    ck_assert_int_eq(kf.keys[0].role, ROLE_EDITOR);
    char hash[65];
    keys_hash(s1, strlen(s1), hash);
    ck_assert_str_eq(kf.keys[0].hash, hash);
    ck_assert_int_eq(strncmp(kf.keys[0].id, hash, KEY_ID_LEN), 0);
    keys_free(&kf);
    /* the file holds no key, and only its owner reads it */
    char path[128], buf[4096];
    snprintf(path, sizeof path, "%s/keys", dir);
    FILE *f = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    ck_assert_ptr_null(strstr(buf, s1));
    ck_assert_ptr_null(strstr(buf, s2));
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
}
END_TEST

START_TEST(damaged_file_is_an_error)
{
    char path[128];
    snprintf(path, sizeof path, "%s/keys", dir);
    FILE *f = fopen(path, "w");
    fputs("# header\nnot\ta\tkey\n", f);
    fclose(f);
    ds_keyfile kf;
    ds_error e;
    ck_assert_int_lt(keys_read(dir, &kf, &e), 0);
    ck_assert_ptr_nonnull(strstr(e.message, "line 2"));
}
END_TEST

START_TEST(keyring_checks_roles_and_revocation)
{
    char s1[96], s2[96], id1[KEY_ID_LEN + 1], id2[KEY_ID_LEN + 1];
    make_key("alice", ROLE_ADMIN, NULL, NULL, NULL, s1, id1);
    keyring_opts o = {.dir = dir, .api_key = "legacy-secret"};
    ds_keyring *kr;
    ds_error e;
    ck_assert_int_eq(keyring_open(&o, &kr, &e), 0);
    ck_assert_uint_eq(keyring_count(kr), 2);
    ds_principal p;
    int retry;
    ck_assert_int_eq(keyring_check(kr, s1, strlen(s1), &p, &retry), KEY_OK);
    ck_assert_str_eq(p.user, "alice");
    ck_assert_int_eq(p.role, ROLE_ADMIN);
    ck_assert_str_eq(p.id, id1);
    keyring_close(kr, p.id);
    ck_assert_int_eq(keyring_check(kr, "legacy-secret", 13, &p, &retry), KEY_OK);
    ck_assert_str_eq(p.user, "api");
    keyring_close(kr, p.id);
    ck_assert_int_eq(keyring_check(kr, "legacy-secreT", 13, &p, &retry), KEY_UNKNOWN);
    ck_assert_int_eq(keyring_check(kr, s1, strlen(s1) - 1, &p, &retry), KEY_UNKNOWN);
    /* a key made after the keyring loaded: seen after a refresh */
    make_key("bob", ROLE_VIEWER, "sales", NULL, NULL, s2, id2);
    ck_assert_int_eq(keyring_check(kr, s2, strlen(s2), &p, &retry), KEY_UNKNOWN);
    bool revoked;
    keyring_refresh(kr, &revoked);
    ck_assert(!revoked);
    ck_assert_int_eq(keyring_check(kr, s2, strlen(s2), &p, &retry), KEY_OK);
    ck_assert_str_eq(p.model, "sales");
    keyring_close(kr, p.id);
    ck_assert(keyring_alive(kr, id2));
    int n;
    ck_assert_int_eq(keys_revoke(dir, id2, NULL, &n, &e), 0);
    ck_assert_int_eq(n, 1);
    keyring_refresh(kr, &revoked);
    ck_assert(revoked);
    ck_assert(!keyring_alive(kr, id2));
    ck_assert(keyring_alive(kr, id1));
    ck_assert_int_eq(keyring_check(kr, s2, strlen(s2), &p, &retry), KEY_UNKNOWN);
    ck_assert_int_lt(keys_revoke(dir, id2, NULL, &n, &e), 0); /* already revoked */
    /* a damaged file keeps the keys in force, it does not open the door */
    char path[128];
    snprintf(path, sizeof path, "%s/keys", dir);
    FILE *f = fopen(path, "a");
    fputs("garbage\n", f);
    fclose(f);
    keyring_refresh(kr, &revoked);
    ck_assert_int_eq(keyring_check(kr, s1, strlen(s1), &p, &retry), KEY_OK);
    keyring_close(kr, p.id);
    keyring_free(kr);
}
END_TEST

START_TEST(keyring_limits_rate_and_open)
{
    char s[96], id[KEY_ID_LEN + 1];
    make_key("carol", ROLE_VIEWER, NULL, NULL, NULL, s, id);
    keyring_opts o = {.dir = dir, .rate = 5, .burst = 5, .max_open = 3};
    ds_keyring *kr;
    ds_error e;
    ck_assert_int_eq(keyring_open(&o, &kr, &e), 0);
    ds_principal p;
    int retry;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(keyring_check(kr, s, strlen(s), &p, &retry), KEY_OK);
    ck_assert_int_eq(keyring_check(kr, s, strlen(s), &p, &retry), KEY_OPEN);
    ck_assert_int_ge(retry, 1);
    keyring_close(kr, id);
    ck_assert_int_eq(keyring_check(kr, s, strlen(s), &p, &retry), KEY_OK);
    for (int i = 0; i < 4; i++)
        keyring_close(kr, id);
    /* 4 of the 5 tokens spent; one more, then the rate */
    ck_assert_int_eq(keyring_check(kr, s, strlen(s), &p, &retry), KEY_OK);
    keyring_close(kr, id);
    ck_assert_int_eq(keyring_check(kr, s, strlen(s), &p, &retry), KEY_RATE);
    ck_assert_int_eq(retry, 1);
    usleep(450 * 1000); /* 5 per second: two tokens back */
    ck_assert_int_eq(keyring_check(kr, s, strlen(s), &p, &retry), KEY_OK);
    keyring_close(kr, id);
    keyring_free(kr);
}
END_TEST

/* ---- scopes --------------------------------------------------------------- */

static int scope_of(const ds_model *m, const char *product, const char *member, ds_error *e)
{
    ds_write w;
    memset(&w, 0, sizeof w);
    for (int k = 0; k < m->ndims; k++)
        w.cell.m[k] = m->dims[k].root;
    int d = model_find_dim(m, "product", 7);
    if (product)
        w.cell.m[d] = model_find_key(&m->dims[d], product, strlen(product));
    ds_command c = {.kind = COMMAND_WRITE, .nwrites = 1, .writes = &w};
    return request_scope(m, &c, "product", member, e);
}

START_TEST(scope_allows_the_subtree_only)
{
    demo_opts o = {.seed = 3, .facts = 5000};
    ds_model *m = demo_model(&o);
    ds_error e;
    ck_assert_int_eq(scope_of(m, "S01-B2", "S01-B2", &e), 0);
    ck_assert_int_eq(scope_of(m, "S01-B2-F1", "S01-B2", &e), 0);
    ck_assert_int_eq(scope_of(m, "S01-B2-F1", "Brand X", &e), 0); /* by a unique name too */
    ck_assert_int_eq(scope_of(m, "S01", "S01-B2", &e), -DS_OUT_OF_SCOPE);
    ck_assert_ptr_nonnull(strstr(e.message, "above it"));
    ck_assert_int_eq(scope_of(m, "S01-B1", "S01-B2", &e), -DS_OUT_OF_SCOPE);
    ck_assert_ptr_nonnull(strstr(e.message, "outside it"));
    ck_assert_int_eq(scope_of(m, NULL, "S01-B2", &e), -DS_OUT_OF_SCOPE);
    ck_assert_ptr_nonnull(strstr(e.message, "leaves out"));
    ck_assert_int_eq(scope_of(m, "S01-B2", "No Such Brand", &e), -DS_OUT_OF_SCOPE);
    /* no scope, or a member operation: nothing to check */
    ds_command c = {.kind = COMMAND_MEMBER};
    ck_assert_int_eq(request_scope(m, &c, "product", "S01-B2", &e), 0);
    ck_assert_int_eq(request_scope(m, &c, "", "", &e), 0);
    model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, file_round_trip_keeps_only_hashes);
    tcase_add_test(tc, damaged_file_is_an_error);
    tcase_add_test(tc, keyring_checks_roles_and_revocation);
    tcase_add_test(tc, keyring_limits_rate_and_open);
    tcase_add_test(tc, scope_allows_the_subtree_only);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
