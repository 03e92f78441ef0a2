/* cli_backup.c: duckspread backup (asks a running server for a backup,
 * over HTTP with libcurl, and follows it) and duckspread restore (a backup
 * file into a data directory, backup_restore()). Only the binary links
 * this file: the unit tests do without libcurl. */
#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "cli.h"
#include "json.h"
#include "store.h"

static const char usage_backup[] =
    "usage: duckspread backup [--url http://HOST:PORT | --data DIR] [--api-key KEY]\n"
    "                         [--name NAME]\n"
    "\n"
    "Asks the running server for an online backup of its database (POST\n"
    "/v1/backups; writes go on meanwhile) and follows it until it is done:\n"
    "a progress line on stderr while it copies (when stderr is a terminal),\n"
    "then one line on stdout:\n"
    "  backup NAME: FILE, SIZE MB, seqs MODEL=SEQ ..., N.N s\n"
    "The file is NAME.duckdb in the server's backup directory (serve\n"
    "--backup-dir, default DIR/backups): the database as it was at those seqs,\n"
    "which `duckspread restore` puts back. Exit 0 when the backup is done, 1\n"
    "with the server's message otherwise.\n"
    "\n"
    "  --url URL       the server (http://HOST:PORT)\n"
    "  --data DIR      or the server serving DIR (its address is in\n"
    "                  DIR/duckspread.url while it runs)\n"
    "  --api-key KEY   an admin key (also DS_API_KEY); none for a loopback\n"
    "                  server without keys\n"
    "  --name NAME     the backup's name: 1 to 100 of A-Z a-z 0-9 . _ -, not\n"
    "                  starting with . or - (default ds-YYYYMMDDTHHMMSSZ); an\n"
    "                  existing name is refused\n"
    "  --help          this help\n";

static const char usage_restore[] =
    "usage: duckspread restore --from FILE --data DIR [--force]\n"
    "\n"
    "Puts a backup (a file `duckspread backup` or serve --backup-every made)\n"
    "back as DIR/duckspread.db: checks that FILE is a duckspread backup\n"
    "(opened read-only) and prints its name and seqs, copies it to\n"
    "DIR/duckspread.db.tmp, fsyncs it and renames it into place. `duckspread\n"
    "serve --data DIR` then serves the models at the backup's seqs; new writes\n"
    "get the seqs after them. Never while a server runs on DIR (it holds\n"
    "DIR/duckspread.lock). A private Redis's log under DIR/redis holds writes\n"
    "the backup may not have: restore into a new DIR, or move DIR/redis away.\n"
    "\n"
    "  --from FILE  the backup file (NAME.duckdb)\n"
    "  --data DIR   the data directory (created if missing)\n"
    "  --force      replace a DIR/duckspread.db that is there (default: refuse)\n"
    "  --help       this help\n";

/* ---- HTTP ------------------------------------------------------------------------------ */

typedef struct client {
    CURL *curl;
    char base[1024];
    struct curl_slist *headers;
} client;

static size_t gather(char *p, size_t size, size_t n, void *ctx)
{
    ds_buf_append(ctx, p, size * n);
    return size * n;
}

/* One request; *status and the body (parsed: *root, caller frees). */
static int call(client *c, const char *method, const char *path, const char *body, long *status,
                json_val **root, char *why, size_t n)
{
    char url[2048];
    snprintf(url, sizeof url, "%s%s", c->base, path);
    ds_buf got;
    ds_buf_init(&got, (size_t)64 << 20);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, gather);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(c->curl);
    *root = NULL;
    if (rc != CURLE_OK) {
        snprintf(why, n, "%.900s: %s", url, curl_easy_strerror(rc));
        ds_buf_free(&got);
        return -1;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
    json_limits lim;
    json_limits_default(&lim);
    ds_error err;
    int prc = json_parse(got.data ? got.data : "", got.len, &lim, root, &err);
    if (prc)
        snprintf(why, n, "%.700s answered %ld, not JSON: %.200s", url, *status,
                 got.data ? got.data : "");
    ds_buf_free(&got);
    return prc ? -1 : 0;
}

static const char *str_of(const json_val *obj, const char *key)
{
    size_t len;
    const json_val *v = json_get(obj, key);
    return json_kind_of(v) == JSON_STRING ? json_str(v, &len) : "";
}

static int64_t int_of(const json_val *obj, const char *key)
{
    size_t len;
    bool exact;
    const json_val *v = json_get(obj, key);
    return json_kind_of(v) == JSON_NUMBER ? strtoll(json_num(v, &len, &exact), NULL, 10) : 0;
}

/* The error message of an error answer. */
static void error_of(const json_val *root, long status, char *why, size_t n)
{
    const json_val *e = json_get(root, "error");
    snprintf(why, n, "%s (%ld %s)", e ? str_of(e, "message") : "no error message", status,
             e ? str_of(e, "code") : "");
}

static void seqs_line(const json_val *b, char *out, size_t n)
{
    const json_val *seqs = json_get(b, "seqs");
    size_t it = 0, klen, o = 0;
    const char *key;
    json_val *v;
    out[0] = '\0';
    while (json_kind_of(seqs) == JSON_OBJECT && json_next(seqs, &it, &key, &klen, &v) && o < n) {
        size_t len;
        bool exact;
        const char *num = json_kind_of(v) == JSON_NUMBER ? json_num(v, &len, &exact) : "?";
        o += (size_t)snprintf(out + o, n - o, "%s%.*s=%s", o ? " " : "", (int)klen, key, num);
    }
}

/* ---- duckspread backup ------------------------------------------------------------------- */

/* The address in DIR/duckspread.url (first line). */
static int url_from_dir(const char *dir, char *out, size_t n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/duckspread.url", dir);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(out, (int)n, f)) {
        fprintf(stderr, "duckspread backup: no server address in %s (is a server serving %s?)\n",
                path, dir);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static void progress(const json_val *b)
{
    if (!isatty(STDERR_FILENO))
        return;
    int64_t bytes = int_of(b, "bytes"), total = int_of(b, "bytes_total");
    fprintf(stderr, "\rbackup %s: %.1f of %.1f MB (%d%%)   ", str_of(b, "name"),
            (double)bytes / 1e6, (double)total / 1e6, total ? (int)(100 * bytes / total) : 0);
    fflush(stderr);
}

/* Polls GET /v1/backups/NAME every 200 ms until it is no longer running. */
static int follow(client *c, const char *name)
{
    char path[256], why[1024];
    snprintf(path, sizeof path, "/v1/backups/%s", name);
    for (;;) {
        long status = 0;
        json_val *root;
        if (call(c, "GET", path, NULL, &status, &root, why, sizeof why) == 0 && status != 200)
            error_of(root, status, why, sizeof why);
        const json_val *b = status == 200 ? json_get(root, "backup") : NULL;
        const char *state = b ? str_of(b, "state") : "";
        if (!b || strcmp(state, "running") != 0) {
            if (isatty(STDERR_FILENO))
                fputs("\r\033[K", stderr);
            int rc = 1;
            if (!b) {
                fprintf(stderr, "duckspread backup: %s\n", why);
            } else if (strcmp(state, "done") == 0) {
                char seqs[1024];
                seqs_line(b, seqs, sizeof seqs);
                printf("backup %s: %s, %.1f MB, seqs %s, %.1f s\n", name, str_of(b, "file"),
                       (double)int_of(b, "bytes") / 1e6, seqs, (double)int_of(b, "ms") / 1000);
                rc = 0;
            } else {
                fprintf(stderr, "duckspread backup: %s failed: %s\n", name, str_of(b, "error"));
            }
            json_free(root);
            return rc;
        }
        progress(b);
        json_free(root);
        struct timespec t = {0, 200 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
}

/* POST /v1/backups with wait=false: the name the server gave it. */
static int start(client *c, const char *name, char *out, size_t n)
{
    ds_buf body;
    json_w w;
    ds_buf_init(&body, 4096);
    jw_init(&w, &body);
    jw_obj(&w);
    if (name) {
        jw_key(&w, "name");
        jw_str(&w, name);
    }
    jw_key(&w, "wait");
    jw_bool(&w, false);
    jw_obj_end(&w);
    long status = 0;
    json_val *root;
    char why[1024];
    int rc = call(c, "POST", "/v1/backups", body.data, &status, &root, why, sizeof why);
    ds_buf_free(&body);
    const json_val *b = rc == 0 && status == 202 ? json_get(root, "backup") : NULL;
    if (rc == 0 && !b)
        error_of(root, status, why, sizeof why);
    if (b)
        snprintf(out, n, "%s", str_of(b, "name"));
    else
        fprintf(stderr, "duckspread backup: %s\n", why);
    json_free(root);
    return b ? 0 : 1;
}

static int run_backup(const char *url, const char *key, const char *name)
{
    client c = {0};
    snprintf(c.base, sizeof c.base, "%s", url);
    size_t len = strlen(c.base);
    if (len && c.base[len - 1] == '/')
        c.base[len - 1] = '\0';
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.curl = curl_easy_init();
    c.headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (key) {
        char auth[1200];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        c.headers = curl_slist_append(c.headers, auth);
    }
    char got[BACKUP_NAME_MAX + 1];
    int rc = c.curl ? start(&c, name, got, sizeof got) : 1;
    if (rc == 0)
        rc = follow(&c, got);
    curl_slist_free_all(c.headers);
    curl_easy_cleanup(c.curl);
    curl_global_cleanup();
    return rc;
}

int cli_backup(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},     {"data", required_argument, NULL, 'd'},
        {"api-key", required_argument, NULL, 'k'}, {"name", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *url = NULL, *data = NULL, *name = NULL;
    const char *key = getenv("DS_API_KEY") && *getenv("DS_API_KEY") ? getenv("DS_API_KEY") : NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            url = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'h':
            fputs(usage_backup, stdout);
            return 0;
        default:
            fputs(usage_backup, stderr);
            return 2;
        }
    }
    if (!url == !data) {
        fputs("duckspread backup: give --url or --data (one of them)\n", stderr);
        return 2;
    }
    if (name && !backup_name_ok(name, strlen(name))) {
        fprintf(stderr, "duckspread backup: '%s' is no backup name (see --help)\n", name);
        return 2;
    }
    char from_dir[1024];
    if (data && url_from_dir(data, from_dir, sizeof from_dir))
        return 1;
    return run_backup(data ? from_dir : url, key, name);
}

/* ---- duckspread restore ------------------------------------------------------------------- */

int cli_restore(int argc, char **argv)
{
    static const struct option opts[] = {{"from", required_argument, NULL, 'f'},
                                         {"data", required_argument, NULL, 'd'},
                                         {"force", no_argument, NULL, 'F'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *from = NULL, *data = NULL;
    bool force = false;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            from = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'F':
            force = true;
            break;
        case 'h':
            fputs(usage_restore, stdout);
            return 0;
        default:
            fputs(usage_restore, stderr);
            return 2;
        }
    }
    if (!from || !data) {
        fputs("duckspread restore: --from FILE and --data DIR are required\n", stderr);
        return 2;
    }
    store_backup_meta m;
    ds_error err;
    if (store_backup_read(from, &m, &err)) {
        fprintf(stderr, "duckspread restore: %s\n", err.message);
        return 1;
    }
    printf("backup %s, taken %s from %s; seqs", m.name, m.taken, m.source);
    for (size_t i = 0; i < m.nmodels; i++)
        printf(" %s=%" PRId64, m.models[i], m.seqs[i]);
    printf("\n");
    store_backup_meta_free(&m);
    if (backup_restore(from, data, force, &err)) {
        fprintf(stderr, "duckspread restore: %s\n", err.message);
        return 1;
    }
    printf("restored into %s/duckspread.db\n", data);
    char redis[4200];
    struct stat st;
    snprintf(redis, sizeof redis, "%s/redis", data);
    if (stat(redis, &st) == 0)
        fprintf(stderr,
                "duckspread restore: note: %s holds a private Redis's log, with writes the "
                "backup may not have; move it away for a fresh one\n",
                redis);
    return 0;
}
