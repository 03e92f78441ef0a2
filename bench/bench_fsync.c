/* bench_fsync: the disk's fsync latency where the data lives, the floor
 * under every durable write (the Redis append-only file and DuckDB's
 * write-ahead log each wait for one per batch). Appends 4 KiB and calls
 * fdatasync() n times in a temporary file under DIR:
 *   e2e fsync: p50_ms=.. p99_ms=.. n=..
 * Usage: bench_fsync DIR [n] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_fsync DIR [n]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 500;
    if (n < 10)
        n = 10;
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_fsync.XXXXXX", argv[1]);
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("bench_fsync: mkstemp");
        return 1;
    }
    unlink(path);
    char block[4096];
    memset(block, 'x', sizeof block);
    double *t = xmalloc_array((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        double t0 = ds_now_ms();
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block || fdatasync(fd) != 0) {
            perror("bench_fsync: write");
            return 1;
        }
        t[i] = ds_now_ms() - t0;
    }
    close(fd);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    printf("e2e fsync: p50_ms=%.3f p99_ms=%.3f n=%d\n", t[n / 2], t[(n * 99) / 100], n);
    free(t);
    return 0;
}
