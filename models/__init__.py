"""Neural-network code only (no stage or launcher imports): `graphlm`, `memxlnet`."""
