"""The one error type the CLI turns into a clear message and exit code 2 (bad input)."""

from __future__ import annotations

import difflib
from typing import Iterable


class BenchInputError(Exception):
    """Bad input from the user: a suite, a path, a device, a flag.

    ``where`` names the file (and key) at fault; ``fix`` tells the user what to do.
    """

    def __init__(self, message: str, *, where: str = "", fix: str = "") -> None:
        self.message = message
        self.where = where
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}\n  fix: {self.fix}" if self.fix else text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """The start of a ``fix`` for an unknown name: "did you mean 'closest'? ", or "" when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""
