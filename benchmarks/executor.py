"""The executor graph over the benchmark's simulated tools, for figure 9's executor
servers (`benchmarks/executor.json`); `DUET_BENCH_SCALE` is the latency scale."""

from __future__ import annotations

import os

from benchmarks import sim
from graph.executor.graph import build_executor_graph

graph = build_executor_graph(registry=sim.registry(float(os.environ["DUET_BENCH_SCALE"])),
                             allowed_hosts=())
