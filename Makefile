.PHONY: setup run test bench

setup:
	bash scripts/setup

run: setup
	.venv/bin/gradfit lesson

test: setup
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python benchmarks/bench_lesson_loop.py
