# The same checks CI runs (.ci/run), for local use.
.PHONY: check fmt clippy test demo bench

check: fmt clippy test

fmt:
	cargo fmt --all --check

clippy:
	cargo clippy --locked --all-targets -- -D warnings

test:
	cargo test --locked

demo:
	cargo run --release -- demo

bench:
	cargo run --release -- bench
