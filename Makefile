.PHONY: setup run lesson test bench

setup:
	bash scripts/setup

run: setup
	.venv/bin/gradfit serve

lesson: setup
	.venv/bin/gradfit lesson

test: setup
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python benchmarks/bench_lesson_loop.py
