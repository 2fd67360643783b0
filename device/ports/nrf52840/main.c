/*
 * kiln agent on the nRF52840-DK: re-apply the persistent protections,
 * bring the board up, then serve the station over the VCOM UART forever.
 */
#include "device/core/agent.h"
#include "device/ports/nrf52840/board.h"

static ka_agent_t agent; /* static: the core never allocates */

int main(void)
{
	n52_clock_init();
	/* Before anything can write flash: ACL regions from the UICR. */
	n52_protect_boot();
	n52_uart_init();
	__asm__ volatile("cpsie i" ::: "memory");
	(void)ka_agent_init(&agent);
	for (;;)
		(void)ka_agent_poll(&agent, 100);
}
