"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (bad path, shape, ratio, file...).

    The message is the whole story: it says what is wrong and what to do.
    """


def is_number(value: object) -> bool:
    """Whether a value a user passed is a real number: Python's or numpy's, not a bool or a string."""
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


SEED_LIMIT = 2**32
"""Seeds run from 0 to 2**32 - 1: numpy's global generator, seeded beside torch's, takes no other."""


def check_seed(seed: object) -> int:
    """``seed`` as an int, or one clear error (numpy and torch would raise their own, deep in a run)."""
    if not is_number(seed) or not float(seed).is_integer() or not 0 <= seed < SEED_LIMIT:
        raise UserError(f"seed must be an integer from 0 to {SEED_LIMIT - 1}, got {seed!r}")
    return int(seed)
