/* akagate DPDK shim: exported wrappers for DPDK's static inline functions and macros, which
 * bindgen cannot bind. Compiled by sys/build.rs with the cflags of `pkg-config libdpdk`. */
#ifndef AKG_DPDK_SHIM_H
#define AKG_DPDK_SHIM_H

#include <stdint.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* rte_eth_rx_burst */
uint16_t akg_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t n);
/* rte_eth_tx_burst */
uint16_t akg_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t n);
/* rte_pktmbuf_alloc_bulk; 0 on success. */
int akg_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count);
/* rte_pktmbuf_free */
void akg_pktmbuf_free(struct rte_mbuf *m);
/* Copy a (possibly segmented) packet into dst; returns its length, or -1 if it exceeds cap. */
int32_t akg_pktmbuf_copy_out(const struct rte_mbuf *m, uint8_t *dst, uint32_t cap);
/* Append len bytes from src to an empty mbuf; 0 on success, -1 if it does not fit. */
int akg_pktmbuf_copy_in(struct rte_mbuf *m, const uint8_t *src, uint16_t len);
/* rte_errno of the calling thread. */
int akg_errno(void);
/* RTE_ETH_RSS_IP: hash over IPv4/IPv6 addresses only. */
uint64_t akg_rss_ip(void);
/* RTE_MBUF_DEFAULT_BUF_SIZE */
uint16_t akg_mbuf_default_buf_size(void);
/* rte_lcore_id(), LCORE_ID_ANY for unregistered threads. */
unsigned int akg_lcore_id(void);

#endif
