/*
 * Like-for-like single-packet baseline for bench/run.sh's `crypto` section: OpenSSL (libcrypto)
 * doing per packet the work our `esp_encrypt/sha1_aescbc/N` and `esp_decrypt/sha1_aescbc/N`
 * benches do — RFC 4303 ESP with AES-128-CBC (RFC 3602) and HMAC-SHA-1-96 (RFC 2404) on an
 * upper-layer payload of N bytes: padding and trailer written, the body encrypted with a fresh
 * IV, the HMAC computed over SPI, sequence number, IV and ciphertext and truncated to 12 bytes
 * (encrypt); the ICV checked, the body decrypted and the padding checked (decrypt).
 *
 * Why beside `openssl speed -evp aes-128-cbc-hmac-sha1`: that figure runs the stitched cipher
 * without a TLS record header (payload length NO_PAYLOAD_LENGTH), in which mode the cipher only
 * feeds each buffer into a running SHA-1 and encrypts it — no HMAC inner/outer finalisation
 * and no MAC written. At 1408 bytes the two missing compressions are a few percent; at 64
 * bytes they are two of three. This program does the full HMAC per packet, as ESP must.
 *
 * The fastest composition of OpenSSL's own primitives: AES-CBC through EVP (AES-NI), the key
 * schedule set once and only the IV per packet; SHA-1 through the low-level block API
 * (SHA-NI where present) from the HMAC's inner and outer states precomputed once per key.
 *
 * A third figure: the stitched cipher itself (EVP_aes_128_cbc_hmac_sha1) doing whole records,
 * the way TLS drives it: the record's 13-byte AAD set per record (EVP_CTRL_AEAD_TLS1_AAD), then
 * one EVP_Cipher call that hashes AAD and payload, finalises the HMAC-SHA-1, appends it and the
 * padding and encrypts everything (decryption: decrypts, checks padding and MAC in constant
 * time). TLS 1.2 records (explicit IV), so at N bytes it hashes N + 13 bytes and encrypts
 * 16 + N + 20 + padding (at 64 B: 3 SHA-1 compressions and 7 AES blocks, where the ESP packet
 * takes 3 and 5 plus a fresh IV): the stitched cipher with the HMAC finalisation it omits in
 * `openssl speed`.
 *
 * Output, one line per case:
 *   openssl-esp <dir> <size> <ns_per_op> <gbps>
 *   openssl-tls <dir> <size> <ns_per_op> <gbps>
 * Usage: openssl_esp [seconds per case, default 1]
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA1_Init/Update/Final: the low-level block API */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HDR 8
#define IV 16
#define ICV 12
#define MAX_SIZE 2048

static double now_s(void)
{
        struct timespec ts;
        /* Thread CPU time, as the other baselines and criterion's ThreadCpu measurement. */
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct sa {
        EVP_CIPHER_CTX *enc, *dec;
        SHA_CTX inner, outer; /* HMAC states after the ipad and opad blocks */
        uint32_t seq;
};

static void sa_init(struct sa *sa, const uint8_t key[16], const uint8_t auth[20])
{
        uint8_t block[SHA_CBLOCK];
        sa->enc = EVP_CIPHER_CTX_new();
        sa->dec = EVP_CIPHER_CTX_new();
        if (!sa->enc || !sa->dec ||
            !EVP_EncryptInit_ex(sa->enc, EVP_aes_128_cbc(), NULL, key, NULL) ||
            !EVP_DecryptInit_ex(sa->dec, EVP_aes_128_cbc(), NULL, key, NULL)) {
                fprintf(stderr, "openssl_esp: EVP init failed\n");
                exit(1);
        }
        EVP_CIPHER_CTX_set_padding(sa->enc, 0);
        EVP_CIPHER_CTX_set_padding(sa->dec, 0);
        memset(block, 0x36, sizeof(block));
        for (int i = 0; i < 20; i++)
                block[i] ^= auth[i];
        SHA1_Init(&sa->inner);
        SHA1_Update(&sa->inner, block, sizeof(block));
        memset(block, 0x5c, sizeof(block));
        for (int i = 0; i < 20; i++)
                block[i] ^= auth[i];
        SHA1_Init(&sa->outer);
        SHA1_Update(&sa->outer, block, sizeof(block));
        sa->seq = 0;
}

static void hmac_sha1_96(const struct sa *sa, const uint8_t *data, size_t len, uint8_t out[ICV])
{
        SHA_CTX c = sa->inner;
        uint8_t d[SHA_DIGEST_LENGTH];
        SHA1_Update(&c, data, len);
        SHA1_Final(d, &c);
        c = sa->outer;
        SHA1_Update(&c, d, sizeof(d));
        SHA1_Final(d, &c);
        memcpy(out, d, ICV);
}

/* Body length (payload, padding, pad length, next header) for a payload of n bytes. */
static size_t body_len(size_t n)
{
        return (n + 2 + 15) & ~(size_t)15;
}

/* Seals the payload at p[HDR + IV ..][..n]; returns the ESP packet's length. */
static size_t seal(struct sa *sa, uint8_t *p, size_t n)
{
        size_t body = body_len(n), pad = body - n - 2;
        int out = 0;
        uint32_t seq = ++sa->seq;
        p[0] = 0x00, p[1] = 0x00, p[2] = 0x10, p[3] = 0x01; /* SPI */
        p[4] = seq >> 24, p[5] = seq >> 16, p[6] = seq >> 8, p[7] = seq;
        /* A per-packet IV; unpredictability is not what is measured (ours draws it from a
         * ChaCha-based generator, a few ns), so a counter mixed with the sequence number. */
        for (int i = 0; i < IV; i++)
                p[HDR + i] = (uint8_t)(seq * 131 + i * 7);
        uint8_t *b = p + HDR + IV;
        for (size_t i = 0; i < pad; i++)
                b[n + i] = (uint8_t)(i + 1);
        b[n + pad] = (uint8_t)pad;
        b[n + pad + 1] = 4; /* next header: IPv4 */
        if (!EVP_EncryptInit_ex(sa->enc, NULL, NULL, NULL, p + HDR) ||
            !EVP_EncryptUpdate(sa->enc, b, &out, b, (int)body) || (size_t)out != body) {
                fprintf(stderr, "openssl_esp: encrypt failed\n");
                exit(1);
        }
        hmac_sha1_96(sa, p, HDR + IV + body, b + body);
        return HDR + IV + body + ICV;
}

/* Opens an ESP packet of len bytes in place; returns the payload length, or -1. */
static long open_esp(struct sa *sa, uint8_t *p, size_t len)
{
        uint8_t icv[ICV];
        int out = 0;
        size_t body = len - HDR - IV - ICV;
        hmac_sha1_96(sa, p, len - ICV, icv);
        if (CRYPTO_memcmp(icv, p + len - ICV, ICV) != 0)
                return -1;
        uint8_t *b = p + HDR + IV;
        if (!EVP_DecryptInit_ex(sa->dec, NULL, NULL, NULL, p + HDR) ||
            !EVP_DecryptUpdate(sa->dec, b, &out, b, (int)body) || (size_t)out != body)
                return -1;
        size_t pad = b[body - 2];
        if (pad + 2 > body)
                return -1;
        for (size_t i = 0; i < pad; i++)
                if (b[body - 2 - pad + i] != (uint8_t)(i + 1))
                        return -1;
        return (long)(body - 2 - pad);
}

static uint8_t template[MAX_SIZE + 64], pkt[MAX_SIZE + 64];

/* Times `once` (which restores the packet from the template, `copy_len` bytes, then does one
 * operation) for `seconds`; returns ns per operation with the restoring copy measured alone and
 * taken out (criterion's batches do not time it). */
static double ns_per_op(void (*once)(void *), void *arg, size_t copy_len, double seconds)
{
        long ops = 0;
        double t0 = now_s(), t = t0;
        while (t - t0 < seconds) {
                for (int i = 0; i < 1024; i++)
                        once(arg);
                ops += 1024;
                t = now_s();
        }
        double c0 = now_s();
        for (long i = 0; i < ops; i++) {
                memcpy(pkt, template, copy_len);
                __asm__ volatile("" ::"r"(pkt) : "memory");
        }
        double copy = now_s() - c0;
        return (t - t0 - copy) * 1e9 / (double)ops;
}

static void report(const char *who, int encrypt, size_t n, double ns)
{
        printf("%s %s %zu %.1f %.2f\n", who, encrypt ? "encrypt" : "decrypt", n, ns,
               (double)n * 8.0 / ns);
}

/* One ESP packet sealed or opened (with OpenSSL's AES-CBC and HMAC-SHA-1). */
struct esp_op {
        struct sa *sa;
        int encrypt;
        size_t n, len;
};

static void esp_once(void *arg)
{
        struct esp_op *op = arg;
        /* Each op starts from the unmodified packet, as criterion's batches. */
        memcpy(pkt, template, HDR + IV + body_len(op->n) + ICV);
        if (op->encrypt) {
                op->len = seal(op->sa, pkt, op->n);
        } else if (open_esp(op->sa, pkt, op->len) != (long)op->n) {
                fprintf(stderr, "openssl_esp: open failed\n");
                exit(1);
        }
}

static void run(struct sa *sa, int encrypt, size_t n, double seconds)
{
        struct esp_op op = {sa, encrypt, n, 0};
        memset(template, 0, sizeof(template));
        for (size_t i = 0; i < n; i++)
                template[HDR + IV + i] = (uint8_t)i;
        if (!encrypt) {
                memcpy(pkt, template, sizeof(pkt));
                op.len = seal(sa, pkt, n);
                memcpy(template, pkt, op.len);
        }
        double ns = ns_per_op(esp_once, &op, HDR + IV + body_len(n) + ICV, seconds);
        report("openssl-esp", encrypt, n, ns);
}

/* One TLS record sealed or opened by the stitched cipher. */
struct tls_op {
        EVP_CIPHER_CTX *ctx;
        const uint8_t *aad;
        size_t rec;
};

static void tls_once(void *arg)
{
        struct tls_op *op = arg;
        uint8_t rec_aad[13];
        memcpy(pkt, template, op->rec);
        /* Per record, as libssl drives it: the AAD (a copy: the cipher rewrites its length),
         * then one cipher call. The explicit IV (a fixed block here) makes every record
         * independent. */
        memcpy(rec_aad, op->aad, sizeof(rec_aad));
        if (EVP_CIPHER_CTX_ctrl(op->ctx, EVP_CTRL_AEAD_TLS1_AAD, 13, rec_aad) <= 0 ||
            EVP_Cipher(op->ctx, pkt, pkt, op->rec) <= 0) {
                fprintf(stderr, "openssl_esp: stitched record failed\n");
                exit(1);
        }
}

/* The stitched cipher on TLS 1.2 records of n payload bytes (see the head comment). */
static void run_tls(const uint8_t key[16], const uint8_t auth[20], int encrypt, size_t n,
                    double seconds)
{
        static const uint8_t iv[16] = {0};
        /* sequence number, type 23 (application data), version 3.3, length */
        uint8_t aad[13] = {0, 0, 0, 0, 0, 0, 0, 1, 23, 3, 3, 0, 0};
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int pad;
        if (!ctx || !EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc_hmac_sha1(), NULL, key, iv) ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_MAC_KEY, 20, (void *)auth) <= 0) {
                fprintf(stderr, "openssl_esp: stitched cipher init failed\n");
                exit(1);
        }
        /* The record: explicit IV, payload, MAC, padding. The encryption's AAD length counts
         * the explicit IV and the payload; the call returns the MAC and padding's length. */
        size_t plain = IV + n;
        aad[11] = (uint8_t)(plain >> 8), aad[12] = (uint8_t)plain;
        uint8_t first_aad[13];
        memcpy(first_aad, aad, sizeof(aad));
        pad = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_TLS1_AAD, 13, first_aad);
        size_t rec = plain + (size_t)pad;
        memset(template, 0, sizeof(template));
        for (size_t i = 0; i < plain; i++)
                template[i] = (uint8_t)(i * 7);
        if (pad <= 0) {
                fprintf(stderr, "openssl_esp: stitched AAD refused\n");
                exit(1);
        }
        if (!encrypt) {
                /* Each decryption opens this record; its AAD carries the record's length. */
                if (EVP_Cipher(ctx, template, template, rec) <= 0) {
                        fprintf(stderr, "openssl_esp: stitched record failed\n");
                        exit(1);
                }
                EVP_CIPHER_CTX_free(ctx);
                ctx = EVP_CIPHER_CTX_new();
                if (!ctx || !EVP_DecryptInit_ex(ctx, EVP_aes_128_cbc_hmac_sha1(), NULL, key, iv) ||
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_MAC_KEY, 20, (void *)auth) <= 0) {
                        fprintf(stderr, "openssl_esp: stitched cipher init failed\n");
                        exit(1);
                }
                aad[11] = (uint8_t)(rec >> 8), aad[12] = (uint8_t)rec;
        }
        struct tls_op op = {ctx, aad, rec};
        report("openssl-tls", encrypt, n, ns_per_op(tls_once, &op, rec, seconds));
        EVP_CIPHER_CTX_free(ctx);
}

int main(int argc, char **argv)
{
        double seconds = argc > 1 ? atof(argv[1]) : 1.0;
        static const uint8_t key[16] = {0x06, 0xa9, 0x21, 0x40, 0x36, 0xb8, 0xa1, 0x5b,
                                        0x51, 0x2e, 0x03, 0xd5, 0x34, 0x12, 0x00, 0x06};
        static const uint8_t auth[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                         11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
        static const size_t sizes[] = {64, 1408};
        struct sa sa;
        sa_init(&sa, key, auth);
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
                run(&sa, 1, sizes[s], seconds);
                run(&sa, 0, sizes[s], seconds);
                run_tls(key, auth, 1, sizes[s], seconds);
                run_tls(key, auth, 0, sizes[s], seconds);
        }
        return 0;
}
