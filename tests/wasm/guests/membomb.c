/* Allocates 1 MiB blocks until malloc fails; prints how many it got. Each block is linked into a
   list and written, so the compiler cannot elide the allocations. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct block { struct block *next; char fill[(1 << 20) - sizeof(struct block *)]; };

int main(void) {
    struct block *head = NULL;
    int blocks = 0;
    while (blocks < 100000) {
        struct block *b = malloc(sizeof *b);
        if (!b) break;
        memset(b->fill, blocks & 0xff, sizeof b->fill);
        b->next = head;
        head = b;
        blocks++;
    }
    unsigned sum = 0;
    for (struct block *b = head; b; b = b->next) sum += (unsigned char)b->fill[17];
    printf("blocks=%d sum=%u\n", blocks, sum);
    return 0;
}
