/*
 * kiln agent on the NUCLEO-F429ZI: bring the board up, then serve the
 * station over the ST-LINK virtual COM port forever.
 */
#include "device/core/agent.h"
#include "device/ports/stm32f4/board.h"

static ka_agent_t agent; /* static: the core never allocates */

int main(void)
{
	st32_clock_init();
	st32_uart_init();
	__asm__ volatile("cpsie i" ::: "memory");
	/* A failed integrity check is reported in HELLO; keep serving. */
	(void)ka_agent_init(&agent);
	for (;;)
		(void)ka_agent_poll(&agent, 100);
}
