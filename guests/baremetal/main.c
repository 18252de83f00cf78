/* A bare-metal, poll-mode virtio-crypto driver test: known answers through the device
 * with every interrupt off.
 *
 * 1. Bring the device in slot 0 up (virtio-mmio v2, VERSION_1 only).
 * 2. Create an AES-128-CBC encrypt session and a raw RSA-1024 public-key session.
 * 3. Encrypt the NIST SP 800-38A F.2.1 vector, then rsa_message, VMSIM_ROUNDS times
 *    each; compare with the known answers. vmsim runs AES on its CPU thread during
 *    the doorbell write, and RSA in a worker process whose answer reaches RAM later,
 *    from another host thread: the case a polling driver must see without any trap.
 * 4. Destroy both sessions.
 *
 * Each step prints one line the host can parse:
 *   @vmsim test=<name> [round=<n>] result=pass|fail [latency_us=<n> ticks=<n> spins=<n>]
 * latency is from the doorbell to the used entry, in 10 MHz timebase ticks; spins is
 * how many times the driver read used->idx meanwhile. A failure also names a reason
 * and powers off with that step's exit code (enum exit_code), so the exit status
 * alone tells where it broke.
 */
#include "board.h"
#include "bugs.h"
#include "lib.h"
#include "rsa_vector.h"
#include "virtio_crypto.h"
#include "virtio_mmio.h"

#ifndef VMSIM_ROUNDS
#define VMSIM_ROUNDS 4
#endif

/* Build-time switches that spoil one known answer on purpose, so a test can show a
 * wrong result is caught: the device is right, the expectation is not. */
#ifdef VMSIM_CORRUPT_AES_KEY
#define AES_KEY_FLIP 0x01
#else
#define AES_KEY_FLIP 0x00
#endif
#ifdef VMSIM_CORRUPT_RSA_MESSAGE
#define RSA_MESSAGE_FLIP 0x01
#else
#define RSA_MESSAGE_FLIP 0x00
#endif

enum exit_code {
    EXIT_PASS = 0,
    EXIT_NO_DEVICE = 1,
    EXIT_FEATURES = 2,
    EXIT_QUEUE = 3,
    EXIT_NOT_READY = 4,
    EXIT_CAPABILITIES = 5,
    EXIT_AES_SESSION = 6,
    EXIT_RSA_SESSION = 7,
    EXIT_AES_REQUEST = 8,
    EXIT_AES_MISMATCH = 9,
    EXIT_RSA_REQUEST = 10,
    EXIT_RSA_MISMATCH = 11,
    EXIT_AES_DESTROY = 12,
    EXIT_RSA_DESTROY = 13,
    /* 0x7f: an unexpected trap (board.c) */
};

/* NIST SP 800-38A, F.2.1 CBC-AES128.Encrypt. */
static const uint8_t aes_key[16] = {
    0x2b ^ AES_KEY_FLIP, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
    0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
};
static const uint8_t aes_iv[16] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
};
static const uint8_t aes_plaintext[64] = {
    0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a,
    0xae, 0x2d, 0x8a, 0x57, 0x1e, 0x03, 0xac, 0x9c, 0x9e, 0xb7, 0x6f, 0xac, 0x45, 0xaf, 0x8e, 0x51,
    0x30, 0xc8, 0x1c, 0x46, 0xa3, 0x5c, 0xe4, 0x11, 0xe5, 0xfb, 0xc1, 0x19, 0x1a, 0x0a, 0x52, 0xef,
    0xf6, 0x9f, 0x24, 0x45, 0xdf, 0x4f, 0x9b, 0x17, 0xad, 0x2b, 0x41, 0x7b, 0xe6, 0x6c, 0x37, 0x10,
};
static const uint8_t aes_ciphertext[64] = {
    0x76, 0x49, 0xab, 0xac, 0x81, 0x19, 0xb2, 0x46, 0xce, 0xe9, 0x8e, 0x9b, 0x12, 0xe9, 0x19, 0x7d,
    0x50, 0x86, 0xcb, 0x9b, 0x50, 0x72, 0x19, 0xee, 0x95, 0xdb, 0x11, 0x3a, 0x91, 0x76, 0x78, 0xb2,
    0x73, 0xbe, 0xd6, 0xb8, 0xe3, 0xc1, 0x74, 0x3b, 0x71, 0x16, 0xe6, 0x9e, 0x22, 0x22, 0x95, 0x16,
    0x3f, 0xf1, 0xca, 0xa1, 0x68, 0x1f, 0xac, 0x09, 0x12, 0x0e, 0xca, 0x30, 0x75, 0x86, 0xe1, 0xa7,
};

/* Static, not on the stack: the rings must stay where the device was told they are. */
static struct virtio_crypto crypto;

/* ---- reporting ---- */

struct step {
    const char *test;
    int round;                  /* -1: a step that runs once */
    enum exit_code code;        /* the exit status if it fails */
};

static void print_result(const struct step *s, const char *result, const struct vq_completion *done)
{
    uart_puts("@vmsim test=");
    uart_puts(s->test);
    if (s->round >= 0) {
        uart_puts(" round=");
        uart_put_dec((uint64_t)s->round);
    }
    uart_puts(" result=");
    uart_puts(result);
    if (done) {
        uart_puts(" latency_us=");
        uart_put_dec(ticks_to_us(done->ticks));
        uart_puts(" ticks=");
        uart_put_dec(done->ticks);
        uart_puts(" spins=");
        uart_put_dec(done->spins);
    }
}

static void pass(const struct step *s, const struct vq_completion *done)
{
    print_result(s, "pass", done);
    uart_putc('\n');
}

static void __attribute__((noreturn)) fail(const struct step *s, const char *reason,
                                           const struct vq_completion *done)
{
    print_result(s, "fail", done);
    uart_puts(" reason=");
    uart_puts(reason);
    uart_putc('\n');
    board_exit(s->code);
}

/* Pass on VIRTIO_CRYPTO_OK; otherwise fail, naming the status or the driver's error. */
static void expect_ok(const struct step *s, int outcome, const struct vq_completion *done)
{
    static const char *const statuses[] = {
        "ok", "status-err", "status-badmsg", "status-notsupp", "status-invsess",
        "status-nospc", "status-key-rejected",
    };

    if (outcome == VIRTIO_CRYPTO_OK)
        return;
    if (outcome == VIRTIO_CRYPTO_LOST)
        fail(s, "no-completion", done);
    if (outcome == VIRTIO_CRYPTO_BAD_USED)
        fail(s, "used-entry-for-another-chain", done);
    if (outcome == VIRTIO_CRYPTO_BAD_LEN)
        fail(s, "wrong-used-len", done);
    fail(s, outcome < (int)ARRAY_SIZE(statuses) ? statuses[outcome] : "status-unknown", done);
}

/* ---- the steps ---- */

static void bring_up(void)
{
    static const enum exit_code codes[] = {
        [VIRTIO_CRYPTO_INIT_NO_DEVICE] = EXIT_NO_DEVICE,
        [VIRTIO_CRYPTO_INIT_FEATURES] = EXIT_FEATURES,
        [VIRTIO_CRYPTO_INIT_QUEUE] = EXIT_QUEUE,
        [VIRTIO_CRYPTO_INIT_NOT_READY] = EXIT_NOT_READY,
    };
    static const char *const reasons[] = {
        [VIRTIO_CRYPTO_INIT_NO_DEVICE] = "no-virtio-crypto-device",
        [VIRTIO_CRYPTO_INIT_FEATURES] = "feature-negotiation",
        [VIRTIO_CRYPTO_INIT_QUEUE] = "queue-setup",
        [VIRTIO_CRYPTO_INIT_NOT_READY] = "not-hw-ready",
    };

    enum virtio_crypto_init_error e = virtio_crypto_init(&crypto, VIRTIO_CRYPTO_BASE);
    if (e != VIRTIO_CRYPTO_INIT_OK) {
        struct step s = {"init", -1, codes[e]};
        fail(&s, reasons[e], 0);
    }
    const struct virtio_crypto_config *c = &crypto.config;
    uart_puts("virtio-crypto: max_dataqueues=");
    uart_put_dec(c->max_dataqueues);
    uart_puts(" services=");
    uart_put_hex(c->services);
    uart_puts(" cipher_algo_l=");
    uart_put_hex(c->cipher_algo_l);
    uart_puts(" akcipher_algo=");
    uart_put_hex(c->akcipher_algo);
    uart_puts(" max_size=");
    uart_put_dec(c->max_size);
    uart_putc('\n');
    struct step s = {"init", -1, EXIT_PASS};
    pass(&s, 0);
}

/* What this program needs the device to offer. */
static void check_capabilities(void)
{
    const struct virtio_crypto_config *c = &crypto.config;
    struct step s = {"capabilities", -1, EXIT_CAPABILITIES};

    if (!(c->services & (1u << VIRTIO_CRYPTO_SERVICE_CIPHER)) ||
        !(c->cipher_algo_l & (1u << VIRTIO_CRYPTO_CIPHER_AES_CBC)))
        fail(&s, "no-aes-cbc", 0);
    if (!(c->services & (1u << VIRTIO_CRYPTO_SERVICE_AKCIPHER)) ||
        !(c->akcipher_algo & (1u << VIRTIO_CRYPTO_AKCIPHER_RSA)))
        fail(&s, "no-rsa", 0);
    if (c->max_cipher_key_len < sizeof(aes_key) || c->max_size < sizeof(aes_plaintext))
        fail(&s, "limits-too-small", 0);
    pass(&s, 0);
}

static uint64_t create_aes_session(void)
{
    struct step s = {"aes-session", -1, EXIT_AES_SESSION};
    struct vq_completion done;
    uint64_t session = 0;

    int r = virtio_crypto_create_cipher_session(&crypto, VIRTIO_CRYPTO_CIPHER_AES_CBC,
                                                VIRTIO_CRYPTO_OP_ENCRYPT, aes_key,
                                                sizeof(aes_key), &session, &done);
    expect_ok(&s, r, &done);
    pass(&s, &done);
    return session;
}

static uint64_t create_rsa_session(void)
{
    struct step s = {"rsa-session", -1, EXIT_RSA_SESSION};
    struct vq_completion done;
    uint64_t session = 0;

    int r = virtio_crypto_create_rsa_session(&crypto, VIRTIO_CRYPTO_AKCIPHER_KEY_PUBLIC,
                                             VIRTIO_CRYPTO_RSA_RAW_PADDING, rsa_public_der,
                                             sizeof(rsa_public_der), &session, &done);
    expect_ok(&s, r, &done);
    pass(&s, &done);
    return session;
}

static void aes_round(uint64_t session, int round)
{
    struct step s = {"aes-cbc", round, EXIT_AES_REQUEST};
    struct vq_completion done;
    uint8_t out[sizeof(aes_plaintext)];

    memset(out, 0, sizeof(out));        /* no stale answer from the previous round */
    int r = virtio_crypto_cipher(&crypto, session, aes_iv, sizeof(aes_iv), aes_plaintext, out,
                                 sizeof(out), &done);
    expect_ok(&s, r, &done);
    if (memcmp(out, aes_ciphertext, sizeof(out)) != 0) {
        s.code = EXIT_AES_MISMATCH;
        fail(&s, "wrong-ciphertext", &done);
    }
    pass(&s, &done);
}

static void rsa_round(uint64_t session, int round)
{
    struct step s = {"rsa-raw", round, EXIT_RSA_REQUEST};
    struct vq_completion done;
    uint8_t message[sizeof(rsa_message)];
    uint8_t out[sizeof(rsa_expected)];

    memcpy(message, rsa_message, sizeof(message));
    message[sizeof(message) - 1] ^= RSA_MESSAGE_FLIP;
    memset(out, 0, sizeof(out));
    int r = virtio_crypto_akcipher_encrypt(&crypto, session, message, sizeof(message), out,
                                           sizeof(out), &done);
    expect_ok(&s, r, &done);
    if (memcmp(out, rsa_expected, sizeof(out)) != 0) {
        s.code = EXIT_RSA_MISMATCH;
        fail(&s, "wrong-ciphertext", &done);
    }
    pass(&s, &done);
}

static void destroy_session(const char *test, uint32_t opcode, uint64_t session,
                            enum exit_code code)
{
    struct step s = {test, -1, code};
    struct vq_completion done;

    expect_ok(&s, virtio_crypto_destroy_session(&crypto, opcode, session, &done), &done);
    pass(&s, &done);
}

int main(unsigned long hart_id, const void *device_tree)
{
    (void)hart_id;
    (void)device_tree;

    bring_up();
    check_capabilities();
    uint64_t aes = create_aes_session();
    uint64_t rsa = create_rsa_session();
    for (int round = 0; round < VMSIM_ROUNDS; round++)
        aes_round(aes, round);
    for (int round = 0; round < VMSIM_ROUNDS; round++)
        rsa_round(rsa, round);
    destroy_session("aes-destroy", VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION, aes, EXIT_AES_DESTROY);
    destroy_session("rsa-destroy", VIRTIO_CRYPTO_AKCIPHER_DESTROY_SESSION, rsa, EXIT_RSA_DESTROY);
    if (VMSIM_BUG == BUG_STATUS_CLEARED) {  /* only a reset (writing 0) clears status bits */
        uint32_t status = virtio_mmio_read(crypto.base, VIRTIO_MMIO_STATUS);
        virtio_mmio_write(crypto.base, VIRTIO_MMIO_STATUS, status & ~VIRTIO_STATUS_DRIVER_OK);
    }
    return EXIT_PASS;
}
