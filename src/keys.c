/* keys.c: see keys.h. */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define KEYS_FILE    "keys"
#define USED_FILE    "keys.used"
#define LOCK_FILE    "keys.lock"
#define API_KEY_ID   "api-key"
#define USED_FLUSH_S 5

static const char header[] =
    "# duckspread API keys (edit with `duckspread keys`): id sha256 user role model "
    "scope_dim scope_member created revoked\n";

const char *key_role_name(key_role r)
{
    switch (r) {
    case ROLE_VIEWER:
        return "viewer";
    case ROLE_EDITOR:
        return "editor";
    case ROLE_ADMIN:
        return "admin";
    default:
        return "none";
    }
}

bool key_role_parse(const char *s, key_role *out)
{
    for (key_role r = ROLE_VIEWER; r <= ROLE_ADMIN; r++)
        if (strcmp(s, key_role_name(r)) == 0) {
            *out = r;
            return true;
        }
    return false;
}

void keys_hash(const char *secret, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)secret, len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

bool keys_valid_user(const char *user)
{
    size_t n = strlen(user);
    if (n == 0 || n > KEY_USER_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)user[i] <= 0x20 || (unsigned char)user[i] >= 0x7f)
            return false;
    return true;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- the file ----------------------------------------------------------------- */

static void put_field(ds_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 0x20 || *p == '%' || *p == '=' || *p == 0x7f)
            ds_buf_printf(b, "%%%02X", *p);
        else
            ds_buf_putc(b, (char)*p);
    }
}

/* Decodes a field into out (cap bytes with the NUL); false when malformed. */
static bool get_field(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s; s++) {
        int c = (unsigned char)*s;
        if (c == '%') {
            int hi = ds_hexval(s[1]), lo = hi < 0 ? -1 : ds_hexval(s[2]);
            if (lo < 0)
                return false;
            c = hi * 16 + lo;
            s += 2;
            if (c == 0)
                return false;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

static bool get_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 0)
        return false;
    *out = v;
    return true;
}

static void path_of(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static int parse_line(char *line, ds_key *k)
{
    char *f[9];
    int n = 0;
    for (char *p = line; n < 9; n++) {
        f[n] = p;
        char *tab = strchr(p, '\t');
        if (!tab) {
            n++;
            break;
        }
        *tab = '\0';
        p = tab + 1;
    }
    if (n != 9)
        return -1;
    memset(k, 0, sizeof *k);
    if (strlen(f[0]) != KEY_ID_LEN || strlen(f[1]) != 64 || strncmp(f[0], f[1], KEY_ID_LEN))
        return -1;
    memcpy(k->id, f[0], KEY_ID_LEN);
    memcpy(k->hash, f[1], 64);
    for (int i = 0; i < 64; i++)
        if (ds_hexval(k->hash[i]) < 0)
            return -1;
    if (!get_field(f[2], k->user, sizeof k->user) || !keys_valid_user(k->user) ||
        !key_role_parse(f[3], &k->role) || !get_field(f[4], k->model, sizeof k->model) ||
        !get_field(f[5], k->scope_dim, sizeof k->scope_dim) ||
        !get_field(f[6], k->scope_member, sizeof k->scope_member) || !get_int(f[7], &k->created) ||
        !get_int(f[8], &k->revoked))
        return -1;
    if (!k->scope_dim[0] != !k->scope_member[0])
        return -1;
    return 0;
}

static void read_used(const char *dir, ds_keyfile *kf)
{
    char path[4200], line[256];
    path_of(path, sizeof path, dir, USED_FILE);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        int64_t t = strtoll(tab + 1, NULL, 10);
        for (size_t i = 0; i < kf->n; i++)
            if (strcmp(kf->keys[i].id, line) == 0 && t > kf->keys[i].last_used)
                kf->keys[i].last_used = t;
    }
    fclose(f);
}

int keys_read(const char *dir, ds_keyfile *out, ds_error *err)
{
    out->keys = NULL;
    out->n = 0;
    char path[4200];
    path_of(path, sizeof path, dir, KEYS_FILE);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        return ds_fail(err, DS_INTERNAL, "keys", "cannot read %s: %s", path, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        if (out->n == alloc) {
            alloc = alloc ? 2 * alloc : 16;
            out->keys = xrealloc(out->keys, alloc * sizeof *out->keys);
        }
        if (parse_line(line, &out->keys[out->n]) != 0) {
            rc = ds_fail(err, DS_INTERNAL, "keys", "%s line %d is damaged", path, lineno);
            break;
        }
        out->n++;
    }
    free(line);
    fclose(f);
    if (rc) {
        keys_free(out);
        return rc;
    }
    read_used(dir, out);
    return 0;
}

void keys_free(ds_keyfile *kf)
{
    free(kf->keys);
    kf->keys = NULL;
    kf->n = 0;
}

/* Writes path by a temporary file, fsync and rename. */
static int replace_file(const char *dir, const char *name, const ds_buf *b, ds_error *err)
{
    char path[4200], tmp[4300];
    path_of(path, sizeof path, dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp); /* a stale one from a crash may have another mode */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return ds_fail(err, DS_INTERNAL, "keys", "cannot write %s: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < b->len) {
        ssize_t w = write(fd, b->data + off, b->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return ds_fail(err, DS_INTERNAL, "keys", "cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    int synced = fsync(fd), closed = close(fd);
    if (synced != 0 || closed != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ds_fail(err, DS_INTERNAL, "keys", "cannot replace %s: %s", path, strerror(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

static int write_keys(const char *dir, const ds_keyfile *kf, ds_error *err)
{
    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 30);
    ds_buf_puts(&b, header);
    for (size_t i = 0; i < kf->n; i++) {
        const ds_key *k = &kf->keys[i];
        ds_buf_printf(&b, "%s\t%s\t", k->id, k->hash);
        put_field(&b, k->user);
        ds_buf_printf(&b, "\t%s\t", key_role_name(k->role));
        put_field(&b, k->model);
        ds_buf_putc(&b, '\t');
        put_field(&b, k->scope_dim);
        ds_buf_putc(&b, '\t');
        put_field(&b, k->scope_member);
        ds_buf_printf(&b, "\t%" PRId64 "\t%" PRId64 "\n", k->created, k->revoked);
    }
    int rc = replace_file(dir, KEYS_FILE, &b, err);
    ds_buf_free(&b);
    return rc;
}

/* Takes DIR/keys.lock (blocking): one editor of DIR/keys at a time. */
static int lock_keys(const char *dir, ds_error *err)
{
    char path[4200];
    path_of(path, sizeof path, dir, LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return ds_fail(err, DS_INTERNAL, "keys", "cannot open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return ds_fail(err, DS_INTERNAL, "keys", "cannot lock %s: %s", path, strerror(e));
        }
    return fd;
}

/* Takes DIR/keys.lock and reads DIR/keys: the lock's descriptor (close it
 * when done), or -code. */
static int begin_edit(const char *dir, ds_keyfile *kf, ds_error *err)
{
    int lock = lock_keys(dir, err);
    if (lock < 0)
        return lock;
    int rc = keys_read(dir, kf, err);
    if (rc) {
        close(lock);
        return rc;
    }
    return lock;
}

int keys_create(const char *dir, const ds_key *tmpl, char *secret, size_t cap,
                char id[KEY_ID_LEN + 1], ds_error *err)
{
    if (cap < 53)
        return ds_fail(err, DS_INTERNAL, NULL, "no room for a key");
    ds_keyfile kf;
    int lock = begin_edit(dir, &kf, err);
    if (lock < 0)
        return lock;
    int rc = 0;
    ds_key k = *tmpl;
    for (bool unique = false; !unique;) {
        unsigned char raw[24];
        if (RAND_bytes(raw, sizeof raw) != 1) {
            keys_free(&kf);
            close(lock);
            return ds_fail(err, DS_INTERNAL, "keys", "no random numbers for a key");
        }
        memcpy(secret, "dsk_", 4);
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(secret + 4 + 2 * i, 3, "%02x", raw[i]);
        OPENSSL_cleanse(raw, sizeof raw);
        keys_hash(secret, strlen(secret), k.hash);
        snprintf(k.id, sizeof k.id, "%.*s", KEY_ID_LEN, k.hash);
        unique = true;
        for (size_t i = 0; i < kf.n; i++)
            unique &= strcmp(kf.keys[i].id, k.id) != 0;
    }
    k.created = now_s();
    k.revoked = 0;
    k.last_used = 0;
    kf.keys = xrealloc(kf.keys, (kf.n + 1) * sizeof *kf.keys);
    kf.keys[kf.n++] = k;
    rc = write_keys(dir, &kf, err);
    if (rc == 0)
        memcpy(id, k.id, KEY_ID_LEN + 1);
    else
        OPENSSL_cleanse(secret, cap);
    keys_free(&kf);
    close(lock);
    return rc;
}

int keys_revoke(const char *dir, const char *id, const char *user, int *count, ds_error *err)
{
    *count = 0;
    ds_keyfile kf;
    int lock = begin_edit(dir, &kf, err);
    if (lock < 0)
        return lock;
    int rc = 0;
    int64_t now = now_s();
    for (size_t i = 0; i < kf.n; i++) {
        ds_key *k = &kf.keys[i];
        if (k->revoked || (id && strcmp(k->id, id)) || (user && strcmp(k->user, user)))
            continue;
        k->revoked = now;
        ++*count;
    }
    if (*count == 0)
        rc = ds_fail(err, DS_NOT_FOUND, "keys", "no active key %s '%s'", id ? "with id" : "of user",
                     id ? id : user);
    else
        rc = write_keys(dir, &kf, err);
    keys_free(&kf);
    close(lock);
    return rc;
}

/* ---- the keyring ---------------------------------------------------------------- */

typedef struct usage {
    char *id;
    double tokens;
    int64_t refill_ns;
    int open;
    int64_t last_used; /* unix seconds */
} usage;

struct ds_keyring {
    keyring_opts o;
    char *dir, *api_key;
    pthread_rwlock_t lock; /* active, nactive, file identity */
    ds_key *active;        /* sorted by hash */
    size_t nactive;
    bool have_file;
    bool had_keys; /* DIR/keys held a key (even a revoked one), or --api-key:
                      open mode is over for the life of the process */
    struct stat seen;
    pthread_mutex_t use_lock; /* the usage table */
    usage *use;
    size_t nuse, cap;
    ds_strmap by_id;
    bool used_dirty;
    int64_t used_flushed_s;
};

static int by_hash(const void *a, const void *b)
{
    return strcmp(((const ds_key *)a)->hash, ((const ds_key *)b)->hash);
}

static int by_id_prefix(const void *a, const void *b)
{
    return strncmp(((const ds_key *)a)->hash, ((const ds_key *)b)->hash, KEY_ID_LEN);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Reads the active keys (and how many lines the file has, revoked ones
 * too); 0, or an error for a damaged file. */
static int load_active(ds_keyring *kr, ds_key **out, size_t *n, size_t *total, ds_error *err)
{
    ds_keyfile kf;
    int rc = keys_read(kr->dir, &kf, err);
    if (rc)
        return rc;
    *total = kf.n;
    size_t m = 0;
    for (size_t i = 0; i < kf.n; i++)
        if (!kf.keys[i].revoked)
            kf.keys[m++] = kf.keys[i];
    if (m) /* no keys: kf.keys is NULL, which qsort must not get */
        qsort(kf.keys, m, sizeof *kf.keys, by_hash);
    *out = kf.keys;
    *n = m;
    return 0;
}

int keyring_open(const keyring_opts *o, ds_keyring **out, ds_error *err)
{
    ds_keyring *kr = xcalloc(1, sizeof *kr);
    kr->o = *o;
    kr->dir = xstrdup(o->dir);
    kr->api_key = o->api_key && *o->api_key ? xstrdup(o->api_key) : NULL;
    pthread_rwlock_init(&kr->lock, NULL);
    pthread_mutex_init(&kr->use_lock, NULL);
    ds_strmap_init(&kr->by_id, 64);
    char path[4200];
    path_of(path, sizeof path, kr->dir, KEYS_FILE);
    kr->have_file = stat(path, &kr->seen) == 0;
    size_t total = 0;
    int rc = load_active(kr, &kr->active, &kr->nactive, &total, err);
    if (rc) {
        keyring_free(kr);
        return rc;
    }
    kr->had_keys = total > 0 || kr->api_key;
    kr->used_flushed_s = now_s();
    *out = kr;
    return 0;
}

/* Writes DIR/keys.used: what it held, with this process's last uses. */
static void flush_used(ds_keyring *kr)
{
    ds_keyfile kf = {0};
    ds_error err;
    if (keys_read(kr->dir, &kf, &err) != 0)
        return;
    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 30);
    pthread_mutex_lock(&kr->use_lock);
    for (size_t i = 0; i < kf.n; i++) {
        int32_t u;
        int64_t t = kf.keys[i].last_used;
        if (ds_strmap_get(&kr->by_id, kf.keys[i].id, strlen(kf.keys[i].id), &u) &&
            kr->use[u].last_used > t)
            t = kr->use[u].last_used;
        if (t)
            ds_buf_printf(&b, "%s\t%" PRId64 "\n", kf.keys[i].id, t);
    }
    kr->used_dirty = false;
    pthread_mutex_unlock(&kr->use_lock);
    if (replace_file(kr->dir, USED_FILE, &b, &err) != 0)
        log_warn("keys: %s", err.message);
    ds_buf_free(&b);
    keys_free(&kf);
}

void keyring_refresh(ds_keyring *kr, bool *revoked)
{
    *revoked = false;
    char path[4200];
    path_of(path, sizeof path, kr->dir, KEYS_FILE);
    struct stat st;
    bool exists = stat(path, &st) == 0;
    pthread_rwlock_rdlock(&kr->lock);
    bool changed = exists != kr->have_file || (exists && !same_file(&st, &kr->seen));
    pthread_rwlock_unlock(&kr->lock);
    if (changed) {
        ds_key *keys = NULL;
        size_t n = 0, total = 0;
        ds_error err;
        bool ok = load_active(kr, &keys, &n, &total, &err) == 0;
        if (!ok) /* keep the keys we have: a damaged file must not open the door */
            log_warn("keys: keeping the previous keys: %s", err.message);
        pthread_rwlock_wrlock(&kr->lock);
        kr->have_file = exists;
        if (exists)
            kr->seen = st;
        if (ok && total > 0 && !kr->had_keys) {
            kr->had_keys = true; /* what open mode let in must go */
            *revoked = true;
        }
        if (ok) {
            for (size_t i = 0; i < kr->nactive; i++)
                *revoked |= n == 0 || !bsearch(&kr->active[i], keys, n, sizeof *keys, by_hash);
            free(kr->active);
            kr->active = keys;
            kr->nactive = n;
        }
        pthread_rwlock_unlock(&kr->lock);
    }
    pthread_mutex_lock(&kr->use_lock);
    bool flush = kr->used_dirty && now_s() - kr->used_flushed_s >= USED_FLUSH_S;
    if (flush)
        kr->used_flushed_s = now_s();
    pthread_mutex_unlock(&kr->use_lock);
    if (flush)
        flush_used(kr);
}

bool keyring_open_mode(ds_keyring *kr)
{
    pthread_rwlock_rdlock(&kr->lock);
    bool open = !kr->had_keys;
    pthread_rwlock_unlock(&kr->lock);
    return open;
}

size_t keyring_count(ds_keyring *kr)
{
    pthread_rwlock_rdlock(&kr->lock);
    size_t n = kr->nactive + (kr->api_key != NULL);
    pthread_rwlock_unlock(&kr->lock);
    return n;
}

static usage *usage_of(ds_keyring *kr, const char *id)
{
    int32_t u;
    if (!ds_strmap_get(&kr->by_id, id, strlen(id), &u)) {
        if (kr->nuse == kr->cap) {
            kr->cap = kr->cap ? 2 * kr->cap : 64;
            kr->use = xrealloc(kr->use, kr->cap * sizeof *kr->use);
        }
        u = (int32_t)kr->nuse++;
        usage *x = &kr->use[u];
        memset(x, 0, sizeof *x);
        x->id = xstrdup(id); /* the map borrows it: never freed before the map */
        x->tokens = kr->o.burst > 0 ? kr->o.burst : kr->o.rate;
        x->refill_ns = ds_now_ns();
        ds_strmap_put(&kr->by_id, x->id, strlen(x->id), u);
    }
    return &kr->use[u];
}

key_check keyring_admit(ds_keyring *kr, const ds_principal *p, int *retry_after_s)
{
    *retry_after_s = 0;
    if (!p->id[0])
        return KEY_OK;
    pthread_mutex_lock(&kr->use_lock);
    usage *u = usage_of(kr, p->id);
    key_check rc = KEY_OK;
    if (kr->o.rate > 0) {
        int64_t now = ds_now_ns();
        double cap = kr->o.burst > 0 ? kr->o.burst : kr->o.rate;
        u->tokens += (double)(now - u->refill_ns) / 1e9 * kr->o.rate;
        if (u->tokens > cap)
            u->tokens = cap;
        u->refill_ns = now;
        if (u->tokens < 1) {
            double wait = (1 - u->tokens) / kr->o.rate;
            *retry_after_s = (int)wait + 1;
            rc = KEY_RATE;
        }
    }
    if (rc == KEY_OK && kr->o.max_open > 0 && u->open >= kr->o.max_open) {
        *retry_after_s = 1;
        rc = KEY_OPEN;
    }
    if (rc == KEY_OK) {
        if (kr->o.rate > 0)
            u->tokens -= 1;
        u->open++;
        int64_t t = now_s();
        if (u->last_used != t) {
            u->last_used = t;
            kr->used_dirty = strcmp(p->id, API_KEY_ID) != 0 || kr->used_dirty;
        }
    }
    pthread_mutex_unlock(&kr->use_lock);
    return rc;
}

void keyring_close(ds_keyring *kr, const char *id)
{
    if (!id[0])
        return;
    pthread_mutex_lock(&kr->use_lock);
    int32_t u;
    if (ds_strmap_get(&kr->by_id, id, strlen(id), &u) && kr->use[u].open > 0)
        kr->use[u].open--;
    pthread_mutex_unlock(&kr->use_lock);
}

static void principal_of(const ds_key *k, ds_principal *p)
{
    memset(p, 0, sizeof *p);
    memcpy(p->id, k->id, sizeof p->id);
    memcpy(p->user, k->user, sizeof p->user);
    p->role = k->role;
    memcpy(p->model, k->model, sizeof p->model);
    memcpy(p->scope_dim, k->scope_dim, sizeof p->scope_dim);
    memcpy(p->scope_member, k->scope_member, sizeof p->scope_member);
}

key_check keyring_check(ds_keyring *kr, const char *secret, size_t len, ds_principal *p,
                        int *retry_after_s)
{
    *retry_after_s = 0;
    bool found = false;
    if (kr->api_key && len == strlen(kr->api_key) && CRYPTO_memcmp(secret, kr->api_key, len) == 0) {
        memset(p, 0, sizeof *p);
        snprintf(p->id, sizeof p->id, "%s", API_KEY_ID);
        snprintf(p->user, sizeof p->user, "api");
        p->role = ROLE_ADMIN;
        found = true;
    } else {
        ds_key probe;
        keys_hash(secret, len, probe.hash);
        pthread_rwlock_rdlock(&kr->lock);
        const ds_key *k =
            kr->nactive ? bsearch(&probe, kr->active, kr->nactive, sizeof *k, by_hash) : NULL;
        if (k) {
            principal_of(k, p);
            found = true;
        }
        pthread_rwlock_unlock(&kr->lock);
    }
    if (!found)
        return KEY_UNKNOWN;
    return keyring_admit(kr, p, retry_after_s);
}

bool keyring_alive(ds_keyring *kr, const char *id)
{
    if (!id[0]) /* open mode's requests: only while it lasts */
        return keyring_open_mode(kr);
    if (strcmp(id, API_KEY_ID) == 0)
        return true;
    /* the id is the hash's first digits, and the keys are sorted by hash */
    ds_key probe;
    snprintf(probe.hash, sizeof probe.hash, "%.*s", KEY_ID_LEN, id);
    pthread_rwlock_rdlock(&kr->lock);
    bool alive =
        kr->nactive && bsearch(&probe, kr->active, kr->nactive, sizeof *kr->active, by_id_prefix);
    pthread_rwlock_unlock(&kr->lock);
    return alive;
}

void keyring_free(ds_keyring *kr)
{
    if (!kr)
        return;
    if (kr->used_dirty)
        flush_used(kr);
    free(kr->active);
    for (size_t i = 0; i < kr->nuse; i++)
        free(kr->use[i].id);
    free(kr->use);
    ds_strmap_free(&kr->by_id);
    if (kr->api_key)
        OPENSSL_cleanse(kr->api_key, strlen(kr->api_key));
    free(kr->api_key);
    free(kr->dir);
    pthread_rwlock_destroy(&kr->lock);
    pthread_mutex_destroy(&kr->use_lock);
    free(kr);
}
