"""rating_pipeline: turns LLM API usage into billable, priced hourly rollups.

Layers, each in one place:
  pricebook/     versioned YAML pricebooks: the rules of section 4, loaded exactly
  pricing/       pure pricing of one window's aggregated usage (section 5)
  oracle.py      an independent, plain reference of the same rules
  warehouse/     PostgreSQL: schema, extraction, the reconciled write (sections 3, 6, 7)
  orchestration/ the thin Dagster layer; `definitions.py` holds `defs`
"""
