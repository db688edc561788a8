"""Thin cffi (ABI mode) binding to the system libsodium: the constant-time group arithmetic.

pysodium wraps the same library through ctypes with a version check on every call, which costs
more than the arithmetic itself for point additions; this binding declares only what we use.

Security: every function here that takes a scalar is constant time in libsodium. Return codes
are checked by the callers in ``groups``; nothing here interprets them.
"""

from __future__ import annotations

import ctypes.util
from typing import Any

from cffi import FFI

ffi = FFI()
ffi.cdef(
    """
    int sodium_init(void);
    const char *sodium_version_string(void);

    int crypto_core_ristretto255_is_valid_point(const unsigned char *p);
    int crypto_core_ristretto255_add(unsigned char *r, const unsigned char *p,
                                     const unsigned char *q);
    int crypto_core_ristretto255_sub(unsigned char *r, const unsigned char *p,
                                     const unsigned char *q);
    int crypto_core_ristretto255_from_hash(unsigned char *p, const unsigned char *r);
    int crypto_scalarmult_ristretto255(unsigned char *q, const unsigned char *n,
                                       const unsigned char *p);
    int crypto_scalarmult_ristretto255_base(unsigned char *q, const unsigned char *n);

    int crypto_core_ed25519_is_valid_point(const unsigned char *p);
    int crypto_core_ed25519_add(unsigned char *r, const unsigned char *p,
                                const unsigned char *q);
    int crypto_core_ed25519_sub(unsigned char *r, const unsigned char *p,
                                const unsigned char *q);
    int crypto_scalarmult_ed25519_noclamp(unsigned char *q, const unsigned char *n,
                                          const unsigned char *p);
    int crypto_scalarmult_ed25519_base_noclamp(unsigned char *q, const unsigned char *n);

    void crypto_core_ed25519_scalar_reduce(unsigned char *r, const unsigned char *s);
    void crypto_core_ed25519_scalar_add(unsigned char *z, const unsigned char *x,
                                        const unsigned char *y);
    void crypto_core_ed25519_scalar_mul(unsigned char *z, const unsigned char *x,
                                        const unsigned char *y);
    int crypto_core_ed25519_from_hash(unsigned char *p, const unsigned char *h);

    int crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m,
                                    unsigned long long mlen, const unsigned char *pk);
    """
)


def _load() -> Any:  # a cffi library object: attributes are the cdef'd functions
    candidates = [ctypes.util.find_library("sodium"), "libsodium.so.23", "libsodium.so"]
    errors = []
    for name in candidates:
        if not name:
            continue
        try:
            return ffi.dlopen(name)
        except OSError as exc:  # try the next name
            errors.append(f"{name}: {exc}")
    raise ImportError(
        "libsodium (>= 1.0.18) was not found; install it (Debian: apt-get install libsodium23). "
        + "; ".join(errors)
    )


lib = _load()
if lib.sodium_init() < 0:
    raise ImportError("libsodium failed to initialise")

VERSION = ffi.string(lib.sodium_version_string()).decode()
