"""Provider API keys at rest: MultiFernet encryption with a rotatable keyring.

The keyring comes from one setting (``JUDGE_KEYRING``, comma-separated Fernet keys, the first
is used to encrypt, all to decrypt). Rotating: put a new key first, keep the old ones after
it, run ``KeyRing.rotate`` over the stored tokens, then drop the old keys. Plaintext only
travels inside ``SecretStr``, whose repr and str are masked, so a log line, a traceback or
a template never shows it.
"""

from __future__ import annotations

import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_MASK = "********"


class SecretStr:
    """A secret string that does not print itself. ``reveal()`` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("SecretStr holds a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def hint(self) -> str:
        """Enough to tell two keys apart on a settings page (the last four characters)."""
        return f"…{self._value[-4:]}" if len(self._value) >= 12 else _MASK

    def __repr__(self) -> str:
        return f"SecretStr('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretStr):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("SecretStr", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __copy__(self) -> SecretStr:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, object]) -> SecretStr:
        return self

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling (a Celery argument, a cache) would write the plaintext somewhere: refuse.
        raise TypeError("a SecretStr is not picklable; pass the encrypted token instead")


class KeyRingError(ValueError):
    """The keyring setting is missing or malformed, or a token does not decrypt with it."""


class KeyRing:
    """Encrypt and decrypt provider keys with MultiFernet over the configured keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise KeyRingError("the keyring is empty: set at least one Fernet key")
        fernets = []
        for position, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key.encode()))
            except ValueError:
                # Never echo the key itself, even a malformed one.
                raise KeyRingError(f"keyring entry {position} is not a Fernet key (32 url-safe base64 bytes)")
        self._fernet = MultiFernet(fernets)
        self.size = len(fernets)

    @classmethod
    def from_env(cls, value: str | None) -> KeyRing:
        """From the comma-separated setting; blanks and surrounding spaces are ignored."""
        return cls([part.strip() for part in (value or "").split(",") if part.strip()])

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plaintext: str | SecretStr) -> str:
        value = plaintext.reveal() if isinstance(plaintext, SecretStr) else plaintext
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> SecretStr:
        try:
            return SecretStr(self._fernet.decrypt(token.encode()).decode())
        except InvalidToken:
            raise KeyRingError("the stored provider key does not decrypt with the current keyring")

    def rotate(self, token: str) -> str:
        """The same plaintext re-encrypted under the primary (first) key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise KeyRingError("the stored provider key does not decrypt with the current keyring")

    def __repr__(self) -> str:
        return f"KeyRing({self.size} key(s))"
