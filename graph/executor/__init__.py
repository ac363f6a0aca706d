"""The execution agent as its own LangGraph deployment: the executor graph (`graph.py`)
and the client that sends steps to it (`client.py`)."""
