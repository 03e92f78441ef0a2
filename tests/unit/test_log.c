/* Unit tests for log.c: the burst limit with a clock given by the test,
 * and the real logger's lines on stderr from several threads. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const int64_t MS = 1000000;

/* Feeds n lines of key at t0, t0 + step, ...: how many were written; the
 * summaries that came due are appended to dues (separated by '|'). */
static int feed(log_limit *l, const void *key, int n, int64_t t0, int64_t step, char *dues,
                size_t cap)
{
    int written = 0;
    for (int i = 0; i < n; i++) {
        char text[64], due[LOG_KEPT_MAX + 64];
        log_level lv;
        snprintf(text, sizeof text, "line %d", i);
        if (log_limit_admit(l, key, LOG_WARN, text, t0 + i * step, due, sizeof due, &lv))
            written++;
        if (due[0] && dues) {
            strncat(dues, due, cap - strlen(dues) - 1);
            strncat(dues, "|", cap - strlen(dues) - 1);
        }
    }
    return written;
}

START_TEST(a_burst_is_cut_to_its_first_lines)
{
    static log_limit l;
    memset(&l, 0, sizeof l);
    static const char key[] = "http: %s";
    char dues[1024] = "";
    /* 3000 lines within 300 ms: LOG_BURST written, no summary yet */
    ck_assert_int_eq(feed(&l, key, 3000, 0, 100000, dues, sizeof dues), LOG_BURST);
    ck_assert_str_eq(dues, "");
    char out[1024];
    log_level lv;
    ck_assert(!log_limit_take(&l, 500 * MS, false, out, sizeof out, &lv));
    /* the window is over: one summary with the last line and the count */
    ck_assert(log_limit_take(&l, 1000 * MS, false, out, sizeof out, &lv));
    ck_assert_int_eq(lv, LOG_WARN);
    ck_assert_str_eq(out, "line 2999 (2989 more like this in the last 0.3 s)");
    ck_assert(!log_limit_take(&l, 2000 * MS, true, out, sizeof out, &lv));
}
END_TEST

START_TEST(the_next_line_after_the_window_brings_the_summary)
{
    static log_limit l;
    memset(&l, 0, sizeof l);
    static const char key[] = "x %d";
    char dues[1024] = "";
    ck_assert_int_eq(feed(&l, key, LOG_BURST + 5, 0, MS, dues, sizeof dues), LOG_BURST);
    char due[256];
    log_level lv;
    ck_assert(log_limit_admit(&l, key, LOG_INFO, "later", 1500 * MS, due, sizeof due, &lv));
    ck_assert_str_eq(due, "line 14 (4 more like this in the last 0.1 s)");
    /* a new window: LOG_BURST lines again */
    ck_assert_int_eq(feed(&l, key, LOG_BURST, 1501 * MS, MS, NULL, 0), LOG_BURST - 1);
}
END_TEST

START_TEST(one_dropped_line_is_written_as_it_was)
{
    static log_limit l;
    memset(&l, 0, sizeof l);
    static const char key[] = "y";
    ck_assert_int_eq(feed(&l, key, LOG_BURST + 1, 0, MS, NULL, 0), LOG_BURST);
    char out[256];
    log_level lv;
    ck_assert(log_limit_take(&l, 0, true, out, sizeof out, &lv));
    ck_assert_str_eq(out, "line 10");
}
END_TEST

START_TEST(templates_are_counted_apart)
{
    static log_limit l;
    memset(&l, 0, sizeof l);
    static const char a[] = "a", b[] = "b";
    ck_assert_int_eq(feed(&l, a, 50, 0, MS, NULL, 0), LOG_BURST);
    ck_assert_int_eq(feed(&l, b, 50, 0, MS, NULL, 0), LOG_BURST);
    /* steady lines, one per window, are never cut */
    static const char c[] = "c";
    ck_assert_int_eq(feed(&l, c, 30, 0, 1000 * MS, NULL, 0), 30);
}
END_TEST

START_TEST(more_templates_than_slots_evict_the_oldest_with_its_summary)
{
    static log_limit l;
    memset(&l, 0, sizeof l);
    static char keys[LOG_SLOTS + 1];
    char dues[4096] = "";
    ck_assert_int_eq(feed(&l, &keys[0], LOG_BURST + 3, 0, MS, dues, sizeof dues), LOG_BURST);
    for (int i = 1; i < LOG_SLOTS; i++)
        ck_assert_int_eq(feed(&l, &keys[i], 1, 100 * MS + i, 0, dues, sizeof dues), 1);
    ck_assert_str_eq(dues, "");
    /* one more template: keys[0]'s slot goes, and its burst is reported */
    ck_assert_int_eq(feed(&l, &keys[LOG_SLOTS], 1, 200 * MS, 0, dues, sizeof dues), 1);
    ck_assert_ptr_nonnull(strstr(dues, "line 12 (2 more like this"));
}
END_TEST

/* The real logger: threads write a flood of one template and a few of
 * another onto stderr (a pipe); what comes out is whole lines, LOG_BURST
 * of the flood, every line of the other, and the summary at log_flush. */
static void *flood(void *arg)
{
    (void)arg;
    for (int i = 0; i < 500; i++)
        log_warn("test: flood %d", i);
    return NULL;
}

START_TEST(the_logger_cuts_a_flood_from_several_threads)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    int saved = dup(2);
    dup2(p[1], 2);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, flood, NULL);
    for (int i = 0; i < 3; i++)
        log_info("test: other %d", i);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    log_flush(true);
    dup2(saved, 2);
    close(p[1]);
    static char buf[1 << 16];
    size_t n = 0;
    ssize_t r;
    while ((r = read(p[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(p[0]);
    /* every flood line is written or counted in a summary; a slow run
       (valgrind) may span several windows, each with its own summary */
    int floods = 0, others = 0, summaries = 0, counted = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        ck_assert_msg(strlen(line) > 25 && line[4] == '-' && line[23] == 'Z', "a whole line: %s",
                      line);
        const char *more = strstr(line, " (");
        if (more && strstr(more, "more like this")) {
            summaries++;
            counted += atoi(more + 2) + 1;
        } else if (strstr(line, "test: flood")) {
            floods++;
        } else if (strstr(line, "test: other")) {
            others++;
        }
    }
    ck_assert_int_eq(others, 3);
    ck_assert_int_ge(summaries, 1);
    ck_assert_int_eq(floods + counted, 4 * 500);
    ck_assert_int_ge(floods, LOG_BURST);
    ck_assert_int_le(floods, LOG_BURST * (summaries + 1));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_test(tc, a_burst_is_cut_to_its_first_lines);
    tcase_add_test(tc, the_next_line_after_the_window_brings_the_summary);
    tcase_add_test(tc, one_dropped_line_is_written_as_it_was);
    tcase_add_test(tc, templates_are_counted_apart);
    tcase_add_test(tc, more_templates_than_slots_evict_the_oldest_with_its_summary);
    tcase_add_test(tc, the_logger_cuts_a_flood_from_several_threads);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
