"""The graph's nodes: plan, approve, act, observe, summarize, finalize,
and retry (a run continued after it failed)."""
