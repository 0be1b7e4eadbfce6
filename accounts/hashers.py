"""Password hashing parameters."""

from django.contrib.auth.hashers import Argon2PasswordHasher, PBKDF2PasswordHasher

from accounts.hash_pool import hash_run


class Argon2idHasher(Argon2PasswordHasher):
    """Argon2id at one of OWASP's equivalent minimum settings: 9 MiB of memory, 4 passes, 1 lane.

    OWASP lists 46 MiB x 1 pass, 19 MiB x 2, 12 MiB x 3, 9 MiB x 4 and 7 MiB x 5 as equal
    defences. This one lets two hashes run at once inside a shared L3 cache of 32 MiB with
    room to spare: at 19 MiB two concurrent hashes overflow it and each runs about 10 % slower
    (bench/README.md), and the requests around them run from colder caches. Django's default
    (100 MiB, 8 lanes) would let a burst of logins exhaust a small instance's memory. The
    algorithm name stays ``argon2``, so hashes made with other parameters are re-hashed with
    these on the user's next login.
    """

    time_cost = 4
    memory_cost = 9 * 1024  # KiB
    parallelism = 1

    def encode(self, password, salt):
        return hash_run(super().encode, password, salt)

    def verify(self, password, encoded):
        return hash_run(super().verify, password, encoded)


class LegacyPBKDF2Hasher(PBKDF2PasswordHasher):
    """Django's PBKDF2 (1,000,000 iterations), for hashes made before Argon2: verified in the
    hash pool like Argon2, since each check costs the CPU of some 15 Argon2 hashes and must
    stay inside the pool's bound on hashes at once. Same algorithm name: such hashes still
    verify, and are re-hashed with Argon2 on the owner's next login."""

    def encode(self, password, salt, iterations=None):
        return hash_run(super().encode, password, salt, iterations)

    def verify(self, password, encoded):
        return hash_run(super().verify, password, encoded)
