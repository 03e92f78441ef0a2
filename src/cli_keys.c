/* cli_keys.c: `duckspread keys create|list|revoke`. They edit DIR/keys
 * (keys.h), so they work whether or not a server runs on DIR; a running
 * server picks the change up within a second. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "keys.h"

static const char usage_keys[] =
    "usage: duckspread keys create --data DIR --user NAME --role viewer|editor|admin\n"
    "                              [--model M] [--scope DIM=MEMBER]\n"
    "       duckspread keys list   --data DIR\n"
    "       duckspread keys revoke --data DIR (--id ID | --user NAME)\n"
    "\n"
    "API keys of the server on DIR, kept in DIR/keys (only a SHA-256 of each key;\n"
    "the key itself is printed once, by create, alone on the last line of stdout).\n"
    "These commands work whether or not a server runs on DIR; a running server\n"
    "picks up a change within a second, and a revoked key's open connections\n"
    "(long-polls, SSE, WebSocket) are closed.\n"
    "\n"
    "Roles: viewer reads; editor also writes cells; admin also manages models\n"
    "and members.\n"
    "\n"
    "  --data DIR          data directory (created if missing)\n"
    "  --user NAME         who the key belongs to (shown in change events; 1-64\n"
    "                      printable ASCII characters, no spaces)\n"
    "  --role ROLE         viewer, editor or admin\n"
    "  --model M           the key works on model M only\n"
    "  --scope DIM=MEMBER  (editors) write only cells inside MEMBER's\n"
    "                      subtree of dimension DIM (a member key, or a unique\n"
    "                      display name, resolved when a write comes); a write\n"
    "                      outside it, or one that leaves DIM out, is refused with\n"
    "                      403 out_of_scope\n"
    "  --id ID             revoke: the key with this id (see list)\n"
    "  --help              this help\n";

static void fmt_time(int64_t t, char *out, size_t n)
{
    if (!t) {
        snprintf(out, n, "never");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "duckspread keys: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int keys_create_cmd(const char *dir, const char *user, const char *role, const char *model,
                           const char *scope)
{
    ds_key k;
    memset(&k, 0, sizeof k);
    if (!user || !keys_valid_user(user)) {
        fprintf(stderr, "duckspread keys: --user takes 1-64 printable ASCII characters without "
                        "spaces\n");
        return 2;
    }
    if (!role || !key_role_parse(role, &k.role)) {
        fprintf(stderr, "duckspread keys: --role takes viewer, editor or admin\n");
        return 2;
    }
    snprintf(k.user, sizeof k.user, "%s", user);
    if (model) {
        if (!*model || strlen(model) > DS_IDENT_MAX) {
            fprintf(stderr, "duckspread keys: --model takes a model name (1-%d bytes)\n",
                    DS_IDENT_MAX);
            return 2;
        }
        snprintf(k.model, sizeof k.model, "%s", model);
    }
    if (scope) {
        const char *eq = strchr(scope, '=');
        if (!eq || eq == scope || !eq[1] || (size_t)(eq - scope) > DS_IDENT_MAX ||
            strlen(eq + 1) > DS_IDENT_MAX) {
            fprintf(stderr, "duckspread keys: --scope takes DIM=MEMBER (a dimension and one of "
                            "its member keys)\n");
            return 2;
        }
        if (k.role != ROLE_EDITOR) {
            fprintf(stderr,
                    "duckspread keys: --scope limits an editor's cell writes; a %s "
                    "key cannot have one\n",
                    key_role_name(k.role));
            return 2;
        }
        snprintf(k.scope_dim, sizeof k.scope_dim, "%.*s", (int)(eq - scope), scope);
        snprintf(k.scope_member, sizeof k.scope_member, "%s", eq + 1);
    }
    if (ensure_dir(dir))
        return 1;
    char secret[96], id[KEY_ID_LEN + 1];
    ds_error err;
    if (keys_create(dir, &k, secret, sizeof secret, id, &err)) {
        fprintf(stderr, "duckspread keys: %s\n", err.message);
        return 1;
    }
    printf("created key %s for user %s, role %s", id, k.user, key_role_name(k.role));
    if (k.model[0])
        printf(", model %s", k.model);
    if (k.scope_dim[0])
        printf(", scope %s=%s", k.scope_dim, k.scope_member);
    printf("\nit is shown only now; use it as: Authorization: Bearer <key>\n%s\n", secret);
    OPENSSL_cleanse(secret, sizeof secret);
    return 0;
}

static int keys_list_cmd(const char *dir)
{
    ds_keyfile kf;
    ds_error err;
    if (keys_read(dir, &kf, &err)) {
        fprintf(stderr, "duckspread keys: %s\n", err.message);
        return 1;
    }
    printf("%-12s  %-16s  %-6s  %-12s  %-20s  %-20s  %-20s  %s\n", "ID", "USER", "ROLE", "MODEL",
           "SCOPE", "CREATED", "LAST USED", "STATUS");
    for (size_t i = 0; i < kf.n; i++) {
        const ds_key *k = &kf.keys[i];
        char created[32], used[32], revoked[48], scope[2 * DS_IDENT_MAX + 2];
        fmt_time(k->created, created, sizeof created);
        fmt_time(k->last_used, used, sizeof used);
        if (k->revoked) {
            char t[32];
            fmt_time(k->revoked, t, sizeof t);
            snprintf(revoked, sizeof revoked, "revoked %s", t);
        } else {
            snprintf(revoked, sizeof revoked, "active");
        }
        if (k->scope_dim[0])
            snprintf(scope, sizeof scope, "%s=%s", k->scope_dim, k->scope_member);
        else
            snprintf(scope, sizeof scope, "*");
        printf("%-12s  %-16s  %-6s  %-12s  %-20s  %-20s  %-20s  %s\n", k->id, k->user,
               key_role_name(k->role), k->model[0] ? k->model : "*", scope, created, used, revoked);
    }
    keys_free(&kf);
    return 0;
}

static int keys_revoke_cmd(const char *dir, const char *id, const char *user)
{
    if (!id == !user) {
        fprintf(stderr, "duckspread keys: revoke takes --id ID or --user NAME\n");
        return 2;
    }
    int n;
    ds_error err;
    if (keys_revoke(dir, id, user, &n, &err)) {
        fprintf(stderr, "duckspread keys: %s\n", err.message);
        return 1;
    }
    printf("revoked %d key%s\n", n, n == 1 ? "" : "s");
    return 0;
}

int cli_keys(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},  {"user", required_argument, NULL, 'u'},
        {"role", required_argument, NULL, 'r'},  {"model", required_argument, NULL, 'm'},
        {"scope", required_argument, NULL, 's'}, {"id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage_keys, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    const char *dir = NULL, *user = NULL, *role = NULL, *model = NULL, *scope = NULL, *id = NULL;
    optind = 1;
    int c;
    while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 'm':
            model = optarg;
            break;
        case 's':
            scope = optarg;
            break;
        case 'i':
            id = optarg;
            break;
        case 'h':
            fputs(usage_keys, stdout);
            return 0;
        default:
            fputs(usage_keys, stderr);
            return 2;
        }
    }
    if (optind < argc - 1) {
        fprintf(stderr, "duckspread keys: unexpected argument '%s'\n", argv[optind + 1]);
        return 2;
    }
    if (!dir) {
        fprintf(stderr, "duckspread keys: --data DIR is required\n");
        return 2;
    }
    if (!strcmp(sub, "create"))
        return keys_create_cmd(dir, user, role, model, scope);
    bool is_list = !strcmp(sub, "list"), is_revoke = !strcmp(sub, "revoke");
    if ((is_list && (user || id)) || ((is_list || is_revoke) && (role || model || scope))) {
        fprintf(stderr, "duckspread keys: %s does not take that option (see --help)\n", sub);
        return 2;
    }
    if (is_list)
        return keys_list_cmd(dir);
    if (is_revoke)
        return keys_revoke_cmd(dir, id, user);
    fprintf(stderr, "duckspread keys: unknown subcommand '%s' (create, list, revoke)\n", sub);
    return 2;
}
