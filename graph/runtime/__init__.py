"""The step runtime: the scheduler (a plan as a DAG), one step's execution with its retries,
the step ledger, where a plan stands, the taint check of later plans, and the client that
sends steps to executor deployments. The nodes drive it; it never imports them."""
