"""Reference implementations that tests and benchmarks compare the library with; no stage uses them."""
