/* util.c: see util.h. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "util.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "duckspread: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *ds__xmalloc(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n, file, line);
    return p;
}

void *ds__xcalloc(size_t n, size_t m, const char *file, int line)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        oom(n * m, file, line);
    return p;
}

void *ds__xrealloc(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n, file, line);
    return q;
}

void *ds__xmalloc_array(size_t n, size_t m, const char *file, int line)
{
    if (m && n > SIZE_MAX / m)
        oom(SIZE_MAX, file, line);
    return ds__xmalloc(n * m, file, line);
}

char *ds__xstrdup(const char *s, const char *file, int line)
{
    return ds__xstrndup(s, strlen(s), file, line);
}

char *ds__xstrndup(const char *s, size_t n, const char *file, int line)
{
    char *p = ds__xmalloc(n + 1, file, line);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ds_buf_init(ds_buf *b, size_t cap)
{
    b->alloc = cap < 511 ? cap + 1 : 512;
    b->data = xmalloc(b->alloc);
    b->data[0] = '\0';
    b->len = 0;
    b->cap = cap;
    b->overflow = false;
}

void ds_buf_free(ds_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->alloc = 0;
}

void ds_buf_reset(ds_buf *b)
{
    b->len = 0;
    b->data[0] = '\0';
    b->overflow = false;
}

static bool reserve(ds_buf *b, size_t n)
{
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = true;
        return false;
    }
    if (b->len + n + 1 > b->alloc) {
        size_t a = b->alloc;
        while (a < b->len + n + 1)
            a *= 2;
        b->data = xrealloc(b->data, a);
        b->alloc = a;
    }
    return true;
}

void ds_buf_append(ds_buf *b, const char *s, size_t n)
{
    if (!reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ds_buf_puts(ds_buf *b, const char *s)
{
    ds_buf_append(b, s, strlen(s));
}

void ds_buf_putc(ds_buf *b, char c)
{
    /* the common case, a character at a time when rendering JSON: room
       for it and its NUL, within the cap */
    if (!b->overflow && b->len < b->cap && b->len + 2 <= b->alloc) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return;
    }
    ds_buf_append(b, &c, 1);
}

void ds_buf_vprintf(ds_buf *b, const char *fmt, va_list ap)
{
    if (b->overflow)
        return;
    /* formatted once into the room there is; again only when it did not fit */
    size_t room = b->alloc - b->len;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(b->data + b->len, room, fmt, ap2);
    va_end(ap2);
    if (n >= 0 && (size_t)n < room && (size_t)n <= b->cap - b->len) {
        b->len += (size_t)n;
        return;
    }
    b->data[b->len] = '\0'; /* what did not fit, or passes the cap, is not there */
    if (n < 0 || !reserve(b, (size_t)n))
        return;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void ds_buf_printf(ds_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ds_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *ds_buf_steal(ds_buf *b)
{
    char *p = b->data;
    b->data = NULL;
    b->len = b->alloc = 0;
    return p;
}

uint64_t ds_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t ds_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return ds_mix64(h);
}

void ds_strmap_init(ds_strmap *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2)
        cap *= 2;
    m->cap = cap;
    m->len = 0;
    m->keys = xcalloc(cap, sizeof *m->keys);
    m->klen = xcalloc(cap, sizeof *m->klen);
    m->vals = xcalloc(cap, sizeof *m->vals);
}

void ds_strmap_free(ds_strmap *m)
{
    free(m->keys);
    free(m->klen);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t slot_of(const ds_strmap *m, const char *key, size_t klen)
{
    size_t i = (size_t)ds_hash_bytes(key, klen, 0) & (m->cap - 1);
    while (m->keys[i] && !(m->klen[i] == klen && memcmp(m->keys[i], key, klen) == 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

void ds_strmap_put(ds_strmap *m, const char *key, size_t klen, int32_t val)
{
    if ((m->len + 1) * 2 > m->cap) {
        ds_strmap old = *m;
        ds_strmap_init(m, old.cap);
        for (size_t i = 0; i < old.cap; i++)
            if (old.keys[i])
                ds_strmap_put(m, old.keys[i], old.klen[i], old.vals[i]);
        ds_strmap_free(&old);
    }
    size_t i = slot_of(m, key, klen);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->klen[i] = (uint32_t)klen;
        m->len++;
    }
    m->vals[i] = val;
}

bool ds_strmap_get(const ds_strmap *m, const char *key, size_t klen, int32_t *val)
{
    if (!m->cap)
        return false;
    size_t i = slot_of(m, key, klen);
    if (!m->keys[i])
        return false;
    *val = m->vals[i];
    return true;
}

int64_t ds_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

double ds_now_ms(void)
{
    return (double)ds_now_ns() / 1e6; /* for reports only */
}

void ds_thread_name(const char *name)
{
    pthread_setname_np(pthread_self(), name);
}

void ds_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

void ds_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns)
{
    struct timespec t = {(time_t)(deadline_ns / 1000000000), (long)(deadline_ns % 1000000000)};
    pthread_cond_timedwait(c, m, &t);
}

void ds_tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024); /* glibc's upper limit */
    mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024);
}

size_t ds_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0], min;
    size_t len;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        min = 0x80;
        c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        min = 0x800;
        c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        min = 0x10000;
        c &= 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return len;
}

struct arena_block {
    struct arena_block *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

void *ds_arena_alloc(ds_arena *a, size_t n)
{
    if (n > SIZE_MAX / 4)
        oom(n, __FILE__, __LINE__);
    n = (n + 15) & ~(size_t)15;
    struct arena_block *b = a->head;
    if (!b || b->size - b->used < n) {
        /* blocks from 256 bytes doubling to 8 KiB: many arenas hold a few
           small strings (a command's log rows) and live a while */
        size_t size = b ? (b->size < 4096 ? b->size * 2 : 8192) : 256;
        if (size < n)
            size = n;
        b = xmalloc(sizeof *b + size);
        b->next = a->head;
        b->used = 0;
        b->size = size;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *ds_arena_strndup(ds_arena *a, const char *s, size_t n)
{
    char *p = ds_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ds_arena_free(ds_arena *a)
{
    while (a->head) {
        struct arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

int ds_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
