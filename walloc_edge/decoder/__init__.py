"""Server side: .wlc bitstream → torch decoder → image or audio."""
