"""What a user runs to trust the int8 program, in three parts:
- the board harness: `bench/run.py` (command line), `harness.py` (one run), `deploy.py` (flash and run, resumable),
  `report.py` (parity, latency, plots), `check.py` (`python -m bench.check`: a bundle vs ONNX Runtime);
- the host benchmark: `compare.py` (`python -m bench.compare`: five runtimes on this CPU, one run);
- the demo: `demo.py` (`python -m bench.demo`, what `make demo` runs).
"""
