"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (bad path, shape, ratio, file...).

    The message is the whole story: it says what is wrong and what to do.
    """


def is_number(value: object) -> bool:
    """Whether a value a user passed is a real number: Python's or numpy's, not a bool or a string."""
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)
