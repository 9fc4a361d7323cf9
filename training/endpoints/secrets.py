"""Secrets stored in the database (a model endpoint's API key), encrypted with Fernet (AES-128-CBC and
HMAC-SHA256, from the `cryptography` package).

The keys are LOGTUNE_ENCRYPTION_KEYS, newest first, then keys derived from SECRET_KEY and each of
SECRET_KEY_FALLBACKS (HKDF-SHA256). The first key encrypts; every key decrypts, so a key is rotated by putting the
new one first, running `manage.py rotate_encryption_keys` (which encrypts every stored secret again with it), and
then removing the old one (docs/evaluation.md).
"""

import base64
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

_INFO = b"logtune: secrets at rest"


class SecretUnreadable(Exception):
    """A stored secret none of the keys decrypts: the key it was encrypted with was removed before rotating."""


def secret_encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def secret_decrypt(token: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored key cannot be decrypted with LOGTUNE_ENCRYPTION_KEYS (or SECRET_KEY and its fallbacks): was the "
            "key it was encrypted with removed before `manage.py rotate_encryption_keys` ran? Enter the key again."
        ) from None


def secret_rotate(token: str) -> str:
    """The secret encrypted again with the first key (unchanged in value)."""
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("A stored key cannot be decrypted with any configured key.") from None


def _derived(secret: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return base64.urlsafe_b64encode(key)


@cache
def _fernet_for(keys: tuple[str, ...], secrets: tuple[str, ...]) -> "MultiFernet":
    # Imported where used, as the other heavy libraries here: web processes that never touch a key stay small.
    from cryptography.fernet import Fernet, MultiFernet

    try:
        # The derived keys come after the configured ones, so secrets stored before keys were configured stay
        # readable until `rotate_encryption_keys` has encrypted them again with the first configured key.
        fernets = [Fernet(key) for key in keys] + [Fernet(_derived(secret)) for secret in secrets]
    except ValueError:
        raise ImproperlyConfigured(
            "LOGTUNE_ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes; make one with "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None
    return MultiFernet(fernets)


def _fernet() -> "MultiFernet":
    # Read on each call (and cached per value) so that tests and rotations that change the settings take effect.
    return _fernet_for(tuple(settings.LOGTUNE_ENCRYPTION_KEYS), (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS))
