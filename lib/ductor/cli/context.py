"""What every ``ductor`` subcommand gets: resolved paths, the systemd manager, output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from ductor.paths import Mode, Paths
from ductor.units import Manager


@dataclass
class Context:
    paths: Paths
    json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)

    @property
    def mode(self) -> Mode:
        return self.paths.mode

    @property
    def manager(self) -> Manager:
        return Manager(self.paths.mode)

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def dump(self, data: Any) -> None:
        json.dump(data, self.out, indent=2, sort_keys=False)
        self.out.write("\n")


def table(rows: list[list[str]], header: list[str]) -> str:
    """Plain aligned columns, as `systemctl list-units` prints them."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
