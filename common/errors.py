"""One error type for "these problems, all at once".

Every check that validates user input before work starts (data, adaptors, HPO, benchmark, export) collects all the
problems it finds and raises one subclass of :class:`ProblemsError`, whose message lists them. Each problem names the
command-line flag where there is one (``--model.alpha``), the value given and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence


class ProblemsError(ValueError):
    """Bad input: every problem found, listed in one message.

    Subclasses set :attr:`headline`, the sentence before the list (``{n}`` becomes the number of problems), and
    :attr:`bare_single` to show a single problem alone, without the headline.

    Args:
        problems: One message per problem, each naming the field or flag, the value and what was expected.
    """

    headline = "{n} problem(s) found"
    bare_single = False

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1 and self.bare_single:
            message = self.problems[0]
        else:
            listed = "\n".join(f"- {p}" for p in self.problems)
            message = f"{self.headline.format(n=len(self.problems))}:\n{listed}"
        super().__init__(message)

    def __str__(self) -> str:  # KeyError subclasses would otherwise show the repr of the message
        return str(self.args[0]) if self.args else ""
