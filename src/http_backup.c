/* http_backup.c: the backup routes (admin): POST /v1/backups takes one
 * (waiting for it, or 202 at once with wait=false), GET /v1/backups lists
 * them, GET /v1/backups/{name} shows one; and their /metrics lines. The
 * backups themselves are backup.c's. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"
#include "http_internal.h"
#include "server.h"

static void put_backup(json_w *w, const backup_info *b)
{
    jw_obj(w);
    jw_key(w, "name");
    jw_str(w, b->name);
    jw_key(w, "file");
    jw_str(w, b->file);
    jw_key(w, "state");
    jw_str(w, backup_state_name(b->state));
    jw_key(w, "bytes");
    jw_int(w, b->bytes);
    jw_key(w, "bytes_total");
    jw_int(w, b->bytes_total);
    jw_key(w, "seqs");
    jw_obj(w);
    for (size_t i = 0; i < b->nmodels; i++) {
        jw_key(w, b->models[i]);
        jw_int(w, b->seqs[i]);
    }
    jw_obj_end(w);
    jw_key(w, "taken");
    jw_str(w, b->taken);
    jw_key(w, "ms");
    jw_int(w, (int64_t)b->ms);
    if (b->state == BACKUP_FAILED) {
        jw_key(w, "error");
        jw_str(w, b->error);
    }
    jw_obj_end(w);
}

static enum MHD_Result reply_backup(req *r, int status, const backup_info *b)
{
    ds_buf buf;
    json_w w;
    ds_buf_init(&buf, 1 << 20);
    jw_init(&w, &buf);
    jw_obj(&w);
    jw_key(&w, "backup");
    put_backup(&w, b);
    jw_obj_end(&w);
    enum MHD_Result ret = http__json(r, status, &buf);
    ds_buf_free(&buf);
    return ret;
}

static enum MHD_Result backup_error(req *r, const ds_error *e)
{
    if (e->code == DS_UNAVAILABLE)
        r->retry_after = "1";
    return http__error(r, e);
}

/* The body: {"name"?: string, "wait"?: bool}; an empty body is {}. A key
 * limited to one model is refused: a backup holds every model. */
static int backup_body(req *r, char *name, size_t n, bool *wait, ds_error *err)
{
    static const char *const fields[] = {"name", "wait", NULL};
    name[0] = '\0';
    *wait = true;
    json_val *root = NULL;
    int rc = r->body.len == 0 && !r->too_large ? http__authorize(r, NULL, err)
                                               : http__body(r, (req_kind)-1, &root, err);
    if (rc == 0 && r->body.len)
        rc = request_only_fields(root, fields, "", err);
    const json_val *nv = rc ? NULL : json_get(root, "name"),
                   *wv = rc ? NULL : json_get(root, "wait");
    if (nv && json_kind_of(nv) != JSON_STRING)
        rc = ds_fail(err, DS_MALFORMED, "name", "'name' must be a string, not %s",
                     json_kind_name(json_kind_of(nv)));
    else if (wv && json_kind_of(wv) != JSON_BOOL)
        rc = ds_fail(err, DS_MALFORMED, "wait", "'wait' must be true or false, not %s",
                     json_kind_name(json_kind_of(wv)));
    if (rc == 0 && r->who.model[0])
        rc = ds_fail(err, DS_FORBIDDEN, "model",
                     "a backup holds every model; this key works on model '%s' only", r->who.model);
    size_t len = 0;
    const char *s = nv ? json_str(nv, &len) : NULL;
    if (rc == 0 && s && (!backup_name_ok(s, len) || len >= n || strlen(s) != len))
        rc = ds_fail(err, DS_INVALID_VALUE, "name",
                     "a backup name is 1 to %d of A-Z a-z 0-9 . _ -, not starting with . or -",
                     BACKUP_NAME_MAX);
    if (rc == 0 && s)
        memcpy(name, s, len + 1);
    if (rc == 0 && wv)
        *wait = json_truth(wv);
    json_free(root);
    return rc;
}

enum MHD_Result http__backup_create(req *r)
{
    ds_error e;
    char name[BACKUP_NAME_MAX + 1];
    bool wait;
    if (backup_body(r, name, sizeof name, &wait, &e))
        return http__error(r, &e);
    ds_backups *b = r->h->srv->backups;
    if (!b)
        return backup_error(
            r, &(ds_error){.code = DS_UNAVAILABLE, .message = "backups are not running"});
    backup_info info;
    if (backups_start(b, name[0] ? name : NULL, &info, &e))
        return backup_error(r, &e);
    if (wait) {
        backup_info done;
        snprintf(name, sizeof name, "%s", info.name);
        backup_info_free(&info);
        if (backups_wait(b, name, &done, &e))
            return backup_error(r, &e);
        if (done.state == BACKUP_FAILED) { /* no file was left; nothing changed */
            ds_fail(&e, DS_UNAVAILABLE, "backup", "backup %s failed: %s", done.name, done.error);
            backup_info_free(&done);
            return backup_error(r, &e);
        }
        info = done;
    }
    enum MHD_Result ret = reply_backup(r, wait ? 200 : 202, &info);
    backup_info_free(&info);
    return ret;
}

enum MHD_Result http__backup_list(req *r)
{
    ds_backups *b = r->h->srv->backups;
    backup_info *v = NULL;
    size_t n = b ? backups_list(b, &v) : 0;
    ds_buf buf;
    json_w w;
    ds_buf_init(&buf, (size_t)64 << 20);
    jw_init(&w, &buf);
    jw_obj(&w);
    jw_key(&w, "backups");
    jw_arr(&w);
    for (size_t i = 0; i < n; i++) {
        put_backup(&w, &v[i]);
        backup_info_free(&v[i]);
    }
    free(v);
    jw_arr_end(&w);
    jw_obj_end(&w);
    enum MHD_Result ret = http__json(r, 200, &buf);
    ds_buf_free(&buf);
    return ret;
}

/* GET /v1/backups/NAME: the name as it stands in the URL (a name is plain
 * [A-Za-z0-9._-]; anything else, an escape too, names no backup). */
enum MHD_Result http__backup_get(req *r)
{
    static const char prefix[] = "/v1/backups/";
    const char *name = r->url + sizeof prefix - 1;
    ds_error e;
    ds_backups *b = r->h->srv->backups;
    backup_info info;
    if (!b || !backup_name_ok(name, strlen(name)))
        return http__fail(r, DS_NOT_FOUND, "backup", "no such backup");
    if (backups_get(b, name, &info, &e))
        return http__error(r, &e);
    enum MHD_Result ret = reply_backup(r, 200, &info);
    backup_info_free(&info);
    return ret;
}

void http__backup_metrics(http_server *h, ds_buf *b)
{
    backups_stats s = {0};
    if (h->srv->backups)
        backups_get_stats(h->srv->backups, &s);
    ds_buf_printf(b,
                  "# HELP duckspread_backups_total Backups taken, by result.\n"
                  "# TYPE duckspread_backups_total counter\n"
                  "duckspread_backups_total{result=\"ok\"} %" PRId64 "\n"
                  "duckspread_backups_total{result=\"failed\"} %" PRId64 "\n"
                  "# HELP duckspread_backup_last_seconds How long the last backup took.\n"
                  "# TYPE duckspread_backup_last_seconds gauge\n"
                  "duckspread_backup_last_seconds %.3f\n"
                  "# HELP duckspread_backup_running 1 while a backup runs.\n"
                  "# TYPE duckspread_backup_running gauge\nduckspread_backup_running %d\n",
                  s.ok, s.failed, s.last_seconds, s.running ? 1 : 0);
}
