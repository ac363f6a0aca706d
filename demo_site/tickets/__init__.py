"""A small ticket tracker served as an MCP server: the second `duet eval` environment.

`store` (its SQLite state and write log), `server` (the FastMCP server, its own process
over streamable HTTP), `environment` (`demo_site.tickets.environment:make`, for a suite's
`environment:`). Its suite is `demo_site/eval/tickets.yaml`.
"""
