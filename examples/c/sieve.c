/* CPU-bound benchmark: counts the primes up to N (argv[1], default 150000000) with a
 * bit-packed sieve of Eratosthenes, and prints the count. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 150000000;
    if (n < 2) { printf("0\n"); return 0; }
    /* bit i set = i is composite; 32 numbers per word */
    size_t words = (size_t)n / 32 + 1;
    uint32_t *composite = calloc(words, sizeof *composite);
    if (!composite) { fputs("sieve: out of memory\n", stderr); return 2; }
    long count = 0;
    for (long i = 2; i <= n; i++) {
        if (composite[i >> 5] >> (i & 31) & 1) continue;
        count++;
        if (i > n / i) continue; /* i*i would pass n (and overflow a 32-bit long) */
        for (long j = i * i; j <= n; j += i) composite[j >> 5] |= 1u << (j & 31);
    }
    printf("%ld\n", count);
    return 0;
}
