"""Hypothesis strategies for paths read back from a store (built on Hypothesis alone).

* ``path_names``: one valid part of a normalised relative path (never ``.``/``..``,
  no ``/``, ``\\`` or NUL), dots and odd characters included.
* ``relative_paths``: normalised relative paths: valid names joined by single ``/``.
* ``path_texts``: any text a store might hold where a path is expected, mostly built
  from the pieces that make paths tricky (``..``, ``.``, ``/``, ``\\``, NUL, empty parts).
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["path_names", "path_texts", "relative_paths"]

path_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\\\0"), min_size=1, max_size=6
).filter(lambda name: name not in (".", ".."))

relative_paths = st.lists(path_names, min_size=1, max_size=5).map("/".join)

path_texts = st.one_of(
    relative_paths,
    st.lists(
        st.one_of(st.sampled_from(["..", ".", "", "a", "b.py", "a\\..", "\0", "~"]), path_names),
        min_size=1,
        max_size=6,
    ).map("/".join),
    st.text(alphabet="./\\ab\0", max_size=10),
)
