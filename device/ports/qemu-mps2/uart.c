/*
 * qemu-mps2 port: the transport, CMSDK APB UART0 (AN385 0x40004000), and
 * the 1 kHz SysTick behind ka_hal_tick_ms().
 *
 * QEMU's CMSDK UART has a one-byte receive holding register and hands the
 * guest the next byte from the host socket only when its main loop runs
 * again after the guest read the previous one. The receive interrupt
 * drains the register into a ring buffer at once, and the SysTick timer
 * keeps QEMU's main loop waking every millisecond even when nothing else
 * happens (without a periodic timer a byte can sit in the socket until
 * some unrelated event; docs/porting.md, "QEMU").
 *
 * While waiting for input the CPU sleeps in WFI (interrupts masked around
 * the empty check, so a byte arriving between the check and the WFI still
 * wakes it): an idle board costs the host almost nothing.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "device/hal/hal.h"
#include "device/ports/qemu-mps2/board.h"

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08u))
#define UART_INT (*(volatile uint32_t *)(UART0_BASE + 0x0Cu))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10u))

#define STATE_TXFULL 0x1u
#define STATE_RXFULL 0x2u
#define STATE_RXOVR 0x8u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u
#define CTRL_RX_INTEN 0x8u
#define INT_RX 0x2u

#define SYSCLK_HZ 25000000u /* AN385 SYSCLK as QEMU models it */
#define BAUD 115200u
#define UART0_RX_IRQ 0u

/* CMSDK APB TIMER0, used only to wake QEMU's main loop (see below) */
#define TIMER0_BASE 0x40000000u
#define TIMER_CTRL (*(volatile uint32_t *)(TIMER0_BASE + 0x00u))
#define TIMER_VALUE (*(volatile uint32_t *)(TIMER0_BASE + 0x04u))
#define TIMER_RELOAD (*(volatile uint32_t *)(TIMER0_BASE + 0x08u))
#define KICK_TICKS 25u /* 1 us at 25 MHz */

#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* A transmitter that stays full this long is stuck (no backend). */
#define TX_STUCK_MS 200u

/* Receive ring. The agent drains it every poll; bytes pile up only
 * while it computes (a retransmitted request during a signature), and
 * losing those costs nothing: the station resends after its timeout. */
#define RING_SIZE 128u

void kq_systick_handler(void);
void kq_uart0_rx_handler(void);

static volatile uint32_t ticks;
static volatile uint8_t ring[RING_SIZE];
static volatile uint32_t ring_head; /* written by the IRQ only */
static volatile uint32_t ring_tail; /* written by the main loop only */
static volatile uint32_t rx_bytes, rx_dropped;
static uint32_t tx_bytes, tx_dropped;

void kq_systick_handler(void)
{
	ticks = ticks + 1u;
}

void kq_tick_init(void)
{
	SYST_RVR = SYSCLK_HZ / 1000u - 1u;
	SYST_CVR = 0;
	SYST_CSR = 0x7u; /* processor clock, interrupt, enable */
}

uint32_t ka_hal_tick_ms(void)
{
	return ticks;
}

void kq_uart_init(void)
{
	TIMER_RELOAD = 0xFFFFFFFFu;
	TIMER_VALUE = 0xFFFFFFFFu;
	TIMER_CTRL = 0x1u; /* running, no interrupt */
	UART_CTRL = 0;
	UART_BAUDDIV = SYSCLK_HZ / BAUD;
	UART_INT = 0xFu;
	UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INTEN;
	NVIC_ISER0 = 1u << UART0_RX_IRQ;
}

void kq_uart0_rx_handler(void)
{
	/* acknowledge first: a byte arriving after the drain raises it again */
	UART_INT = INT_RX;
	if (UART_STATE & STATE_RXOVR) {
		UART_STATE = STATE_RXOVR;
		rx_dropped = rx_dropped + 1u;
	}
	while (UART_STATE & STATE_RXFULL) {
		uint8_t b = (uint8_t)UART_DATA;
		uint32_t h = ring_head;

		rx_bytes = rx_bytes + 1u;
		if (h - ring_tail >= RING_SIZE) {
			rx_dropped = rx_dropped + 1u;
			continue;
		}
		ring[h % RING_SIZE] = b;
		ring_head = h + 1u;
	}
	/* QEMU's UART model does not tell its main loop that the holding
	 * register is free again: the next byte waits for the main loop's
	 * next wake-up (the SysTick, <= 1 ms). Re-arming a timer to expire
	 * 1 us from now wakes it at once. */
	TIMER_VALUE = KICK_TICKS;
}

ka_hal_status_t ka_hal_tx(const uint8_t *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t t0 = ticks;

		while (UART_STATE & STATE_TXFULL) {
			if (ticks - t0 > TX_STUCK_MS) {
				tx_dropped += (uint32_t)(n - i);
				return KA_HAL_ERR_IO;
			}
		}
		UART_DATA = data[i];
		tx_bytes++;
	}
	return KA_HAL_OK;
}

int32_t ka_hal_rx(uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
	uint32_t t0 = ticks;
	size_t n = 0;

	if (buf == NULL || cap == 0)
		return 0;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	for (;;) {
		uint32_t t = ring_tail;

		while (n < cap && t != ring_head)
			buf[n++] = ring[t++ % RING_SIZE];
		ring_tail = t;
		if (n > 0 || ticks - t0 >= timeout_ms)
			break;
		/* sleep until an interrupt; masked so one that fires between
		 * the check and the WFI still ends the WFI */
		__asm volatile("cpsid i" ::: "memory");
		if (ring_head == ring_tail)
			__asm volatile("wfi" ::: "memory");
		__asm volatile("cpsie i" ::: "memory");
	}
	return (int32_t)n;
}

void kq_uart_stats(uint32_t *rx, uint32_t *rxd, uint32_t *tx, uint32_t *txd)
{
	*rx = rx_bytes;
	*rxd = rx_dropped;
	*tx = tx_bytes;
	*txd = tx_dropped;
}
