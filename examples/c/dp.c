/* CPU-bound benchmark: dynamic programming. Builds two pseudo-random strings of
 * length N (argv[1], default 25000) over a 4-letter alphabet with a fixed LCG, and
 * prints the length of their longest common subsequence (O(N^2) time, O(N) memory). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint32_t seed = 2024;
static char next_letter(void) {
    seed = seed * 1664525u + 1013904223u;
    return "ACGT"[seed >> 30];
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 25000;
    if (n < 1) { printf("0\n"); return 0; }
    char *x = malloc((size_t)n), *y = malloc((size_t)n);
    int *row = calloc((size_t)n + 1, sizeof *row); /* row[j] = LCS(x[0..i), y[0..j)) */
    if (!x || !y || !row) { fputs("dp: out of memory\n", stderr); return 2; }
    for (long i = 0; i < n; i++) x[i] = next_letter();
    for (long i = 0; i < n; i++) y[i] = next_letter();
    for (long i = 0; i < n; i++) {
        int diag = 0; /* LCS(x[0..i), y[0..j)) before row[j] is overwritten */
        for (long j = 1; j <= n; j++) {
            int up = row[j];
            int best = x[i] == y[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
            row[j] = best;
        }
    }
    printf("%d\n", row[n]);
    return 0;
}
