/*
 * nRF52840-DK transport: UARTE0 with EasyDMA on P0.06 (TXD) / P0.08 (RXD),
 * the interface MCU's virtual COM port (nRF52840-DK user guide, "Virtual
 * COM port"). 115200 8N1, no flow control.
 *
 * Receive: continuous EasyDMA reception of one byte per transfer into two
 * alternating one-byte buffers. The shortcut ENDRX -> STARTRX restarts
 * reception in hardware; at RXSTARTED the ISR points RXD.PTR at the other
 * buffer (the register is double-buffered: the new value is used by the
 * next STARTRX), and at ENDRX it moves the completed byte (RXD.AMOUNT = 1)
 * into the ring that ka_hal_rx drains. ENDRX is handled before RXSTARTED
 * in one ISR pass, which keeps "the buffer just completed" unambiguous as
 * long as the ISR runs within one byte time (87 us at 115200). While the
 * CPU is stalled by a flash erase (up to 85 ms) incoming bytes are lost;
 * the station does not send while a request is being executed, and a
 * lost byte costs one retransmission.
 *
 * Transmit: EasyDMA reads RAM only; data outside RAM goes through a
 * bounce buffer. ka_hal_tx returns at ENDTX.
 */
#include <string.h>

#include "device/hal/hal.h"
#include "device/ports/nrf52840/board.h"
#include "device/ports/nrf52840/nrf52840_regs.h"

#define N52_PIN_TXD 6u
#define N52_PIN_RXD 8u
#define N52_RX_RING 512u /* a power of two */
#define N52_TX_BOUNCE 64u

static volatile uint8_t n52_rx_ring[N52_RX_RING];
static volatile uint32_t n52_rx_head; /* ISR only */
static volatile uint32_t n52_rx_tail; /* ka_hal_rx only */
static volatile uint32_t n52_rx_dropped;
static volatile uint32_t n52_rx_errors;

static volatile uint8_t n52_rx_dma[2];
static volatile uint32_t n52_rx_armed;   /* buffer RXD.PTR points at */
static volatile uint32_t n52_rx_filling; /* buffer of the running transfer */

static uint8_t n52_tx_bounce[N52_TX_BOUNCE];

static uint32_t n52_addr(const volatile void *p)
{
	return (uint32_t)(uintptr_t)p;
}

void UARTE0_UART0_IRQHandler(void)
{
	if (N52_UARTE_EVENTS_ENDRX != 0) {
		N52_UARTE_EVENTS_ENDRX = 0;
		if (N52_UARTE_RXD_AMOUNT == 1u) {
			uint32_t head = n52_rx_head;

			if (head - n52_rx_tail < N52_RX_RING) {
				n52_rx_ring[head % N52_RX_RING] =
					n52_rx_dma[n52_rx_filling];
				n52_rx_head = head + 1u;
			} else {
				n52_rx_dropped++;
			}
		}
	}
	if (N52_UARTE_EVENTS_RXSTARTED != 0) {
		N52_UARTE_EVENTS_RXSTARTED = 0;
		n52_rx_filling = n52_rx_armed;
		n52_rx_armed ^= 1u;
		N52_UARTE_RXD_PTR = n52_addr(&n52_rx_dma[n52_rx_armed]);
	}
	if (N52_UARTE_EVENTS_ERROR != 0) {
		N52_UARTE_EVENTS_ERROR = 0;
		/* ERRORSRC bits are cleared by writing 1 (overrun, parity,
		 * framing, break); the frame CRC rejects what got through. */
		N52_UARTE_ERRORSRC = N52_UARTE_ERRORSRC;
		n52_rx_errors++;
	}
	/* Events are cleared before return: read one back so the write has
	 * reached the peripheral and the IRQ does not fire again at once. */
	(void)N52_UARTE_EVENTS_ERROR;
}

void n52_uart_init(void)
{
	N52_UARTE_ENABLE = 0;
	N52_P0_OUTSET = 1u << N52_PIN_TXD; /* idle high before the mux */
	N52_P0_PIN_CNF(N52_PIN_TXD) = N52_PIN_CNF_DIR_OUT;
	N52_P0_PIN_CNF(N52_PIN_RXD) = N52_PIN_CNF_PULLUP; /* input, pull-up */

	N52_UARTE_PSEL_TXD = N52_PIN_TXD; /* port 0, CONNECT = 0 */
	N52_UARTE_PSEL_RXD = N52_PIN_RXD;
	N52_UARTE_PSEL_RTS = N52_UARTE_PSEL_DISCONNECTED;
	N52_UARTE_PSEL_CTS = N52_UARTE_PSEL_DISCONNECTED;
	N52_UARTE_BAUDRATE = N52_UARTE_BAUD_115200;
	N52_UARTE_CONFIG = 0; /* no flow control, no parity, one stop bit */
	N52_UARTE_ENABLE = N52_UARTE_ENABLE_ON;

	n52_rx_armed = 0;
	n52_rx_filling = 0;
	N52_UARTE_RXD_PTR = n52_addr(&n52_rx_dma[0]);
	N52_UARTE_RXD_MAXCNT = 1;
	N52_UARTE_EVENTS_ENDRX = 0;
	N52_UARTE_EVENTS_RXSTARTED = 0;
	N52_UARTE_EVENTS_ERROR = 0;
	N52_UARTE_SHORTS = N52_UARTE_SHORTS_ENDRX_STARTRX;
	N52_UARTE_INTENSET = N52_UARTE_INT_ENDRX | N52_UARTE_INT_RXSTARTED |
			     N52_UARTE_INT_ERROR;
	N52_NVIC_IPR8(N52_UARTE0_IRQ) = 0x40u;
	N52_NVIC_ISER0 = 1u << N52_UARTE0_IRQ;
	N52_UARTE_TASKS_STARTRX = 1;
}

static bool n52_in_ram(const uint8_t *p, size_t n)
{
	uint32_t a = n52_addr(p);

	return a >= N52_RAM_BASE && a - N52_RAM_BASE < N52_RAM_SIZE &&
	       n <= N52_RAM_SIZE - (a - N52_RAM_BASE);
}

static ka_hal_status_t n52_tx_dma(const uint8_t *p, uint32_t len)
{
	/* 87 us per byte at 115200 baud, plus slack for a stalled CPU. */
	uint32_t limit = len / 10u + 100u;
	uint32_t start = ka_hal_tick_ms();

	N52_UARTE_EVENTS_ENDTX = 0;
	N52_UARTE_TXD_PTR = n52_addr(p);
	N52_UARTE_TXD_MAXCNT = len;
	N52_UARTE_TASKS_STARTTX = 1;
	while (N52_UARTE_EVENTS_ENDTX == 0) {
		if (ka_hal_tick_ms() - start > limit) {
			N52_UARTE_TASKS_STOPTX = 1;
			return KA_HAL_ERR_IO;
		}
	}
	N52_UARTE_EVENTS_ENDTX = 0;
	return KA_HAL_OK;
}

ka_hal_status_t ka_hal_tx(const uint8_t *data, size_t n)
{
	ka_hal_status_t r = KA_HAL_OK;
	size_t done = 0;

	if (data == NULL && n > 0)
		return KA_HAL_ERR_ARG;
	while (done < n && r == KA_HAL_OK) {
		size_t k = n - done;

		if (n52_in_ram(data + done, k)) {
			if (k > N52_UARTE_TXD_MAXCNT_MAX)
				k = N52_UARTE_TXD_MAXCNT_MAX;
			r = n52_tx_dma(data + done, (uint32_t)k);
		} else {
			if (k > N52_TX_BOUNCE)
				k = N52_TX_BOUNCE;
			memcpy(n52_tx_bounce, data + done, k);
			r = n52_tx_dma(n52_tx_bounce, (uint32_t)k);
		}
		done += k;
	}
	return r;
}

int32_t ka_hal_rx(uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
	uint32_t start = ka_hal_tick_ms();
	uint32_t tail = n52_rx_tail;
	size_t n = 0;

	if (buf == NULL || cap == 0)
		return 0;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	while (n52_rx_head == tail) {
		if (ka_hal_tick_ms() - start >= timeout_ms)
			return 0;
		__asm__ volatile("wfi" ::: "memory");
	}
	while (n < cap && n52_rx_head != tail) {
		buf[n++] = n52_rx_ring[tail % N52_RX_RING];
		tail++;
	}
	n52_rx_tail = tail;
	return (int32_t)n;
}
