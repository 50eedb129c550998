/* CPU-bound benchmark: counts primes below N (argv[1], default 2000000) with a
 * sieve of Eratosthenes, and prints the count. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    if (n < 2) { printf("0\n"); return 0; }
    unsigned char *composite = calloc((size_t)n, 1);
    if (!composite) { fputs("primes: out of memory\n", stderr); return 2; }
    long count = 0;
    for (long i = 2; i < n; i++) {
        if (composite[i]) continue;
        count++;
        if (i > n / i) continue; /* i*i would pass n (and overflow a 32-bit long) */
        for (long j = i * i; j < n; j += i) composite[j] = 1;
    }
    printf("%ld\n", count);
    return 0;
}
