"""How many failed attempts (a wrong join code, a wrong student token, a wrong teacher key) are allowed.

Failures are rows of ``class_attempts`` in the database, so the limits hold across every replica and survive a
restart. Each scope is counted over a sliding window; when any scope is at its limit the attempt is refused
before the code or secret is even looked at (a refused attempt is not recorded, so waiting always helps).

========  ============================================================  ==========  ========
scope     key                                                           failures    window
========  ============================================================  ==========  ========
browser   the browser session (one tab: Streamlit's session id)          8           10 min
client    the client's address (``X-Real-IP`` from the proxy, else the   30          10 min
          connection's; a class behind one NAT shares it, hence 30)
class     one class (wrong tokens / teacher keys tried against it)       20          10 min
all       every failure in the database                                 600         10 min
========  ============================================================  ==========  ========

With the join code's 40 bits (:mod:`mosmed.classroom.codes`) the global limit alone makes guessing hopeless.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limit", "LIMITS", "ATTEMPT_KINDS", "KEEP_ATTEMPTS_S", "limit"]


@dataclass(frozen=True)
class Limit:
    scope: str
    max_failures: int
    window_s: int


LIMITS: tuple[Limit, ...] = (
    Limit("browser", 8, 600),
    Limit("client", 30, 600),
    Limit("class", 20, 600),
    Limit("all", 600, 600),
)
#: join: a code typed in; rejoin: a code with a student token (a link); teacher: a code with a teacher key.
ATTEMPT_KINDS: tuple[str, ...] = ("join", "rejoin", "teacher")
#: Failure rows older than this are deleted (by the next failure's transaction).
KEEP_ATTEMPTS_S = 24 * 3600


def limit(scope: str) -> Limit:
    """The limit of one scope ("browser", "client", "class", "all")."""
    for lim in LIMITS:
        if lim.scope == scope:
            return lim
    raise KeyError(scope)
