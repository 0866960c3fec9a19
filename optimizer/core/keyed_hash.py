"""Keyed BLAKE2b of customer and (customer, offer) IDs: who is held out of a plan.

A control group must be the same whoever computes it, wherever and whenever: the same customers
every week for the same salt, whatever the chunking, thread count, row order, platform, process
or package version (polars' ``hash`` changes between versions, so it is not used). The hash is
BLAKE2b (RFC 7693) with an 8-byte digest, keyed with the salt's UTF-8 bytes, exactly what
Python's ``hashlib`` computes, so anyone can reproduce a control group from the salt alone::

    import hashlib
    def unit(message: bytes, person: bytes, salt: str) -> int:
        digest = hashlib.blake2b(message, digest_size=8, key=salt.encode(), person=person)
        return int.from_bytes(digest.digest(), "little")        # an integer in [0, 2**64)

    customer held out (universal control):  unit(text(c), b"offeropt.u", salt) < share * 2**64
    pair held out (per-offer control):       unit(len(text(c)).to_bytes(8, "little") + text(c)
                                                   + text(o), b"offeropt.o", salt) < share * 2**64

``text(id)`` is the ID's canonical text: an integer ID in decimal (``-12``, ``340``), a text ID
as its UTF-8 bytes (as loaded: trimmed of surrounding spaces). The personalisation strings keep
the two draws independent; the length prefix keeps pair messages unambiguous. ``share * 2**64``
is taken exactly (the float's binary value) and floored.

The hashing itself is a compiled implementation of BLAKE2b over the IDs' text in one buffer (no
Python loop over IDs); the tests keep it equal to the ``hashlib`` version above.
"""
from __future__ import annotations

from fractions import Fraction

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa

PERSON_CUSTOMER = b"offeropt.u"
PERSON_PAIR = b"offeropt.o"
SALT_MAX_BYTES = 64  # BLAKE2b's longest key

_IV = np.array([
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
], dtype=np.uint64)
_SIGMA = np.array([
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
], dtype=np.int64)


def salt_bytes(salt: str) -> bytes:
    """The salt as the hash key; refuses what BLAKE2b cannot key with."""
    key = salt.encode("utf-8")
    if not 1 <= len(key) <= SALT_MAX_BYTES:
        raise ValueError(f"salt must be 1 to {SALT_MAX_BYTES} bytes of UTF-8, got {len(key)}")
    return key


def threshold(share: float) -> int:
    """``floor(share * 2**64)`` exactly: a hash below it is held out."""
    return int(Fraction(share) * (1 << 64))


def below(hashes: np.ndarray, share: float) -> np.ndarray:
    """Which hashes fall below ``share`` of the 64-bit range (held out)."""
    limit = threshold(share)
    if limit >= 1 << 64:
        return np.ones(hashes.shape, dtype=bool)
    return hashes < np.uint64(limit)


def _text(ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The IDs' canonical text in one byte buffer and its offsets (``n + 1``)."""
    if ids.dtype.is_integer():
        text = ids.cast(pl.Int64).cast(pl.Utf8)
    elif ids.dtype in (pl.Utf8, pl.Null):
        text = ids.cast(pl.Utf8)
    else:
        raise TypeError(f"IDs must be integers or text, not {ids.dtype}")
    if text.null_count():
        raise ValueError("IDs to hash must not be empty")
    array = text.to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    array = array.cast(pa.large_string())
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
            else np.zeros(0, dtype=np.uint8))
    return data, offsets


def _param_state(person: bytes, key_length: int) -> np.ndarray:
    """The initial state: IV xor the parameter block (digest 8 bytes, keyed, personalised)."""
    h = _IV.copy()
    h[0] ^= np.uint64(0x01010000 | (key_length << 8) | 8)
    personal = person.ljust(16, b"\0")
    h[6] ^= np.uint64(int.from_bytes(personal[:8], "little"))
    h[7] ^= np.uint64(int.from_bytes(personal[8:], "little"))
    return h


def _key_block(key: bytes) -> np.ndarray:
    return np.frombuffer(key.ljust(128, b"\0"), dtype="<u8").astype(np.uint64)


@nb.njit(inline="always")
def _rotr(x, n):  # pragma: no cover - compiled
    return (x >> np.uint64(n)) | (x << np.uint64(64 - n))


@nb.njit(inline="always")
def _mix(v, a, b, c, d, x, y):  # pragma: no cover - compiled
    """BLAKE2b's G function on four words of the working vector."""
    v[a] = v[a] + v[b] + x
    v[d] = _rotr(v[d] ^ v[a], 32)
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], 24)
    v[a] = v[a] + v[b] + y
    v[d] = _rotr(v[d] ^ v[a], 16)
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], 63)


@nb.njit(cache=True, inline="always")
def _compress(h, m, t, last, sigma, iv, v):  # pragma: no cover - compiled
    """BLAKE2b's compression of one 128-byte block ``m`` (16 words) into ``h``; ``t`` counts
    the bytes so far, ``last`` marks the final block; ``v`` is scratch."""
    for i in range(8):
        v[i] = h[i]
        v[i + 8] = iv[i]
    v[12] ^= np.uint64(t)
    if last:
        v[14] = ~v[14]
    for r in range(12):
        s = sigma[r % 10]
        _mix(v, 0, 4, 8, 12, m[s[0]], m[s[1]])
        _mix(v, 1, 5, 9, 13, m[s[2]], m[s[3]])
        _mix(v, 2, 6, 10, 14, m[s[4]], m[s[5]])
        _mix(v, 3, 7, 11, 15, m[s[6]], m[s[7]])
        _mix(v, 0, 5, 10, 15, m[s[8]], m[s[9]])
        _mix(v, 1, 6, 11, 12, m[s[10]], m[s[11]])
        _mix(v, 2, 7, 8, 13, m[s[12]], m[s[13]])
        _mix(v, 3, 4, 9, 14, m[s[14]], m[s[15]])
    for i in range(8):
        h[i] ^= v[i] ^ v[i + 8]


@nb.njit(cache=True)
def _keyed_state(h0, key_block, sigma, iv):  # pragma: no cover - compiled
    """The state after the key block, when a message follows it."""
    h = h0.copy()
    _compress(h, key_block, 128, False, sigma, iv, np.empty(16, dtype=np.uint64))
    return h


@nb.njit(cache=True)
def _digest(message, length, h0, keyed, key_block, sigma, iv, h, m,
            v):  # pragma: no cover - compiled
    """The first 8 digest bytes (as a little-endian integer) of ``message[:length]``; ``keyed``
    is the state after the key block (:func:`_keyed_state`), computed once for all messages."""
    if length == 0:  # the key block is then the last block
        for i in range(8):
            h[i] = h0[i]
        _compress(h, key_block, 128, True, sigma, iv, v)
        return h[0]
    for i in range(8):
        h[i] = keyed[i]
    done = 0
    while done < length:
        take = min(128, length - done)
        for w in range(16):
            m[w] = 0
        for j in range(take):
            m[j // 8] |= np.uint64(message[done + j]) << np.uint64(8 * (j % 8))
        done += take
        _compress(h, m, 128 + done, done == length, sigma, iv, v)
    return h[0]


@nb.njit(cache=True)
def _digests_start(n, h0, key_block, sigma, iv):  # pragma: no cover - compiled
    """For ``n`` messages: their digests' array, the state after the key block and the scratch
    arrays :func:`_digest` reuses from message to message (``h``, ``m``, ``v``)."""
    return (np.empty(n, dtype=np.uint64), _keyed_state(h0, key_block, sigma, iv),
            np.empty(8, dtype=np.uint64), np.empty(16, dtype=np.uint64),
            np.empty(16, dtype=np.uint64))


@nb.njit(cache=True)
def _hash_single(data, offsets, h0, key_block, sigma, iv):  # pragma: no cover - compiled
    n = offsets.shape[0] - 1
    out, keyed, h, m, v = _digests_start(n, h0, key_block, sigma, iv)
    for i in range(n):
        start = offsets[i]
        out[i] = _digest(data[start:offsets[i + 1]], offsets[i + 1] - start, h0, keyed, key_block,
                         sigma, iv, h, m, v)
    return out


@nb.njit(cache=True)
def _hash_pairs(c_data, c_off, o_data, o_off, h0, key_block, sigma,
                iv):  # pragma: no cover - compiled
    n = c_off.shape[0] - 1
    out, keyed, h, m, v = _digests_start(n, h0, key_block, sigma, iv)
    longest = 0
    for i in range(n):
        longest = max(longest, c_off[i + 1] - c_off[i] + o_off[i + 1] - o_off[i])
    message = np.empty(8 + longest, dtype=np.uint8)
    for i in range(n):
        lc = c_off[i + 1] - c_off[i]
        lo = o_off[i + 1] - o_off[i]
        for j in range(8):
            message[j] = (lc >> (8 * j)) & 0xFF
        message[8:8 + lc] = c_data[c_off[i]:c_off[i + 1]]
        message[8 + lc:8 + lc + lo] = o_data[o_off[i]:o_off[i + 1]]
        out[i] = _digest(message, 8 + lc + lo, h0, keyed, key_block, sigma, iv, h, m, v)
    return out


def customer_hashes(customer_ids: pl.Series, salt: str) -> np.ndarray:
    """The keyed hash (uint64) of each customer ID (see the module docstring)."""
    key = salt_bytes(salt)
    data, offsets = _text(customer_ids)
    return _hash_single(data, offsets, _param_state(PERSON_CUSTOMER, len(key)), _key_block(key),
                        _SIGMA, _IV)


def pair_hashes(customer_ids: pl.Series, offer_ids: pl.Series, salt: str) -> np.ndarray:
    """The keyed hash (uint64) of each (customer ID, offer ID) pair, row by row."""
    if len(customer_ids) != len(offer_ids):
        raise ValueError("customer and offer IDs differ in length")
    key = salt_bytes(salt)
    c_data, c_off = _text(customer_ids)
    o_data, o_off = _text(offer_ids)
    return _hash_pairs(c_data, c_off, o_data, o_off, _param_state(PERSON_PAIR, len(key)),
                       _key_block(key), _SIGMA, _IV)


__all__ = ["PERSON_CUSTOMER", "PERSON_PAIR", "below", "customer_hashes",
           "pair_hashes", "salt_bytes", "threshold"]
