"""The execution agent as its own LangGraph deployment: the step service (`service.py`), its
step route (`app.py`, `langgraph.json`'s `http.app`) and its graph (`graph.py`). It depends
on the step runtime (`graph.runtime`), never the reverse; the planner's client is
`graph.runtime.remote`."""
