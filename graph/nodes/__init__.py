"""The graph's nodes: plan, review (a person reviews the plan), approve, act, observe,
summarize, finalize, and retry (a run continued after it failed)."""
