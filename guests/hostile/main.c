/* A hostile bare-metal virtio-crypto driver: every case of the device's conformance
 * review and of the bad-input list (docs/virtio-crypto.md), one after another, each
 * from a freshly reset device. Every case prints one line:
 *
 *   @vmsim test=hostile-<case> result=pass|fail|skip [reason=<why>] [key=value...]
 *
 * "pass" means the device did what vmsim's device is specified to do (the spec, or
 * the choice docs/virtio-crypto.md records where the spec leaves one); "skip" means
 * the device does not offer what the case needs. A device that never answers costs
 * its case a timeout, not the run: the next case resets the device. The program ends
 * with a summary line and powers off with 0 when nothing failed, else 1.
 *
 * Part A of the review is the "a" cases, the bad-input list the "b" cases, numbered
 * as there. The same ELF runs on vmsim and on QEMU (tests/machine/test_hostile_driver.py
 * records where QEMU 7.2 differs).
 */
#include "hostile.h"
#include "vectors.h"

/* ---- the spec's numbers ---- */

#define OK 0
#define ERR 1
#define BADMSG 2
#define NOTSUPP 3
#define INVSESS 4

#define OPCODE(service, op) (((service) << 8) | (op))
#define CIPHER_ENCRYPT OPCODE(0, 0)
#define CIPHER_DECRYPT OPCODE(0, 1)
#define CIPHER_CREATE OPCODE(0, 2)
#define CIPHER_DESTROY OPCODE(0, 3)
#define HASH_CREATE OPCODE(1, 2)
#define MAC_CREATE OPCODE(2, 2)
#define AEAD_ENCRYPT OPCODE(3, 0)
#define AEAD_CREATE OPCODE(3, 2)
#define AKCIPHER_DECRYPT OPCODE(4, 1)
#define AKCIPHER_CREATE OPCODE(4, 4)

#define AES_CBC 3
#define GCM 1
#define CCM 2
#define RSA 1
#define KEY_PUBLIC 1
#define KEY_PRIVATE 2
#define RAW_PADDING 0
#define PKCS1_PADDING 1
#define SHA1 5                          /* what Linux's pkcs1pad(rsa,sha1) sessions name */
#define SYM_CIPHER 1
#define SYM_CHAIN 2
#define DIR_ENCRYPT 1
#define DIR_DECRYPT 2

/* Config space offsets. */
#define CFG_STATUS 0x00
#define CFG_MAX_DATAQUEUES 0x04
#define CFG_SERVICES 0x08
#define CFG_AEAD 0x20
#define CFG_MAX_CIPHER_KEY 0x24
#define CFG_AKCIPHER 0x2c

#define NOT_RAM 0xc0000000UL            /* above the RAM of both machines, not a device */
#define ANSWER_MS 3000                  /* a request that should be answered at once */
#define SLOW_MS 20000                   /* one that takes a worker a second or so */
#define QUIET_MS 300                    /* a request that should not be */

/* NIST SP 800-38A F.2.1, first block. */
static const uint8_t aes_key[16] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                                    0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};
static const uint8_t aes_iv[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t aes_pt[16] = {0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96,
                                   0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a};
static const uint8_t aes_ct[16] = {0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2, 0x46,
                                   0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9, 0x19, 0x7d};

/* ---- reporting ---- */

static int failures, passes, skips;

static void result(const char *name, const char *outcome, const char *reason)
{
    uart_puts("@vmsim test=hostile-");
    uart_puts(name);
    uart_puts(" result=");
    uart_puts(outcome);
    if (reason) {
        uart_puts(" reason=");
        uart_puts(reason);
    }
    uart_putc('\n');
}

static void verdict(const char *name, int ok, const char *reason)
{
    result(name, ok ? "pass" : "fail", ok ? 0 : reason);
    if (ok)
        passes++;
    else
        failures++;
}

static void skip(const char *name, const char *reason)
{
    result(name, "skip", reason);
    skips++;
}

/* "status-<n>", or "no-answer" for -1, for a failure reason. */
static const char *status_reason(int status)
{
    static char text[16];
    if (status < 0)
        return "no-answer";
    memcpy(text, "status-", 7);
    text[7] = (char)('0' + status % 10);
    text[8] = 0;
    return text;
}

/* ---- little-endian fields ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- requests ---- */

static int revision_1;                  /* negotiated on the current bring-up */

/* A control request: 16-byte header, the flf padded to 56 (natural size with
 * REVISION_1), then `key`. The reply buffer is `reply`, `reply_len` bytes. Returns the
 * status (session_input.status for a 16-byte reply, else the last byte), -1 if none. */
static uint8_t ctrl_buf[128];
static uint8_t reply_buf[64];

static int control(uint32_t opcode, const uint8_t *flf, uint32_t flf_len, uint32_t natural,
                   const void *key, uint32_t key_len, uint32_t queue_id, uint32_t reply_len,
                   uint64_t *session)
{
    memset(ctrl_buf, 0, sizeof(ctrl_buf));
    put32(ctrl_buf, opcode);
    put32(ctrl_buf + 12, queue_id);
    memcpy(ctrl_buf + 16, flf, flf_len);
    memset(reply_buf, 0xee, sizeof(reply_buf));
    struct hbuf bufs[3] = {{ctrl_buf, 16 + (revision_1 ? natural : 56), 0}};
    int n = 1;
    if (key_len)
        bufs[n++] = (struct hbuf){key, key_len, 0};
    bufs[n++] = (struct hbuf){reply_buf, reply_len, 1};
    struct hused used;
    if (!hq_transact(&ctrlq, bufs, n, ANSWER_MS, &used))
        return -1;
    if (reply_len >= 16) {
        if (session)
            *session = (uint64_t)get32(reply_buf) | (uint64_t)get32(reply_buf + 4) << 32;
        return (int)get32(reply_buf + 8);
    }
    return reply_buf[reply_len - 1];
}

static int create_cipher(uint32_t op, const uint8_t *key, uint32_t key_len, uint64_t *session)
{
    uint8_t flf[56] = {0};
    put32(flf, AES_CBC);
    put32(flf + 4, key_len);
    put32(flf + 8, op);
    put32(flf + 48, SYM_CIPHER);
    return control(CIPHER_CREATE, flf, sizeof(flf), 56, key, key_len, 0, 16, session);
}

static int create_rsa(uint32_t key_type, uint32_t padding, const uint8_t *der, uint32_t len,
                      uint64_t *session)
{
    uint8_t flf[56] = {0};
    put32(flf, RSA);
    put32(flf + 4, key_type);
    put32(flf + 8, len);
    put32(flf + 12, padding);
    put32(flf + 16, padding == PKCS1_PADDING ? SHA1 : 0);
    return control(AKCIPHER_CREATE, flf, sizeof(flf), 56, der, len, 0, 16, session);
}

static int create_aead(uint32_t algo, const uint8_t *key, uint32_t key_len, uint32_t tag_len,
                       uint64_t *session)
{
    uint8_t flf[24] = {0};
    put32(flf, algo);
    put32(flf + 4, key_len);
    put32(flf + 8, tag_len);
    put32(flf + 16, DIR_ENCRYPT);
    return control(AEAD_CREATE, flf, sizeof(flf), 24, key, key_len, 0, 16, session);
}

/* A data header (24 bytes) and its flf, padded to 48 (natural size with REVISION_1). */
static uint8_t data_hdr[128];

static uint32_t data_header(uint32_t opcode, uint32_t algo, uint64_t session, uint32_t flag,
                            const uint8_t *flf, uint32_t flf_len, uint32_t natural)
{
    memset(data_hdr, 0, sizeof(data_hdr));
    put32(data_hdr, opcode);
    put32(data_hdr + 4, algo);
    put64(data_hdr + 8, session);
    put32(data_hdr + 16, flag);
    memcpy(data_hdr + 24, flf, flf_len);
    return 24 + (revision_1 ? natural : 48);
}

/* The sym data flf: iv_len, src_len, dst_len, then op_type at 40. */
static uint32_t cipher_header(uint32_t opcode, uint64_t session, uint32_t iv_len, uint32_t src_len,
                              uint32_t dst_len, uint32_t op_type, uint32_t flag)
{
    uint8_t flf[48] = {0};
    put32(flf, iv_len);
    put32(flf + 4, src_len);
    put32(flf + 8, dst_len);
    put32(flf + 40, op_type);
    return data_header(opcode, 0, session, flag, flf, sizeof(flf), 48);
}

static uint8_t out[1024];
static uint8_t status_byte;

/* One AES-CBC request on the NIST block in the Linux layout; returns the status. */
static int aes_request(uint32_t opcode, uint64_t session, uint32_t op_type, uint32_t flag,
                       struct hused *used)
{
    uint32_t len = cipher_header(opcode, session, 16, 16, 16, op_type, flag);
    memset(out, 0, 16);
    status_byte = 0xee;
    struct hbuf bufs[] = {{data_hdr, len, 0}, {aes_iv, 16, 0}, {aes_pt, 16, 0},
                          {out, 16, 1}, {&status_byte, 1, 1}};
    struct hused local;
    if (!hq_transact(&dataq, bufs, 5, ANSWER_MS, used ? used : &local))
        return -1;
    return status_byte;
}

/* ---- bring-up per case ---- */

static uint64_t aes_session;

/* Reset the device and bring it up with an AES-CBC encrypt session; 0 if that worked. */
static int fresh(int want_revision_1)
{
    if (dev_up(want_revision_1, 1, 0))
        return 1;
    revision_1 = dev_negotiated(F_REVISION_1);
    return create_cipher(DIR_ENCRYPT, aes_key, 16, &aes_session) != OK;
}

/* The device still serves a correct request, and needs no reset. */
static int still_works(void)
{
    return !needs_reset() && aes_request(CIPHER_ENCRYPT, aes_session, SYM_CIPHER, 0, 0) == OK &&
           memcmp(out, aes_ct, 16) == 0;
}

/* A case that expects one status for one AES-shaped request built by the caller. */
static void expect_status(const char *name, int status, int want)
{
    if (status != want)
        verdict(name, 0, status_reason(status));
    else
        verdict(name, still_works(), "broken-afterwards");
}

/* Wait up to QUIET_MS for DEVICE_NEEDS_RESET, with no used entry on `q`. */
static void expect_needs_reset(const char *name, struct hq *q)
{
    struct hused used;
    uint64_t deadline = now_ms() + QUIET_MS;
    while (!needs_reset() && now_ms() < deadline)
        ;
    if (!needs_reset())
        verdict(name, 0, "no-needs-reset");
    else
        verdict(name, !hq_wait(q, 10, &used), "answered-anyway");
}

/* ---- part A ---- */

static void a1_key_limits(void)
{
    uint64_t s;
    int status = create_rsa(KEY_PUBLIC, RAW_PADDING, oversized_public, sizeof(oversized_public), &s);
    verdict("a1-modulus-over-16384-bits", status == NOTSUPP, status_reason(status));
    fresh(0);
    status = create_rsa(KEY_PUBLIC, RAW_PADDING, long_exponent_public, sizeof(long_exponent_public), &s);
    verdict("a1-exponent-over-64-bits", status == NOTSUPP, status_reason(status));
}

static void a2_used_len_slack(void)
{
    static uint8_t dst[64];
    struct hused used;
    uint32_t len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16, 16, SYM_CIPHER, 0);
    status_byte = 0xee;
    struct hbuf bufs[] = {{data_hdr, len, 0}, {aes_iv, 16, 0}, {aes_pt, 16, 0},
                          {dst, sizeof(dst), 1}, {&status_byte, 1, 1}};
    if (!hq_transact(&dataq, bufs, 5, ANSWER_MS, &used) || status_byte != OK)
        verdict("a2-used-len-claims-only-written-bytes", 0, status_reason(status_byte));
    else
        verdict("a2-used-len-claims-only-written-bytes", used.len == 16 && !memcmp(dst, aes_ct, 16),
                "used-len-counts-unwritten-slack");
}

static void a3_akcipher_status_in_len(void)
{
    uint64_t s;
    int status = create_rsa(KEY_PRIVATE, PKCS1_PADDING, rsa1024_private, sizeof(rsa1024_private), &s);
    if (status != OK) {
        verdict("a3-akcipher-status-within-used-len", 0, status_reason(status));
        return;
    }
    uint8_t flf[8];
    put32(flf, sizeof(short_ciphertext));
    put32(flf + 4, 128);
    uint32_t len = data_header(AKCIPHER_DECRYPT, RSA, s, 0, flf, 8, 8);
    memset(out, 0xaa, 128);
    status_byte = 0xee;
    struct hused used;
    struct hbuf bufs[] = {{data_hdr, len, 0}, {short_ciphertext, sizeof(short_ciphertext), 0},
                          {out, 128, 1}, {&status_byte, 1, 1}};
    if (!hq_transact(&dataq, bufs, 4, ANSWER_MS, &used) || status_byte != OK) {
        verdict("a3-akcipher-status-within-used-len", 0, status_reason(status_byte));
        return;
    }
    uint32_t n = sizeof(short_message);
    verdict("a3-akcipher-status-within-used-len",
            used.len == n + 1 && !memcmp(out, short_message, n) && out[n] == OK,
            used.len == n + 1 ? "status-not-within-used-len" : "used-len-not-result-plus-1");
}

static void a4_features(void)
{
    uint64_t bits = dev_offered() & 0x3f;
    verdict("a4-no-stateless-bit-without-revision-1", !(bits & 0x3e) || (bits & 1),
            "stateless-without-revision-1");
}

/* A raw RSA-4096 decryption with no CRT values: seconds of pow(), so vmsim always
 * pools it; `session` is set up by the caller. */
static uint8_t slow_hdr[72], slow_in[512], slow_out[512];

static uint16_t slow_request(uint64_t session)
{
    uint8_t flf[8];
    put32(flf, sizeof(slow_ciphertext));
    put32(flf + 4, sizeof(slow_out));
    uint32_t len = data_header(AKCIPHER_DECRYPT, RSA, session, 0, flf, 8, 8);
    memcpy(slow_hdr, data_hdr, len);            /* its own: data_hdr is reused meanwhile */
    memcpy(slow_in, slow_ciphertext, sizeof(slow_in));
    memset(slow_out, 0, sizeof(slow_out));
    status_byte = 0xee;
    struct hbuf bufs[] = {{slow_hdr, len, 0}, {slow_in, sizeof(slow_in), 0},
                          {slow_out, sizeof(slow_out), 1}, {&status_byte, 1, 1}};
    uint16_t head = hq_chain(&dataq, bufs, 4);
    hq_publish(&dataq, head);
    return head;
}

static int slow_session(uint64_t *session)
{
    return create_rsa(KEY_PRIVATE, PKCS1_PADDING, rsa4096_slow, sizeof(rsa4096_slow), session);
}

/* After `stop` the data queue must see no further used entry, whatever was pending. */
static void a5_stopped(const char *name, int how)
{
    uint64_t s;
    int status = slow_session(&s);
    if (status != OK) {
        verdict(name, 0, status_reason(status));
        return;
    }
    slow_request(s);
    hq_kick(&dataq);
    if (how == 0) {                             /* QueueReady = 0 */
        reg_write(VIRTIO_MMIO_QUEUE_SEL, 0);
        reg_write(VIRTIO_MMIO_QUEUE_READY, 0);
    } else {                                    /* DEVICE_NEEDS_RESET from a broken chain */
        hq_desc(&ctrlq, 0, (uintptr_t)ctrl_buf, 72, D_NEXT, 999);
        hq_publish(&ctrlq, 0);
        hq_kick(&ctrlq);
    }
    uint16_t seen = *(volatile uint16_t *)&dataq.rings.used.idx;    /* done before the stop? */
    uint8_t status_then = *(volatile uint8_t *)&status_byte;
    uint64_t deadline = now_ms() + 4000;       /* the job takes well under that in a worker */
    while (now_ms() < deadline)
        ;
    int quiet = *(volatile uint16_t *)&dataq.rings.used.idx == seen &&
                *(volatile uint8_t *)&status_byte == status_then;
    verdict(name, quiet, "written-after-stop");
}

static void a6_opcodes(void)
{
    int status = aes_request(CIPHER_DECRYPT, aes_session, SYM_CIPHER, 0, 0);
    expect_status("a6-decrypt-on-an-encrypt-session", status, INVSESS);
    fresh(0);
    status = aes_request(CIPHER_ENCRYPT, aes_session, SYM_CHAIN, 0, 0);
    expect_status("a6-op-type-contradicts-the-session", status, INVSESS);
    if (fresh(1) || !revision_1 || !dev_negotiated(1)) {
        skip("a6-stateless-op-contradicts-the-opcode", "no-stateless-cipher");
        return;
    }
    /* Stateless (flag 0): sess_para algo, key_len, op; then iv, src, dst; op_type at 72. */
    uint8_t flf[76] = {0};
    put32(flf, AES_CBC);
    put32(flf + 4, 16);
    put32(flf + 8, DIR_DECRYPT);
    put32(flf + 12, 16);
    put32(flf + 16, 16);
    put32(flf + 20, 16);
    put32(flf + 72, SYM_CIPHER);
    uint32_t len = data_header(CIPHER_ENCRYPT, 0, 0, 0, flf, sizeof(flf), 76);
    status_byte = 0xee;
    struct hused used;
    struct hbuf bufs[] = {{data_hdr, len, 0}, {aes_key, 16, 0}, {aes_iv, 16, 0}, {aes_pt, 16, 0},
                          {out, 16, 1}, {&status_byte, 1, 1}};
    status = hq_transact(&dataq, bufs, 6, ANSWER_MS, &used) ? status_byte : -1;
    verdict("a6-stateless-op-contradicts-the-opcode", status == NOTSUPP, status_reason(status));
}

static int aead_request(uint64_t session, const uint8_t *iv, uint32_t iv_field, uint32_t iv_len,
                        const uint8_t *src, uint32_t src_len, const uint8_t *aad, uint32_t aad_len,
                        uint32_t dst_len, uint32_t tag_len)
{
    uint8_t flf[24] = {0};
    put32(flf, iv_len);
    put32(flf + 4, aad_len);
    put32(flf + 8, src_len);
    put32(flf + 12, dst_len);
    put32(flf + 16, tag_len);
    uint32_t len = data_header(AEAD_ENCRYPT, 0, session, 0, flf, sizeof(flf), 24);
    memset(out, 0, dst_len);
    status_byte = 0xee;
    struct hused used;
    struct hbuf bufs[6] = {{data_hdr, len, 0}, {iv, iv_field, 0}};
    int n = 2;
    if (src_len)
        bufs[n++] = (struct hbuf){src, src_len, 0};
    if (aad_len)
        bufs[n++] = (struct hbuf){aad, aad_len, 0};
    bufs[n++] = (struct hbuf){out, dst_len, 1};
    bufs[n++] = (struct hbuf){&status_byte, 1, 1};
    return hq_transact(&dataq, bufs, n, ANSWER_MS, &used) ? status_byte : -1;
}

static void a7_aead(void)
{
    static const uint8_t zero[16] = {0};
    /* GCM test case 2 (key, IV and plaintext all zero): with J0 = IV || 0^31 || 1. */
    static const uint8_t j0[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t gcm_expected[32] = {
        0x03, 0x88, 0xda, 0xce, 0x60, 0xb6, 0xa3, 0x92, 0xf3, 0x28, 0xc2, 0xb9, 0x71, 0xb2, 0xfe, 0x78,
        0xab, 0x6e, 0x47, 0xd4, 0x2c, 0xec, 0x13, 0xbd, 0xf5, 0x3a, 0x67, 0xb2, 0x12, 0x57, 0xbd, 0xdf};
    /* NIST SP 800-38C example 1: the nonce from iv[1], 7 bytes. */
    static const uint8_t ccm_key[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                        0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f};
    static const uint8_t ccm_iv[16] = {0x06, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16};
    static const uint8_t ccm_aad[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    static const uint8_t ccm_pt[4] = {0x20, 0x21, 0x22, 0x23};
    static const uint8_t ccm_expected[8] = {0x71, 0x62, 0x01, 0x5b, 0x4d, 0xac, 0x25, 0x5d};
    uint64_t s;
    int status = create_aead(GCM, zero, 16, 16, &s);
    if (status == OK)
        status = aead_request(s, j0, 16, 16, zero, 16, 0, 0, 32, 16);
    verdict("a7-gcm-16-byte-iv-is-j0", status == OK && !memcmp(out, gcm_expected, 32),
            status == OK ? "wrong-output" : status_reason(status));
    if (status == OK) {
        status = aead_request(s, zero, 12, 12, zero, 16, 0, 0, 28, 12);
        verdict("a7-tag-len-differs-from-the-session", status == INVSESS, status_reason(status));
    } else {
        verdict("a7-tag-len-differs-from-the-session", 0, "no-gcm-session");
    }
    fresh(0);
    status = create_aead(CCM, ccm_key, 16, 4, &s);
    if (status == OK)
        status = aead_request(s, ccm_iv, 16, 7, ccm_pt, 4, ccm_aad, 8, 8, 4);
    verdict("a7-ccm-nonce-from-iv-1", status == OK && !memcmp(out, ccm_expected, 8),
            status == OK ? "wrong-output" : status_reason(status));
}

static void a8_missing_tests(void)
{
    uint32_t queues = config32(CFG_MAX_DATAQUEUES);
    verdict("a8-max-dataqueues-in-range", queues >= 1 && queues <= 65535, "out-of-range");
    struct hused used;
    int status = aes_request(CIPHER_ENCRYPT, aes_session, SYM_CIPHER, 0xfffffffe, &used);
    verdict("a8-flag-ignored-without-revision-1", status == OK && !memcmp(out, aes_ct, 16),
            status_reason(status));
    verdict("a8-used-len-set-with-used-idx", status == OK && used.len == 17, "used-len");
}

/* Linux 6.1's table for a 1 MiB AF_ALG request in 16-byte pieces: 65,795 entries whose
 * 16-bit next wraps, so the last sgs overwrite the first entries. */
#define HUGE_ENTRIES 65795
static struct hq_desc huge_table[HUGE_ENTRIES];
static uint8_t piece[16], page[4096];

static void a9_refusals(void)
{
    struct hused used;
    /* A source buffer outside RAM: refused, but its status byte can be found. */
    uint32_t len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16, 16, SYM_CIPHER, 0);
    status_byte = 0xee;
    hq_desc(&dataq, 0, (uintptr_t)data_hdr, len, D_NEXT, 1);
    hq_desc(&dataq, 1, (uintptr_t)aes_iv, 16, D_NEXT, 2);
    hq_desc(&dataq, 2, NOT_RAM, 16, D_NEXT, 3);
    hq_desc(&dataq, 3, (uintptr_t)out, 16, D_NEXT | D_WRITE, 4);
    hq_desc(&dataq, 4, (uintptr_t)&status_byte, 1, D_WRITE, 0);
    dataq.next_desc = 5;
    hq_publish(&dataq, 0);
    hq_kick(&dataq);
    int answered = hq_wait(&dataq, 1000, &used);
    verdict("a9-refused-chain-is-answered-err", answered && status_byte == ERR && still_works(),
            answered ? "status-or-broken" : "no-answer");

    fresh(0);
    if (!dev_negotiated(F_INDIRECT_DESC)) {
        skip("a9-linux-wrapped-indirect-table-is-answered-err", "no-indirect");
    } else {
        len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16 * 65536, 16 * 65536, SYM_CIPHER, 0);
        /* The kmalloc'd table's garbage, then next = (u16)(i + 1) for every entry. */
        memset(huge_table, 0xff, sizeof(huge_table));
        for (uint32_t i = 0; i < HUGE_ENTRIES; i++)
            huge_table[i].next = (uint16_t)(i + 1);
        uint32_t at = 0, prev = 0;
        for (uint32_t k = 0; k < HUGE_ENTRIES; k++) {
            uint64_t addr = k == 0 ? (uintptr_t)data_hdr : k == 1 ? (uintptr_t)aes_iv
                          : k < 65538 ? (uintptr_t)piece : k < 65794 ? (uintptr_t)page
                          : (uintptr_t)&status_byte;
            uint32_t size = k == 0 ? len : k < 65538 ? 16 : k < 65794 ? 4096 : 1;
            huge_table[at].addr = addr;
            huge_table[at].len = size;
            huge_table[at].flags = (uint16_t)(D_NEXT | (k >= 65538 ? D_WRITE : 0));
            prev = at;
            at = huge_table[at].next;
        }
        huge_table[prev].flags &= (uint16_t)~D_NEXT;
        status_byte = 0xee;
        hq_desc(&dataq, 0, (uintptr_t)huge_table, sizeof(huge_table), D_INDIRECT, 0);
        dataq.next_desc = 1;
        hq_publish(&dataq, 0);
        hq_kick(&dataq);
        answered = hq_wait(&dataq, 2000, &used);
        verdict("a9-linux-wrapped-indirect-table-is-answered-err",
                answered && status_byte == ERR && still_works(),
                answered ? "status-or-broken" : "no-answer");
    }

    fresh(0);
    hq_desc(&dataq, 0, (uintptr_t)data_hdr, 72, D_NEXT, 1);
    hq_desc(&dataq, 1, (uintptr_t)&status_byte, 1, D_WRITE | D_NEXT, 0);     /* a loop */
    hq_publish(&dataq, 0);
    hq_kick(&dataq);
    expect_needs_reset("a9-unanswerable-chain-needs-reset", &dataq);
}

static void a10_ecdsa_id(void)
{
    uint32_t algos = config32(CFG_AKCIPHER);
    verdict("a10-ecdsa-is-wire-id-3", !(algos & (1u << 2)), "bit-2-offered");
}

/* ---- part (b): the bad-input list ---- */

static void b_lengths(void)
{
    uint32_t len = cipher_header(CIPHER_ENCRYPT, aes_session, 0xfffffff0, 0x20, 0x20, SYM_CIPHER, 0);
    struct hused used;
    status_byte = 0xee;
    struct hbuf bufs[] = {{data_hdr, len, 0}, {aes_iv, 16, 0}, {aes_pt, 16, 0},
                          {out, 32, 1}, {&status_byte, 1, 1}};
    int status = hq_transact(&dataq, bufs, 5, ANSWER_MS, &used) ? status_byte : -1;
    expect_status("b1-summed-lengths-overflow", status, ERR);

    fresh(0);
    len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16, 32, SYM_CIPHER, 0);
    status_byte = 0xee;
    struct hbuf mismatch[] = {{data_hdr, len, 0}, {aes_iv, 16, 0}, {aes_pt, 16, 0},
                              {out, 32, 1}, {&status_byte, 1, 1}};
    status = hq_transact(&dataq, mismatch, 5, ANSWER_MS, &used) ? status_byte : -1;
    expect_status("b2-src-len-differs-from-dst-len", status, ERR);

    fresh(0);
    expect_status("b3-unknown-session-in-a-data-request",
                  aes_request(CIPHER_ENCRYPT, 0xdeadbeef, SYM_CIPHER, 0, 0), INVSESS);
}

static void b4_dma_into_mmio(void)
{
    uint32_t len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16, 16, SYM_CIPHER, 0);
    status_byte = 0xee;
    hq_desc(&dataq, 0, (uintptr_t)data_hdr, len, D_NEXT, 1);
    hq_desc(&dataq, 1, (uintptr_t)aes_iv, 16, D_NEXT, 2);
    hq_desc(&dataq, 2, (uintptr_t)aes_pt, 16, D_NEXT, 3);
    hq_desc(&dataq, 3, VIRTIO_CRYPTO_BASE + VIRTIO_MMIO_QUEUE_SEL, 16, D_NEXT | D_WRITE, 4);
    hq_desc(&dataq, 4, (uintptr_t)&status_byte, 1, D_WRITE, 0);
    dataq.next_desc = 5;
    hq_publish(&dataq, 0);
    hq_kick(&dataq);
    struct hused used;
    hq_wait(&dataq, 1000, &used);
    uint32_t status = reg_read(VIRTIO_MMIO_STATUS);
    verdict("b4-dma-into-the-device-window", status == (VIRTIO_STATUS_ACKNOWLEDGE |
            VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK) &&
            still_works(), "registers-or-state-changed");
}

static void b6_short_buffers(void)
{
    struct hused used;
    uint32_t len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16, 16, SYM_CIPHER, 0);
    struct hbuf readable_only[] = {{data_hdr, len, 0}};
    int answered = hq_transact(&dataq, readable_only, 1, 1000, &used);
    verdict("b6-no-writable-buffer-is-returned", answered && still_works(),
            answered ? "broken-afterwards" : "no-answer");

    fresh(0);
    status_byte = 0xee;
    struct hbuf short_header[] = {{data_hdr, 20, 0}, {out, 16, 1}, {&status_byte, 1, 1}};
    int status = hq_transact(&dataq, short_header, 3, 1000, &used) ? status_byte : -1;
    expect_status("b6-header-under-72-bytes", status, ERR);

    fresh(0);
    uint8_t flf[56] = {0};
    put32(flf, AES_CBC);
    put32(flf + 4, 16);
    put32(flf + 8, DIR_ENCRYPT);
    put32(flf + 48, SYM_CIPHER);
    status = control(CIPHER_CREATE, flf, sizeof(flf), 56, aes_key, 16, 0, 4, 0);
    expect_status("b6-create-reply-under-16-bytes", status, ERR);

    fresh(0);
    put32(flf + 4, 32);                         /* a 32-byte key, 16 in the chain */
    status = control(CIPHER_CREATE, flf, sizeof(flf), 56, aes_key, 16, 0, 16, 0);
    expect_status("b7-key-shorter-than-key-len", status, ERR);

    fresh(0);
    len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 64, 64, SYM_CIPHER, 0);
    status_byte = 0xee;
    struct hbuf short_src[] = {{data_hdr, len, 0}, {aes_iv, 16, 0}, {aes_pt, 16, 0},
                               {out, 64, 1}, {&status_byte, 1, 1}};
    status = hq_transact(&dataq, short_src, 5, 1000, &used) ? status_byte : -1;
    expect_status("b7-src-shorter-than-src-len", status, ERR);

    fresh(0);
    len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16, 16, SYM_CIPHER, 0);
    status_byte = 0xee;
    struct hbuf short_iv[] = {{data_hdr, len, 0}, {aes_iv, 8, 0}, {out, 16, 1},
                              {&status_byte, 1, 1}};
    status = hq_transact(&dataq, short_iv, 4, 1000, &used) ? status_byte : -1;
    expect_status("b12-header-lengths-past-the-buffers", status, ERR);

    fresh(0);
    len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 64, 64, SYM_CIPHER, 0);
    static uint8_t src64[64];
    status_byte = 0xee;
    struct hbuf small_dst[] = {{data_hdr, len, 0}, {aes_iv, 16, 0}, {src64, 64, 0},
                               {out, 16, 1}, {&status_byte, 1, 1}};
    status = hq_transact(&dataq, small_dst, 5, 1000, &used) ? status_byte : -1;
    expect_status("b14-dst-len-over-the-writable-room", status, ERR);
}

static void b8_b9_b24_control_fields(void)
{
    /* An unknown control opcode with a one-byte reply, a canary right after it. */
    uint8_t flf[56] = {0};
    struct hused used;
    memset(ctrl_buf, 0, sizeof(ctrl_buf));
    put32(ctrl_buf, OPCODE(7, 7));
    memset(reply_buf, 0xee, 1);
    reply_buf[1] = 0x5a;
    struct hbuf bufs[] = {{ctrl_buf, 72, 0}, {reply_buf, 1, 1}};
    int answered = hq_transact(&ctrlq, bufs, 2, 1000, &used);
    verdict("b8-reply-sized-from-the-buffer", answered && reply_buf[0] == NOTSUPP &&
            reply_buf[1] == 0x5a && still_works(), answered ? "wrong-reply" : "no-answer");

    fresh(0);
    put32(flf, AES_CBC);
    put32(flf + 4, 16);
    put32(flf + 8, DIR_ENCRYPT);
    put32(flf + 48, SYM_CIPHER);
    int status = control(CIPHER_CREATE, flf, sizeof(flf), 56, aes_key, 16, 0xffffffff, 16, 0);
    expect_status("b9-queue-id-is-not-trusted", status, OK);

    fresh(0);
    for (int i = 12; i < 48; i++)
        flf[i] = (uint8_t)(0x91 + i);           /* padding the device must not require */
    put32(flf + 52, 0xabcdef);
    status = control(CIPHER_CREATE, flf, sizeof(flf), 56, aes_key, 16, 0, 16, 0);
    expect_status("b24-garbage-in-padding", status, OK);

    fresh(0);
    put32(flf + 4, config32(CFG_MAX_CIPHER_KEY) + 1);
    static uint8_t long_key[512];
    status = control(CIPHER_CREATE, flf, sizeof(flf), 56, long_key,
                     config32(CFG_MAX_CIPHER_KEY) + 1, 0, 16, 0);
    expect_status("b15-key-over-max-cipher-key-len", status, ERR);
}

static void b10_advertised_services(void)
{
    uint32_t services = config32(CFG_SERVICES);
    static const uint8_t mac_key[32] = {1};
    uint8_t flf[56] = {0};
    int working = 1;
    if (services & (1u << 1)) {                 /* HASH: SHA-256, 32 bytes */
        put32(flf, 4);
        put32(flf + 4, 32);
        working &= control(HASH_CREATE, flf, 8, 8, 0, 0, 0, 16, 0) == OK;
    }
    if (services & (1u << 2)) {                 /* MAC: HMAC-SHA-256 */
        memset(flf, 0, sizeof(flf));
        put32(flf, 4);
        put32(flf + 4, 32);
        put32(flf + 8, 32);
        working &= control(MAC_CREATE, flf, 16, 16, mac_key, 32, 0, 16, 0) == OK;
    }
    if (services & (1u << 3)) {                 /* AEAD: what aead_algo offers */
        uint32_t aead = config32(CFG_AEAD);
        uint64_t s;
        if (aead & (1u << GCM))
            working &= create_aead(GCM, mac_key, 16, 16, &s) == OK;
        else
            working = 0;
    }
    verdict("b10-advertised-services-work", working, "advertised-but-notsupp");
}

static void b11_copy_once(void)
{
    uint64_t s;
    int status = slow_session(&s);
    if (status != OK) {
        verdict("b11-input-rewritten-after-the-doorbell", 0, status_reason(status));
        return;
    }
    slow_request(s);
    hq_kick(&dataq);
    memset(slow_in, 0, sizeof(slow_in));       /* the driver changes its mind */
    struct hused used;
    int answered = hq_wait(&dataq, SLOW_MS, &used);
    uint32_t n = sizeof(slow_message);
    verdict("b11-input-rewritten-after-the-doorbell", answered && status_byte == OK &&
            used.len == n + 1 && !memcmp(slow_out, slow_message, n),
            answered ? status_reason(status_byte) : "no-answer");
}

static void b16_b20_broken_chains(void)
{
    hq_desc(&dataq, 0, (uintptr_t)data_hdr, 72, D_NEXT, 999);
    hq_publish(&dataq, 0);
    hq_kick(&dataq);
    expect_needs_reset("b16-next-index-out-of-range", &dataq);

    static struct hq_desc table[4];
    static const struct {
        const char *name;
        uint32_t len;
        uint16_t flags;
        uint16_t inner_flags;
        int outside;
    } shapes[] = {
        {"b20-indirect-len-not-a-multiple-of-16", 24, D_INDIRECT, 0, 0},
        {"b20-nested-indirect", 32, D_INDIRECT, D_INDIRECT, 0},
        {"b20-indirect-with-next", 32, D_INDIRECT | D_NEXT, 0, 0},
        {"b20-empty-indirect-table", 0, D_INDIRECT, 0, 0},
        {"b20-indirect-table-outside-ram", 32, D_INDIRECT, 0, 1},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(shapes); i++) {
        fresh(0);
        if (!dev_negotiated(F_INDIRECT_DESC)) {
            skip(shapes[i].name, "no-indirect");
            continue;
        }
        memset(table, 0, sizeof(table));
        table[0] = (struct hq_desc){(uintptr_t)data_hdr, 72, (uint16_t)(D_NEXT | shapes[i].inner_flags), 1};
        table[1] = (struct hq_desc){(uintptr_t)&status_byte, 1, D_WRITE, 0};
        hq_desc(&dataq, 0, shapes[i].outside ? NOT_RAM : (uintptr_t)table, shapes[i].len,
                shapes[i].flags, 1);
        hq_desc(&dataq, 1, (uintptr_t)&status_byte, 1, D_WRITE, 0);
        hq_publish(&dataq, 0);
        hq_kick(&dataq);
        expect_needs_reset(shapes[i].name, &dataq);
    }
}

static void b17_b18_notifications(void)
{
    /* b17: a chain made available before DRIVER_OK, and a notify then, are ignored. */
    dev_up(0, 0, 0);
    revision_1 = 0;
    struct hused used;
    uint32_t len = cipher_header(CIPHER_ENCRYPT, 0xdeadbeef, 16, 16, 16, SYM_CIPHER, 0);
    status_byte = 0xee;
    struct hbuf bufs[] = {{data_hdr, len, 0}, {aes_iv, 16, 0}, {aes_pt, 16, 0},
                          {out, 16, 1}, {&status_byte, 1, 1}};
    hq_publish(&dataq, hq_chain(&dataq, bufs, 5));
    hq_kick(&dataq);
    int early = hq_wait(&dataq, QUIET_MS, &used);
    dev_driver_ok();
    hq_kick(&dataq);
    int later = hq_wait(&dataq, 1000, &used);
    verdict("b17-notify-before-driver-ok-is-ignored", !early && later && status_byte == INVSESS,
            early ? "served-before-driver-ok" : "not-served-after");

    fresh(0);
    reg_write(VIRTIO_MMIO_QUEUE_NOTIFY, 99);
    reg_write(VIRTIO_MMIO_QUEUE_NOTIFY, 0xffff);
    verdict("b18-notify-for-a-queue-that-does-not-exist", still_works(), "broken-afterwards");

    fresh(0);
    hq_publish(&dataq, 0);
    *(volatile uint16_t *)&dataq.rings.avail.idx = (uint16_t)(dataq.rings.avail.idx + HQ_SIZE + 5);
    hq_kick(&dataq);
    expect_needs_reset("b18-avail-idx-ahead-by-more-than-the-queue", &dataq);
}

static void b19_queue_num(void)
{
    /* QueueNum 3 (not a power of two) after the right one: the device keeps the right one. */
    dev_up(0, 1, 3);
    revision_1 = 0;
    int ok = create_cipher(DIR_ENCRYPT, aes_key, 16, &aes_session) == OK;
    for (int i = 0; ok && i < 5; i++)          /* enough requests to go round a 3-ring */
        ok = aes_request(CIPHER_ENCRYPT, aes_session, SYM_CIPHER, 0, 0) == OK &&
             !memcmp(out, aes_ct, 16);
    verdict("b19-queue-num-not-a-power-of-two-is-refused", ok, "ring-size-taken");
}

static void b21_b22_completions(void)
{
    uint8_t flf[8];
    put32(flf, 128);
    put32(flf + 4, 128);
    uint32_t len = data_header(AKCIPHER_DECRYPT, RSA, 0xdeadbeef, 0, flf, 8, 8);
    status_byte = 0xee;
    struct hused used;
    struct hbuf bufs[] = {{data_hdr, len, 0}, {short_ciphertext, 128, 0}, {out, 128, 1},
                          {&status_byte, 1, 1}};
    int answered = hq_transact(&dataq, bufs, 4, 1000, &used);
    verdict("b21-akcipher-used-len-at-least-1", answered && status_byte == INVSESS &&
            used.len >= 1 && used.len <= 129, answered ? "used-len" : "no-answer");

    fresh(0);
    memset(ctrl_buf, 0, sizeof(ctrl_buf));
    put32(ctrl_buf, CIPHER_CREATE);
    memset(reply_buf, 0xee, 16);
    struct hbuf short_ctrl[] = {{ctrl_buf, 20, 0}, {reply_buf, 16, 1}};
    answered = hq_transact(&ctrlq, short_ctrl, 2, 1000, &used);
    verdict("b22-control-request-always-completes", answered && get32(reply_buf + 8) == ERR &&
            still_works(), answered ? "status" : "no-answer");
}

static void b25_out_of_order(void)
{
    uint64_t s;
    int status = slow_session(&s);
    if (status != OK) {
        verdict("b25-completions-in-any-order", 0, status_reason(status));
        return;
    }
    uint16_t slow = slow_request(s);
    static uint8_t fast_out[16], fast_status;
    static uint8_t hdr[72];
    uint32_t len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16, 16, SYM_CIPHER, 0);
    memcpy(hdr, data_hdr, len);
    fast_status = 0xee;
    struct hbuf bufs[] = {{hdr, len, 0}, {aes_iv, 16, 0}, {aes_pt, 16, 0},
                          {fast_out, 16, 1}, {&fast_status, 1, 1}};
    uint16_t fast = hq_chain(&dataq, bufs, 5);
    hq_publish(&dataq, fast);
    hq_kick(&dataq);
    struct hused first, second;
    int both = hq_wait(&dataq, SLOW_MS, &first) && hq_wait(&dataq, SLOW_MS, &second);
    int right = both && ((first.id == slow && second.id == fast) || (first.id == fast && second.id == slow)) &&
                fast_status == OK && !memcmp(fast_out, aes_ct, 16) && status_byte == OK;
    verdict("b25-completions-in-any-order", right, both ? "wrong-answers" : "lost");
}

static void b26_linux_shaped(void)
{
    /* src in three entries, the last running 16 bytes past src_len; dst in two entries
     * with 32 bytes of slack (whole sg entries, as Linux hands them). */
    static uint8_t src_a[10], src_b[22], dst_a[7], dst_b[9 + 32];
    memcpy(src_a, aes_pt, 10);
    memcpy(src_b, aes_pt + 10, 6);
    memset(src_b + 6, 0x77, 16);
    memset(dst_b, 0x33, sizeof(dst_b));
    uint32_t len = cipher_header(CIPHER_ENCRYPT, aes_session, 16, 16, 16, SYM_CIPHER, 0);
    status_byte = 0xee;
    struct hused used;
    struct hbuf bufs[] = {{data_hdr, len, 0}, {aes_iv, 16, 0}, {src_a, 10, 0}, {src_b, 22, 0},
                          {dst_a, 7, 1}, {dst_b, sizeof(dst_b), 1}, {&status_byte, 1, 1}};
    int answered = hq_transact(&dataq, bufs, 7, ANSWER_MS, &used);
    uint8_t got[16];
    memcpy(got, dst_a, 7);
    memcpy(got + 7, dst_b, 9);
    int slack_kept = 1;
    for (unsigned i = 9; i < sizeof(dst_b); i++)
        slack_kept &= dst_b[i] == 0x33;
    verdict("b26-header-lengths-not-descriptor-totals",
            answered && status_byte == OK && !memcmp(got, aes_ct, 16) && slack_kept,
            answered ? "wrong-output" : "no-answer");
}

static void b3_destroy_unknown(void)
{
    uint8_t flf[56] = {0};
    put64(flf, 0xdeadbeefULL);
    int status = control(CIPHER_DESTROY, flf, 8, 8, 0, 0, 0, 1, 0);
    expect_status("b3-destroy-an-unknown-session", status, ERR);
}

int main(void)
{
    if (reg_read(VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC ||
        reg_read(VIRTIO_MMIO_DEVICE_ID) != 20) {
        uart_puts("@vmsim test=hostile result=fail reason=no-crypto-device\n");
        return 2;
    }
    if (fresh(0)) {
        uart_puts("@vmsim test=hostile result=fail reason=bring-up\n");
        return 2;
    }
    uint32_t ready = config32(CFG_STATUS), generation = reg_read(VIRTIO_MMIO_CONFIG_GENERATION);
    a1_key_limits();
    fresh(0); a2_used_len_slack();
    fresh(0); a3_akcipher_status_in_len();
    fresh(0); a4_features();
    fresh(0); a5_stopped("a5-no-write-after-queue-ready-0", 0);
    fresh(0); a5_stopped("a5-no-write-after-needs-reset", 1);
    fresh(0); a6_opcodes();
    fresh(0); a7_aead();
    fresh(0); a8_missing_tests();
    fresh(0); a9_refusals();
    fresh(0); a10_ecdsa_id();
    fresh(0); b_lengths();
    fresh(0); b4_dma_into_mmio();
    fresh(0); b6_short_buffers();
    fresh(0); b8_b9_b24_control_fields();
    fresh(0); b10_advertised_services();
    fresh(0); b11_copy_once();
    fresh(0); b16_b20_broken_chains();
    b17_b18_notifications();
    b19_queue_num();
    fresh(0); b21_b22_completions();
    fresh(0); b25_out_of_order();
    fresh(0); b26_linux_shaped();
    fresh(0); b3_destroy_unknown();
    fresh(0);
    verdict("b23-hw-ready-and-config-never-change", config32(CFG_STATUS) == ready &&
            reg_read(VIRTIO_MMIO_CONFIG_GENERATION) == generation, "changed");
    uart_puts("@vmsim test=hostile result=");
    uart_puts(failures ? "fail" : "pass");
    uart_puts(" passed=");
    uart_put_dec((uint64_t)passes);
    uart_puts(" failed=");
    uart_put_dec((uint64_t)failures);
    uart_puts(" skipped=");
    uart_put_dec((uint64_t)skips);
    uart_putc('\n');
    return failures ? 1 : 0;
}
