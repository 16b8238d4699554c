"""rating_pipeline: turns LLM API usage into billable, priced hourly rollups.

Layers, each in one place:
  pricebook/     versioned YAML pricebooks: the rules of section 4, loaded exactly
  pricing/       the rules of section 5: a model, and the bases its events name, resolved
                 to the rates that price it or to why it cannot bill
  warehouse/     PostgreSQL: schema, extraction, pricing in SQL, the reconciled write,
                 periods and invoices (sections 3, 6, 7, 10, 11)
  orchestration/ the thin Dagster layer; `definitions.py` holds `defs`
The independent reference of the rules (the oracle) lives with the tests, tests/oracle.py.
"""
