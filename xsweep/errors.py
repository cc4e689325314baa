"""One error type for every bad input a user can fix.

Each error says what is wrong, where (file, line, key) and how to fix it; the CLI prints it
without a traceback and exits with status 2.
"""

from __future__ import annotations


class XsweepError(Exception):
    """A problem with the user's input or environment, reported as what / where / how to fix."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.fix:
            parts.append(f"  fix: {self.fix}")
        return "\n".join(parts)

    def __reduce__(self):
        # Keep the error intact when it crosses a Ray process boundary.
        return (_rebuild, (self.what, self.where, self.fix))


def _rebuild(what: str, where: str | None, fix: str | None) -> XsweepError:
    return XsweepError(what, where=where, fix=fix)
