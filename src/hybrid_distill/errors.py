"""One exception type for bad input that the command line reports as a single clear sentence."""


class UserError(Exception):
    """A config value, file or data row that is wrong; the message names it and says what to do."""
