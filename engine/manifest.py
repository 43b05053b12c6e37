"""A real-voice folder's MANIFEST.tsv (one row per recording: path, split, kind, speaker, ...), read one way
for training (its "train" rows) and evaluation (its "heldout" rows)."""
from __future__ import annotations

from pathlib import Path

from models.errors import ComoliveError

MANIFEST = "MANIFEST.tsv"


def read_manifest(folder: str | Path, split: str, needed: tuple[str, ...] = ("path", "split", "speaker")
                  ) -> list[dict[str, str]]:
    """The rows of `split` as dicts (column -> text), in file order; rows of other splits are dropped as read.
    A missing file or missing columns is one clear ComoliveError."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ComoliveError(f"{folder}: no {MANIFEST} (expected a real-voice folder: one row per recording with "
                            f"{', '.join(needed)}, ...)")
    lines = path.read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t") if lines else []
    missing = [c for c in needed if c not in head]
    if missing:
        raise ComoliveError(f"{path}: needs the columns {', '.join(needed)} (missing {', '.join(missing)})")
    rows = [dict(zip(head, line.split("\t"))) for line in lines[1:]]
    return [r for r in rows if len(r) == len(head) and r["split"] == split]
