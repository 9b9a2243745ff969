/* What a cache line costs once its page is out of the TLB's reach, on this machine.
 *
 * A dependent pointer chase over N cache lines in random order, laid out two ways in the
 * same 2 MiB-aligned memory with MADV_HUGEPAGE:
 *   packed  - the N lines side by side (N / 64 pages of 4 KiB);
 *   spread  - one line per 4 KiB page (N pages), the line's offset in its page varying so
 *             every cache set is used.
 * Both touch the same N x 64 bytes, so the caches see the same working set; only the number
 * of distinct 4 KiB pages differs. With the memory in 2 MiB pages the spread layout spans
 * N / 512 huge pages and should cost what packed costs until N x 64 bytes leave the caches.
 * If it costs far more even though the process holds the memory in huge pages
 * (AnonHugePages, printed), the translations are 4 KiB ones after all: under a hypervisor
 * that backs the guest with 4 KiB pages, a guest huge page does not widen the TLB's reach.
 *
 * Then memory read the way a worker reads its SAs: bursts of 32 independent items at random
 * places in 4 GiB (beyond the cache and the TLB's reach, like the slab of 4 Mi SAs),
 * each item K adjacent lines, all of a burst's lines prefetched before any is read. What an
 * item costs when the misses overlap is the floor for a packet's SA lines.
 *
 * Usage: tlbreach [LINES...]   (default 1024 4096 16384 65536)
 * Output, one line per N: "lines N packed_ns X spread_ns Y", thread CPU time per load;
 * then "burst32 lines_per_item K ns_per_item X" for K = 1 and 6, and "table_then_sa
 * ns_per_item X" for the SA path's own shape (a table line, then six lines it points to);
 * last "table_then_sa_small_pages ns_per_item X", the same shape in 4 GiB the kernel is told
 * to keep in 4 KiB pages (MADV_NOHUGEPAGE): what the path would pay per packet if its table
 * and slab did not get huge pages on this machine.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static long anon_huge_kib(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static char *line_addr(char *base, size_t i, int spread) {
    return spread ? base + i * 4096 + 64 * (i % 64) : base + i * 64;
}

/* ns per dependent load over `n` lines laid out `spread` or packed. */
static double chase(char *base, size_t n, int spread, size_t *order) {
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = next_random() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t k = 0; k < n; k++)
        *(char **)line_addr(base, order[k], spread) = line_addr(base, order[(k + 1) % n], spread);
    char *p = line_addr(base, order[0], spread);
    for (size_t i = 0; i < 2 * n; i++) /* warm: caches and TLB as far as they reach */
        p = *(char **)p;
    size_t loads = 4000000;
    double t0 = cpu_seconds();
    for (size_t i = 0; i < loads; i++)
        p = *(char **)p;
    double t1 = cpu_seconds();
    if (p == NULL) /* keeps the chase */
        puts("");
    return (t1 - t0) * 1e9 / (double)loads;
}

/* ns per item of bursts of 32 random items of `k` adjacent lines over `len` bytes: every
 * line of a burst prefetched, then every line read. */
static double burst(char *base, size_t len, int k) {
    enum { ITEMS = 32 };
    size_t slots = len / 64 - (size_t)k, at[ITEMS], rounds = 100000;
    uint64_t sum = 0;
    double t0 = cpu_seconds();
    for (size_t r = 0; r < rounds; r++) {
        for (int i = 0; i < ITEMS; i++) {
            at[i] = next_random() % slots;
            for (int l = 0; l < k; l++)
                __builtin_prefetch(base + (at[i] + (size_t)l) * 64, 1, 3);
        }
        for (int i = 0; i < ITEMS; i++)
            for (int l = 0; l < k; l++)
                sum += *(volatile uint64_t *)(base + (at[i] + (size_t)l) * 64);
    }
    double t1 = cpu_seconds();
    if (sum == 1) /* keeps the reads */
        puts("");
    return (t1 - t0) * 1e9 / (double)(rounds * ITEMS);
}

/* The SA path's shape: bursts of 32, each item one line of a table (the first `table`
 * bytes) whose content leads to six adjacent lines in the rest (the slab); the burst's
 * table lines prefetched, then each read and its six lines prefetched, then those read;
 * each burst's addresses depend on the reads of the one before. ns per item. */
static double table_then_sa(char *base, size_t table, size_t len) {
    enum { ITEMS = 32, LINES = 6 };
    size_t tslots = table / 64, sslots = (len - table) / 64 - LINES, at[ITEMS], sa[ITEMS];
    size_t rounds = 100000;
    uint64_t sum = 0, carry = 0;
    char *slab = base + table;
    double t0 = cpu_seconds();
    for (size_t r = 0; r < rounds; r++) {
        for (int i = 0; i < ITEMS; i++) {
            at[i] = (next_random() + carry) % tslots;
            __builtin_prefetch(base + at[i] * 64, 0, 3);
        }
        for (int i = 0; i < ITEMS; i++) {
            uint64_t v = *(volatile uint64_t *)(base + at[i] * 64);
            sa[i] = (next_random() + (v >> 63)) % sslots;
            for (int l = 0; l < LINES; l++)
                __builtin_prefetch(slab + (sa[i] + (size_t)l) * 64, 1, 3);
        }
        for (int i = 0; i < ITEMS; i++)
            for (int l = 0; l < LINES; l++)
                sum += *(volatile uint64_t *)(slab + (sa[i] + (size_t)l) * 64);
        carry = (sum >> 62) & 1;
    }
    double t1 = cpu_seconds();
    if (sum == 1) /* keeps the reads */
        puts("");
    return (t1 - t0) * 1e9 / (double)(rounds * ITEMS);
}

int main(int argc, char **argv) {
    size_t defaults[] = {1024, 4096, 16384, 65536};
    size_t count = argc > 1 ? (size_t)(argc - 1) : sizeof defaults / sizeof defaults[0];
    size_t most = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = argc > 1 ? strtoul(argv[i + 1], NULL, 0) : defaults[i];
        if (n > most)
            most = n;
    }
    const size_t huge = 2u << 20;
    size_t len = (most * 4096 + 4096 + huge - 1) / huge * huge;
    char *raw = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    size_t *order = malloc(most * sizeof *order);
    if (raw == MAP_FAILED || !order) {
        perror("tlbreach");
        return 1;
    }
    char *base = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    madvise(base, len, MADV_HUGEPAGE);
    memset(base, 1, len);
    printf("anon_huge_kib %ld of %zu\n", anon_huge_kib(), len >> 10);
    for (size_t i = 0; i < count; i++) {
        size_t n = argc > 1 ? strtoul(argv[i + 1], NULL, 0) : defaults[i];
        double packed = chase(base, n, 0, order);
        double spread = chase(base, n, 1, order);
        printf("lines %zu packed_ns %.1f spread_ns %.1f\n", n, packed, spread);
    }
    const size_t slab = (size_t)4 << 30;
    char *big = mmap(NULL, slab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED) {
        perror("tlbreach: 4 GiB for the bursts");
        return 1;
    }
    madvise(big, slab, MADV_HUGEPAGE);
    memset(big, 1, slab);
    burst(big, slab, 1); /* untimed: the first pass after the memset reads slow on a VM */
    for (int k = 1; k <= 6; k += 5)
        printf("burst32 lines_per_item %d ns_per_item %.1f\n", k, burst(big, slab, k));
    printf("table_then_sa ns_per_item %.1f\n", table_then_sa(big, (size_t)256 << 20, slab));
    munmap(big, slab);
    char *small = mmap(NULL, slab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (small == MAP_FAILED) {
        perror("tlbreach: 4 GiB in small pages");
        return 1;
    }
    madvise(small, slab, MADV_NOHUGEPAGE);
    memset(small, 1, slab);
    table_then_sa(small, (size_t)256 << 20, slab); /* untimed, as above */
    printf("table_then_sa_small_pages ns_per_item %.1f\n",
           table_then_sa(small, (size_t)256 << 20, slab));
    return 0;
}
