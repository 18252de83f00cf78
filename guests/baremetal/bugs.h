/* Deliberate driver bugs, one per bring-up step, for docs/bringup.md: build with
 * -D VMSIM_BUG=<number> and run under `vmsim run --strict`, which names the virtio rule
 * each one breaks. Without VMSIM_BUG the driver keeps every rule.
 *
 *   step                 bug                                           rule --strict names
 *   1 find the device    resets it before reading MagicValue, Version  mmio-identify-first
 *                        and DeviceID
 *   2 negotiate          writes DriverFeatures again after FEATURES_OK features-after-features-ok
 *   3 queues             writes QueueNum without reading QueueNumMax   mmio-queue-num-max-unread
 *   4 session            claims a key longer than max_cipher_key_len   crypto-key-len
 *   5 request            names a session the device never handed out   crypto-session-id
 *   6 destroy            destroys a session that was never created     crypto-destroy-session
 *   7 power off          "stops" the device by clearing DRIVER_OK      status-clear
 *                        instead of resetting it
 */
#ifndef BUGS_H
#define BUGS_H

#define BUG_NO_IDENTIFY 1
#define BUG_FEATURES_LATE 2
#define BUG_QUEUE_NUM_UNREAD 3
#define BUG_KEY_TOO_LONG 4
#define BUG_UNKNOWN_SESSION 5
#define BUG_DESTROY_UNKNOWN 6
#define BUG_STATUS_CLEARED 7

#ifndef VMSIM_BUG
#define VMSIM_BUG 0
#endif

#endif
