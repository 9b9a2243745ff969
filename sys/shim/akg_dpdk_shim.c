/* akagate DPDK shim: see akg_dpdk_shim.h. */
#include <string.h>
#include "akg_dpdk_shim.h"

uint16_t akg_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port_id, queue_id, pkts, n);
}

uint16_t akg_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port_id, queue_id, pkts, n);
}

int akg_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void akg_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

int32_t akg_pktmbuf_copy_out(const struct rte_mbuf *m, uint8_t *dst, uint32_t cap)
{
	uint32_t len = rte_pktmbuf_pkt_len(m);
	if (len > cap)
		return -1;
	const void *p = rte_pktmbuf_read(m, 0, len, dst);
	if (p == NULL)
		return -1;
	if (p != dst)
		memcpy(dst, p, len);
	return (int32_t)len;
}

int akg_pktmbuf_copy_in(struct rte_mbuf *m, const uint8_t *src, uint16_t len)
{
	char *p = rte_pktmbuf_append(m, len);
	if (p == NULL)
		return -1;
	memcpy(p, src, len);
	return 0;
}

int akg_errno(void)
{
	return rte_errno;
}

uint64_t akg_rss_ip(void)
{
	return RTE_ETH_RSS_IP;
}

uint16_t akg_mbuf_default_buf_size(void)
{
	return RTE_MBUF_DEFAULT_BUF_SIZE;
}

unsigned int akg_lcore_id(void)
{
	return rte_lcore_id();
}
