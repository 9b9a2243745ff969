/*
 * Burst crypto baseline for bench/run.sh's `crypto` section: intel-ipsec-mb (libIPSec_MB,
 * the library behind DPDK's crypto_aesni_mb PMD) driven the way dpdk-test-crypto-perf's
 * throughput test drives that PMD: bursts of 32 operations on one core, each operation
 * ciphering and authenticating one buffer of N bytes (cipher-then-auth for AES-128-CBC +
 * HMAC-SHA1 with a 12-byte digest; AES-128-GCM with 8 bytes of AAD and a 16-byte tag),
 * with the best architecture the library detects, each case through the library's fastest
 * path for it, without the PMD's mbuf and crypto-op layer, so the figure is what the PMD
 * could reach at most on this core:
 *  - CBC + HMAC-SHA1 through the burst API (IMB_GET_NEXT_BURST / IMB_SUBMIT_BURST_NOCHECK;
 *    the first burst of each case goes through the checked IMB_SUBMIT_BURST, which fails on
 *    a malformed job). The checked submit costs about 25 TSC ticks an operation more.
 *  - AES-GCM through the direct GCM API (IMB_AES128_GCM_ENC / _DEC, one call a buffer),
 *    0.91-0.93x the time of the job API without checks at 1408 B and 0.66-0.74x at 64 B.
 *    The PMD (DPDK 22.11) takes the job API: IMB_SUBMIT_JOB_NOCHECK, one job at a time.
 *    At start, the direct API's ciphertext and tag are checked against the job API's.
 *
 * Every burst works on the same 32 buffers (warm in L2), as the PMD's mbufs are when its
 * mempool cache hands the same few back. IPSECMB_POOL=N cycles through N bursts' buffers
 * instead (each burst on the next 32), so that with N large (512: 25 MB) the buffers come
 * from L3 or DRAM, for comparisons with a harness whose packets are out of cache.
 *
 * Output, one line per case:
 *   ipsecmb <alg> <dir> <size> <ns_per_op> <gbps> <arch>
 * Usage: [IPSECMB_POOL=N] ipsecmb [seconds per case, default 1]
 */
#include <intel-ipsec-mb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BURST 32
#define MAX_SIZE 2048

static double now_s(void)
{
        struct timespec ts;
        /* Thread CPU time: on a shared box the process is descheduled, which wall time counts. */
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint8_t bufs[BURST][MAX_SIZE + 64] __attribute__((aligned(64)));
static uint8_t tags[BURST][16];

/* IPSECMB_POOL: the buffers of `pool_bursts` bursts, `burst_no` the current one. */
static uint8_t *pool;
static size_t pool_bursts = 1, burst_no;

/* Buffer i of the current burst: bufs[i], or with a pool the current burst's i-th. */
static uint8_t *buf(int i)
{
        if (pool == NULL)
                return bufs[i];
        return pool + ((burst_no % pool_bursts) * BURST + (size_t)i) * sizeof(bufs[0]);
}

struct keys {
        DECLARE_ALIGNED(uint32_t enc[4 * 15], 16);
        DECLARE_ALIGNED(uint32_t dec[4 * 15], 16);
        DECLARE_ALIGNED(uint8_t ipad[IMB_SHA1_DIGEST_SIZE_IN_BYTES], 16);
        DECLARE_ALIGNED(uint8_t opad[IMB_SHA1_DIGEST_SIZE_IN_BYTES], 16);
        struct gcm_key_data gcm __attribute__((aligned(64)));
};

static void hmac_pads(IMB_MGR *m, const uint8_t *key, size_t len, struct keys *k)
{
        uint8_t block[IMB_SHA1_BLOCK_SIZE];
        memset(block, 0x36, sizeof(block));
        for (size_t i = 0; i < len; i++)
                block[i] ^= key[i];
        IMB_SHA1_ONE_BLOCK(m, block, k->ipad);
        memset(block, 0x5c, sizeof(block));
        for (size_t i = 0; i < len; i++)
                block[i] ^= key[i];
        IMB_SHA1_ONE_BLOCK(m, block, k->opad);
}

/* One CBC + HMAC-SHA1 job (ESP: encrypt then MAC; inbound, MAC then decrypt). */
static void fill(IMB_JOB *j, int enc, size_t size, struct keys *k, int i, const uint8_t *iv)
{
        j->src = buf(i);
        j->dst = buf(i);
        j->cipher_start_src_offset_in_bytes = 0;
        j->msg_len_to_cipher_in_bytes = size;
        j->hash_start_src_offset_in_bytes = 0;
        j->msg_len_to_hash_in_bytes = size;
        j->iv = iv;
        j->key_len_in_bytes = IMB_KEY_128_BYTES;
        j->cipher_direction = enc ? IMB_DIR_ENCRYPT : IMB_DIR_DECRYPT;
        j->auth_tag_output = tags[i];
        j->cipher_mode = IMB_CIPHER_CBC;
        j->hash_alg = IMB_AUTH_HMAC_SHA_1;
        j->enc_keys = k->enc;
        j->dec_keys = k->dec;
        j->iv_len_in_bytes = 16;
        j->u.HMAC._hashed_auth_key_xor_ipad = k->ipad;
        j->u.HMAC._hashed_auth_key_xor_opad = k->opad;
        j->auth_tag_output_len_in_bytes = 12;
        j->chain_order = enc ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
}

/* One burst of AES-GCM through the direct API: each buffer in place, its tag into tags[i]. */
static void gcm_burst(IMB_MGR *m, int enc, size_t size, const struct keys *k, const uint8_t *iv,
                      const uint8_t *aad)
{
        struct gcm_context_data ctx;
        for (int i = 0; i < BURST; i++) {
                if (enc)
                        IMB_AES128_GCM_ENC(m, &k->gcm, &ctx, buf(i), buf(i), size, iv, aad, 8,
                                           tags[i], 16);
                else
                        IMB_AES128_GCM_DEC(m, &k->gcm, &ctx, buf(i), buf(i), size, iv, aad, 8,
                                           tags[i], 16);
        }
}

/* The direct GCM API gives the job API's ciphertext and tag (both directions), so its rows
 * time the same operation. Returns 0 if they match. */
static int gcm_paths_agree(IMB_MGR *m, struct keys *k)
{
        static const uint8_t iv[12] = { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2 };
        static const uint8_t aad[8] = { 0, 0, 1, 0, 0, 0, 0, 7 };
        static uint8_t a[1408], b[1408];
        uint8_t ta[16], tb[16];
        for (int enc = 1; enc >= 0; enc--) {
                for (size_t i = 0; i < sizeof(a); i++)
                        a[i] = b[i] = (uint8_t)(i * 7 + 3);
                IMB_JOB *j = IMB_GET_NEXT_JOB(m);
                memset(j, 0, sizeof(*j));
                j->src = a;
                j->dst = a;
                j->msg_len_to_cipher_in_bytes = sizeof(a);
                j->msg_len_to_hash_in_bytes = sizeof(a);
                j->iv = iv;
                j->iv_len_in_bytes = 12;
                j->key_len_in_bytes = IMB_KEY_128_BYTES;
                j->cipher_direction = enc ? IMB_DIR_ENCRYPT : IMB_DIR_DECRYPT;
                j->chain_order = enc ? IMB_ORDER_CIPHER_HASH : IMB_ORDER_HASH_CIPHER;
                j->cipher_mode = IMB_CIPHER_GCM;
                j->hash_alg = IMB_AUTH_AES_GMAC;
                j->enc_keys = &k->gcm;
                j->dec_keys = &k->gcm;
                j->u.GCM.aad = aad;
                j->u.GCM.aad_len_in_bytes = 8;
                j->auth_tag_output = ta;
                j->auth_tag_output_len_in_bytes = 16;
                j = IMB_SUBMIT_JOB(m);
                while (j == NULL)
                        j = IMB_FLUSH_JOB(m);
                if (j->status != IMB_STATUS_COMPLETED)
                        return -1;
                struct gcm_context_data ctx;
                if (enc)
                        IMB_AES128_GCM_ENC(m, &k->gcm, &ctx, b, b, sizeof(b), iv, aad, 8, tb, 16);
                else
                        IMB_AES128_GCM_DEC(m, &k->gcm, &ctx, b, b, sizeof(b), iv, aad, 8, tb, 16);
                if (memcmp(a, b, sizeof(a)) != 0 || memcmp(ta, tb, sizeof(ta)) != 0)
                        return -1;
        }
        return 0;
}

static int run(IMB_MGR *m, int gcm, int enc, size_t size, double seconds, struct keys *k)
{
        static const uint8_t iv[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
        static const uint8_t aad[8] = { 0, 0, 1, 0, 0, 0, 0, 1 };
        IMB_JOB *jobs[BURST];
        uint64_t ops = 0;
        int checked = 0;
        double t0 = now_s(), t = t0;
        while (t - t0 < seconds) {
                for (int rep = 0; rep < 64; rep++) {
                        /* Tags are computed, not compared (the PMD compares them after the
                         * library): decrypting bytes that were never encrypted costs the same. */
                        burst_no++;
                        if (gcm) {
                                gcm_burst(m, enc, size, k, iv, aad);
                                ops += BURST;
                                continue;
                        }
                        uint32_t n = IMB_GET_NEXT_BURST(m, BURST, jobs);
                        if (n < BURST) {
                                IMB_FLUSH_BURST(m, BURST, jobs);
                                continue;
                        }
                        for (int i = 0; i < BURST; i++)
                                fill(jobs[i], enc, size, k, i, iv);
                        uint32_t done;
                        if (checked) {
                                done = IMB_SUBMIT_BURST_NOCHECK(m, BURST, jobs);
                        } else {
                                done = IMB_SUBMIT_BURST(m, BURST, jobs);
                                if (done == 0 && imb_get_errno(m) != 0) {
                                        fprintf(stderr, "ipsecmb: submit: %s\n",
                                                imb_get_strerror(imb_get_errno(m)));
                                        return -1;
                                }
                                checked = 1;
                        }
                        ops += done;
                }
                t = now_s();
        }
        if (!gcm)
                ops += IMB_FLUSH_BURST(m, BURST, jobs);
        t = now_s();
        double ns = (t - t0) * 1e9 / (double)ops;
        printf("ipsecmb %s %s %zu %.1f %.2f %s\n", gcm ? "aes-128-gcm" : "aes-128-cbc-hmac-sha1",
               enc ? "encrypt" : "decrypt", size, ns, (double)size * 8.0 / ns,
               m->used_arch == IMB_ARCH_AVX512 ? "avx512" :
               m->used_arch == IMB_ARCH_AVX2   ? "avx2" :
               m->used_arch == IMB_ARCH_AVX    ? "avx" : "sse");
        return 0;
}

int main(int argc, char **argv)
{
        double seconds = argc > 1 ? atof(argv[1]) : 1.0;
        IMB_MGR *m = alloc_mb_mgr(0);
        if (m == NULL) {
                fprintf(stderr, "ipsecmb: alloc_mb_mgr failed\n");
                return 1;
        }
        IMB_ARCH arch;
        init_mb_mgr_auto(m, &arch);
        if (imb_get_errno(m) != 0) {
                fprintf(stderr, "ipsecmb: init: %s\n", imb_get_strerror(imb_get_errno(m)));
                return 1;
        }
        static const uint8_t key[16] = { 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
                                         0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22 };
        static const uint8_t ikey[20] = { 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                          0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
                                          0x11, 0x11, 0x11, 0x11, 0x11, 0x11 };
        static struct keys k;
        IMB_AES_KEYEXP_128(m, key, k.enc, k.dec);
        hmac_pads(m, ikey, sizeof(ikey), &k);
        IMB_AES128_GCM_PRE(m, key, &k.gcm);
        if (gcm_paths_agree(m, &k) != 0) {
                fprintf(stderr, "ipsecmb: the direct GCM API disagrees with the job API\n");
                return 1;
        }
        memset(bufs, 0x5a, sizeof(bufs));
        const char *pool_env = getenv("IPSECMB_POOL");
        if (pool_env != NULL && strtoul(pool_env, NULL, 10) > 1) {
                pool_bursts = strtoul(pool_env, NULL, 10);
                pool = aligned_alloc(64, pool_bursts * BURST * sizeof(bufs[0]));
                if (pool == NULL) {
                        fprintf(stderr, "ipsecmb: no memory for IPSECMB_POOL=%zu\n", pool_bursts);
                        return 1;
                }
                memset(pool, 0x5a, pool_bursts * BURST * sizeof(bufs[0]));
        }
        static const size_t sizes[] = { 64, 1408 };
        for (int gcm = 0; gcm < 2; gcm++)
                for (int enc = 1; enc >= 0; enc--)
                        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
                                if (run(m, gcm, enc, sizes[s], seconds, &k) != 0)
                                        return 1;
        free_mb_mgr(m);
        free(pool);
        return 0;
}
