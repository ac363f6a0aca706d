"""A small CRM (customers, orders, invoices, notes) that the demo and the tests drive."""

from demo_site.app import create_app
from demo_site.server import serve

__all__ = ["create_app", "serve"]
