/* dbquery: opens a duckspread database file read-only and prints the rows
 * of one SQL query as JSON lines, every value as a string or null:
 *   dbquery FILE SQL [PARAM...]   ($1, $2, ... bound as text)
 * The black-box tests use it to check the file after the server stopped. */
#include <duckdb.h>
#include <stdio.h>
#include <stdlib.h>

#include "json.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dbquery FILE SQL [PARAM...]\n");
        return 2;
    }
    duckdb_config cfg;
    duckdb_create_config(&cfg);
    duckdb_set_config(cfg, "access_mode", "READ_ONLY");
    duckdb_database db;
    duckdb_connection con;
    char *err = NULL;
    if (duckdb_open_ext(argv[1], &db, cfg, &err) == DuckDBError) {
        fprintf(stderr, "dbquery: cannot open %s: %s\n", argv[1], err ? err : "?");
        return 1;
    }
    duckdb_destroy_config(&cfg);
    duckdb_connect(db, &con);
    duckdb_prepared_statement st;
    if (duckdb_prepare(con, argv[2], &st) == DuckDBError) {
        fprintf(stderr, "dbquery: %s\n", duckdb_prepare_error(st));
        return 1;
    }
    for (int i = 3; i < argc; i++)
        duckdb_bind_varchar(st, (idx_t)(i - 2), argv[i]);
    duckdb_result res;
    if (duckdb_execute_prepared(st, &res) == DuckDBError) {
        fprintf(stderr, "dbquery: %s\n", duckdb_result_error(&res));
        return 1;
    }
    idx_t ncols = duckdb_column_count(&res), nrows = duckdb_row_count(&res);
    ds_buf b;
    ds_buf_init(&b, (size_t)1 << 30);
    for (idx_t r = 0; r < nrows; r++) {
        json_w w;
        ds_buf_reset(&b);
        jw_init(&w, &b);
        jw_obj(&w);
        for (idx_t c = 0; c < ncols; c++) {
            jw_key(&w, duckdb_column_name(&res, c));
            if (duckdb_value_is_null(&res, c, r)) {
                jw_null(&w);
                continue;
            }
            char *v = duckdb_value_varchar(&res, c, r);
            jw_str(&w, v);
            duckdb_free(v);
        }
        jw_obj_end(&w);
        printf("%s\n", b.data);
    }
    ds_buf_free(&b);
    duckdb_destroy_result(&res);
    duckdb_destroy_prepare(&st);
    duckdb_disconnect(&con);
    duckdb_close(&db);
    return 0;
}
