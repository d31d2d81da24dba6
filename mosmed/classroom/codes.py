"""Join codes, teacher keys and student tokens: how they are made, written, read back and stored.

Join code
---------
8 symbols of Crockford's base-32 alphabet (``0-9 A-Z`` without ``I L O U``), shown as ``ABCD-EFGH``:
32**8 = 2**40, about 1.1e12 codes, drawn with :mod:`secrets`. Why that is enough: a code is only joinable
while its class runs (:data:`mosmed.classroom.model.CLASS_TTL_HOURS`), and failed attempts are limited in the
database (:mod:`mosmed.classroom.limits`: per client address, per browser session, and in all, across every
replica). With 100 classes running at once, one guess hits one of them with probability 100 / 2**40 ~ 1e-10;
at the global limit (60 failures a minute, ~86 000 a day) a whole day of guessing succeeds with probability
below 1e-5. Eight symbols are still easy to read off a projector and type; the alphabet has no 0/O or 1/I/L
pairs to confuse, and reading accepts those letters (and lower case, spaces, dashes) as Crockford does.

Secrets
-------
The teacher key (192 bits) and a student's token (128 bits) are random URL-safe strings. The database keeps
only their SHA-256 (:func:`secret_hash`): a copy of the database does not let anyone drive a class or answer
as a student. The teacher key stays in the teacher's server-side session (never in a URL); a student's token is
in the student's own link (``?class=CODE&seat=TOKEN``), which restores them on any replica after a reconnect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "CODE_BITS",
    "new_code",
    "format_code",
    "parse_code",
    "new_teacher_key",
    "new_student_token",
    "secret_hash",
    "same_hash",
    "looks_like_secret",
]

#: Crockford base 32: digits and capitals without I, L, O (read as 1, 1, 0) and U.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
#: 8 symbols x 5 bits.
CODE_BITS = 40
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = str.maketrans("", "", " -_.\t")
#: Longest secret accepted from a URL or a text box (the ones we make are 22-32 characters).
MAX_SECRET_CHARS = 64
_SECRET_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_code() -> str:
    """A fresh join code (8 symbols, canonical form without the dash)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    """``"ABCDEFGH"`` -> ``"ABCD-EFGH"`` (how it is shown and put in links)."""
    return f"{code[:4]}-{code[4:]}"


def parse_code(text: object) -> str | None:
    """The canonical code in ``text`` (any case, spaces / dashes, O for 0, I or L for 1), or ``None``."""
    if not isinstance(text, str) or len(text) > 32:
        return None
    s = text.strip().upper().translate(_SEPARATORS).translate(_READ_AS)
    if len(s) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in s):
        return None
    return s


def new_teacher_key() -> str:
    """192 random bits, URL-safe text (32 characters)."""
    return secrets.token_urlsafe(24)


def new_student_token() -> str:
    """128 random bits, URL-safe text (22 characters)."""
    return secrets.token_urlsafe(16)


def looks_like_secret(text: object) -> bool:
    """True when ``text`` could be a key or token we made (URL-safe characters, bounded length)."""
    return isinstance(text, str) and 16 <= len(text) <= MAX_SECRET_CHARS and all(ch in _SECRET_CHARS for ch in text)


def secret_hash(secret: str) -> str:
    """SHA-256 hex of a key or token: what the database stores and looks up."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_hash(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two hashes (``False`` when either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))
