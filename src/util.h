/* util.h: allocation that aborts on failure, growable buffers with a cap,
 * hashing, and a monotonic clock (and timed waits on it). Everything here is free of I/O except
 * the abort message. */
#ifndef DS_UTIL_H
#define DS_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exact integers wider than int64: sums of leaves and spread arithmetic. */
__extension__ typedef __int128 ds_i128;
__extension__ typedef unsigned __int128 ds_u128;

#define DS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation failure aborts with file:line; these never return NULL. */
#define xmalloc(n)     ds__xmalloc((n), __FILE__, __LINE__)
#define xcalloc(n, m)  ds__xcalloc((n), (m), __FILE__, __LINE__)
#define xrealloc(p, n) ds__xrealloc((p), (n), __FILE__, __LINE__)
#define xstrdup(s)     ds__xstrdup((s), __FILE__, __LINE__)
#define xstrndup(s, n) ds__xstrndup((s), (n), __FILE__, __LINE__)
/* n * m elements, aborting on overflow of the product. */
#define xmalloc_array(n, m) ds__xmalloc_array((n), (m), __FILE__, __LINE__)

void *ds__xmalloc(size_t n, const char *file, int line);
void *ds__xcalloc(size_t n, size_t m, const char *file, int line);
void *ds__xrealloc(void *p, size_t n, const char *file, int line);
void *ds__xmalloc_array(size_t n, size_t m, const char *file, int line);
char *ds__xstrdup(const char *s, const char *file, int line);
char *ds__xstrndup(const char *s, size_t n, const char *file, int line);

/* A growable byte buffer, always NUL-terminated. Appends past `cap` bytes
 * set `overflow` and are dropped, so input can never grow it unbounded. */
typedef struct ds_buf {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap;
    bool overflow;
} ds_buf;

void ds_buf_init(ds_buf *b, size_t cap);
void ds_buf_free(ds_buf *b);
void ds_buf_reset(ds_buf *b);
void ds_buf_append(ds_buf *b, const char *s, size_t n);
void ds_buf_puts(ds_buf *b, const char *s);
void ds_buf_putc(ds_buf *b, char c);
void ds_buf_printf(ds_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ds_buf_vprintf(ds_buf *b, const char *fmt, va_list ap);
/* Takes the buffer's storage; the caller frees it with free(). */
char *ds_buf_steal(ds_buf *b);

/* A bump allocator for one request or command: everything is freed at
 * once by ds_arena_free(). */
typedef struct ds_arena {
    struct arena_block *head;
} ds_arena;

void *ds_arena_alloc(ds_arena *a, size_t n); /* zeroed, 16-byte aligned */
char *ds_arena_strndup(ds_arena *a, const char *s, size_t n);
void ds_arena_free(ds_arena *a);

/* 64-bit mixing (splitmix64 finaliser) and byte hashing (FNV-1a then
 * mixed). Stable across platforms: used for deterministic tie-breaks. */
uint64_t ds_mix64(uint64_t x);
uint64_t ds_hash_bytes(const void *p, size_t n, uint64_t seed);

/* Open-addressing map from byte strings to int32 values. Keys are
 * borrowed: they must outlive the map (the model owns them). */
typedef struct ds_strmap {
    const char **keys;
    uint32_t *klen;
    int32_t *vals;
    size_t cap; /* power of two */
    size_t len;
} ds_strmap;

void ds_strmap_init(ds_strmap *m, size_t expected);
void ds_strmap_free(ds_strmap *m);
/* Inserts or replaces. */
void ds_strmap_put(ds_strmap *m, const char *key, size_t klen, int32_t val);
/* Returns true and sets *val when present. */
bool ds_strmap_get(const ds_strmap *m, const char *key, size_t klen, int32_t *val);

/* The value of a hex digit (either case), or -1. */
int ds_hexval(int c);

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it
 * is invalid (overlong, surrogate, beyond U+10FFFF, truncated). */
size_t ds_utf8_len(const unsigned char *s, size_t n);

/* Keeps large freed blocks in the process instead of returning them to the
 * kernel, so per-command arrays of millions of cells do not pay page
 * faults every time (they dominated a 1M-leaf spread). Call once at start.
 * For glibc's malloc (tests, benchmarks, the sanitizer builds); the server
 * links jemalloc, which keeps freed pages a while by itself and ignores
 * this. */
void ds_tune_malloc(void);

/* Milliseconds from a monotonic clock. */
int64_t ds_now_ns(void);
double ds_now_ms(void);

/* A condition variable on the monotonic clock, and a wait on it until
 * signalled or ds_now_ns() reaches deadline_ns (a wall-clock step neither
 * shortens nor stretches it). */
void ds_cond_init(pthread_cond_t *c);
void ds_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_ns);

/* Names the calling thread (at most 15 characters) for top, perf and gdb. */
void ds_thread_name(const char *name);

#endif
