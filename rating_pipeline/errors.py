"""The root of the project's expected errors: the CLI prints these as one line, no traceback."""


class RatingPipelineError(Exception):
    """A condition the user can act on (bad input, bad configuration, bad bounds)."""
