/* Prints two clock readings and 8 random bytes: identical across runs only under a virtual clock
   and a seeded random source. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    unsigned char r[8];
    if (getentropy(r, sizeof r) != 0) return 2;
    printf("%lld.%09ld %lld.%09ld ", (long long)a.tv_sec, a.tv_nsec, (long long)b.tv_sec, b.tv_nsec);
    for (int i = 0; i < 8; i++) printf("%02x", r[i]);
    printf("\n");
    return 0;
}
