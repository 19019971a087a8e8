"""Printing a results table, as Markdown or as aligned columns."""

from __future__ import annotations


def print_table(header, lines, markdown=False) -> None:
    """Print ``lines`` (lists of cells) under ``header``."""
    lines = [[str(x) for x in line] for line in lines]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    for line in [list(header)] + lines:
        print("  ".join(x.ljust(w) for x, w in zip(line, widths)))
