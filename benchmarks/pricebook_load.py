"""``python -m benchmarks.pricebook_load``: how long a LiteLLM-sized pricebook takes to validate.

Issue 12's goal: the whole cleaned LiteLLM map, about 3,300 chat models with every class,
tier and long-context set the contract knows, validates in under 20 s. This generates the
worst case of that size (every model prices every token class in every service tier and
long-context set, a tenth of them are declared fine-tunes, and the version has a
``fine_tune_multiplier``, so rule 6 projects every rate of every true base), then times
``load_version_text``: every rule, as ``rating-pipeline pricebook validate`` runs them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rating_pipeline.pricebook.loader import LONG_CONTEXT, RATE_KEYS, TIER_KEYS, load_version_text

MODELS = 3_300
HEADER = """\
version: "generated"
effective_from: "2026-10-01T00:00:00Z"
currency: USD
fine_tune_multiplier: "1.5"
models:
"""


def _rate_lines(indent: str, model: int, scale: int) -> list[str]:
    """Every class's rate, distinct per model and set, with up to 6 places."""
    return [
        f'{indent}{key}: "{(model % 997 + 1) * scale * (index + 1)}.{model % 1000:03d}125"'
        for index, key in enumerate(RATE_KEYS)
    ]


def generated_version(models: int = MODELS) -> str:
    """A version of ``models`` models: nine in ten own every set, one in ten derives."""
    lines = [HEADER.rstrip("\n")]
    for model in range(models):
        if model % 10 == 9:
            lines += [f'  "ft:org-{model}:tuned":', f'    derived_from: "model-{model - 1}"',
                      '    multiplier: "1.25"']  # fmt: skip
            continue
        lines.append(f'  "model-{model}":')
        lines += _rate_lines("    ", model, 1)
        lines += ["    long_context_above_tokens: 200000", f"    {LONG_CONTEXT}:"]
        lines += _rate_lines("      ", model, 2)
        for tier_index, tier in enumerate(TIER_KEYS, start=3):
            lines.append(f"    {tier}:")
            lines += _rate_lines("      ", model, tier_index)
            lines.append(f"      {LONG_CONTEXT}:")
            lines += _rate_lines("        ", model, tier_index * 2)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pricebook_load")
    parser.add_argument("--models", type=int, default=MODELS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    text = generated_version(args.models)
    rates = text.count("_per_mtok:")
    print(f"{args.models} models, {rates} rates, {text.count(chr(10))} lines, {len(text)} bytes")
    for run in range(1, args.repeat + 1):
        started = time.perf_counter()
        version = load_version_text(text, "generated.yaml")
        seconds = time.perf_counter() - started
        print(f"run {run}: validated {len(version.models)} models in {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
