"""The executor deployment over the benchmark's simulated tools, for figure 9's executor
servers (`benchmarks/executor.json`): its graph and its step route over one service;
`DUET_BENCH_SCALE` is the latency scale."""

from __future__ import annotations

import os

from benchmarks import sim
from graph.executor.app import build_executor_app
from graph.executor.graph import build_executor_graph
from graph.executor.service import StepService

service = StepService(sim.registry(float(os.environ["DUET_BENCH_SCALE"])), allowed_hosts=())
graph = build_executor_graph(service)
app = build_executor_app(service)
