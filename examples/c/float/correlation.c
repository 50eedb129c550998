/* Float benchmark: PolyBench/C 4.2 correlation, written out here without the
 * PolyBench headers. data is n x m doubles: m = argv[1] attributes (default 800),
 * n = argv[2] observations (default m * 7/6, PolyBench's LARGE shape 1200 x 1400).
 * The kernel is PolyBench's: the column means, the standard deviations (sqrt,
 * then PolyBench's guard: a stddev <= eps = 0.1 becomes 1.0), the columns centred
 * and reduced (a division by sqrt(n)*stddev per element), then the m x m
 * correlation matrix. Prints the sum of the matrix with "%.6f".
 *
 * Initialisation: PolyBench's data[i][j] = (i*j)/m + i makes every column a
 * multiple of i, so the matrix is all ones and its sum is m*m whatever the
 * rounding: a checksum that checks nothing. By default this program therefore
 * uses data[i][j] = ((i*(j+1)) % (m+7)) / (m+7), with every 16th column constant
 * (stddev 0: the eps guard's 1.0 branch is taken); argv[3] = "pb" selects
 * PolyBench's own initialisation. Only +, -, *, / and sqrt (all correctly
 * rounded, natively and in WebAssembly), in a fixed order and without FMA
 * contraction on either side, so the checksum is the same natively and in
 * WebAssembly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void init(long m, long n, int polybench, double *float_n, double *data) {
    *float_n = (double)n;
    for (long i = 0; i < n; i++)
        for (long j = 0; j < m; j++)
            data[i * m + j] = polybench ? (double)(i * j) / m + i
                              : j % 16 == 15 ? 0.5
                                             : (double)((i * (j + 1)) % (m + 7)) / (m + 7);
}

__attribute__((noinline)) static void kernel_correlation(long m, long n, double float_n,
                                                         double *restrict data,
                                                         double *restrict corr,
                                                         double *restrict mean,
                                                         double *restrict stddev) {
    const double eps = 0.1;
    for (long j = 0; j < m; j++) {
        mean[j] = 0.0;
        for (long i = 0; i < n; i++) mean[j] += data[i * m + j];
        mean[j] /= float_n;
    }
    for (long j = 0; j < m; j++) {
        stddev[j] = 0.0;
        for (long i = 0; i < n; i++)
            stddev[j] += (data[i * m + j] - mean[j]) * (data[i * m + j] - mean[j]);
        stddev[j] /= float_n;
        stddev[j] = sqrt(stddev[j]);
        /* PolyBench: the usual inelegant guard against a zero divide below. */
        stddev[j] = stddev[j] <= eps ? 1.0 : stddev[j];
    }
    /* Centre and reduce the column vectors. */
    for (long i = 0; i < n; i++)
        for (long j = 0; j < m; j++) {
            data[i * m + j] -= mean[j];
            data[i * m + j] /= sqrt(float_n) * stddev[j];
        }
    /* The m x m correlation matrix. */
    for (long i = 0; i < m - 1; i++) {
        corr[i * m + i] = 1.0;
        for (long j = i + 1; j < m; j++) {
            corr[i * m + j] = 0.0;
            for (long k = 0; k < n; k++) corr[i * m + j] += data[k * m + i] * data[k * m + j];
            corr[j * m + i] = corr[i * m + j];
        }
    }
    corr[(m - 1) * m + (m - 1)] = 1.0;
}

int main(int argc, char **argv) {
    long m = argc > 1 ? atol(argv[1]) : 800;
    long n = argc > 2 ? atol(argv[2]) : m * 7 / 6;
    if (m < 1 || n < 1) { printf("%.6f\n", 0.0); return 0; }
    double *data = malloc((size_t)n * (size_t)m * sizeof *data);
    double *corr = malloc((size_t)m * (size_t)m * sizeof *corr);
    double *mean = malloc((size_t)m * sizeof *mean), *stddev = malloc((size_t)m * sizeof *stddev);
    if (!data || !corr || !mean || !stddev) { fputs("correlation: out of memory\n", stderr); return 2; }
    double float_n;
    init(m, n, argc > 3 && strcmp(argv[3], "pb") == 0, &float_n, data);
    kernel_correlation(m, n, float_n, data, corr, mean, stddev);
    double sum = 0;
    for (size_t i = 0; i < (size_t)m * (size_t)m; i++) sum += corr[i];
    printf("%.6f\n", sum);
    free(data); free(corr); free(mean); free(stddev);
    return 0;
}
