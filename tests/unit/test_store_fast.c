/* The fast path (leaf writes queued in a group, the fact index and the cube
 * of totals) against the plain path: the same random commands go to two
 * stores with the same demo, one in groups and one a command per
 * transaction, and every outcome, change list and, after every group, every
 * fact must agree. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decimal.h"
#include "demo.h"
#include "store.h"
#include "store_internal.h"

typedef struct side {
    char dir[256];
    ds_store *s;
    ds_reader *r;
} side;

static void open_side_facts(side *x, int64_t facts)
{
    snprintf(x->dir, sizeof x->dir, "%s/ds-fast-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(x->dir));
    char path[300];
    snprintf(path, sizeof path, "%s/t.db", x->dir);
    ds_error e;
    ck_assert(store_open(path, NULL, &x->s, &e) == 0);
    demo_opts d = {.seed = 11, .facts = facts};
    bool loaded;
    int64_t n;
    ck_assert_msg(demo_load(x->s, &d, &loaded, &n, &e) == 0, "%s", e.message);
    x->r = store_reader_new(x->s);
    ck_assert_ptr_nonnull(x->r);
}

static void open_side(side *x)
{
    open_side_facts(x, 5000);
}

static void close_side(side *x)
{
    store_reader_free(x->r);
    store_close(x->s);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", x->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", x->dir);
}

static int32_t pick(const ds_dim *d, bool leaf, uint64_t *rng)
{
    for (;;) {
        *rng = ds_mix64(*rng);
        int32_t x = (int32_t)(*rng % (uint64_t)d->nmembers);
        if (d->members[x].alive && (!leaf || model_is_leaf(d, x)))
            return x;
    }
}

/* A random command: mostly leaf writes (some batches), some spreads, and
 * now and then a member operation. */
static void random_command(const ds_model *m, uint64_t *rng, ds_command *cmd, ds_write *w,
                           ds_member_op *op, char *key)
{
    *rng = ds_mix64(*rng);
    int kind = (int)(*rng % 20);
    memset(cmd, 0, sizeof *cmd);
    cmd->user = "t";
    cmd->if_seq = -1;
    if (kind == 19) { /* add a product under a random family */
        const ds_dim *d = &m->dims[0];
        int32_t fam = pick(d, false, rng);
        while (d->members[fam].depth != 3)
            fam = pick(d, false, rng);
        snprintf(key, 32, "X-%llu", (unsigned long long)(*rng % 1000000));
        *op =
            (ds_member_op){.kind = MEMBER_ADD, .dim = 0, .parent = fam, .key = key, .facts_to = -1};
        cmd->kind = COMMAND_MEMBER;
        cmd->member = *op;
        return;
    }
    cmd->kind = COMMAND_WRITE;
    cmd->nwrites = kind < 12 ? 1 : kind < 16 ? 3 : 1;
    for (size_t i = 0; i < cmd->nwrites; i++) {
        ds_write *x = &w[i];
        memset(x, 0, sizeof *x);
        x->measure = (int)(*rng % 2);
        bool spread = kind >= 16;
        for (int k = 0; k < m->ndims; k++)
            x->cell.m[k] = pick(&m->dims[k], !spread || k != 2, rng);
        *rng = ds_mix64(*rng);
        x->form = (spread_form)(*rng % 3);
        x->method = spread ? (spread_method)(*rng % 2) : SPREAD_PROPORTIONAL;
        x->amount =
            x->form == SPREAD_PERCENT ? (ds_i128)(*rng % 40) - 20 : (ds_i128)(*rng % 2000) - 300;
        if (x->form == SPREAD_SET && !spread && *rng % 7 == 0)
            x->amount = dec_pow10(19); /* refused: out of range */
    }
}

static void same_outcome(const ds_outcome *a, const ds_outcome *b)
{
    ck_assert_int_eq(a->seq, b->seq);
    ck_assert_uint_eq(a->nsets, b->nsets);
    for (size_t i = 0; i < a->nsets; i++) {
        const ds_changeset *x = &a->sets[i], *y = &b->sets[i];
        ck_assert(x->target.old_value == y->target.old_value);
        ck_assert(x->target.new_value == y->target.new_value);
        ck_assert_int_eq(x->leaves_changed, y->leaves_changed);
        ck_assert_uint_eq(x->nchanges, y->nchanges);
        ck_assert(x->truncated == y->truncated);
        for (size_t j = 0; j < x->nchanges; j++) {
            ck_assert(memcmp(&x->changes[j].cell, &y->changes[j].cell, sizeof x->changes[j].cell) ==
                      0);
            ck_assert_msg(x->changes[j].old_value == y->changes[j].old_value &&
                              x->changes[j].new_value == y->changes[j].new_value,
                          "change %zu of set %zu differs", j, i);
        }
    }
}

/* Every product leaf by every month, both measures, read from both. */
static void same_facts(side *a, side *b)
{
    const ds_model *m = store_model_acquire(b->s, DEMO_MODEL, 5);
    const ds_model *ma = store_model_acquire(a->s, DEMO_MODEL, 5);
    int32_t *rows, *cols;
    size_t nr = model_leaves(&m->dims[0], m->dims[0].root, &rows);
    size_t nc = model_leaves(&m->dims[2], m->dims[2].root, &cols);
    ds_i128 *va = xmalloc_array(nr * nc, sizeof *va), *vb = xmalloc_array(nr * nc, sizeof *vb);
    for (int q = 0; q < 2; q++) {
        ds_grid_spec g = {.measure = q,
                          .row_dim = 0,
                          .col_dim = 2,
                          .nrows = nr,
                          .ncols = nc,
                          .rows = rows,
                          .cols = cols};
        for (int k = 0; k < m->ndims; k++)
            g.fixed.m[k] = m->dims[k].root;
        int64_t sa, sb;
        ds_error e;
        ck_assert_msg(store_read_grid(a->r, ma, &g, va, &sa, &e) == 0, "%s", e.message);
        ck_assert_msg(store_read_grid(b->r, m, &g, vb, &sb, &e) == 0, "%s", e.message);
        ck_assert_int_eq(sa, sb);
        for (size_t i = 0; i < nr * nc; i++)
            ck_assert_msg(va[i] == vb[i], "facts differ at product %d month %d measure %d",
                          rows[i / nc], cols[i % nc], q);
    }
    free(va);
    free(vb);
    free(rows);
    free(cols);
    store_model_release(a->s, ma);
    store_model_release(b->s, m);
}

/* One group of delta writes on the given leaves; returns its outcome seq. */
static void group_deltas(ds_store *s, const ds_cell *cells, int n, int64_t delta)
{
    ds_error e;
    ck_assert(store_txn_begin(s, &e) == 0);
    for (int i = 0; i < n; i++) {
        ds_write w = {.measure = 0, .cell = cells[i], .form = SPREAD_DELTA, .amount = delta};
        ds_command c = {
            .kind = COMMAND_WRITE, .user = "t", .if_seq = -1, .nwrites = 1, .writes = &w};
        ds_outcome o;
        ck_assert_msg(store_apply(s, DEMO_MODEL, &c, &o, &e) == 0, "%s", e.message);
        outcome_clear(&o);
    }
    ck_assert_msg(store_txn_commit(s, &e) == 0, "%s", e.message);
}

/* A checkpoint that vacuums deleted facts renumbers the rows after them:
 * the fast path's rowids go stale, the flush notices, writes the rows by
 * their cells and learns every rowid again; values stay right. */
START_TEST(rows_renumbered_by_a_checkpoint)
{
    side a;
    open_side_facts(&a, 400000); /* several row groups */
    const ds_model *m = store_model_acquire(a.s, DEMO_MODEL, strlen(DEMO_MODEL));
    int pk = model_find_dim(m, "product", 7);
    /* leaves of the last supplier (their rows come after the deleted ones) */
    const ds_dim *pd = &m->dims[pk];
    int32_t sup_first = pd->kids[pd->kid_start[pd->root]];
    int32_t sup_last = pd->kids[pd->kid_start[pd->root + 1] - 1];
    int32_t *leaves;
    size_t nl = model_leaves(pd, sup_last, &leaves);
    ck_assert_uint_gt(nl, 8);
    ds_cell cells[8];
    ds_i128 before[8];
    for (int i = 0; i < 8; i++) {
        for (int k = 0; k < m->ndims; k++) {
            int32_t *l;
            size_t n = model_leaves(&m->dims[k], m->dims[k].root, &l);
            cells[i].m[k] = l[(size_t)i % n];
            free(l);
        }
        cells[i].m[pk] = leaves[i];
        int64_t seq;
        ds_error e;
        ck_assert(store_read_cell(a.r, m, &cells[i], 0, &before[i], &seq, &e) == 0);
    }
    free(leaves);
    store_model_release(a.s, m);
    group_deltas(a.s, cells, 8, 1); /* builds the index */
    /* delete the first supplier with its facts, rebuild the index */
    ds_member_op op = {
        .kind = MEMBER_DELETE, .dim = pk, .member = sup_first, .force = true, .facts_to = -1};
    ds_command del = {.kind = COMMAND_MEMBER, .user = "t", .if_seq = -1, .member = op};
    ds_outcome o;
    ds_error e;
    ck_assert_msg(store_apply(a.s, DEMO_MODEL, &del, &o, &e) == 0, "%s", e.message);
    outcome_clear(&o);
    group_deltas(a.s, cells, 8, 10); /* index rebuilt with the current rowids */
    /* DuckDB checkpoints by itself at a commit past its threshold; here by hand */
    ck_assert(store__exec(a.s->con, "CHECKPOINT", &e) == 0);
    group_deltas(a.s, cells, 8, 100);
    group_deltas(a.s, cells, 8, 1000); /* with the rowids learnt again */
    m = store_model_acquire(a.s, DEMO_MODEL, strlen(DEMO_MODEL));
    for (int i = 0; i < 8; i++) {
        ds_i128 v;
        int64_t seq;
        ck_assert(store_read_cell(a.r, m, &cells[i], 0, &v, &seq, &e) == 0);
        ck_assert_msg(v == before[i] + 1111, "cell %d: %lld, expected %lld", i, (long long)v,
                      (long long)(before[i] + 1111));
    }
    store_model_release(a.s, m);
    close_side(&a);
}
END_TEST

START_TEST(fast_path_matches_plain_path)
{
    side fast, plain;
    open_side(&fast);
    open_side(&plain);
    uint64_t rng = 99;
    ds_error e1, e2;
    for (int group = 0; group < 40; group++) {
        ck_assert(store_txn_begin(fast.s, &e1) == 0);
        int size = 1 + (int)(ds_mix64((uint64_t)group) % 25);
        for (int c = 0; c < size; c++) {
            const ds_model *m = store_model_acquire(plain.s, DEMO_MODEL, 5);
            ds_command cmd;
            ds_write w[3];
            ds_member_op op;
            char key[32];
            random_command(m, &rng, &cmd, w, &op, key);
            cmd.writes = w;
            ds_outcome a, b;
            int ra = store_apply(fast.s, DEMO_MODEL, &cmd, &a, &e1);
            int rb = store_apply(plain.s, DEMO_MODEL, &cmd, &b, &e2);
            ck_assert_msg(ra == rb, "group %d command %d: fast %d (%s) plain %d (%s)", group, c, ra,
                          ra ? e1.message : "", rb, rb ? e2.message : "");
            if (ra == 0)
                same_outcome(&a, &b);
            outcome_clear(&a);
            outcome_clear(&b);
            store_model_release(plain.s, m);
        }
        ck_assert_msg(store_txn_commit(fast.s, &e1) == 0, "%s", e1.message);
        same_facts(&fast, &plain);
        ck_assert_int_eq(store_model_seq(fast.s, DEMO_MODEL), store_model_seq(plain.s, DEMO_MODEL));
        if (group % 10 == 9) { /* a rolled back group leaves no trace */
            ck_assert(store_txn_begin(fast.s, &e1) == 0);
            const ds_model *m = store_model_acquire(plain.s, DEMO_MODEL, 5);
            ds_command cmd;
            ds_write w[3];
            ds_member_op op;
            char key[32];
            uint64_t r2 = rng;
            random_command(m, &r2, &cmd, w, &op, key);
            cmd.writes = w;
            ds_outcome a;
            store_apply(fast.s, DEMO_MODEL, &cmd, &a, &e1);
            outcome_clear(&a);
            store_txn_rollback(fast.s);
            store_model_release(plain.s, m);
        }
    }
    same_facts(&fast, &plain);
    close_side(&fast);
    close_side(&plain);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store_fast");
    TCase *tc = tcase_create("fast");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, fast_path_matches_plain_path);
    tcase_add_test(tc, rows_renumbered_by_a_checkpoint);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
