/* Unit tests for tickets.c: single use, expiry, the per-key cap and its
 * Retry-After, and that no key's minting removes another key's ticket
 * (the old table was a ring that 1,024 mints of any key overwrote). Time
 * is passed in, so expiry is tested without waiting. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "tickets.h"

static const int64_t S = 1000000000;

static ds_principal principal(const char *id, const char *user)
{
    ds_principal p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "%s", id);
    snprintf(p.user, sizeof p.user, "%s", user);
    p.role = ROLE_VIEWER;
    return p;
}

static void mint_ok(ds_tickets *t, const ds_principal *p, int64_t now, char out[TICKET_LEN + 1])
{
    int retry = -1;
    ds_error e;
    ck_assert_int_eq(tickets_mint(t, p, now, out, &retry, &e), 0);
    ck_assert_int_eq(retry, 0);
    ck_assert_uint_eq(strlen(out), TICKET_LEN);
    ck_assert_uint_eq(strspn(out, "0123456789abcdef"), TICKET_LEN);
}

START_TEST(a_ticket_is_taken_once_and_stands_for_its_key)
{
    ds_tickets *t = tickets_new();
    ds_principal alice = principal("0123456789ab", "alice"), who;
    char a[TICKET_LEN + 1], b[TICKET_LEN + 1];
    mint_ok(t, &alice, 0, a);
    mint_ok(t, &alice, 0, b);
    ck_assert_str_ne(a, b);
    ck_assert_int_eq(tickets_outstanding(t, alice.id, strlen(alice.id), 0), 2);
    ck_assert(tickets_take(t, a, TICKET_LEN, S, &who));
    ck_assert_str_eq(who.user, "alice");
    ck_assert_str_eq(who.id, alice.id);
    ck_assert(!tickets_take(t, a, TICKET_LEN, S, &who)); /* single use */
    ck_assert_int_eq(tickets_outstanding(t, alice.id, strlen(alice.id), S), 1);
    /* a prefix, a longer string, another digit: nothing */
    ck_assert(!tickets_take(t, b, TICKET_LEN - 1, S, &who));
    char longer[TICKET_LEN + 2];
    snprintf(longer, sizeof longer, "%s0", b);
    ck_assert(!tickets_take(t, longer, TICKET_LEN + 1, S, &who));
    char other[TICKET_LEN + 1];
    memcpy(other, b, sizeof other);
    other[TICKET_LEN - 1] = other[TICKET_LEN - 1] == '0' ? '1' : '0';
    ck_assert(!tickets_take(t, other, TICKET_LEN, S, &who));
    ck_assert(tickets_take(t, b, TICKET_LEN, S, &who)); /* still good */
    tickets_free(t);
    tickets_free(NULL);
}
END_TEST

START_TEST(a_ticket_expires_after_its_lifetime)
{
    ds_tickets *t = tickets_new();
    ds_principal p = principal("0123456789ab", "alice"), who;
    char a[TICKET_LEN + 1], b[TICKET_LEN + 1];
    mint_ok(t, &p, 0, a);
    mint_ok(t, &p, 10 * S, b);
    ck_assert(!tickets_take(t, a, TICKET_LEN, (int64_t)TICKET_TTL_S * S, &who));
    ck_assert_int_eq(tickets_outstanding(t, p.id, strlen(p.id), (int64_t)TICKET_TTL_S * S), 1);
    ck_assert(tickets_take(t, b, TICKET_LEN, (int64_t)(TICKET_TTL_S + 10) * S - 1, &who));
    ck_assert_int_eq(tickets_outstanding(t, p.id, strlen(p.id), (int64_t)TICKET_TTL_S * S), 0);
    tickets_free(t);
}
END_TEST

START_TEST(a_key_over_its_cap_is_refused_until_one_is_used_or_expires)
{
    ds_tickets *t = tickets_new();
    ds_principal p = principal("0123456789ab", "alice"), who;
    char first[TICKET_LEN + 1], x[TICKET_LEN + 1];
    mint_ok(t, &p, 0, first);
    for (int i = 1; i < TICKETS_PER_KEY; i++)
        mint_ok(t, &p, (int64_t)i * S / 10, x);
    int retry = 0;
    ds_error e;
    int64_t now = 7 * S + S / 2; /* the oldest expires at TICKET_TTL_S s: 22.5 s from now */
    ck_assert_int_eq(tickets_mint(t, &p, now, x, &retry, &e), -DS_RATE_LIMITED);
    ck_assert_int_eq(e.code, DS_RATE_LIMITED);
    ck_assert_str_eq(e.target, "tickets");
    ck_assert(e.has_count);
    ck_assert_int_eq(e.count, TICKETS_PER_KEY);
    ck_assert_int_eq(e.limit, TICKETS_PER_KEY);
    ck_assert_int_eq(retry, TICKET_TTL_S - 7); /* rounded up */
    /* using one gives its place back */
    ck_assert(tickets_take(t, first, TICKET_LEN, now, &who));
    mint_ok(t, &p, now, x);
    ck_assert_int_eq(tickets_mint(t, &p, now, x, &retry, &e), -DS_RATE_LIMITED);
    /* and so does the oldest expiring */
    mint_ok(t, &p, (int64_t)TICKET_TTL_S * S + S / 10, x);
    ck_assert_int_eq(tickets_outstanding(t, p.id, strlen(p.id), (int64_t)TICKET_TTL_S * S + S / 10),
                     TICKETS_PER_KEY);
    tickets_free(t);
}
END_TEST

START_TEST(no_key_evicts_another_keys_tickets)
{
    ds_tickets *t = tickets_new();
    ds_principal alice = principal("0123456789ab", "alice"), who;
    ds_principal open = principal("", "anyone"); /* open mode: one principal */
    char a[TICKET_LEN + 1], o[TICKET_LEN + 1], x[TICKET_LEN + 1];
    mint_ok(t, &alice, 0, a);
    mint_ok(t, &open, 0, o);
    /* one key mints 2,000 times; 200 more keys each to their cap and more */
    int minted = 0, refused = 0;
    for (int k = 0; k <= 200; k++) {
        char id[16];
        snprintf(id, sizeof id, "%012x", 0x100000 + k);
        ds_principal p = principal(id, "mallory");
        for (int i = 0; i < (k == 0 ? 2000 : TICKETS_PER_KEY + 2); i++) {
            int retry;
            ds_error e;
            if (tickets_mint(t, &p, S, x, &retry, &e) == 0)
                minted++;
            else
                refused++;
        }
    }
    ck_assert_int_eq(minted, 201 * TICKETS_PER_KEY);
    ck_assert_int_eq(refused, 2000 - TICKETS_PER_KEY + 200 * 2);
    /* alice can still mint, and both of hers (and open mode's) work */
    char a2[TICKET_LEN + 1];
    mint_ok(t, &alice, 2 * S, a2);
    ck_assert(tickets_take(t, a, TICKET_LEN, 2 * S, &who));
    ck_assert_str_eq(who.user, "alice");
    ck_assert(tickets_take(t, a2, TICKET_LEN, 2 * S, &who));
    ck_assert(tickets_take(t, o, TICKET_LEN, 2 * S, &who));
    ck_assert_str_eq(who.user, "anyone");
    ck_assert_str_eq(who.id, "");
    /* a different id, even a prefix of another, is another key */
    ds_principal pre = principal("0123456789a", "prefix");
    ck_assert_int_eq(tickets_outstanding(t, pre.id, strlen(pre.id), 2 * S), 0);
    /* everything expires: the table empties */
    ck_assert_int_eq(tickets_outstanding(t, "000000100000", 12, 100 * S), 0);
    tickets_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tickets");
    TCase *tc = tcase_create("tickets");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_ticket_is_taken_once_and_stands_for_its_key);
    tcase_add_test(tc, a_ticket_expires_after_its_lifetime);
    tcase_add_test(tc, a_key_over_its_cap_is_refused_until_one_is_used_or_expires);
    tcase_add_test(tc, no_key_evicts_another_keys_tickets);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
