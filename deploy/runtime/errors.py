"""One exception type for every problem a user can fix (bad file, missing data, wrong option).

The CLI prints these as a single line, without a traceback; anything else is a bug and keeps
its traceback.
"""


class KitError(Exception):
    """A user-facing error whose message names the file or option and the problem."""
