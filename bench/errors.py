"""The one error type the CLI turns into a clear message and exit code 2 (bad input)."""

from __future__ import annotations


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
