"""The one error type of the spec layer."""


class SpecError(ValueError):
    """An architecture spec is malformed.

    The message starts with the field path of the offending value, e.g.
    ``stages[2].blocks[0].conv2.groups: 48 does not divide 40``, so a user can find it in the JSON.
    It subclasses :class:`ValueError` so generic callers can catch user errors uniformly.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)
