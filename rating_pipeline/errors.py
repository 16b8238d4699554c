"""The root of the project's expected errors: the CLI prints these as one line, no traceback."""

# What every command returns to the shell.
EXIT_OK = 0
EXIT_FAILURE = 1


class RatingPipelineError(Exception):
    """A condition the user can act on (bad input, bad configuration, bad bounds)."""
