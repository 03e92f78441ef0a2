/* Unit tests for ws_out.c: frame headers at each length boundary (RFC
 * 6455 section 5.2), a text frame built from parts, and flushing through
 * a socket whose buffer is far smaller than what is queued: partial sends
 * keep the rest in order, a full socket says so (1), the reader sees
 * exactly the frames appended, byte for byte, and a failed peer is an
 * error (-errno). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws_out.h"

/* Parses one unmasked frame at p (n bytes available): returns its total
 * length, or 0 when the bytes do not hold a whole frame. */
static size_t parse_frame(const uint8_t *p, size_t n, int *opcode, const uint8_t **payload,
                          uint64_t *len)
{
    if (n < 2)
        return 0;
    ck_assert_int_eq(p[0] & 0x80, 0x80); /* FIN */
    ck_assert_int_eq(p[1] & 0x80, 0);    /* a server's frames are unmasked */
    *opcode = p[0] & 0x0f;
    size_t h = 2;
    uint64_t l = p[1] & 0x7f;
    if (l == 126) {
        if (n < 4)
            return 0;
        l = (uint64_t)p[2] << 8 | p[3];
        ck_assert_uint_ge(l, 126); /* the shortest form */
        h = 4;
    } else if (l == 127) {
        if (n < 10)
            return 0;
        l = 0;
        for (int i = 0; i < 8; i++)
            l = l << 8 | p[2 + i];
        ck_assert_uint_gt(l, 0xffff);
        h = 10;
    }
    if (n - h < l)
        return 0;
    *payload = p + h;
    *len = l;
    return h + (size_t)l;
}

START_TEST(frame_heads_use_the_shortest_length_form)
{
    static const struct {
        uint64_t len;
        size_t head;
    } cases[] = {{0, 2},
                 {1, 2},
                 {125, 2},
                 {126, 4},
                 {127, 4},
                 {65535, 4},
                 {65536, 10},
                 {(uint64_t)1 << 32, 10},
                 {UINT64_MAX >> 1, 10}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t h[WS_FRAME_HEAD_MAX];
        size_t n = ws_frame_head(h, WS_OP_TEXT, cases[i].len);
        ck_assert_uint_eq(n, cases[i].head);
        ck_assert_int_eq(h[0], 0x81);
        uint64_t got = h[1];
        if (n == 4)
            got = (uint64_t)h[2] << 8 | h[3];
        if (n == 10) {
            got = 0;
            for (int k = 0; k < 8; k++)
                got = got << 8 | h[2 + k];
        }
        ck_assert_uint_eq(got, cases[i].len);
    }
    uint8_t h[WS_FRAME_HEAD_MAX];
    ws_frame_head(h, WS_OP_PING, 0);
    ck_assert_int_eq(h[0], 0x89);
}
END_TEST

START_TEST(a_text_frame_is_its_parts_in_order)
{
    ws_out o = {0};
    ws_part parts[3] = {{"{\"op\":\"patch\",\"id\":", 19}, {"\"g1\"", 4}, {",\"seq\":7}", 9}};
    ws_out_text(&o, parts, 3);
    ws_part empty = {NULL, 0};
    ws_out_text(&o, &empty, 1);
    ck_assert_uint_eq(ws_out_pending(&o), 2 + 32 + 2);
    int op;
    const uint8_t *pl;
    uint64_t len;
    size_t n = parse_frame((const uint8_t *)o.data, o.len, &op, &pl, &len);
    ck_assert_uint_eq(n, 34);
    ck_assert_int_eq(op, WS_OP_TEXT);
    ck_assert_uint_eq(len, 32);
    ck_assert(memcmp(pl, "{\"op\":\"patch\",\"id\":\"g1\",\"seq\":7}", 32) == 0);
    n = parse_frame((const uint8_t *)o.data + 34, o.len - 34, &op, &pl, &len);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(len, 0);
    ws_out_free(&o);
    ck_assert_uint_eq(ws_out_pending(&o), 0);
}
END_TEST

/* Reads whatever fd has now (non-blocking) onto got. */
static void drain(int fd, uint8_t *got, size_t *got_len, size_t cap)
{
    for (;;) {
        ssize_t r = read(fd, got + *got_len, cap - *got_len);
        if (r <= 0) {
            ck_assert(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            return;
        }
        *got_len += (size_t)r;
    }
}

START_TEST(a_full_socket_keeps_the_rest_in_order)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    for (int i = 0; i < 2; i++)
        fcntl(sv[i], F_SETFL, fcntl(sv[i], F_GETFL) | O_NONBLOCK);

    /* 300 frames of 1..3000 bytes (all three length forms but the
       longest), with raw control frames between some */
    enum { FRAMES = 300, CAP = 4 << 20 };
    ws_out o = {0};
    char *text = malloc(70000);
    for (int i = 0; i < 70000; i++)
        text[i] = (char)('a' + i % 26);
    size_t lens[FRAMES];
    size_t total = 0;
    for (int i = 0; i < FRAMES; i++) {
        lens[i] = (size_t)(i * 37 % 3000) + (i == 150 ? 67000 : 0);
        ws_part p = {text + i % 26, lens[i]};
        ws_out_text(&o, &p, 1);
        total += lens[i];
        if (i % 50 == 0) {
            uint8_t ping[2] = {0x89, 0};
            ws_out_raw(&o, ping, 2);
        }
    }

    uint8_t *got = malloc(CAP);
    size_t got_len = 0;
    int full = 0, rc;
    while ((rc = ws_out_flush(&o, sv[0])) == 1) {
        full++;
        ck_assert_uint_gt(ws_out_pending(&o), 0);
        drain(sv[1], got, &got_len, CAP);
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_gt(full, 10); /* the socket really was full, many times */
    ck_assert_uint_eq(ws_out_pending(&o), 0);
    drain(sv[1], got, &got_len, CAP);

    /* the reader sees every frame, whole and in order */
    size_t off = 0, payload = 0;
    int data = 0, pings = 0;
    while (off < got_len) {
        int op;
        const uint8_t *pl;
        uint64_t len;
        size_t n = parse_frame(got + off, got_len - off, &op, &pl, &len);
        ck_assert_uint_gt(n, 0);
        if (op == WS_OP_PING) {
            pings++;
        } else {
            ck_assert_int_eq(op, WS_OP_TEXT);
            ck_assert_uint_eq(len, lens[data]);
            ck_assert(memcmp(pl, text + data % 26, len) == 0);
            payload += len;
            data++;
        }
        off += n;
    }
    ck_assert_int_eq(data, FRAMES);
    ck_assert_int_eq(pings, FRAMES / 50);
    ck_assert_uint_eq(payload, total);

    /* appended after a partial flush and flushed again: still in order */
    ws_part p = {"after", 5};
    ws_out_text(&o, &p, 1);
    ck_assert_int_eq(ws_out_flush(&o, sv[0]), 0);
    got_len = 0;
    drain(sv[1], got, &got_len, CAP);
    ck_assert_uint_eq(got_len, 7);
    ck_assert(memcmp(got + 2, "after", 5) == 0);

    /* the peer is gone: an error, not "try again" */
    close(sv[1]);
    ws_out_text(&o, &p, 1);
    rc = ws_out_flush(&o, sv[0]);
    ck_assert_int_lt(rc, 0);
    ck_assert_int_eq(-rc, EPIPE);
    ws_out_free(&o);
    close(sv[0]);
    free(got);
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ws_out");
    TCase *tc = tcase_create("ws_out");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, frame_heads_use_the_shortest_length_form);
    tcase_add_test(tc, a_text_frame_is_its_parts_in_order);
    tcase_add_test(tc, a_full_socket_keeps_the_rest_in_order);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
