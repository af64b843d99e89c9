"""lab.host.cache: one build per recipe, whole entries only, older recipes removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.host import cache


def test_recipe_key_is_stable_and_order_free():
    assert cache.recipe_key({"a": 1, "b": [2]}) == cache.recipe_key({"b": [2], "a": 1})
    assert len(cache.recipe_key({})) == 16


def test_built_once_then_found(tmp_path: Path):
    made = []

    def make(staging: Path) -> Path:
        made.append(staging)
        (staging / "out.tar").write_text("image")
        return staging / "out.tar"

    entry = tmp_path / "c" / "img-new.tar"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "img-old.tar").write_text("older recipe")
    assert cache.build(entry, make, others="img-*.tar")
    assert not cache.build(entry, make, others="img-*.tar")
    assert len(made) == 1 and entry.read_text() == "image"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".lock", "img-new.tar"]


def test_a_failed_build_leaves_nothing_and_force_replaces_a_dir(tmp_path: Path):
    entry = tmp_path / "bookworm-k"

    def fail(staging: Path) -> Path:
        (staging / "half").write_text("x")
        raise RuntimeError("mmdebstrap failed")

    with pytest.raises(RuntimeError):
        cache.build(entry, fail, others="bookworm-*")
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]

    def make(staging: Path) -> Path:
        (staging / "box").mkdir()
        (staging / "box" / "vxlab.box").write_text("box")
        return staging / "box"

    whole = lambda: (entry / "vxlab.box").exists()  # noqa: E731
    assert cache.build(entry, make, others="bookworm-*", built=whole)
    assert cache.build(entry, make, others="bookworm-*", built=whole, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "bookworm-k"]
