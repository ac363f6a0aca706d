"""The graph's nodes: plan, act, observe, summarize, finalize."""
