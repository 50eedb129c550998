// Sleeps the ways C programs do (sleep, usleep, nanosleep: all poll_oneoff in
// wasi-libc) and reports how much virtual time passed: none, because plasm's
// clocks stand still so that every executor computes the same output.
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    struct timespec before, after, pause = {0, 250000000};
    clock_gettime(CLOCK_MONOTONIC, &before);
    if (sleep(1) != 0 || usleep(1000) != 0 || nanosleep(&pause, NULL) != 0) {
        perror("sleep");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &after);
    long long ns = (after.tv_sec - before.tv_sec) * 1000000000LL + (after.tv_nsec - before.tv_nsec);
    printf("slept; %lld ns of virtual time passed\n", ns);
    return 0;
}
