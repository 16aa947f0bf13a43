"""Getting encoded bytes off the device: wire framing and transports; never imports torch."""
