/* virtio-crypto (device ID 20, virtio 1.2 section 5.9): wire formats and a small
 * synchronous driver for one data queue and the control queue.
 *
 * Every request here is a chain of plain buffers: device-readable ones first (a
 * 72-byte header, then its payload), device-written ones last (the result, then the
 * status). Without VIRTIO_CRYPTO_F_REVISION_1 every header is padded to 72 bytes.
 * All fields are little-endian, which RISC-V already is.
 */
#ifndef VIRTIO_CRYPTO_H
#define VIRTIO_CRYPTO_H

#include <stdint.h>
#include "virtqueue.h"

#define VIRTIO_ID_CRYPTO                  20

/* Config space (offsets into it). */
#define VIRTIO_CRYPTO_CFG_STATUS          0x00
#define VIRTIO_CRYPTO_CFG_MAX_DATAQUEUES  0x04
#define VIRTIO_CRYPTO_CFG_SERVICES        0x08
#define VIRTIO_CRYPTO_CFG_CIPHER_ALGO_L   0x0c
#define VIRTIO_CRYPTO_CFG_CIPHER_ALGO_H   0x10
#define VIRTIO_CRYPTO_CFG_MAX_CIPHER_KEY  0x24
#define VIRTIO_CRYPTO_CFG_AKCIPHER_ALGO   0x2c
#define VIRTIO_CRYPTO_CFG_MAX_SIZE        0x30   /* u64 */
#define VIRTIO_CRYPTO_S_HW_READY          1

/* Services (bit numbers in crypto_services) and opcodes: (service << 8) | op. */
#define VIRTIO_CRYPTO_SERVICE_CIPHER      0
#define VIRTIO_CRYPTO_SERVICE_AKCIPHER    4
#define VIRTIO_CRYPTO_OPCODE(service, op) (((service) << 8) | (op))
#define VIRTIO_CRYPTO_CIPHER_ENCRYPT          VIRTIO_CRYPTO_OPCODE(0, 0x00)
#define VIRTIO_CRYPTO_CIPHER_CREATE_SESSION   VIRTIO_CRYPTO_OPCODE(0, 0x02)
#define VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION  VIRTIO_CRYPTO_OPCODE(0, 0x03)
#define VIRTIO_CRYPTO_AKCIPHER_ENCRYPT        VIRTIO_CRYPTO_OPCODE(4, 0x00)
#define VIRTIO_CRYPTO_AKCIPHER_DECRYPT        VIRTIO_CRYPTO_OPCODE(4, 0x01)
#define VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION VIRTIO_CRYPTO_OPCODE(4, 0x04)
#define VIRTIO_CRYPTO_AKCIPHER_DESTROY_SESSION VIRTIO_CRYPTO_OPCODE(4, 0x05)

#define VIRTIO_CRYPTO_CIPHER_AES_CBC      3      /* bit 3 of cipher_algo_l */
#define VIRTIO_CRYPTO_OP_ENCRYPT          1
#define VIRTIO_CRYPTO_SYM_OP_CIPHER       1
#define VIRTIO_CRYPTO_AKCIPHER_RSA        1      /* bit 1 of akcipher_algo */
#define VIRTIO_CRYPTO_AKCIPHER_KEY_PUBLIC 1
#define VIRTIO_CRYPTO_AKCIPHER_KEY_PRIVATE 2
#define VIRTIO_CRYPTO_RSA_RAW_PADDING     0
#define VIRTIO_CRYPTO_RSA_NO_HASH         0

/* Statuses the device returns. */
#define VIRTIO_CRYPTO_OK                  0
#define VIRTIO_CRYPTO_ERR                 1
#define VIRTIO_CRYPTO_BADMSG              2
#define VIRTIO_CRYPTO_NOTSUPP             3
#define VIRTIO_CRYPTO_INVSESS             4
#define VIRTIO_CRYPTO_NOSPC               5
#define VIRTIO_CRYPTO_KEY_REJECTED        6

/* ---- control queue ---- */

struct virtio_crypto_ctrl_header {
    uint32_t opcode;
    uint32_t algo;
    uint32_t flag;
    uint32_t queue_id;
};

struct virtio_crypto_cipher_create {               /* out: this, then the key */
    struct virtio_crypto_ctrl_header header;
    uint32_t algo;
    uint32_t key_len;
    uint32_t op;                                    /* encrypt or decrypt, fixed per session */
    uint8_t padding[36];
    uint32_t op_type;                               /* plain cipher, not chained */
    uint32_t padding2;
};

struct virtio_crypto_akcipher_create {             /* out: this, then the DER key */
    struct virtio_crypto_ctrl_header header;
    uint32_t algo;
    uint32_t key_type;
    uint32_t key_len;
    uint32_t padding_algo;
    uint32_t hash_algo;
    uint8_t padding[36];
};

struct virtio_crypto_session_input {               /* in: the create's answer */
    uint64_t session_id;
    uint32_t status;
    uint32_t padding;
};

struct virtio_crypto_destroy {                      /* out; in is one status byte */
    struct virtio_crypto_ctrl_header header;
    uint64_t session_id;
    uint8_t padding[48];
};

/* ---- data queues ---- */

struct virtio_crypto_op_header {
    uint32_t opcode;
    uint32_t algo;
    uint64_t session_id;
    uint32_t flag;
    uint32_t padding;
};

struct virtio_crypto_cipher_request {   /* out: this, IV, src; in: dst, status */
    struct virtio_crypto_op_header header;
    uint32_t iv_len;
    uint32_t src_len;
    uint32_t dst_len;
    uint8_t padding[28];
    uint32_t op_type;
    uint32_t padding2;
};

struct virtio_crypto_akcipher_request { /* out: this, src; in: dst, status */
    struct virtio_crypto_op_header header;
    uint32_t src_len;
    uint32_t dst_len;
    uint8_t padding[40];
};

_Static_assert(sizeof(struct virtio_crypto_cipher_create) == 72, "control header is 72 bytes");
_Static_assert(sizeof(struct virtio_crypto_akcipher_create) == 72, "control header is 72 bytes");
_Static_assert(sizeof(struct virtio_crypto_destroy) == 72, "control header is 72 bytes");
_Static_assert(sizeof(struct virtio_crypto_session_input) == 16, "session input is 16 bytes");
_Static_assert(sizeof(struct virtio_crypto_cipher_request) == 72, "data header is 72 bytes");
_Static_assert(sizeof(struct virtio_crypto_akcipher_request) == 72, "data header is 72 bytes");
_Static_assert(__builtin_offsetof(struct virtio_crypto_cipher_create, op_type) == 64, "op_type at 64");
_Static_assert(__builtin_offsetof(struct virtio_crypto_cipher_request, op_type) == 64, "op_type at 64");

/* ---- the driver ---- */

struct virtio_crypto_config {
    uint32_t status;
    uint32_t max_dataqueues;
    uint32_t services;
    uint32_t cipher_algo_l;
    uint32_t cipher_algo_h;
    uint32_t max_cipher_key_len;
    uint32_t akcipher_algo;
    uint64_t max_size;
};

struct virtio_crypto {
    struct virtqueue dataq;                 /* data queue 0 */
    struct virtqueue controlq;              /* always the last queue */
    uintptr_t base;
    struct virtio_crypto_config config;
};

enum virtio_crypto_init_error {
    VIRTIO_CRYPTO_INIT_OK = 0,
    VIRTIO_CRYPTO_INIT_NO_DEVICE,
    VIRTIO_CRYPTO_INIT_FEATURES,
    VIRTIO_CRYPTO_INIT_QUEUE,
    VIRTIO_CRYPTO_INIT_NOT_READY,           /* config status lacks HW_READY */
};

/* A request's outcome: a device status (VIRTIO_CRYPTO_OK...) when >= 0, else one of
 * these driver-side failures. */
#define VIRTIO_CRYPTO_LOST      VQ_LOST      /* no completion */
#define VIRTIO_CRYPTO_BAD_USED  VQ_BAD_USED  /* completion for another chain */
#define VIRTIO_CRYPTO_BAD_LEN   (-3)         /* used.len is not what the device must write */

/* Bring the device at `base` up with data queue 0 and the control queue. */
enum virtio_crypto_init_error virtio_crypto_init(struct virtio_crypto *dev, uintptr_t base);

int virtio_crypto_create_cipher_session(struct virtio_crypto *dev, uint32_t algo, uint32_t op,
                                        const uint8_t *key, uint32_t key_len,
                                        uint64_t *session, struct vq_completion *done);
int virtio_crypto_create_rsa_session(struct virtio_crypto *dev, uint32_t key_type,
                                     uint32_t padding_algo, const uint8_t *der, uint32_t der_len,
                                     uint64_t *session, struct vq_completion *done);
/* `opcode`: VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION or ..._AKCIPHER_DESTROY_SESSION. */
int virtio_crypto_destroy_session(struct virtio_crypto *dev, uint32_t opcode, uint64_t session,
                                  struct vq_completion *done);

/* An AES-CBC encryption (CIPHER_ENCRYPT: the session must be an encrypt session, or
 * the device answers INVSESS); src and dst are `len` bytes. */
int virtio_crypto_cipher(struct virtio_crypto *dev, uint64_t session, const uint8_t *iv,
                         uint32_t iv_len, const uint8_t *src, uint8_t *dst, uint32_t len,
                         struct vq_completion *done);
/* One RSA request: `opcode` is VIRTIO_CRYPTO_AKCIPHER_ENCRYPT or ..._DECRYPT. */
int virtio_crypto_akcipher(struct virtio_crypto *dev, uint32_t opcode, uint64_t session,
                           const uint8_t *src, uint32_t src_len,
                           uint8_t *dst, uint32_t dst_len, struct vq_completion *done);
int virtio_crypto_akcipher_encrypt(struct virtio_crypto *dev, uint64_t session,
                                   const uint8_t *src, uint32_t src_len,
                                   uint8_t *dst, uint32_t dst_len, struct vq_completion *done);

#endif
