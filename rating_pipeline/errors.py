"""The root of the project's expected errors (the CLI prints these as one line, no
traceback), and how a message or report names what it is about."""

from collections.abc import Sequence

# What every command returns to the shell.
EXIT_OK = 0
EXIT_FAILURE = 1


class RatingPipelineError(Exception):
    """A condition the user can act on (bad input, bad configuration, bad bounds)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, `docker stop`, systemd, a cancelled CI job), raised where the
    command is (``cli.main``), so that it says what Ctrl-C would have said of its work."""


def first_line(error: object, empty: str = "no message") -> str:
    """The first line of ``error``'s message (a server's may run to several), or ``empty``."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else empty


def first_named(names: Sequence[str], count: int, separator: str = ", ") -> str:
    """The first ``count`` of ``names`` joined by ``separator``, then how many more there
    are (``a, b, and 3 more``): a report's line stays one line however many there are."""
    more = f"{separator}and {len(names) - count} more" if len(names) > count else ""
    return separator.join(names[:count]) + more


def shown(name: str) -> str:
    """``name`` (an id, from upstream, or who closed and why, from an operator: any character
    may be in one) for a line of a report: as it is when all of it prints, else its repr, so
    that a line break or a terminal escape inside it can write nothing of its own."""
    return name if name.isprintable() else repr(name)
