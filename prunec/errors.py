"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class UserError(Exception):
    """A mistake in what the user asked for (bad path, shape, ratio, file...).

    The message is the whole story: it says what is wrong and what to do.
    """
