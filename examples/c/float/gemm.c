/* Float benchmark: PolyBench/C 4.2 gemm, written out here without the PolyBench
 * headers. C = alpha*A*B + beta*C on n x n doubles (ni = nj = nk = n = argv[1],
 * default 1000), alpha = 1.5, beta = 1.2, PolyBench's initialisation:
 *   C[i][j] = ((i*j+1) % n) / n,  A[i][k] = (i*(k+1) % n) / n,  B[k][j] = (k*(j+2) % n) / n.
 * The kernel loop order is PolyBench's (i, then j to scale by beta, then k, j), so
 * every f64 goes through memory (f64.load/f64.store) in the inner loop. Prints the
 * sum of C with "%.6f". Only +, * and / on doubles (no libm), in a fixed order and
 * without FMA contraction on either side, so the checksum is the same natively and
 * in WebAssembly. */
#include <stdio.h>
#include <stdlib.h>

static void init(long n, double *alpha, double *beta, double *C, double *A, double *B) {
    *alpha = 1.5;
    *beta = 1.2;
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++) C[i * n + j] = (double)((i * j + 1) % n) / n;
    for (long i = 0; i < n; i++)
        for (long k = 0; k < n; k++) A[i * n + k] = (double)(i * (k + 1) % n) / n;
    for (long k = 0; k < n; k++)
        for (long j = 0; j < n; j++) B[k * n + j] = (double)(k * (j + 2) % n) / n;
}

/* Out of line so the compiler cannot fold the initialisation into the kernel. */
__attribute__((noinline)) static void kernel_gemm(long n, double alpha, double beta,
                                                  double *restrict C, const double *restrict A,
                                                  const double *restrict B) {
    for (long i = 0; i < n; i++) {
        for (long j = 0; j < n; j++) C[i * n + j] *= beta;
        for (long k = 0; k < n; k++)
            for (long j = 0; j < n; j++) C[i * n + j] += alpha * A[i * n + k] * B[k * n + j];
    }
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    if (n < 1) { printf("%.6f\n", 0.0); return 0; }
    size_t cells = (size_t)n * (size_t)n;
    double *A = malloc(cells * sizeof *A), *B = malloc(cells * sizeof *B);
    double *C = malloc(cells * sizeof *C);
    if (!A || !B || !C) { fputs("gemm: out of memory\n", stderr); return 2; }
    double alpha, beta;
    init(n, &alpha, &beta, C, A, B);
    kernel_gemm(n, alpha, beta, C, A, B);
    double sum = 0;
    for (size_t i = 0; i < cells; i++) sum += C[i];
    printf("%.6f\n", sum);
    free(A); free(B); free(C);
    return 0;
}
