/* ws_out.c: see ws_out.h. */
#include "ws_out.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"

/* An emptied buffer larger than this is freed rather than kept. */
enum { WS_OUT_KEEP = 64 * 1024 };

size_t ws_frame_head(uint8_t h[WS_FRAME_HEAD_MAX], int opcode, uint64_t len)
{
    h[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        h[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

void ws_out_free(ws_out *o)
{
    free(o->data);
    *o = (ws_out){0};
}

size_t ws_out_pending(const ws_out *o)
{
    return o->len - o->off;
}

/* Room for n more bytes at the end: moves the pending bytes to the front
 * when what was sent before them is most of the buffer, else grows it. */
static void reserve(ws_out *o, size_t n)
{
    if (o->off == o->len)
        o->off = o->len = 0;
    if (o->len + n <= o->alloc)
        return;
    if (o->off > 0 && o->off >= o->alloc / 2 && o->len - o->off + n <= o->alloc) {
        memmove(o->data, o->data + o->off, o->len - o->off);
        o->len -= o->off;
        o->off = 0;
        return;
    }
    size_t a = o->alloc ? o->alloc : 1024;
    while (a < o->len + n) {
        if (a > SIZE_MAX / 2)
            abort();
        a *= 2;
    }
    o->data = xrealloc(o->data, a);
    o->alloc = a;
}

void ws_out_raw(ws_out *o, const void *p, size_t n)
{
    if (n == 0)
        return;
    reserve(o, n);
    memcpy(o->data + o->len, p, n);
    o->len += n;
}

void ws_out_text(ws_out *o, const ws_part *parts, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += parts[i].len;
    uint8_t h[WS_FRAME_HEAD_MAX];
    size_t hl = ws_frame_head(h, WS_OP_TEXT, total);
    reserve(o, hl + total);
    memcpy(o->data + o->len, h, hl);
    o->len += hl;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].len)
            memcpy(o->data + o->len, parts[i].p, parts[i].len);
        o->len += parts[i].len;
    }
}

int ws_out_flush(ws_out *o, int fd)
{
    while (o->off < o->len) {
        size_t want = o->len - o->off;
        ssize_t r = send(fd, o->data + o->off, want, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
        o->off += (size_t)r;
        if ((size_t)r < want)
            return 1; /* the socket is full: another send would only say EAGAIN */
    }
    o->off = o->len = 0;
    if (o->alloc > WS_OUT_KEEP)
        ws_out_free(o);
    return 0;
}
