/* keys.h: API keys, their roles and limits, kept outside the DuckDB file.
 *
 * DuckDB lets one process open a database file, so the keys live in a text
 * file of their own, DIR/keys (mode 0600): `duckspread keys` edits it
 * whether or not a server runs on DIR, and a running server notices a new
 * version within a second. Only the SHA-256 of a key is stored; the key
 * itself is printed once, when it is created. Writers take DIR/keys.lock
 * and replace the file by rename, so readers always see a whole version.
 * The server records when each key was last used in DIR/keys.used (its own
 * file, also replaced by rename), which `keys list` shows.
 *
 * Line format (tab-separated, fields percent-encoded where they hold a
 * byte below 0x21, '%', '=' or 0x7f):
 *   id  sha256  user  role  model  scope_dim  scope_member  created  revoked
 * id is the first 12 hex digits of the hash: public, used to revoke. */
#ifndef DS_KEYS_H
#define DS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"

typedef enum key_role {
    ROLE_NONE = 0,
    ROLE_VIEWER,
    ROLE_EDITOR,
    ROLE_ADMIN,
} key_role;

#define KEY_ID_LEN   12
#define KEY_USER_MAX 64

typedef struct ds_key {
    char id[KEY_ID_LEN + 1];
    char hash[65];
    char user[KEY_USER_MAX + 1];
    key_role role;
    char model[DS_IDENT_MAX + 1];        /* "" = every model */
    char scope_dim[DS_IDENT_MAX + 1];    /* "" = no scope */
    char scope_member[DS_IDENT_MAX + 1]; /* a member key of scope_dim */
    int64_t created, revoked;            /* unix seconds; revoked 0 = active */
    int64_t last_used;                   /* from DIR/keys.used; 0 = never */
} ds_key;

typedef struct ds_keyfile {
    ds_key *keys;
    size_t n;
} ds_keyfile;

const char *key_role_name(key_role r);
bool key_role_parse(const char *s, key_role *out);
/* SHA-256 of a key, 64 hex digits and a NUL. */
void keys_hash(const char *secret, size_t len, char out[65]);
/* A user name for keys: 1..64 bytes of printable ASCII without spaces. */
bool keys_valid_user(const char *user);

/* Reads DIR/keys (a missing file is no keys) and the last-use times. */
int keys_read(const char *dir, ds_keyfile *out, ds_error *err);
void keys_free(ds_keyfile *kf);
/* Adds a key like tmpl (user, role, model, scope) and writes the new
 * secret (NUL-terminated, at most 80 bytes) and the new key's id. */
int keys_create(const char *dir, const ds_key *tmpl, char *secret, size_t cap,
                char id[KEY_ID_LEN + 1], ds_error *err);
/* Revokes the key with this id, or every active key of user (one of the
 * two is NULL); *count says how many were revoked. */
int keys_revoke(const char *dir, const char *id, const char *user, int *count, ds_error *err);

/* ---- the server's view ---------------------------------------------------- */

/* Who a request is: from a key, a ticket, or the open loopback mode. */
typedef struct ds_principal {
    char id[KEY_ID_LEN + 1]; /* "" in open mode; "api-key" for --api-key */
    char user[KEY_USER_MAX + 1];
    key_role role;
    char model[DS_IDENT_MAX + 1];
    char scope_dim[DS_IDENT_MAX + 1];
    char scope_member[DS_IDENT_MAX + 1];
} ds_principal;

typedef struct keyring_opts {
    const char *dir;
    const char *api_key; /* --api-key: an admin key named "api" (may be NULL) */
    double rate;         /* requests per second per key (0 = no limit) */
    int burst;           /* bucket size (0 = one second's worth) */
    int max_open;        /* requests and subscriptions open at once per key (0 = no limit) */
} keyring_opts;

typedef struct ds_keyring ds_keyring;

typedef enum key_check {
    KEY_OK = 0,
    KEY_UNKNOWN, /* no such key, or revoked */
    KEY_RATE,    /* over its request rate: *retry_after_s says when to retry */
    KEY_OPEN,    /* over its open requests */
} key_check;

/* Loads DIR/keys now (an unreadable file is an error). */
int keyring_open(const keyring_opts *o, ds_keyring **out, ds_error *err);
void keyring_free(ds_keyring *kr);
/* Re-reads DIR/keys if it changed; *revoked tells whether a key that was
 * active before is not any more. Records last use in DIR/keys.used at most
 * every few seconds. Called by a watcher about every 250 ms. */
void keyring_refresh(ds_keyring *kr, bool *revoked);
/* Active keys (including --api-key). */
size_t keyring_count(ds_keyring *kr);
/* True until DIR/keys holds a key (even a revoked one) or --api-key is
 * given; false from then on, for the life of the keyring. */
bool keyring_open_mode(ds_keyring *kr);
/* Checks a key, counts one request against its rate and one open request
 * (release with keyring_close()); fills *p when KEY_OK. */
key_check keyring_check(ds_keyring *kr, const char *secret, size_t len, ds_principal *p,
                        int *retry_after_s);
/* Counts one open request for an already known principal (a ticket's). */
key_check keyring_admit(ds_keyring *kr, const ds_principal *p, int *retry_after_s);
/* Ends an open request or subscription of the key id. */
void keyring_close(ds_keyring *kr, const char *id);
/* Whether the key id is still active (--api-key's always is; "", open
 * mode's, only while open mode lasts). */
bool keyring_alive(ds_keyring *kr, const char *id);

#endif
