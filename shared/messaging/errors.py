"""Errors a handler raises to say that retrying cannot help: the message goes straight to the dead-letter topic."""


class PermanentError(Exception):
    """The input itself is wrong, or can never be applied: no retries."""


class InvalidInput(PermanentError):
    """Input that fails validation. On an ingress topic its sender also gets a rejection naming every reason.

    `errors` name fields and problems, never the rejected values (they may be personal data).
    """

    def __init__(self, reason: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []

    def describe(self) -> str:
        reasons = "; ".join(f"{e['field']}: {e['problem']}" for e in self.errors)
        return f"{self.reason}: {reasons}" if reasons else self.reason
