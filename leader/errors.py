"""The one exception type a user can cause and fix.

The CLI catches `LeaderError`, prints its message as a single line and exits with code 2.
Everything else is a bug and keeps its traceback.
"""


class LeaderError(Exception):
    """A problem with the user's input; the message says what is wrong and how to fix it."""
