"""Which characters a clip shows: names found as whole words in its descriptions, or listed outright."""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from sv_data.errors import SvkitError

# Pororo-SV's nine characters, in the order of the released labels.npy.
PORORO_CHARACTERS = ("Pororo", "Loopy", "Crong", "Eddy", "Poby", "Petty", "Tongtong", "Rody", "Harry")


def parse_character_list(text: str) -> tuple[str, ...]:
    """``"Pororo, Loopy,Crong"`` -> ("Pororo", "Loopy", "Crong"); names must be distinct (ignoring case)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise SvkitError(f"--characters {text!r}: name at least one character")
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            raise SvkitError(f"--characters {text!r}: {seen[name.lower()]!r} and {name!r} are the same name")
        seen[name.lower()] = name
    return names


class CharacterDetector:
    """Multi-hot labels over ``names``. A name counts where it stands as a whole word, in any case ("Pororo's"
    counts for Pororo, "Pororos" does not)."""

    def __init__(self, names: Sequence[str]):
        self.names = tuple(names)
        self._by_lower = {n.lower(): i for i, n in enumerate(self.names)}
        # Look-arounds instead of \b, so that names that begin or end with punctuation ("Mr. Kim") work too.
        self._patterns = [re.compile(rf"(?<!\w){re.escape(n)}(?!\w)", re.IGNORECASE) for n in self.names]

    def detect(self, texts: Iterable[str]) -> np.ndarray:
        """uint8 (L,): 1 for every character named in any of ``texts``."""
        texts = list(texts)
        return np.array([any(p.search(t) for t in texts) for p in self._patterns], dtype=np.uint8)

    def from_names(self, names: Iterable[str]) -> tuple[np.ndarray, list[str]]:
        """Labels for an explicit list of names (any case), and the names that are not characters of this set."""
        labels = np.zeros(len(self.names), dtype=np.uint8)
        unknown = []
        for name in names:
            index = self._by_lower.get(name.strip().lower())
            if index is None:
                unknown.append(name)
            else:
                labels[index] = 1
        return labels, unknown
