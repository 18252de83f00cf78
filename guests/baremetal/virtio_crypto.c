/* A synchronous virtio-crypto driver: each call builds one request, submits it, and
 * polls until the device has answered. */
#include "bugs.h"
#include "lib.h"
#include "virtio_crypto.h"
#include "virtio_mmio.h"

static void read_config(uintptr_t base, struct virtio_crypto_config *c)
{
    c->max_dataqueues = virtio_mmio_config32(base, VIRTIO_CRYPTO_CFG_MAX_DATAQUEUES);
    c->services = virtio_mmio_config32(base, VIRTIO_CRYPTO_CFG_SERVICES);
    c->cipher_algo_l = virtio_mmio_config32(base, VIRTIO_CRYPTO_CFG_CIPHER_ALGO_L);
    c->cipher_algo_h = virtio_mmio_config32(base, VIRTIO_CRYPTO_CFG_CIPHER_ALGO_H);
    c->max_cipher_key_len = virtio_mmio_config32(base, VIRTIO_CRYPTO_CFG_MAX_CIPHER_KEY);
    c->akcipher_algo = virtio_mmio_config32(base, VIRTIO_CRYPTO_CFG_AKCIPHER_ALGO);
    c->max_size = virtio_mmio_config64(base, VIRTIO_CRYPTO_CFG_MAX_SIZE);
    if (c->max_dataqueues == 0)     /* as Linux does: a device has at least one */
        c->max_dataqueues = 1;
}

static enum virtio_crypto_init_error init_error(uintptr_t base, enum virtio_crypto_init_error e)
{
    virtio_mmio_fail(base);
    return e;
}

enum virtio_crypto_init_error virtio_crypto_init(struct virtio_crypto *dev, uintptr_t base)
{
    dev->base = base;
    if (virtio_mmio_begin(base, VIRTIO_ID_CRYPTO) != VIRTIO_MMIO_OK)
        return VIRTIO_CRYPTO_INIT_NO_DEVICE;        /* not ours to mark FAILED */
    /* VERSION_1 only: no EVENT_IDX (we never want interrupts) and no INDIRECT_DESC
     * (our chains are at most five descriptors). */
    if (virtio_mmio_negotiate(base, 1ULL << VIRTIO_F_VERSION_1) != VIRTIO_MMIO_OK)
        return init_error(base, VIRTIO_CRYPTO_INIT_FEATURES);
    read_config(base, &dev->config);

    vq_init(&dev->dataq, 0);
    vq_init(&dev->controlq, (uint16_t)dev->config.max_dataqueues);  /* control is last */
    if (virtio_mmio_setup_queue(base, &dev->dataq) != VIRTIO_MMIO_OK ||
        virtio_mmio_setup_queue(base, &dev->controlq) != VIRTIO_MMIO_OK)
        return init_error(base, VIRTIO_CRYPTO_INIT_QUEUE);
    virtio_mmio_driver_ok(base);

    /* Only now may the driver rely on the device's status (Linux reads it here too). */
    dev->config.status = virtio_mmio_config32(base, VIRTIO_CRYPTO_CFG_STATUS);
    if (!(dev->config.status & VIRTIO_CRYPTO_S_HW_READY))
        return init_error(base, VIRTIO_CRYPTO_INIT_NOT_READY);
    return VIRTIO_CRYPTO_INIT_OK;
}

static struct vq_buf out(const void *addr, uint32_t len)
{
    return (struct vq_buf){(void *)addr, len, 0};
}

static struct vq_buf in(void *addr, uint32_t len)
{
    return (struct vq_buf){addr, len, 1};
}

/* ---- control queue ---- */

static void ctrl_header(struct virtio_crypto_ctrl_header *h, uint32_t opcode, uint32_t algo)
{
    h->opcode = opcode;
    h->algo = algo;
    h->flag = 0;
    h->queue_id = 0;
}

/* A create answers with a 16-byte session_input. Its status starts as ERR so that a
 * device that wrote nothing is not mistaken for success. */
static int create_session(struct virtio_crypto *dev, const void *header, const void *key,
                          uint32_t key_len, uint64_t *session, struct vq_completion *done)
{
    struct virtio_crypto_session_input input = {.status = VIRTIO_CRYPTO_ERR};
    struct vq_buf bufs[] = {out(header, 72), out(key, key_len), in(&input, sizeof(input))};

    int r = vq_transact(&dev->controlq, bufs, ARRAY_SIZE(bufs), done);
    if (r != VQ_OK)
        return r;
    *session = input.session_id;
    return (int)input.status;
}

int virtio_crypto_create_cipher_session(struct virtio_crypto *dev, uint32_t algo, uint32_t op,
                                        const uint8_t *key, uint32_t key_len,
                                        uint64_t *session, struct vq_completion *done)
{
    struct virtio_crypto_cipher_create req;

    memset(&req, 0, sizeof(req));
    ctrl_header(&req.header, VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, algo);
    req.algo = algo;
    /* The bug claims more key than the device takes (and than is sent). */
    req.key_len = VMSIM_BUG == BUG_KEY_TOO_LONG ? dev->config.max_cipher_key_len + 1 : key_len;
    req.op = op;
    req.op_type = VIRTIO_CRYPTO_SYM_OP_CIPHER;
    return create_session(dev, &req, key, key_len, session, done);
}

int virtio_crypto_create_rsa_session(struct virtio_crypto *dev, uint32_t key_type,
                                     uint32_t padding_algo, const uint8_t *der, uint32_t der_len,
                                     uint64_t *session, struct vq_completion *done)
{
    struct virtio_crypto_akcipher_create req;

    memset(&req, 0, sizeof(req));
    ctrl_header(&req.header, VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION, VIRTIO_CRYPTO_AKCIPHER_RSA);
    req.algo = VIRTIO_CRYPTO_AKCIPHER_RSA;
    req.key_type = key_type;
    req.key_len = der_len;
    req.padding_algo = padding_algo;
    req.hash_algo = VIRTIO_CRYPTO_RSA_NO_HASH;
    return create_session(dev, &req, der, der_len, session, done);
}

int virtio_crypto_destroy_session(struct virtio_crypto *dev, uint32_t opcode, uint64_t session,
                                  struct vq_completion *done)
{
    struct virtio_crypto_destroy req;
    uint8_t status = VIRTIO_CRYPTO_ERR;

    memset(&req, 0, sizeof(req));
    ctrl_header(&req.header, opcode, 0);
    req.session_id = VMSIM_BUG == BUG_DESTROY_UNKNOWN ? session + 1000 : session;
    struct vq_buf bufs[] = {out(&req, sizeof(req)), in(&status, 1)};

    int r = vq_transact(&dev->controlq, bufs, ARRAY_SIZE(bufs), done);
    return r != VQ_OK ? r : status;
}

/* ---- data queue ---- */

/* The status is the last device-written byte; `expected_len` is what used.len must be. */
static int data_request(struct virtio_crypto *dev, struct vq_buf *bufs, int n, uint8_t *status,
                        uint32_t expected_len, struct vq_completion *done)
{
    *status = VIRTIO_CRYPTO_ERR;
    int r = vq_transact(&dev->dataq, bufs, n, done);
    if (r != VQ_OK)
        return r;
    if (*status == VIRTIO_CRYPTO_OK && done->len != expected_len)
        return VIRTIO_CRYPTO_BAD_LEN;
    return *status;
}

int virtio_crypto_cipher(struct virtio_crypto *dev, uint64_t session, const uint8_t *iv,
                         uint32_t iv_len, const uint8_t *src, uint8_t *dst, uint32_t len,
                         struct vq_completion *done)
{
    struct virtio_crypto_cipher_request req;
    uint8_t status;

    memset(&req, 0, sizeof(req));
    req.header.opcode = VIRTIO_CRYPTO_CIPHER_ENCRYPT;
    req.header.algo = VIRTIO_CRYPTO_CIPHER_AES_CBC;
    req.header.session_id = VMSIM_BUG == BUG_UNKNOWN_SESSION ? session + 1000 : session;
    req.iv_len = iv_len;
    req.src_len = len;
    req.dst_len = len;
    req.op_type = VIRTIO_CRYPTO_SYM_OP_CIPHER;
    struct vq_buf bufs[] = {out(&req, sizeof(req)), out(iv, iv_len), out(src, len),
                            in(dst, len), in(&status, 1)};
    /* used.len counts every byte the device wrote: the result and the status. */
    return data_request(dev, bufs, ARRAY_SIZE(bufs), &status, len + 1, done);
}

int virtio_crypto_akcipher(struct virtio_crypto *dev, uint32_t opcode, uint64_t session,
                           const uint8_t *src, uint32_t src_len,
                           uint8_t *dst, uint32_t dst_len, struct vq_completion *done)
{
    struct virtio_crypto_akcipher_request req;
    uint8_t status;

    memset(&req, 0, sizeof(req));
    req.header.opcode = opcode;
    req.header.algo = VIRTIO_CRYPTO_AKCIPHER_RSA;
    req.header.session_id = session;
    req.src_len = src_len;
    req.dst_len = dst_len;
    struct vq_buf bufs[] = {out(&req, sizeof(req)), out(src, src_len),
                            in(dst, dst_len), in(&status, 1)};
    /* For akcipher the spec fixes used.len = result length + 1 (the status). */
    return data_request(dev, bufs, ARRAY_SIZE(bufs), &status, dst_len + 1, done);
}

int virtio_crypto_akcipher_encrypt(struct virtio_crypto *dev, uint64_t session,
                                   const uint8_t *src, uint32_t src_len,
                                   uint8_t *dst, uint32_t dst_len, struct vq_completion *done)
{
    return virtio_crypto_akcipher(dev, VIRTIO_CRYPTO_AKCIPHER_ENCRYPT, session, src, src_len,
                                  dst, dst_len, done);
}
