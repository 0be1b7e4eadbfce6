"""Password hashing parameters."""

from django.contrib.auth.hashers import Argon2PasswordHasher

from accounts.hash_pool import hash_run


class Argon2idHasher(Argon2PasswordHasher):
    """Argon2id at OWASP's recommended cost: 19 MiB of memory, 2 passes, 1 lane.

    Django's default (100 MiB, 8 lanes) would let a burst of logins exhaust a small instance's
    memory; these parameters keep one hash at ~19 MiB while staying in OWASP's guidance. The
    algorithm name stays ``argon2``, so hashes made with other parameters are re-hashed with
    these on the user's next login.
    """

    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1

    def encode(self, password, salt):
        return hash_run(super().encode, password, salt)

    def verify(self, password, encoded):
        return hash_run(super().verify, password, encoded)
