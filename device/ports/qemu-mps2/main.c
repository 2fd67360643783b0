/*
 * kiln-agent-qemu: the agent as Cortex-M3 firmware for QEMU mps2-an385.
 *
 * Boots, attaches the OTP/flash image in the PSRAM (a host file, see
 * scripts/qemu-board), runs the agent core on UART0 and publishes its
 * measurements (stack and heap high-water marks, UART counters) in the
 * diagnostics block of the image (diag.h) after every poll.
 */
#include <stdint.h>

#include "device/core/agent.h"
#include "device/hal/hal.h"
#include "device/ports/qemu-mps2/board.h"
#include "device/ports/qemu-mps2/diag.h"

static ka_agent_t agent; /* static: the core never allocates */

static volatile uint32_t *diag(void)
{
	return (volatile uint32_t *)(KQ_PSRAM_BASE + KQ_DIAG_OFF);
}

static void diag_boot(void)
{
	volatile uint32_t *d = diag();

	if (d[KQ_DIAG_W_MAGIC] != KQ_DIAG_MAGIC ||
	    d[KQ_DIAG_W_VERSION] != KQ_DIAG_VERSION) {
		for (uint32_t i = 0; i < KQ_DIAG_WORDS; i++)
			d[i] = 0;
		d[KQ_DIAG_W_VERSION] = KQ_DIAG_VERSION;
		d[KQ_DIAG_W_MAGIC] = KQ_DIAG_MAGIC;
	}
	d[KQ_DIAG_W_BOOTS] = d[KQ_DIAG_W_BOOTS] + 1u;
	d[KQ_DIAG_W_STACK_SIZE] = kq_stack_size();
	d[KQ_DIAG_W_STATIC_RAM] = kq_static_ram();
	d[KQ_DIAG_W_AGENT_SIZE] = (uint32_t)sizeof(ka_agent_t);
}

static void diag_update(void)
{
	volatile uint32_t *d = diag();
	uint32_t rx, rxd, tx, txd, hs, hh, sh = kq_stack_hwm();

	kq_uart_stats(&rx, &rxd, &tx, &txd);
	kq_heap_stats(&hs, &hh);
	/* high-water marks over the image's life, not just this boot */
	if (sh > d[KQ_DIAG_W_STACK_HWM])
		d[KQ_DIAG_W_STACK_HWM] = sh;
	if (hh > d[KQ_DIAG_W_HEAP_HWM])
		d[KQ_DIAG_W_HEAP_HWM] = hh;
	if (hs != 0)
		d[KQ_DIAG_W_HEAP_SIZE] = hs;
	d[KQ_DIAG_W_RX_BYTES] = rx;
	d[KQ_DIAG_W_RX_DROPPED] = rxd;
	d[KQ_DIAG_W_TX_BYTES] = tx;
	d[KQ_DIAG_W_TX_DROPPED] = txd;
	d[KQ_DIAG_W_WRITES] = kq_hal_store_writes();
	d[KQ_DIAG_W_UPTIME_MS] = ka_hal_tick_ms();
}

void kq_diag_fault(uint32_t pc)
{
	volatile uint32_t *d = diag();

	d[KQ_DIAG_W_FAULTS] = d[KQ_DIAG_W_FAULTS] + 1u;
	d[KQ_DIAG_W_FAULT_PC] = pc;
}

int main(void)
{
	kp_status_t st;

	kq_tick_init();
	kq_uart_init();
	diag_boot();
	/* a missing or foreign image leaves every storage call failing
	 * with KA_HAL_ERR_IO; the agent still answers and reports it */
	(void)kq_hal_store_init();
	st = ka_agent_init(&agent);
	diag()[KQ_DIAG_W_INIT_STATUS] = (uint32_t)st;
	for (;;) {
		(void)ka_agent_poll(&agent, 100);
		diag_update();
	}
}
