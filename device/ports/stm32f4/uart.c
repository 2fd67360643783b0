/*
 * NUCLEO-F429ZI transport: USART3 on PD8 (TX) / PD9 (RX), AF7, wired to
 * the ST-LINK/V2-1 virtual COM port (UM1974, 6.9). 115200 8N1.
 *
 * Receive: the RXNE interrupt moves each byte into a ring buffer (one
 * producer, the ISR; one consumer, ka_hal_rx). Transmit: polled on TXE;
 * ka_hal_tx returns when the last byte is in the data register.
 */
#include "device/hal/hal.h"
#include "device/ports/stm32f4/board.h"
#include "device/ports/stm32f4/stm32f4_regs.h"

/* A power of two. The agent drains it every poll; while it computes, the
 * station waits for the answer. An overflow costs one retransmission. */
#define ST32_RX_RING 512u

static volatile uint8_t st32_rx_ring[ST32_RX_RING];
static volatile uint32_t st32_rx_head; /* written by the ISR only */
static volatile uint32_t st32_rx_tail; /* written by ka_hal_rx only */
static volatile uint32_t st32_rx_dropped;

void USART3_IRQHandler(void)
{
	uint32_t sr = ST32_USART3_SR;

	/* Reading SR then DR clears RXNE and the ORE/NF/FE/PE flags
	 * (30.6.1); a framing or noise error still delivers the byte: the
	 * protocol's CRC rejects the frame. */
	if ((sr & (ST32_USART_SR_RXNE | ST32_USART_SR_ORE)) != 0) {
		uint8_t b = (uint8_t)(ST32_USART3_DR & 0xFFu);
		uint32_t head = st32_rx_head;

		if ((sr & ST32_USART_SR_ORE) != 0)
			st32_rx_dropped++;
		if (head - st32_rx_tail < ST32_RX_RING) {
			st32_rx_ring[head % ST32_RX_RING] = b;
			st32_rx_head = head + 1u;
		} else {
			st32_rx_dropped++;
		}
	}
}

void st32_uart_init(void)
{
	uint32_t v;

	ST32_RCC_AHB1ENR |= ST32_RCC_AHB1ENR_GPIODEN;
	ST32_RCC_APB1ENR |= ST32_RCC_APB1ENR_USART3EN;
	(void)ST32_RCC_APB1ENR;

	/* PD8, PD9: alternate function 7, high speed, pull-up on RX. */
	v = ST32_GPIOD_AFRH;
	v &= ~((0xFu << 0) | (0xFu << 4));
	v |= (ST32_GPIO_AF7 << 0) | (ST32_GPIO_AF7 << 4);
	ST32_GPIOD_AFRH = v;
	v = ST32_GPIOD_OSPEEDR;
	v |= (0x2u << 16) | (0x2u << 18);
	ST32_GPIOD_OSPEEDR = v;
	v = ST32_GPIOD_PUPDR;
	v &= ~(0x3u << 18);
	v |= ST32_GPIO_PULL_UP << 18;
	ST32_GPIOD_PUPDR = v;
	v = ST32_GPIOD_MODER;
	v &= ~((0x3u << 16) | (0x3u << 18));
	v |= (ST32_GPIO_MODE_AF << 16) | (ST32_GPIO_MODE_AF << 18);
	ST32_GPIOD_MODER = v;

	/* 115200 baud, 16x oversampling (30.3.4): USARTDIV = 42 MHz /
	 * (16 * 115200) = 22.786 -> mantissa 22, fraction 13/16 (-0.11 %). */
	ST32_USART3_CR1 = 0;
	ST32_USART3_CR2 = 0; /* 1 stop bit */
	ST32_USART3_CR3 = 0; /* no flow control, no DMA */
	ST32_USART3_BRR = (22u << 4) | 13u;
	ST32_USART3_CR1 = ST32_USART_CR1_UE | ST32_USART_CR1_TE |
			  ST32_USART_CR1_RE | ST32_USART_CR1_RXNEIE;

	ST32_NVIC_IPR8(ST32_USART3_IRQ) = 0x40u;
	ST32_NVIC_ISER(ST32_USART3_IRQ / 32u) = 1u << (ST32_USART3_IRQ % 32u);
}

ka_hal_status_t ka_hal_tx(const uint8_t *data, size_t n)
{
	if (data == NULL && n > 0)
		return KA_HAL_ERR_ARG;
	for (size_t i = 0; i < n; i++) {
		while ((ST32_USART3_SR & ST32_USART_SR_TXE) == 0)
			;
		ST32_USART3_DR = data[i];
	}
	return KA_HAL_OK;
}

int32_t ka_hal_rx(uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
	uint32_t start = ka_hal_tick_ms();
	uint32_t tail = st32_rx_tail;
	size_t n = 0;

	if (buf == NULL || cap == 0)
		return 0;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	while (st32_rx_head == tail) {
		if (ka_hal_tick_ms() - start >= timeout_ms)
			return 0;
		/* Sleep until the next interrupt: SysTick or a byte. */
		__asm__ volatile("wfi" ::: "memory");
	}
	while (n < cap && st32_rx_head != tail) {
		buf[n++] = st32_rx_ring[tail % ST32_RX_RING];
		tail++;
	}
	st32_rx_tail = tail;
	return (int32_t)n;
}
