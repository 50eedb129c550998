/* CPU-bound benchmark: multiplies two n x n double matrices (n = argv[1], default 1200)
 * filled from a fixed LCG, and prints the sum of the product's entries with "%.6f".
 * The loop order is fixed and every entry is a small multiple of 1/1024, so the
 * printed checksum is the same natively and in WebAssembly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint32_t seed = 12345;
static double next_value(void) { /* in [-1, 1), a multiple of 1/1024 */
    seed = seed * 1103515245u + 12345u;
    return (double)((int)((seed >> 16) & 2047) - 1024) / 1024.0;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1200;
    if (n < 1) { printf("%.6f\n", 0.0); return 0; }
    size_t cells = (size_t)n * (size_t)n;
    double *a = malloc(cells * sizeof *a), *b = malloc(cells * sizeof *b);
    double *c = calloc(cells, sizeof *c);
    if (!a || !b || !c) { fputs("matmul: out of memory\n", stderr); return 2; }
    for (size_t i = 0; i < cells; i++) a[i] = next_value();
    for (size_t i = 0; i < cells; i++) b[i] = next_value();
    for (long i = 0; i < n; i++)
        for (long k = 0; k < n; k++) {
            double aik = a[i * n + k];
            for (long j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j];
        }
    double sum = 0;
    for (size_t i = 0; i < cells; i++) sum += c[i];
    printf("%.6f\n", sum);
    return 0;
}
