/* bench_lib.h: helpers shared by the bench programs (bench/lib.c). */
#ifndef DS_BENCH_LIB_H
#define DS_BENCH_LIB_H

#include <stddef.h>

/* The median of v[0..n) (sorts v). */
double bench_median(double *v, int n);
/* The value at fraction p (0..1) of v[0..n) (sorts v). */
double bench_percentile(double *v, size_t n, double p);
/* This process's resident memory in MiB (from /proc/self/statm). */
double bench_rss_mb(void);

#endif
