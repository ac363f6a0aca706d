"""The application surface: the `duet` CLI, running and resuming threads, saved runs read
without the graph, `duet doctor`, and the run report."""
