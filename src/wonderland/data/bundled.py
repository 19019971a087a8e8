"""Data files shipped with the package (``data/files/``, sources in the README there):
the text of *Alice's Adventures in Wonderland* and a subset of the spoken-digits clips.
A folder named by ``WONDERLAND_DATA`` that holds the full ``spoken_digits.npz`` is
preferred for the clips."""

from __future__ import annotations

import os

import numpy as np

_FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")


def load_alice() -> str:
    """The full text of *Alice's Adventures in Wonderland* (144,396 characters)."""
    with open(os.path.join(_FILES, "alice.txt"), encoding="utf-8") as f:
        return f.read()


def spoken_digits_path(prefer_shared=True) -> str:
    """The full shared file when ``WONDERLAND_DATA`` points to a folder holding it, else
    the shipped subset."""
    shared = os.environ.get("WONDERLAND_DATA")
    if prefer_shared and shared and os.path.exists(os.path.join(shared, "spoken_digits.npz")):
        return os.path.join(shared, "spoken_digits.npz")
    return os.path.join(_FILES, "spoken_digits_subset.npz")


def load_spoken_digits(path=None) -> dict:
    """Clips of spoken digits: ``audio (n, 6000)`` float32 in [-1, 1], ``label (n,)``,
    ``speaker (n,)``, ``speakers`` (names such as ``en-gb+m3``), ``accent (n,)`` (the
    part before ``+``), ``sample_rate``."""
    path = path or spoken_digits_path()
    with np.load(path, allow_pickle=False) as d:
        for key in ("audio", "label", "speaker", "speakers", "sample_rate"):
            if key not in d.files:
                raise ValueError(f"load_spoken_digits: {path} has no key {key!r} (keys: {d.files})")
        audio = d["audio"].astype(np.float32) / 32768.0
        speakers = d["speakers"]
        out = {"audio": audio, "label": d["label"].astype(np.int64),
               "speaker": d["speaker"].astype(np.int64), "speakers": speakers,
               "sample_rate": int(d["sample_rate"])}
    out["accent"] = np.array([str(s).split("+")[0] for s in speakers])[out["speaker"]]
    return out
