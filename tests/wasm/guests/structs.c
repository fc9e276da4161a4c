/* A reactor guest compiled against the header remora generates (abi.h, made at test time). */
#include <stdlib.h>

#include "abi.h"

uint32_t guest_alloc(uint32_t size) { return (uint32_t)(uintptr_t)malloc(size); }

double sum_points(struct Point *points, uint32_t n) {
    double total = 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct Point *p = &points[i];
        total += p->id + p->pos.x + p->pos.y + p->weight + (double)p->big;
        for (int k = 0; k < 3; k++) total += p->flags[k];
        if (p->active) total += 1000;
        if (p->next) total += p->next->id;
    }
    return total;
}

uint32_t make_point(uint8_t id) {
    struct Point *p = calloc(1, sizeof *p);
    p->id = id;
    p->pos.x = 1.5f;
    p->pos.y = -2.25f;
    p->weight = 0.125;
    p->flags[0] = 7;
    p->flags[1] = 8;
    p->flags[2] = 9;
    p->active = true;
    p->big = -5000000000LL;
    p->next = p;
    return (uint32_t)(uintptr_t)p;
}

int32_t scale_all(struct Point *points, uint32_t n, double factor) {
    int32_t acc = 0;
    for (uint32_t i = 0; i < n; i++) acc += host_scale(&points[i], factor);
    return acc;
}
